//! Credentials, apart from any request: the identity a TLS handshake
//! proved ([`Peer`], and the certificate's [`PresentedSerial`]), and shared
//! secrets kept as digests ([`Tokens`]). The listener and the CA use these;
//! `auth` turns them into a request's `Caller`.

use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

/// The client certificate of a connection, inserted into every request's
/// extensions by the listener. Plain HTTP (development) has no peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// TLS without a client certificate (enrollment, `/healthz`, token callers).
    Anonymous,
    /// A node certificate signed by this server's CA and not revoked.
    Node(String),
    /// An operator certificate signed by this server's CA and not revoked.
    Operator(String),
}

/// The serial of the client certificate a TLS connection presented (hex,
/// as the CA store keeps it), inserted beside [`Peer`] when there is one:
/// renewal keeps the certificate in use valid and revokes the older ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedSerial(pub String);

/// Shared secrets (operator tokens, enrollment tokens), kept as sha256
/// digests so comparing them leaks nothing through timing.
#[derive(Debug, Default)]
pub struct Tokens {
    digests: std::sync::RwLock<Vec<[u8; 32]>>,
    /// The file and what they are, for [`Tokens::reload`].
    source: Option<(std::path::PathBuf, String)>,
}

/// The shortest token a token file may hold.
pub const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// The operator tokens of `path`; a missing file is made with one random
    /// token, mode 0600.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Tokens> {
        if !path.exists() {
            let token = random_token()?;
            crate::tls::files::write_private(path, format!("{token}\n").as_bytes())?;
            tracing::info!(path = %path.display(), "made an operator token");
        }
        Tokens::read(path, "operator")
    }

    /// Reads `what` tokens from `path`: one per line, blank lines and `#`
    /// comments skipped, each at least [`MIN_TOKEN_LEN`] characters.
    pub fn read(path: &Path, what: &str) -> anyhow::Result<Tokens> {
        let text = fs_err::read_to_string(path)
            .with_context(|| format!("cannot read the {what} tokens"))?;
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if lines.is_empty() || lines.iter().any(|l| l.len() < MIN_TOKEN_LEN) {
            anyhow::bail!(
                "{} must hold {what} tokens of at least {MIN_TOKEN_LEN} characters, one per line\nhint: write a long random one, e.g. `openssl rand -hex 32 > {}`",
                path.display(),
                path.display()
            );
        }
        Ok(Tokens {
            digests: std::sync::RwLock::new(lines.into_iter().map(digest).collect()),
            source: Some((path.to_owned(), what.to_owned())),
        })
    }

    /// Reads the file again (SIGHUP); on an error the tokens stay as they were.
    pub fn reload(&self) -> anyhow::Result<()> {
        let Some((path, what)) = &self.source else {
            return Ok(());
        };
        let fresh = Tokens::read(path, what)?;
        let digests = fresh
            .digests
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        *self.digests.write().unwrap_or_else(|e| e.into_inner()) = digests;
        Ok(())
    }

    pub fn accepts(&self, token: &str) -> bool {
        self.digests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&digest(token.trim()))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 32 random bytes as hex.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokens");
        fs_err::write(
            &path,
            "# ops\n\n  alpha-token-0123456789 \nbeta-token-0123456789\n",
        )
        .unwrap();
        let tokens = Tokens::read(&path, "operator").unwrap();
        assert!(tokens.accepts("alpha-token-0123456789"));
        assert!(tokens.accepts("beta-token-0123456789"));
        for wrong in ["", "alpha", "alpha-token-0123456789x", "# ops"] {
            assert!(!tokens.accepts(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn a_short_or_empty_token_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        for text in [
            "short\n",
            "# only a comment\n",
            "0123456789abcdef0123\nshort\n",
        ] {
            fs_err::write(&path, text).unwrap();
            let err = Tokens::read(&path, "enrollment").unwrap_err();
            assert!(err.to_string().contains("at least 16 characters"), "{err}");
        }
        fs_err::write(&path, "  0123456789abcdef0123  \n").unwrap();
        assert!(
            Tokens::read(&path, "enrollment")
                .unwrap()
                .accepts("0123456789abcdef0123")
        );
    }
}
