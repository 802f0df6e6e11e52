//! Reading certificates and checking the ones the server issues: for this
//! node's key, signed by the pinned CA, naming this node.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::sha256_hex;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

/// The one certificate a PEM text holds; `what` names it in errors.
pub(super) fn single_cert(pem: &[u8], what: &str) -> Result<CertificateDer<'static>> {
    let mut certs = CertificateDer::pem_slice_iter(pem);
    let first = certs
        .next()
        .ok_or_else(|| anyhow!("{what} holds no PEM certificate"))?
        .map_err(|e| anyhow!("{what} is not a PEM certificate: {e}"))?;
    if certs.next().is_some() {
        bail!("{what} holds more than one certificate; it must hold exactly one");
    }
    Ok(first)
}

pub(super) fn to_pem(der: &CertificateDer<'_>) -> String {
    drover_catalog::csr::pem_encode("CERTIFICATE", der)
}

/// sha256 hex of a certificate's DER: the CA fingerprint operators compare.
pub(super) fn fingerprint(der: &CertificateDer<'_>) -> String {
    sha256_hex(der)
}

fn parse<'a>(der: &'a CertificateDer<'_>, what: &str) -> Result<X509Certificate<'a>> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| anyhow!("{what} is not a valid X.509 certificate: {e}"))
}

/// A CA certificate: parses and says CA:TRUE.
pub(super) fn check_ca(der: &CertificateDer<'_>, what: &str) -> Result<()> {
    if !parse(der, what)?.is_ca() {
        bail!("{what} is not a CA certificate (no basicConstraints CA:TRUE)");
    }
    Ok(())
}

/// A CA certificate read from a PEM file.
pub(super) fn read_ca_file(path: &Path) -> Result<(String, CertificateDer<'static>)> {
    let pem = fs_err::read_to_string(path).context("cannot read the CA certificate")?;
    let what = path.display().to_string();
    let der = single_cert(pem.as_bytes(), &what)?;
    check_ca(&der, &what)?;
    Ok((pem, der))
}

/// What the agent needs to know of its own certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub not_after: jiff::Timestamp,
}

impl Validity {
    pub(crate) fn expired(&self, now: jiff::Timestamp) -> bool {
        self.not_after <= now
    }

    /// Expires within `window` of `now`.
    pub(crate) fn due(&self, now: jiff::Timestamp, window: std::time::Duration) -> bool {
        let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
        match now.checked_add(window) {
            Ok(horizon) => self.not_after <= horizon,
            Err(_) => true,
        }
    }
}

/// Checks that `cert` is for the key `spki`, names `node`, and is signed by
/// the CA `ca`; `what` names the certificate in errors.
pub(super) fn check_issued(
    cert: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    spki: &[u8],
    node: &str,
    what: &str,
) -> Result<Validity> {
    let parsed = parse(cert, what)?;
    let ca = parse(ca, "the pinned CA")?;
    if parsed.public_key().raw != spki {
        bail!(
            "{what} is for another key (sha256 {}), not this node's (sha256 {})",
            sha256_hex(parsed.public_key().raw),
            sha256_hex(spki)
        );
    }
    let signed_by_ca =
        parsed.issuer() == ca.subject() && parsed.verify_signature(Some(ca.public_key())).is_ok();
    if !signed_by_ca {
        bail!(
            "{what} is not signed by the pinned CA (its issuer is `{}`)",
            parsed.issuer()
        );
    }
    let names_node = parsed
        .subject()
        .iter_common_name()
        .any(|cn| cn.as_str() == Ok(node));
    if !names_node {
        bail!(
            "{what} is for `{}`, not for node `{node}`",
            parsed.subject()
        );
    }
    let not_after = jiff::Timestamp::from_second(parsed.validity().not_after.timestamp())
        .map_err(|e| anyhow!("{what} has an unusable expiry date: {e}"))?;
    Ok(Validity { not_after })
}

#[cfg(test)]
pub(crate) mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    use super::*;
    use crate::identity::keys::NodeKey;

    /// A throwaway CA: its certificate and a way to issue node certificates.
    pub(crate) struct TestCa {
        pub der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    impl TestCa {
        pub(crate) fn new(name: &str) -> TestCa {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            TestCa {
                der: cert.der().clone(),
                issuer: Issuer::new(params, key),
            }
        }

        /// A node certificate for `key`, expiring `days` from now (negative: expired).
        pub(crate) fn issue(
            &self,
            node: &str,
            key: &NodeKey,
            days: i64,
        ) -> CertificateDer<'static> {
            let mut params = CertificateParams::new(vec![node.to_owned()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, node);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let now = std::time::SystemTime::now();
            let hour = std::time::Duration::from_secs(3600);
            params.not_before = (now - hour).into();
            params.not_after = match u64::try_from(days) {
                Ok(days) => now + hour * 24 * days as u32,
                Err(_) => now - hour * 24 * days.unsigned_abs() as u32,
            }
            .into();
            let public = rcgen::SubjectPublicKeyInfo::from_der(&key.spki()).unwrap();
            params
                .signed_by(&public, &self.issuer)
                .unwrap()
                .der()
                .clone()
        }
    }

    #[test]
    fn an_issued_certificate_is_checked_for_key_ca_and_name() {
        let ca = TestCa::new("test CA");
        let key = NodeKey::generate().unwrap();
        let cert = ca.issue("n1", &key, 10);
        let validity = check_issued(&cert, &ca.der, &key.spki(), "n1", "cert").unwrap();
        let now = jiff::Timestamp::now();
        assert!(!validity.expired(now));
        assert!(validity.due(now, std::time::Duration::from_secs(30 * 86_400)));
        assert!(!validity.due(now, std::time::Duration::from_secs(86_400)));

        let other_key = NodeKey::generate().unwrap();
        let err = check_issued(&cert, &ca.der, &other_key.spki(), "n1", "cert").unwrap_err();
        assert!(err.to_string().contains("for another key"), "{err}");

        let other_ca = TestCa::new("test CA");
        let err = check_issued(&cert, &other_ca.der, &key.spki(), "n1", "cert").unwrap_err();
        assert!(
            err.to_string().contains("not signed by the pinned CA"),
            "{err}"
        );

        let err = check_issued(&cert, &ca.der, &key.spki(), "n2", "cert").unwrap_err();
        assert!(err.to_string().contains("not for node `n2`"), "{err}");
    }

    #[test]
    fn pem_round_trips_and_a_node_certificate_is_no_ca() {
        let ca = TestCa::new("test CA");
        let pem = to_pem(&ca.der);
        assert_eq!(single_cert(pem.as_bytes(), "ca").unwrap(), ca.der);
        check_ca(&ca.der, "ca").unwrap();
        let twice = format!("{pem}{pem}");
        let err = single_cert(twice.as_bytes(), "ca.pem").unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
        let leaf = ca.issue("n1", &NodeKey::generate().unwrap(), 1);
        let err = check_ca(&leaf, "ca.pem").unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
        assert_eq!(fingerprint(&ca.der).len(), 64);
    }
}
