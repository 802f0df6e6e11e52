//! The dashboard: server-rendered pages for operators (askama templates,
//! escaping on, readable without JavaScript), a live feed of new reports
//! (server-sent events), and the sign-in form.
//!
//! Pages: `/` the fleet, `/nodes/{name}` one node, `/runs/{run_id}` one run,
//! `/events` the live feed, `/static/*` the stylesheet and the script,
//! `/login` and `/logout` (see [`crate::login`]).

mod chart;
mod events;
mod format;
mod node;
mod overview;
mod run;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

/// The dashboard's pages and the sign-in form.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::show))
        .route("/nodes/{name}", get(node::page_of))
        .route("/runs/{id}", get(run::page_of))
        .route("/events", get(events::stream))
        .route("/static/dashboard.css", get(stylesheet))
        .route("/static/dashboard.js", get(script))
        .route("/login", get(crate::login::form).post(crate::login::submit))
        .route("/logout", post(crate::login::logout))
}

/// Scripts and styles from this server only; no inline script can run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A page is for operators: a browser without a credential is sent to
/// `/login` (the redirect to answer with, if so).
fn sign_in_first(caller: &Caller) -> Option<Response> {
    caller
        .require_operator()
        .is_err()
        .then(|| Redirect::to("/login").into_response())
}

/// Renders a template as a page: no caching (it shows fleet data), no
/// framing, no inline scripts.
fn render(status: StatusCode, template: &impl Template) -> Result<Response, AppError> {
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

fn page(template: &impl Template) -> Result<Response, AppError> {
    render(StatusCode::OK, template)
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login<'a> {
    error: Option<&'a str>,
}

/// The sign-in form, with an error when a token was refused.
pub fn login_page(status: StatusCode, error: Option<&str>) -> Result<Response, AppError> {
    render(status, &Login { error })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/dashboard.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/dashboard.js"),
    )
}

/// Escapes text for HTML element content and attribute values (the SVG
/// charts, which are built as text).
pub fn escape(s: &str) -> String {
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

    #[test]
    fn the_login_error_is_escaped() {
        let html = Login {
            error: Some("<script>alert(1)</script>"),
        }
        .render()
        .unwrap();
        assert!(html.contains("alert(1)"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
    }
}
