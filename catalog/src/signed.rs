//! Signed catalogs: the server signs the exact bytes of each catalog it
//! serves with ed25519; the agent verifies them before it parses them, and
//! keeps the signature with its cached copy so the cache is verified again
//! before every use.
//!
//! On the wire the signature travels in the [`SIGNATURE_HEADER`] header as
//! `ed25519 BASE64`. On disk a signed catalog is an envelope: one line
//! `drover-signed-catalog/1 ed25519 BASE64`, then the signed bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

/// The response header of `POST /api/v1/nodes/{name}/catalog` that carries the signature.
pub const SIGNATURE_HEADER: &str = "drover-signature";

/// The header of a catalog answer (200 or 304) that is the node's last good
/// catalog because the current commit does not compile for it: the compile
/// error, printable ASCII (see [`header_text`]). Not signed: it can only
/// make a run report a failure.
pub const CATALOG_ERROR_HEADER: &str = "drover-catalog-error";

/// `text` as a header value: printable ASCII, anything else escaped
/// (`\n`, `\u{e9}`), at most 4 KiB.
pub fn header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    for c in text.chars() {
        let piece: String = match c {
            ' '..='~' => c.to_string(),
            c => c.escape_default().to_string(),
        };
        if out.len() + piece.len() > 4096 {
            break;
        }
        out.push_str(&piece);
    }
    out
}
const SCHEME: &str = "ed25519";
const ENVELOPE_MAGIC: &str = "drover-signed-catalog/1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the catalog carries no signature")]
    Missing,
    #[error("malformed signature `{0}` (expected `ed25519 BASE64`)")]
    Malformed(String),
    #[error("the signature does not match the catalog: it was changed after the server signed it")]
    Mismatch,
    #[error("malformed catalog signing key: {0}")]
    BadKey(String),
    #[error("not a signed catalog envelope (it must start with `{ENVELOPE_MAGIC}`)")]
    NotAnEnvelope,
}

/// The server's catalog signing key (ed25519, PKCS#8 on disk).
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key().to_base64())
    }
}

impl SigningKey {
    /// A new key as PKCS#8 DER, to be stored (mode 0600) and loaded with [`SigningKey::from_pkcs8`].
    pub fn generate_pkcs8() -> Result<Vec<u8>, SignatureError> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|e| SignatureError::BadKey(e.to_string()))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, SignatureError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(SigningKey)
            .map_err(|e| SignatureError::BadKey(e.to_string()))
    }

    pub fn public_key(&self) -> VerifyingKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.0.public_key().as_ref());
        VerifyingKey(raw)
    }

    /// The header value signing `body`: `ed25519 BASE64`.
    pub fn sign(&self, body: &[u8]) -> String {
        format!("{SCHEME} {}", B64.encode(self.0.sign(body).as_ref()))
    }
}

/// The public half the agent pins at enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey([u8; 32]);

impl VerifyingKey {
    pub fn from_base64(text: &str) -> Result<VerifyingKey, SignatureError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SignatureError::BadKey(e.to_string()))?;
        let raw: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SignatureError::BadKey(format!(
                "an ed25519 public key has 32 bytes, not {}",
                b.len()
            ))
        })?;
        Ok(VerifyingKey(raw))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Checks `signature` (a header value) against exactly `body`.
    pub fn verify(&self, body: &[u8], signature: &str) -> Result<(), SignatureError> {
        let malformed = || SignatureError::Malformed(signature.chars().take(120).collect());
        let (scheme, b64) = signature.trim().split_once(' ').ok_or_else(malformed)?;
        if scheme != SCHEME {
            return Err(malformed());
        }
        let sig = B64.decode(b64.trim()).map_err(|_| malformed())?;
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(body, &sig)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// The on-disk form of a signed catalog: the signature line, then the bytes.
pub fn seal(body: &[u8], signature: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 128);
    out.extend_from_slice(ENVELOPE_MAGIC.as_bytes());
    out.push(b' ');
    out.extend_from_slice(signature.trim().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Splits an envelope into its signature and body, verified with `key`.
pub fn open<'a>(key: &VerifyingKey, envelope: &'a [u8]) -> Result<&'a [u8], SignatureError> {
    let newline = envelope
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(SignatureError::NotAnEnvelope)?;
    let line =
        std::str::from_utf8(&envelope[..newline]).map_err(|_| SignatureError::NotAnEnvelope)?;
    let signature = line
        .strip_prefix(ENVELOPE_MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(SignatureError::NotAnEnvelope)?;
    let body = &envelope[newline + 1..];
    key.verify(body, signature)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn header_text_is_printable_ascii_and_bounded() {
        assert_eq!(
            header_text("rôles/a.toml:1:2: bad\nnext"),
            "r\\u{f4}les/a.toml:1:2: bad\\nnext"
        );
        assert_eq!(header_text(&"x".repeat(10_000)).len(), 4096);
    }

    #[test]
    fn a_signature_verifies_only_its_own_bytes() {
        let key = key();
        let public = key.public_key();
        let body = br#"{"node":"web1","version":"abc"}"#;
        let sig = key.sign(body);
        assert!(sig.starts_with("ed25519 "));
        assert_eq!(public.verify(body, &sig), Ok(()));
        let tampered = br#"{"node":"web2","version":"abc"}"#;
        assert_eq!(public.verify(tampered, &sig), Err(SignatureError::Mismatch));
        let other = self::key().public_key();
        assert_eq!(other.verify(body, &sig), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_signatures_and_keys_are_named() {
        let public = key().public_key();
        for bad in ["", "ed25519", "rsa AAAA", "ed25519 !!!"] {
            assert!(
                matches!(public.verify(b"x", bad), Err(SignatureError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(VerifyingKey::from_base64("AAAA").is_err());
        let round = VerifyingKey::from_base64(&public.to_base64()).unwrap();
        assert_eq!(round, public);
    }

    #[test]
    fn an_envelope_opens_only_unchanged() {
        let key = key();
        let body = b"{\"resources\":[]}\n";
        let sealed = seal(body, &key.sign(body));
        assert_eq!(open(&key.public_key(), &sealed).unwrap(), body);

        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() = b' ';
        assert_eq!(
            open(&key.public_key(), &flipped),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            open(&key.public_key(), body),
            Err(SignatureError::NotAnEnvelope)
        );
    }
}
