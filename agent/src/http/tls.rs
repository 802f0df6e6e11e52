//! The TLS side of [`super::Http`]: the rustls configurations the agent
//! builds itself (the pinned CA as the only root, or the first use's fetch
//! of the CA), and what a TLS failure means for this node.

use std::error::Error as StdError;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn tls_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")
}

/// The pinned CA as the only root, and this node's certificate when it has one.
pub(super) fn pinned_tls(
    ca: &CertificateDer<'static>,
    client: Option<(&CertificateDer<'static>, &str)>,
) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| anyhow!("the pinned CA is not a usable certificate: {e}"))?;
    let builder = tls_builder()?.with_root_certificates(roots);
    Ok(match client {
        Some((cert, key_pem)) => {
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| anyhow!("this node's key does not parse: {e}"))?;
            builder
                .with_client_auth_cert(vec![cert.clone()], key)
                .map_err(|e| anyhow!("this node's key does not fit its certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    })
}

/// Any server certificate, no credential: only to fetch the CA that the
/// caller then checks against its expected fingerprint.
pub(super) fn first_use_tls() -> Result<rustls::ClientConfig> {
    Ok(tls_builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        .with_no_client_auth())
}

/// Accepts any certificate, but still checks the handshake's signatures, so
/// the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error behind a failed request: rustls's own, or inside the
/// I/O errors that carry it (whose `source` skips what they wrap, so they
/// are opened with `get_ref`).
pub(super) fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

pub(super) fn describe_tls_failure(e: &rustls::Error, tls_dir: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the server's certificate is signed by the pinned CA but does not name this address ({e})\nhint: use a server name the certificate holds, or add it to the server's `server_names`"
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("the server's certificate has expired ({e})")
        }
        E::InvalidCertificate(_) => format!(
            "the server is not the one this node enrolled with: its certificate does not chain to the pinned CA {tls_dir}/ca.pem ({e})\nhint: if the server's CA was replaced on purpose, remove {tls_dir} to enroll again"
        ),
        E::AlertReceived(
            A::BadCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::AccessDenied,
        ) => format!(
            "the server refused this node's certificate {tls_dir}/cert.pem ({e})\nhint: it may have been revoked; remove {tls_dir} to enroll again"
        ),
        _ => format!("TLS failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_say_what_they_mean_for_this_node() {
        use rustls::{AlertDescription, CertificateError, Error};
        let unknown = describe_tls_failure(
            &Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "/s/tls",
        );
        assert!(
            unknown.contains("not the one this node enrolled with")
                && unknown.contains("/s/tls/ca.pem")
                && unknown.contains("remove /s/tls"),
            "{unknown}"
        );
        let revoked = describe_tls_failure(
            &Error::AlertReceived(AlertDescription::CertificateRevoked),
            "/s/tls",
        );
        assert!(
            revoked.contains("refused this node's certificate"),
            "{revoked}"
        );
        let name = describe_tls_failure(
            &Error::InvalidCertificate(CertificateError::NotValidForName),
            "/s/tls",
        );
        assert!(name.contains("server_names"), "{name}");
    }
}
