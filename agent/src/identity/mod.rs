//! This node's identity and what it trusts, kept in STATE/tls (mode 0700):
//!
//! - `key.pem`: the node's private key (P-256, 0600), made once by the agent;
//! - `cert.pem`: its certificate, issued by the server's CA at enrollment and
//!   renewed before it expires;
//! - `ca.pem`: the CA the node enrolled with, pinned once and never replaced
//!   by anything a server says (remove the directory to enroll again);
//! - `catalog-signing.pub`: the server's catalog signing key (base64 ed25519),
//!   fetched over TLS verified by the pinned CA.
//!
//! [`ensure`] runs at the start of every run and does network work only
//! when something is missing or the certificate is due for renewal.

mod certs;
mod enroll;
mod keys;
mod pin;
mod renew;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use drover_catalog::signed::VerifyingKey;
use std::os::unix::fs::PermissionsExt as _;

use rustls::pki_types::CertificateDer;

use crate::config::Settings;
use crate::http::{Http, Trust};
use crate::output;

pub(crate) use pin::pinned_signing_key;

/// What a run talks to the server with.
pub(crate) struct Identity {
    pub transport: Transport,
    /// Verifies every catalog, fresh or cached.
    pub signing_key: VerifyingKey,
}

pub(crate) enum Transport {
    /// `--insecure-http`: no TLS, no certificate.
    InsecureHttp,
    Tls(Credentials),
}

/// Mutual TLS: the pinned CA, and this node's certificate and key.
pub(crate) struct Credentials {
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    /// PKCS#8 PEM.
    pub key_pem: String,
    /// STATE/tls, named in errors.
    pub dir: PathBuf,
}

/// The files of STATE/tls.
#[derive(Debug, Clone)]
pub(crate) struct TlsDir {
    root: PathBuf,
}

impl TlsDir {
    pub(crate) fn of(state_dir: &Path) -> TlsDir {
        TlsDir {
            root: state_dir.join("tls"),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.root.join("key.pem")
    }

    pub(crate) fn cert(&self) -> PathBuf {
        self.root.join("cert.pem")
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    pub(crate) fn signing_key(&self) -> PathBuf {
        self.root.join("catalog-signing.pub")
    }

    /// Creates the directory (0700), or tightens an existing one to 0700.
    fn create(&self) -> Result<()> {
        fs_err::create_dir_all(&self.root).context("cannot create the TLS state directory")?;
        fs_err::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }
}

/// HTTPS to the server verified by the pinned `ca`, presenting no
/// certificate (fetching the signing key, enrolling).
fn pinned_without_certificate(
    settings: &Settings,
    dir: &TlsDir,
    ca: &CertificateDer<'static>,
) -> Result<Http> {
    let trust = Trust::Pinned {
        ca,
        client: None,
        tls_dir: dir.root(),
    };
    Http::new(&settings.servers, trust, settings.http_timeout)
}

/// This node's identity for a run: pinned, enrolled and renewed as needed.
/// `stop` ends a wait for a pending certificate request.
pub(crate) fn ensure(settings: &Settings, stop: &AtomicBool) -> Result<Identity> {
    let dir = TlsDir::of(&settings.state_dir);
    dir.create()?;
    if settings.insecure_http {
        let http = Http::new(
            &settings.servers,
            Trust::InsecureHttp,
            settings.http_timeout,
        )?;
        let signing_key = pin::signing_key_over_insecure_http(&dir, &http)?;
        return Ok(Identity {
            transport: Transport::InsecureHttp,
            signing_key,
        });
    }
    renew::recover(&dir)?;
    let pins = pin::ensure(&dir, settings)?;
    let mut key = keys::NodeKey::load_or_create(&dir.key())?;
    let (mut cert, enrolled_now) = current_certificate(&dir, settings, &pins.ca, &key, stop)?;
    warn_if_token_remains(settings);
    // A certificate issued a moment ago is as new as the server makes them.
    if !enrolled_now
        && cert
            .validity
            .due(jiff::Timestamp::now(), settings.tls.renew_before)
    {
        match renew::renew(&dir, settings, &pins.ca, &key, &cert) {
            Ok((new_key, new_cert)) => (key, cert) = (new_key, new_cert),
            Err(e) => output::warning(&format!(
                "cannot renew the certificate of node `{}` (it expires at {}): {e:#}; this run goes on with the current one",
                settings.node, cert.validity.not_after
            )),
        }
    }
    Ok(Identity {
        transport: Transport::Tls(Credentials {
            ca: pins.ca,
            cert: cert.der,
            key_pem: key.pem(),
            dir: dir.root().to_owned(),
        }),
        signing_key: pins.signing_key,
    })
}

/// The enrollment token enrolls new names at once, so once this node holds
/// a certificate it has no business here: the agent never reads it again
/// (renewal goes over the node's own certificate). Said once per process.
fn warn_if_token_remains(settings: &Settings) {
    static SAID: std::sync::Once = std::sync::Once::new();
    let Some(file) = settings.tls.enrollment_token_file.as_deref() else {
        return;
    };
    if fs_err::File::open(file).is_ok() {
        SAID.call_once(|| {
            output::warning(&format!(
                "the enrollment token {} is still readable although node `{}` holds its certificate; anyone who reads it can enroll new names\nhint: remove the file (and `enrollment_token_file` from agent.toml): this node renews over its own certificate and never needs the token again",
                file.display(),
                settings.node
            ));
        });
    }
}

/// A certificate of this node, checked against its key and the pinned CA.
#[derive(Debug)]
pub(crate) struct NodeCert {
    pub der: CertificateDer<'static>,
    pub validity: certs::Validity,
}

/// STATE/tls/cert.pem when it is there and still valid, else a new one
/// from enrollment (then `true`).
fn current_certificate(
    dir: &TlsDir,
    settings: &Settings,
    ca: &CertificateDer<'static>,
    key: &keys::NodeKey,
    stop: &AtomicBool,
) -> Result<(NodeCert, bool)> {
    if let Some(cert) = load_certificate(dir, settings, ca, key)? {
        if !cert.validity.expired(jiff::Timestamp::now()) {
            return Ok((cert, false));
        }
        output::warning(&format!(
            "the certificate of node `{}` expired at {}; asking the server for a new one",
            settings.node, cert.validity.not_after
        ));
    }
    let cert = enroll::enroll(
        &enroll::Enrollment {
            http: &pinned_without_certificate(settings, dir, ca)?,
            node: &settings.node,
            key,
            ca,
            token_file: settings.tls.enrollment_token_file.as_deref(),
            wait: settings.tls.wait_for_cert,
        },
        stop,
    )?;
    crate::fsutil::write_state_file(&dir.cert(), certs::to_pem(&cert.der).as_bytes())?;
    Ok((cert, true))
}

fn load_certificate(
    dir: &TlsDir,
    settings: &Settings,
    ca: &CertificateDer<'static>,
    key: &keys::NodeKey,
) -> Result<Option<NodeCert>> {
    let path = dir.cert();
    let pem = match fs_err::read(&path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let what = path.display().to_string();
    let checked = certs::single_cert(&pem, &what).and_then(|der| {
        let validity = certs::check_issued(&der, ca, &key.spki(), &settings.node, &what)?;
        Ok(NodeCert { der, validity })
    });
    checked.map(Some).with_context(|| {
        format!(
            "this node's certificate does not fit its key, name and pinned CA\nhint: remove {} to enroll again",
            dir.root().display()
        )
    })
}

#[cfg(test)]
mod tests;
