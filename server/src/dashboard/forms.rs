//! What every dashboard form that changes something is checked for
//! (`forms::guard`): the node page's buttons and the certificates page's.
//!
//! A cookie alone never changes anything (`crate::auth` honours it on GET
//! only), so these routes check the session themselves, and each form
//! carries a token bound to it: HMAC-SHA256 keyed with the session id (a
//! secret only the browser holds, in an `HttpOnly` cookie) over a fixed
//! label. A page elsewhere can make the browser send the cookie but cannot
//! read the token, and the database, which keeps only the id's sha256,
//! cannot forge one. On top of that a POST the browser marks as cross-site
//! (`Sec-Fetch-Site`, or an `Origin` that is not this server) is refused
//! before anything is read.

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use ring::hmac;

use crate::error::AppError;
use crate::session;
use crate::state::AppState;

/// What the token signs: a new label (say, for a new kind of form) makes
/// every token of the old one useless for it.
const LABEL: &[u8] = b"drover dashboard form v1";

/// The form token of session `id`.
pub(super) fn token(session_id: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_id.as_bytes());
    hex::encode(hmac::sign(&key, LABEL).as_ref())
}

/// Whether `token` is session `id`'s (compared in constant time).
fn token_matches(session_id: &str, token: &str) -> bool {
    let Ok(tag) = hex::decode(token.trim()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_id.as_bytes());
    hmac::verify(&key, LABEL, &tag).is_ok()
}

/// The session id of the request's cookie, if there is one.
pub(super) fn session_id(headers: &HeaderMap) -> Option<&str> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    session::from_cookies(cookies)
}

/// Why a POST is not from one of this server's own pages, if it is not:
/// a browser says so in `Sec-Fetch-Site`, and in `Origin` (which must name
/// the host the request was sent to). A client that sends neither (not a
/// browser) still needs the session and its token.
fn cross_site(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if site != "same-origin" {
            return Some(format!(
                "the browser says this request comes from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let authority = origin.split_once("://").map(|(_, authority)| authority);
    if authority.is_some() && authority == host {
        None
    } else {
        Some(format!(
            "the request comes from {origin}, not from this server's pages"
        ))
    }
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "403 forbidden: {why}\n\
             hint: use the buttons of this dashboard's pages, after signing in\n"
        ),
    )
        .into_response()
}

/// A form whose only field is the session's token (a button).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    pub token: String,
}

/// Checks a form POST: same origin, an open session, and `token` (the
/// form's) that session's. `Some` is the answer to send instead (403, or
/// the login page); `None`, go ahead.
pub(super) async fn guard(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    token: &str,
) -> Result<Option<Response>, AppError> {
    if let Some(why) = cross_site(headers, uri) {
        return Ok(Some(forbidden(&why)));
    }
    let Some(id) = session_id(headers) else {
        return Ok(Some(Redirect::to("/login").into_response()));
    };
    if !session::is_open(&state.db, id).await? {
        return Ok(Some(Redirect::to("/login").into_response()));
    }
    if token.is_empty() {
        return Ok(Some(forbidden("the form carries no token")));
    }
    if !token_matches(id, token) {
        return Ok(Some(forbidden(
            "the form's token is not this session's (reload the page: it may be from an older session)",
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_belongs_to_its_session_only() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert!(token_matches(&a, &token(&a)));
        assert!(!token_matches(&b, &token(&a)));
        assert!(!token_matches(&a, ""));
        assert!(!token_matches(&a, "not hex"));
        // Not the digest the database keeps of the id.
        assert_ne!(
            token(&a),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(a.as_bytes()))
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let uri: Uri = "/nodes/web-1/cordon".parse().unwrap();
        let host = ("host", "drover.example:8443");
        for ok in [
            vec![host],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("origin", "https://drover.example:8443")],
        ] {
            assert_eq!(cross_site(&headers(&ok), &uri), None, "{ok:?}");
        }
        for refused in [
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("origin", "https://evil.example")],
            vec![host, ("origin", "null")],
            vec![("origin", "https://drover.example:8443")],
        ] {
            assert!(
                cross_site(&headers(&refused), &uri).is_some(),
                "{refused:?}"
            );
        }
    }
}
