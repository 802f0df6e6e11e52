//! A browser's way to the dashboard: a form that takes an operator token and
//! keeps it in a cookie (`HttpOnly`, `Secure`, `SameSite=Strict`) that only
//! GET requests accept, so a page elsewhere cannot act with it.

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::dashboard;
use crate::error::AppError;
use crate::state::AppState;

/// The cookie that carries an operator token.
pub const COOKIE: &str = "drover_operator";

/// `GET /login`.
pub async fn form() -> Result<Response, AppError> {
    dashboard::login_page(StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /login`: a good token sets the cookie and goes to `/`.
pub async fn submit(State(state): State<AppState>, Form(login): Form<Login>) -> Response {
    let token = login.token.trim();
    if !state.operators.accepts(token) {
        return dashboard::login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not an operator token."),
        )
        .unwrap_or_else(IntoResponse::into_response);
    }
    let secure = if state.config.insecure_http {
        ""
    } else {
        "; Secure"
    };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// The operator token of a `Cookie` header, if there is one.
pub fn token_from_cookies(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_cookie_is_found_among_others() {
        assert_eq!(
            token_from_cookies("a=1; drover_operator=abc ; b=2"),
            Some("abc")
        );
        assert_eq!(token_from_cookies("drover_operatorx=abc"), None);
        assert_eq!(token_from_cookies(""), None);
    }
}
