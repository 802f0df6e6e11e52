//! This node's private key (ECDSA P-256, made once, mode 0600) and the
//! certificate signing requests made with it.

use std::io::ErrorKind;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData as _};
use sha2::{Digest, Sha256};

use crate::fsutil::write_state_file;

pub(super) struct NodeKey {
    pair: KeyPair,
}

impl NodeKey {
    pub(super) fn generate() -> Result<NodeKey> {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| anyhow!("cannot generate a P-256 key: {e}"))?;
        Ok(NodeKey { pair })
    }

    /// The key at `path`, made and written there (0600) when there is none.
    pub(super) fn load_or_create(path: &Path) -> Result<NodeKey> {
        match fs_err::read_to_string(path) {
            Ok(pem) => NodeKey::from_pem(&pem).with_context(|| {
                format!(
                    "{} is not this node's key\nhint: remove {} to enroll again with a new key",
                    path.display(),
                    path.parent().unwrap_or(path).display()
                )
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let key = NodeKey::generate()?;
                write_state_file(path, key.pem().as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn from_pem(pem: &str) -> Result<NodeKey> {
        let pair = KeyPair::from_pem(pem).map_err(|e| anyhow!("not a private key: {e}"))?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            bail!("the key is not an ECDSA P-256 key");
        }
        Ok(NodeKey { pair })
    }

    /// PKCS#8 PEM.
    pub(super) fn pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// The DER SubjectPublicKeyInfo, as a certificate for this key holds it.
    pub(super) fn spki(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// sha256 hex of the SubjectPublicKeyInfo: what the server shows for a pending request.
    pub(super) fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.spki()))
    }

    /// A CSR with subject CN = `node` and a subjectAltName of dNSName `node`,
    /// nothing else: the server decides every other extension.
    pub(super) fn csr_pem(&self, node: &str) -> Result<String> {
        let mut params = CertificateParams::new(vec![node.to_owned()])
            .map_err(|e| anyhow!("cannot put node name `{node}` in a certificate request: {e}"))?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, node);
        params.distinguished_name = subject;
        params
            .serialize_request(&self.pair)
            .and_then(|csr| csr.pem())
            .map_err(|e| anyhow!("cannot make the certificate request of node `{node}`: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_is_made_once_with_mode_0600_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let made = NodeKey::load_or_create(&path).unwrap();
        let mode = fs_err::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = NodeKey::load_or_create(&path).unwrap();
        assert_eq!(made.spki(), again.spki());
        assert_eq!(made.fingerprint().len(), 64);
    }

    #[test]
    fn a_damaged_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        fs_err::write(&path, "not a key").unwrap();
        let err = format!("{:#}", NodeKey::load_or_create(&path).err().unwrap());
        assert!(
            err.contains("key.pem") && err.contains("enroll again"),
            "{err}"
        );
    }

    #[test]
    fn the_csr_names_the_node_and_asks_for_nothing_else() {
        let key = NodeKey::generate().unwrap();
        let pem = key.csr_pem("web-1.example").unwrap();
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
        let cn = csr.params.distinguished_name.get(&DnType::CommonName);
        assert_eq!(
            cn,
            Some(&rcgen::DnValue::Utf8String("web-1.example".into()))
        );
        assert_eq!(
            csr.params.subject_alt_names,
            vec![rcgen::SanType::DnsName("web-1.example".try_into().unwrap())]
        );
        assert!(csr.params.key_usages.is_empty());
        assert!(csr.params.extended_key_usages.is_empty());
        assert!(matches!(csr.params.is_ca, rcgen::IsCa::NoCa));
        assert_eq!(csr.public_key.der_bytes(), key.pair.der_bytes());
    }
}
