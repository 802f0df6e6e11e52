//! A throwaway CA for the fake servers: its certificate, a server
//! certificate for 127.0.0.1, and node certificates signed from CSRs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

pub(crate) struct TestCa {
    pub der: CertificateDer<'static>,
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let key = p256();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "drover test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// sha256 hex of the CA certificate's DER.
    pub(crate) fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }

    /// TLS for 127.0.0.1 and localhost; client certificates of this CA are
    /// asked for but optional, as on drover-server's listener.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        let key = p256();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }

    /// A node certificate for the CSR's key, named `node`, expiring in
    /// `days` (negative: expired that long ago).
    pub(crate) fn sign(&self, csr_pem: &str, node: &str, days: i64) -> String {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        let mut params = CertificateParams::new(vec![node.to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        let span = Duration::from_secs(days.unsigned_abs() * 86_400);
        let not_after = if days >= 0 { now + span } else { now - span };
        params.not_before = (not_after.min(now) - Duration::from_secs(3600)).into();
        params.not_after = not_after.into();
        params
            .signed_by(&csr.public_key, &self.issuer)
            .unwrap()
            .pem()
    }
}

/// sha256 hex of a CSR's SubjectPublicKeyInfo, as drover-server shows it.
pub(crate) fn csr_fingerprint(csr_pem: &str) -> String {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
    hex::encode(Sha256::digest(csr.public_key.subject_public_key_info()))
}
