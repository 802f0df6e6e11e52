//! A browser's way to the dashboard: a form that takes an operator token and
//! keeps it in a cookie (`HttpOnly`, `Secure`, `SameSite=Strict`) that only
//! GET requests accept, so a page elsewhere cannot act with it.

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::html::escape;
use crate::state::AppState;

/// The cookie that carries an operator token.
pub const COOKIE: &str = "drover_operator";

const FORM: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>drover: sign in</title>\
<style>body{font-family:sans-serif;margin:2em}.error{color:#b00}</style></head><body>\n\
<h1>drover</h1>\n<p>The dashboard is for operators: give an operator token \
(one line of the server's <code>operator_token_file</code>).</p>\n{error}\
<form method=\"post\" action=\"/login\"><input type=\"password\" name=\"token\" autofocus size=\"70\"> \
<button>Sign in</button></form>\n</body></html>\n";

fn page(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    Html(FORM.replace("{error}", &error))
}

/// `GET /login`.
pub async fn form() -> Html<String> {
    page(None)
}

#[derive(Debug, Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /login`: a good token sets the cookie and goes to `/`.
pub async fn submit(State(state): State<AppState>, Form(login): Form<Login>) -> Response {
    let token = login.token.trim();
    if !state.operators.accepts(token) {
        return (
            StatusCode::UNAUTHORIZED,
            page(Some("That is not an operator token.")),
        )
            .into_response();
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

    #[test]
    fn an_error_is_escaped_into_the_form() {
        let Html(text) = page(Some("<script>"));
        assert!(text.contains("&lt;script&gt;") && !text.contains("<script>"));
    }
}
