//! Who is calling: the identity the TLS handshake proved ([`Peer`]), an
//! operator token or a dashboard session, turned into a [`Caller`] that every route checks.
//!
//! Invariant: a node's identity is its certificate's name and nothing else.
//! No header, path segment, query string or fact can name a node; a node
//! route compares its `{name}` with the certificate name byte for byte.

use std::path::Path;

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::state::AppState;

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
    digests: Vec<[u8; 32]>,
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
            digests: lines.into_iter().map(digest).collect(),
        })
    }

    pub fn accepts(&self, token: &str) -> bool {
        self.digests.contains(&digest(token.trim()))
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

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Node(String),
    Operator(String),
    /// Plain HTTP in development mode: nobody is authenticated, and node
    /// routes trust the name in the path (the server said so at start).
    Insecure,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, AppError> {
        // Found already by the gate that runs before every guarded route.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        if let Some(token) = bearer(parts) {
            return if state.operators.accepts(token) {
                Ok(Caller::Operator("token".into()))
            } else {
                Err(AppError::Unauthorized(
                    "the bearer token is not an operator token".into(),
                ))
            };
        }
        // A stale or unknown session counts as none, so the dashboard offers
        // the login again.
        if let Some(id) = cookie_session(parts)
            && crate::session::is_open(&state.db, id).await?
        {
            return Ok(Caller::Operator("session".into()));
        }
        Ok(match parts.extensions.get::<Peer>() {
            Some(Peer::Node(name)) => Caller::Node(name.clone()),
            Some(Peer::Operator(name)) => Caller::Operator(name.clone()),
            Some(Peer::Anonymous) => Caller::Anonymous,
            None if state.config.insecure_http => Caller::Insecure,
            None => Caller::Anonymous,
        })
    }
}

/// The dashboard's session cookie, honoured on GET and HEAD only.
fn cookie_session(parts: &Parts) -> Option<&str> {
    if !(parts.method == Method::GET || parts.method == Method::HEAD) {
        return None;
    }
    let cookies = parts.headers.get(header::COOKIE)?.to_str().ok()?;
    crate::session::from_cookies(cookies)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

impl Caller {
    /// Node routes: the caller must be node `name` itself.
    pub fn require_node(&self, name: &str) -> Result<(), AppError> {
        match self {
            Caller::Node(own) if own.as_bytes() == name.as_bytes() => Ok(()),
            Caller::Insecure => Ok(()),
            Caller::Node(own) => Err(AppError::Forbidden(format!(
                "node `{own}` may not act for node `{name}`"
            ))),
            Caller::Operator(_) => Err(AppError::Forbidden(format!(
                "only node `{name}` itself may use this route"
            ))),
            Caller::Anonymous => Err(AppError::Unauthorized(format!(
                "this route needs node `{name}`'s client certificate"
            ))),
        }
    }

    /// Read routes about node `name`: the node itself or an operator.
    pub fn require_node_or_operator(&self, name: &str) -> Result<(), AppError> {
        match self {
            Caller::Operator(_) => Ok(()),
            other => other.require_node(name),
        }
    }

    /// Operator routes and the dashboard.
    pub fn require_operator(&self) -> Result<(), AppError> {
        match self {
            Caller::Operator(_) => Ok(()),
            Caller::Node(own) => Err(AppError::Forbidden(format!(
                "node `{own}` may not use an operator route"
            ))),
            Caller::Anonymous | Caller::Insecure => Err(AppError::Unauthorized(
                "this route needs an operator certificate or `Authorization: Bearer TOKEN` with an operator token".into(),
            )),
        }
    }
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

    #[test]
    fn node_names_compare_byte_for_byte() {
        let web1 = Caller::Node("web1".into());
        assert!(web1.require_node("web1").is_ok());
        for other in ["WEB1", "web1.", "web1\0", "web2", "web1/../web2"] {
            assert!(
                matches!(web1.require_node(other), Err(AppError::Forbidden(_))),
                "{other:?}"
            );
        }
        assert!(matches!(
            Caller::Anonymous.require_node("web1"),
            Err(AppError::Unauthorized(_))
        ));
        assert!(matches!(
            Caller::Operator("alice".into()).require_node("web1"),
            Err(AppError::Forbidden(_))
        ));
        assert!(
            Caller::Operator("alice".into())
                .require_node_or_operator("web1")
                .is_ok()
        );
        assert!(matches!(
            web1.require_operator(),
            Err(AppError::Forbidden(_))
        ));
    }
}
