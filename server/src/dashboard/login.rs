//! A browser's way to the dashboard: a form that takes an operator token and
//! opens a session ([`crate::session`]): the cookie holds a random session
//! id, never the token, and lasts `session_lifetime_secs`. It is
//! `HttpOnly`, `Secure` (but in plain-HTTP development), `SameSite=Strict`,
//! and only GET requests accept it, so a page elsewhere cannot act with it.
//! `POST /logout` ends the session.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::page::render;
use crate::error::AppError;
use crate::session::{self, COOKIE};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
}

/// The sign-in form, with an error when a token was refused.
fn login_page(status: StatusCode, error: Option<&str>) -> Result<Response, AppError> {
    render(status, &LoginPage { error })
}

/// `GET /login`.
pub async fn form() -> Result<Response, AppError> {
    login_page(StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: a good token opens a session, sets its cookie and goes to `/`.
pub async fn submit(
    State(state): State<AppState>,
    Form(login): Form<LoginForm>,
) -> Result<Response, AppError> {
    if !state.operators.accepts(login.token.trim()) {
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not an operator token."),
        );
    }
    let lifetime = state.config.session_lifetime;
    let id = session::open(&state.db, lifetime).await?;
    let cookie = format!(
        "{COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        lifetime.as_secs().max(1),
        secure(&state)
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

/// `POST /logout`: ends the session of the cookie (if any), clears the
/// cookie and goes to `/login`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::from_cookies);
    session::end(&state.db, id).await?;
    let cookie = format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure(&state)
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

fn secure(state: &AppState) -> &'static str {
    if state.config.insecure_http {
        ""
    } else {
        "; Secure"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_error_is_escaped() {
        let html = LoginPage {
            error: Some("<script>alert(1)</script>"),
        }
        .render()
        .unwrap();
        assert!(html.contains("alert(1)"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
    }
}
