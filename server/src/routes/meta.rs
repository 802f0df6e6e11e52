//! Liveness, metrics and the git hook.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

/// How long `POST /api/v1/hooks/git` waits for the refresh it triggered.
pub const HOOK_WAIT: Duration = Duration::from_secs(5);

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics` on the main listener: operators only (Prometheus sends a
/// bearer token); `metrics_listen` serves [`metrics_open`] without one.
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    caller.require_operator()?;
    metrics_open(State(state)).await
}

/// `GET /metrics` without a credential, for the separate `metrics_listen` address.
pub async fn metrics_open(State(state): State<AppState>) -> Result<Response, AppError> {
    let nodes = crate::db::status_counts(&state.db).await?;
    let age = state.snapshots.status().0.map(|t| {
        let span = jiff::Timestamp::now().duration_since(t);
        span.as_secs_f64().max(0.0)
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&nodes, age),
    )
        .into_response())
}

/// `POST /api/v1/hooks/git`: 202, after waiting up to [`HOOK_WAIT`] for a
/// refresh that began after the call, so a caller that gets `"refreshed": true`
/// sees the new commits (and their compile errors) in the API.
pub async fn git_hook(State(state): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    caller.require_operator()?;
    let refreshed = state.snapshots.request_refresh(HOOK_WAIT).await;
    Ok((StatusCode::ACCEPTED, Json(json!({"refreshed": refreshed}))).into_response())
}
