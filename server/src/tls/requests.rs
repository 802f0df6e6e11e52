//! What the CA does with requests and certificates: keep a request pending,
//! sign one, answer "where is my certificate", revoke, issue an operator's.
//! Every mutation holds the store's flock.

use std::collections::HashSet;
use std::net::IpAddr;

use anyhow::bail;
use rcgen::KeyPair;

use super::CertKind;
use super::ca::Pki;
use super::csr::{CheckedCsr, check_csr};
use super::store::{IssuedCert, PendingRequest, Revocation};

/// What became of a request that waits for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// It waits (again, when the same key asked before).
    Pending,
    /// Another key already waits for this name.
    Conflict { fingerprint: String },
    /// [`MAX_PENDING`] requests already wait for an operator.
    Full { waiting: usize },
    /// [`MAX_PENDING_PER_ADDRESS`] requests from this address already wait.
    AddressFull { waiting: usize },
}

/// Requests that may wait for an operator at once: enough for a fleet
/// enrolling without a token, few enough that anonymous clients cannot fill
/// the CA directory or bury the real requests in `ca list`.
pub const MAX_PENDING: usize = 1000;

/// Requests from one address that may wait at once: one host cannot squat
/// more names than this (a fleet behind one NAT that enrolls without the
/// token waits for the operator in batches of this size).
pub const MAX_PENDING_PER_ADDRESS: usize = 32;

/// Whether a name already holds a valid (unexpired, unrevoked) node
/// certificate. A second certificate for an enrolled name is never minted
/// by enrollment or `ca sign` (Puppet's `allow_duplicate_certs = false`):
/// anyone holding the shared token could otherwise become that node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    No,
    /// Its certificate certifies this very key (a retry after a lost answer).
    SameKey(IssuedCert),
    OtherKey(IssuedCert),
}

/// Why a request for an enrolled name is refused, and what frees the name.
pub fn duplicate_refusal(name: &str, held: &IssuedCert) -> String {
    format!(
        "`{name}` already holds a valid certificate (serial {}, another key); a second one is refused\nhint: if this is a reinstalled `{name}`, an operator frees the name first with `drover-server ca revoke {name}`; a running node renews its own certificate over its mutual-TLS connection",
        colon_hex(&held.serial)
    )
}

/// What `GET /api/v1/certificate_requests/{name}` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    Signed(IssuedCert),
    Pending(PendingRequest),
    Unknown,
}

/// Everything `drover-server ca list` shows.
#[derive(Debug, Clone)]
pub struct Listing {
    pub pending: Vec<PendingRequest>,
    pub certificates: Vec<(IssuedCert, Option<Revocation>)>,
}

impl Pki {
    /// Keeps `csr`, sent from `from`, as its name's pending request.
    pub fn add_pending(&self, csr: &CheckedCsr, from: Option<IpAddr>) -> anyhow::Result<Recorded> {
        let lock = self.store().lock()?;
        if let Some(existing) = self.store().pending(csr.name())? {
            return Ok(if existing.fingerprint == csr.fingerprint() {
                Recorded::Pending
            } else {
                Recorded::Conflict {
                    fingerprint: existing.fingerprint,
                }
            });
        }
        let waiting = self.store().pending_count()?;
        if waiting >= MAX_PENDING {
            return Ok(Recorded::Full { waiting });
        }
        if let Some(from) = from {
            let all = self.store().all_pending()?;
            let waiting = all.iter().filter(|p| p.from == Some(from)).count();
            if waiting >= MAX_PENDING_PER_ADDRESS {
                return Ok(Recorded::AddressFull { waiting });
            }
        }
        self.store().put_pending(
            &lock,
            &PendingRequest {
                name: csr.name().to_owned(),
                fingerprint: csr.fingerprint().to_owned(),
                requested_at: jiff::Timestamp::now(),
                from,
                csr: csr.pem(),
            },
        )?;
        Ok(Recorded::Pending)
    }

    /// What a first certificate for `csr`'s name would meet: the name's
    /// valid certificate, if it holds one (see [`Enrolled`]).
    pub fn enrolled(&self, csr: &CheckedCsr) -> anyhow::Result<Enrolled> {
        Ok(match self.newest_valid_cert(CertKind::Node, csr.name())? {
            None => Enrolled::No,
            Some(held) if held.fingerprint == csr.fingerprint() => Enrolled::SameKey(held),
            Some(held) => Enrolled::OtherKey(held),
        })
    }

    /// Enrollment (token or policy command): signs `csr` now and drops its
    /// name's pending request, unless the name already holds a valid
    /// certificate (checked under the store's lock, so two requests racing
    /// for one name get one certificate). The same key gets its certificate
    /// back; another key is refused (`Err` with the certificate it holds):
    /// only an operator's `ca revoke` frees the name, and renewal goes
    /// through [`Pki::sign_csr`].
    pub fn enroll_csr(&self, csr: &CheckedCsr) -> anyhow::Result<Result<IssuedCert, IssuedCert>> {
        let lock = self.store().lock()?;
        match self.enrolled(csr)? {
            Enrolled::SameKey(held) => return Ok(Ok(held)),
            Enrolled::OtherKey(held) => return Ok(Err(held)),
            Enrolled::No => {}
        }
        let issued = self.issue(&lock, CertKind::Node, csr.name(), csr)?;
        self.store().remove_pending(&lock, csr.name())?;
        Ok(Ok(issued))
    }

    /// Signs `csr` now whatever its name holds (the CA's primitive; a
    /// node's renewal goes through [`Pki::renew_csr`]).
    pub fn sign_csr(&self, kind: CertKind, csr: &CheckedCsr) -> anyhow::Result<IssuedCert> {
        let lock = self.store().lock()?;
        self.issue(&lock, kind, csr.name(), csr)
    }

    /// Renewal, asked over the node's own mutual-TLS connection (never by
    /// enrollment: see [`Pki::enroll_csr`]): signs `csr` now and revokes
    /// every other valid certificate of the name but `presented`, the one
    /// the asking connection holds, so that a node has at most two valid
    /// certificates however often it renews (the one in use until it
    /// switches, and the new one). Returns the new certificate and what was revoked.
    pub fn renew_csr(
        &self,
        csr: &CheckedCsr,
        presented: Option<&str>,
    ) -> anyhow::Result<(IssuedCert, Vec<Revocation>)> {
        let lock = self.store().lock()?;
        let issued = self.issue(&lock, CertKind::Node, csr.name(), csr)?;
        let revoked = self.revoked_serials()?;
        let now = jiff::Timestamp::now();
        let revoked_at = now;
        let older: Vec<Revocation> = self
            .store()
            .certs_named(CertKind::Node, csr.name())?
            .into_iter()
            .filter(|c| {
                c.serial != issued.serial
                    && Some(c.serial.as_str()) != presented
                    && !c.is_expired(now)
                    && !revoked.contains(&c.serial)
            })
            .map(|c| Revocation {
                serial: c.serial,
                name: c.name,
                kind: c.kind,
                revoked_at,
            })
            .collect();
        self.store().add_revocations(&lock, &older)?;
        Ok((issued, older))
    }

    /// `drover-server ca sign NAME`: signs NAME's pending request.
    pub fn sign_pending(&self, name: &str) -> anyhow::Result<IssuedCert> {
        let lock = self.store().lock()?;
        let Some(request) = self.store().pending(name)? else {
            bail!(
                "no pending certificate request for `{name}`\nhint: `drover-server ca list` shows the pending requests"
            );
        };
        let csr = check_csr(name, request.csr.as_bytes())
            .map_err(|e| anyhow::anyhow!("the pending request for `{name}` is refused: {e}"))?;
        if let Enrolled::OtherKey(held) = self.enrolled(&csr)? {
            bail!("{}", duplicate_refusal(name, &held));
        }
        let issued = self.issue(&lock, CertKind::Node, name, &csr)?;
        self.store().remove_pending(&lock, name)?;
        Ok(issued)
    }

    /// `drover-server ca reject NAME`: deletes NAME's pending request, so a
    /// squatted name is free again for the real node.
    pub fn reject_pending(&self, name: &str) -> anyhow::Result<PendingRequest> {
        let lock = self.store().lock()?;
        let Some(request) = self.store().pending(name)? else {
            bail!(
                "no pending certificate request for `{name}`\nhint: `drover-server ca list` shows the pending requests"
            );
        };
        self.store().remove_pending(&lock, name)?;
        Ok(request)
    }

    /// What NAME holds for the key with fingerprint `key`: its newest valid
    /// node certificate of that key, else its pending request of that key.
    /// Another key's request or certificate is `Unknown`: asking tells a
    /// stranger nothing about which names exist.
    pub fn request_status(&self, name: &str, key: &str) -> anyhow::Result<RequestStatus> {
        let revoked = self.revoked_serials()?;
        let now = jiff::Timestamp::now();
        let signed = self
            .store()
            .certs_named(CertKind::Node, name)?
            .into_iter()
            .filter(|c| c.fingerprint == key && !c.is_expired(now) && !revoked.contains(&c.serial))
            .max_by(|a, b| (a.not_before, &a.serial).cmp(&(b.not_before, &b.serial)));
        if let Some(cert) = signed {
            return Ok(RequestStatus::Signed(cert));
        }
        Ok(match self.store().pending(name)? {
            Some(request) if request.fingerprint == key => RequestStatus::Pending(request),
            _ => RequestStatus::Unknown,
        })
    }

    pub fn newest_valid_cert(
        &self,
        kind: CertKind,
        name: &str,
    ) -> anyhow::Result<Option<IssuedCert>> {
        let revoked = self.revoked_serials()?;
        let now = jiff::Timestamp::now();
        Ok(self
            .store()
            .certs_named(kind, name)?
            .into_iter()
            .filter(|c| !c.is_expired(now) && !revoked.contains(&c.serial))
            .max_by(|a, b| (a.not_before, &a.serial).cmp(&(b.not_before, &b.serial))))
    }

    fn revoked_serials(&self) -> anyhow::Result<HashSet<String>> {
        Ok(self
            .store()
            .revocations()?
            .into_iter()
            .map(|r| r.serial)
            .collect())
    }

    /// `drover-server ca revoke NAME_OR_SERIAL`: every unexpired, unrevoked
    /// certificate of that name (node or operator), or the one with that serial.
    pub fn revoke(&self, target: &str) -> anyhow::Result<Vec<Revocation>> {
        let lock = self.store().lock()?;
        let revoked = self.revoked_serials()?;
        let now = jiff::Timestamp::now();
        let all = self.store().all_certs()?;
        let serial = target.replace(':', "").to_ascii_lowercase();
        let serial = serial.trim_start_matches("00");
        let by_serial: Vec<&IssuedCert> = all.iter().filter(|c| c.serial == serial).collect();
        let by_name: Vec<&IssuedCert> = all
            .iter()
            .filter(|c| c.name == target && !c.is_expired(now) && !revoked.contains(&c.serial))
            .collect();
        let chosen = match (by_name.is_empty(), by_serial.as_slice()) {
            (false, []) => by_name,
            (true, [one]) if revoked.contains(&one.serial) => {
                bail!(
                    "certificate {} of `{}` is already revoked",
                    one.serial,
                    one.name
                )
            }
            (true, [_]) => by_serial,
            (false, [_]) => bail!(
                "`{target}` is both a certificate name and a serial\nhint: revoke by the full serial shown by `drover-server ca list` with colons, e.g. {}",
                colon_hex(serial)
            ),
            (true, []) => bail!(
                "no valid certificate is named `{target}` or has that serial\nhint: `drover-server ca list` shows the certificates"
            ),
            (_, _) => {
                bail!("serial {serial} is held by several certificates; the CA store is damaged")
            }
        };
        let revoked_at = jiff::Timestamp::now();
        let new: Vec<Revocation> = chosen
            .into_iter()
            .map(|c| Revocation {
                serial: c.serial.clone(),
                name: c.name.clone(),
                kind: c.kind,
                revoked_at,
            })
            .collect();
        self.store().add_revocations(&lock, &new)?;
        for r in &new {
            tracing::info!(name = %r.name, kind = %r.kind, serial = %r.serial, "revoked a certificate");
        }
        Ok(new)
    }

    /// `drover-server ca operator NAME`: a new P-256 key (PEM) and its operator certificate.
    pub fn issue_operator(&self, name: &str) -> anyhow::Result<(String, IssuedCert)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let lock = self.store().lock()?;
        let issued = self.issue(&lock, CertKind::Operator, name, &key)?;
        Ok((key.serialize_pem(), issued))
    }

    /// Pending requests and every certificate with its revocation, if any.
    pub fn listing(&self) -> anyhow::Result<Listing> {
        let revocations = self.store().revocations()?;
        let certificates = self
            .store()
            .all_certs()?
            .into_iter()
            .map(|c| {
                let revocation = revocations.iter().find(|r| r.serial == c.serial).cloned();
                (c, revocation)
            })
            .collect();
        Ok(Listing {
            pending: self.store().all_pending()?,
            certificates,
        })
    }
}

/// `aabb` as `aa:bb`.
pub fn colon_hex(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}
