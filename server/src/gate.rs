//! Authorize first: every API route that is not open to anyone refuses a
//! caller without a credential before its body is read. A handler still
//! checks who the caller is (a node route's name against the certificate);
//! this gate only makes sure that an anonymous client never gets a 16 MiB
//! body buffered, or a database read, on a guarded route.

use axum::extract::FromRequestParts;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

/// Route templates anyone may call: enrollment, liveness, the document.
const OPEN: &[&str] = &[
    "/api/v1/ca",
    "/api/v1/certificate_requests/{name}",
    "/healthz",
    "/openapi.json",
];

/// The middleware (a route layer, so the matched template is known).
/// The caller it finds is kept in the request for the handler.
pub async fn authenticate_first(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if is_open(&req) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    match Caller::from_request_parts(&mut parts, &state).await {
        Ok(Caller::Anonymous) => AppError::Unauthorized(
            "this route needs a client certificate or an operator credential\nhint: a node enrolls first (POST /api/v1/certificate_requests/NAME); an operator sends `Authorization: Bearer TOKEN`".into(),
        )
        .into_response(),
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refused) => refused.into_response(),
    }
}

fn is_open(req: &Request) -> bool {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    else {
        return false;
    };
    OPEN.contains(&path)
        || (path == "/api/v1/hooks/git" && req.method() == Method::POST && forge_signed(req))
}

/// A forge's webhook carries no credential of ours: its signature, checked
/// by the hook itself over the body (bounded by the hook's own limit).
fn forge_signed(req: &Request) -> bool {
    let headers = req.headers();
    headers.contains_key(crate::webhook::GITHUB_SIGNATURE)
        || headers.contains_key(crate::webhook::GITLAB_TOKEN)
}
