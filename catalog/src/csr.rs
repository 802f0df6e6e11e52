//! Certificate signing requests: which ones the CA may sign.
//!
//! Nothing of a request is copied into a certificate except its public key:
//! the CA writes the subject, the subjectAltName and every extension itself.
//! A request is still refused when it asks for more than a node may have, so
//! that a node (or an operator reading `ca list`) never believes it got it.
//!
//! Invariant: [`check_csr`] never panics, whatever the bytes (it is fuzzed).
//! It is pure, so it lives in the core crate: the server's CA and the fuzz
//! target share it, and fuzzing it needs no server build.

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
use rustls_pki_types::pem::{PemObject, SectionKind};
use x509_parser::certification_request::{X509CertificationRequest, X509CertificationRequestInfo};
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ED25519,
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use crate::model::sha256_hex;
use crate::names::check_node_name;

/// Largest CSR accepted, in bytes of PEM.
pub const MAX_CSR_PEM: usize = 16 * 1024;

/// Why a request is refused; the text is the HTTP 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate request has {len} bytes; at most {MAX_CSR_PEM} are accepted")]
    TooLarge { len: usize },
    #[error("invalid node name: {0}")]
    BadName(String),
    #[error("the body is not one PEM `CERTIFICATE REQUEST`: {0}")]
    NotPem(String),
    #[error("the certificate request cannot be parsed: {0}")]
    Malformed(String),
    #[error("{0}")]
    Subject(String),
    #[error("{0}")]
    Key(String),
    #[error("the certificate request's signature does not verify with its own public key")]
    BadSignature,
    #[error("the certificate request {0}; the server decides every extension itself")]
    Extension(String),
}

/// The public key algorithms a node key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    Ed25519,
}

/// A request that passed every check: what signing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    name: String,
    algorithm: KeyAlgorithm,
    public_key: Vec<u8>,
    spki_der: Vec<u8>,
    fingerprint: String,
    der: Vec<u8>,
}

impl CheckedCsr {
    /// The node name (the request's CN, equal to the name it was sent for).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The DER SubjectPublicKeyInfo of the requested key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// sha256 of [`CheckedCsr::spki_der`] as lowercase hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The request re-encoded as PEM (only the DER the checks read; nothing around it).
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE REQUEST", &self.der)
    }
}

impl rcgen::PublicKeyData for CheckedCsr {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// Checks that `pem` is a request the CA may sign for node `name`.
pub fn check_csr(name: &str, pem: &[u8]) -> Result<CheckedCsr, CsrError> {
    if pem.len() > MAX_CSR_PEM {
        return Err(CsrError::TooLarge { len: pem.len() });
    }
    check_node_name(name).map_err(CsrError::BadName)?;
    let der = single_pem_block(pem)?;
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} bytes follow the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    if info.version.0 != 0 {
        return Err(CsrError::Malformed(format!(
            "version {} (only version 1 exists)",
            info.version.0 + 1
        )));
    }
    check_subject(name, &info.subject)?;
    let algorithm = key_algorithm(&info.subject_pki)?;
    verify_signature(algorithm, &csr)?;
    check_attributes(name, info)?;
    Ok(CheckedCsr {
        name: name.to_owned(),
        algorithm,
        public_key: info.subject_pki.subject_public_key.data.to_vec(),
        spki_der: info.subject_pki.raw.to_vec(),
        fingerprint: sha256_hex(info.subject_pki.raw),
        der: csr.as_raw().to_vec(),
    })
}

fn single_pem_block(pem: &[u8]) -> Result<Vec<u8>, CsrError> {
    let mut blocks = <(SectionKind, Vec<u8>)>::pem_slice_iter(pem);
    let (kind, der) = match blocks.next() {
        None => return Err(CsrError::NotPem("no PEM block found".into())),
        Some(Err(e)) => return Err(CsrError::NotPem(e.to_string())),
        Some(Ok(block)) => block,
    };
    if kind != SectionKind::Csr {
        return Err(CsrError::NotPem(format!("it holds a {kind:?} block")));
    }
    if blocks.next().is_some() {
        return Err(CsrError::NotPem("it holds more than one PEM block".into()));
    }
    Ok(der)
}

fn check_subject(name: &str, subject: &X509Name<'_>) -> Result<(), CsrError> {
    let mut common_names = subject.iter_common_name();
    let (Some(cn), None) = (common_names.next(), common_names.next()) else {
        return Err(CsrError::Subject(format!(
            "the request's subject must hold exactly one CN, the node name {name:?}"
        )));
    };
    let cn = cn
        .as_str()
        .map_err(|_| CsrError::Subject("the request's subject CN is not a text string".into()))?;
    if cn.as_bytes() != name.as_bytes() {
        return Err(CsrError::Subject(format!(
            "the request's subject CN is {cn:?} but it was sent for node {name:?}"
        )));
    }
    Ok(())
}

fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm, CsrError> {
    let oid = &spki.algorithm.algorithm;
    let key = &spki.subject_public_key.data;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().map(|p| p.as_oid());
        if !matches!(curve, Some(Ok(c)) if c == OID_EC_P256) {
            return Err(CsrError::Key(
                "the request's EC key is not on curve P-256; use an ECDSA P-256 or ed25519 key"
                    .into(),
            ));
        }
        if key.len() != 65 || key[0] != 4 {
            return Err(CsrError::Key(
                "the request's P-256 key is not an uncompressed point".into(),
            ));
        }
        Ok(KeyAlgorithm::EcdsaP256)
    } else if *oid == OID_SIG_ED25519 {
        if spki.algorithm.parameters.is_some() || key.len() != 32 {
            return Err(CsrError::Key(
                "the request's ed25519 key is malformed".into(),
            ));
        }
        Ok(KeyAlgorithm::Ed25519)
    } else {
        Err(CsrError::Key(format!(
            "the request's key algorithm {oid} is not accepted; use an ECDSA P-256 or ed25519 key"
        )))
    }
}

fn verify_signature(
    algorithm: KeyAlgorithm,
    csr: &X509CertificationRequest<'_>,
) -> Result<(), CsrError> {
    let signed_with = &csr.signature_algorithm.algorithm;
    let (expected, verifier): (_, &'static dyn ring::signature::VerificationAlgorithm) =
        match algorithm {
            KeyAlgorithm::EcdsaP256 => (OID_SIG_ECDSA_WITH_SHA256, &ECDSA_P256_SHA256_ASN1),
            KeyAlgorithm::Ed25519 => (OID_SIG_ED25519, &ED25519),
        };
    if *signed_with != expected {
        return Err(CsrError::Key(format!(
            "the request is signed with {signed_with}, which does not match its {algorithm:?} key"
        )));
    }
    let info = &csr.certification_request_info;
    UnparsedPublicKey::new(verifier, &info.subject_pki.subject_public_key.data[..])
        .verify(info.raw, &csr.signature_value.data)
        .map_err(|_| CsrError::BadSignature)
}

fn check_attributes(name: &str, info: &X509CertificationRequestInfo<'_>) -> Result<(), CsrError> {
    let mut seen_extension_request = false;
    for attribute in info.attributes() {
        match attribute.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(request) if !seen_extension_request => {
                seen_extension_request = true;
                check_extensions(name, &request.extensions)?;
            }
            ParsedCriAttribute::ExtensionRequest(_) => {
                return Err(CsrError::Extension(
                    "holds two extensionRequest attributes".into(),
                ));
            }
            ParsedCriAttribute::ChallengePassword(_) => {
                return Err(CsrError::Extension(
                    "carries a challengePassword attribute".into(),
                ));
            }
            ParsedCriAttribute::UnsupportedAttribute => {
                return Err(CsrError::Extension(format!(
                    "carries attribute {}",
                    attribute.oid
                )));
            }
        }
    }
    Ok(())
}

fn check_extensions(name: &str, extensions: &[X509Extension<'_>]) -> Result<(), CsrError> {
    let mut seen_san = false;
    for extension in extensions {
        let oid = &extension.oid;
        if *oid == OID_X509_EXT_SUBJECT_ALT_NAME {
            if seen_san {
                return Err(CsrError::Extension("asks for two subjectAltName".into()));
            }
            seen_san = true;
            check_san(name, extension.parsed_extension())?;
        } else if *oid == OID_X509_EXT_BASIC_CONSTRAINTS {
            return Err(CsrError::Extension(
                "asks for basicConstraints (CA rights)".into(),
            ));
        } else if *oid == OID_X509_EXT_KEY_USAGE {
            return Err(CsrError::Extension("asks for keyUsage".into()));
        } else if *oid == OID_X509_EXT_EXTENDED_KEY_USAGE {
            return Err(CsrError::Extension("asks for extendedKeyUsage".into()));
        } else {
            return Err(CsrError::Extension(format!("asks for extension {oid}")));
        }
    }
    Ok(())
}

fn check_san(name: &str, parsed: &ParsedExtension<'_>) -> Result<(), CsrError> {
    let ParsedExtension::SubjectAlternativeName(san) = parsed else {
        return Err(CsrError::Malformed(
            "its subjectAltName cannot be parsed".into(),
        ));
    };
    match san.general_names.as_slice() {
        [GeneralName::DNSName(dns)] if dns.as_bytes() == name.as_bytes() => Ok(()),
        other => Err(CsrError::Extension(format!(
            "asks for subjectAltName {} (only dNSName {name:?} may be asked for)",
            other
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `der` as PEM with `label`, 64 characters per line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
