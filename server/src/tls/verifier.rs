//! Client certificates at the handshake: webpki checks the chain to our CA,
//! the validity and the clientAuth use; then the serial is looked up in the
//! revocation list, which is re-read whenever `DATA/ca/revoked.json` changes
//! (so `drover-server ca revoke` in another process takes effect at the next
//! handshake, without a restart).
//!
//! Invariant: if the revocation list cannot be read, every client
//! certificate is refused (fail closed) until it can.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::ca::Pki;
use super::store::{read_revocations, serial_hex};
use super::{ORG_NODES, ORG_OPERATORS};
use crate::credentials::Peer;

/// Identifies one version of a file: rewritten files (atomic renames) get a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs_err::metadata(path).ok()?;
    Some(FileStamp {
        ino: meta.ino(),
        len: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
    })
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<FileStamp>,
    /// The revoked serials, or why the list could not be read.
    serials: Result<HashSet<String>, String>,
}

/// The revoked serials, reloaded when the file changes.
#[derive(Debug)]
pub struct RevocationWatch {
    path: PathBuf,
    loaded: Mutex<Option<Loaded>>,
}

impl RevocationWatch {
    pub fn new(path: PathBuf) -> RevocationWatch {
        RevocationWatch {
            path,
            loaded: Mutex::new(None),
        }
    }

    /// Whether `serial` (lowercase hex) is revoked; true when the list is unreadable.
    pub fn is_revoked(&self, serial: &str) -> bool {
        let current = stamp(&self.path);
        let mut guard = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|l| l.stamp != current) {
            *guard = Some(self.load(current));
        }
        match guard.as_ref().map(|l| &l.serials) {
            Some(Ok(serials)) => serials.contains(serial),
            Some(Err(why)) => {
                tracing::error!(path = %self.path.display(), error = %why, "the revocation list is unreadable: refusing every client certificate");
                true
            }
            None => true,
        }
    }

    fn load(&self, stamp: Option<FileStamp>) -> Loaded {
        let serials = read_revocations(&self.path)
            .map(|list| list.into_iter().map(|r| r.serial).collect::<HashSet<_>>())
            .map_err(|e| format!("{e:#}"));
        if let Ok(set) = &serials {
            tracing::debug!(revoked = set.len(), "loaded the revocation list");
        }
        Loaded { stamp, serials }
    }
}

/// webpki's verifier for our CA, plus the revocation list.
#[derive(Debug)]
struct RevocationCheckingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Arc<RevocationWatch>,
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let serial = serial_hex(cert.raw_serial());
        if self.revocations.is_revoked(&serial) {
            tracing::warn!(%serial, subject = %cert.subject(), "refused a revoked client certificate");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The listener's TLS configuration: the server certificate, and client
/// certificates optional but, when sent, verified against the CA and the
/// revocation list.
pub fn server_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()?)?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let verifier = Arc::new(RevocationCheckingVerifier {
        inner,
        revocations: pki.revocations().clone(),
    });
    let (chain, key) = pki.server_identity()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Who a verified client certificate names: O says the kind, CN the name.
pub fn peer_of(cert: &CertificateDer<'_>) -> Peer {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) else {
        return Peer::Anonymous;
    };
    let subject = cert.subject();
    let organization = first_text(subject.iter_organization());
    let Some(name) = first_text(subject.iter_common_name()) else {
        return Peer::Anonymous;
    };
    match organization.as_deref() {
        Some(ORG_NODES) => Peer::Node(name),
        Some(ORG_OPERATORS) => Peer::Operator(name),
        _ => Peer::Anonymous,
    }
}

/// The serial of a client certificate, as the CA store writes it.
pub fn serial_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(super::store::serial_hex(cert.raw_serial()))
}

fn first_text<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    values.next()?.as_str().ok().map(str::to_owned)
}
