//! How a dashboard page is answered: rendered from its template with the
//! headers every page carries (no caching, no framing, no inline scripts),
//! or a redirect to `/login` for a browser without a credential.

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

/// Scripts and styles from this server only; no inline script can run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An operator on a page. A caller who is none (a browser without a
/// credential) is sent to `/login`; a credential that is wrong is refused
/// as the API refuses it.
pub(super) struct SignedIn;

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<SignedIn, Response> {
        let caller = Caller::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match caller.require_operator() {
            Ok(_) => Ok(SignedIn),
            Err(_) => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// Renders a template as a page: no caching (it shows fleet data), no
/// framing, no inline scripts.
pub(super) fn render(status: StatusCode, template: &impl Template) -> Result<Response, AppError> {
    let html = template
        .render()
        .map_err(|e| AppError::Internal(format!("cannot render the page: {e}")))?;
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound<'a> {
    what: &'a str,
}

/// The dashboard's 404: a page saying what was not found, with the way back.
pub(super) fn not_found(what: &str) -> Response {
    render(StatusCode::NOT_FOUND, &NotFound { what })
        .unwrap_or_else(|_| (StatusCode::NOT_FOUND, what.to_owned()).into_response())
}

/// Any path no route serves: the styled page for a browser; under `/api/`
/// the empty 404 the API has always given (no documented 404 looks like it,
/// so a client can tell a wrong route from an unknown node).
pub(super) async fn fallback(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    not_found(&format!("There is no page at {path}."))
}

pub(super) fn page(template: &impl Template) -> Result<Response, AppError> {
    render(StatusCode::OK, template)
}

/// Escapes text for HTML element content and attribute values (the SVG
/// charts, which are built as text).
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<b a='1'>&\"</b>"),
            "&lt;b a=&#39;1&#39;&gt;&amp;&quot;&lt;/b&gt;"
        );
    }
}
