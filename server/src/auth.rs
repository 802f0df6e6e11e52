//! Who is calling: the identity the TLS handshake proved ([`Peer`]), an
//! operator token or a dashboard session, turned into a [`Caller`] that every route checks.
//!
//! Invariant: a node's identity is its certificate's name and nothing else.
//! No header, path segment, query string or fact can name a node; a node
//! route compares its `{name}` with the certificate name byte for byte.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};

use crate::credentials::Peer;
use crate::error::AppError;
use crate::state::AppState;

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
