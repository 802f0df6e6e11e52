//! Liveness, metrics and the git hook. Operators call the hook with their
//! credential; a forge calls it with a webhook signed with the secret of
//! `hook_secret_file` (see [`crate::webhook`]), which grants nothing else.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::Caller;
use crate::error::AppError;
use crate::snapshot::Requested;
use crate::state::AppState;
use crate::webhook::{GITHUB_SIGNATURE, GITLAB_TOKEN};

/// `GET /healthz`: `ok` while the database takes writes (a one-row write
/// probe, see [`crate::db::Db::health`]), else 503 with the reason: a full
/// disk or a broken database stops the server from storing reports, and a
/// load balancer or a monitor should hear of it.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    summary = "Liveness",
    responses(crate::openapi::Healthz)
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.db.health().await {
        Ok(()) => "ok".into_response(),
        Err(reason) => {
            tracing::error!(%reason, "healthz: unhealthy");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": reason })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics` on the main listener: operators only (Prometheus sends a
/// bearer token); `metrics_listen` serves [`metrics_open`] without one.
#[utoipa::path(get, path = "/metrics", tag = "meta", summary = "Prometheus metrics", security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])), responses(crate::openapi::Metrics))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    caller.require_operator()?;
    metrics_open(State(state)).await
}

/// `GET /metrics` without a credential, for the separate `metrics_listen` address.
pub async fn metrics_open(State(state): State<AppState>) -> Result<Response, AppError> {
    let nodes = crate::fleet::counts(&state.db, &state.fleet_context()).await?;
    let age = state.snapshots.status().0.map(|t| {
        let span = jiff::Timestamp::now().duration_since(t);
        span.as_secs_f64().max(0.0)
    });
    let (ca_expiry, server_expiry) = state.pki.expiries();
    let pending = state.pki.store().pending_count().ok();
    let scrape = crate::metrics::Scrape {
        nodes: &nodes,
        refresh_age: age,
        leads: state.cluster.leadership().is_leader(),
        replicas: &state.apps.placements.current().replica_counts(),
        ca_expiry,
        server_expiry,
        pending_requests: pending.and_then(|n| i64::try_from(n).ok()),
        compile_errors: crate::fleet::compile_error_count(&state.db).await?,
    };
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&scrape),
    )
        .into_response())
}

/// How long the hook waits for the refresh it triggered.
pub const HOOK_WAIT: Duration = Duration::from_secs(5);

/// `POST /api/v1/hooks/git`: 202 after waiting up to [`HOOK_WAIT`] for a
/// refresh that began after the call (`"refreshed": true` when it finished
/// and succeeded, so the API already shows the new commits; `false` when it
/// still runs); 502 with the git error when that refresh failed.
#[utoipa::path(post, path = "/api/v1/hooks/git", tag = "meta", summary = "Refresh the repository now", security(("operator_certificate" = []), ("operator_token" = []), ("hook_signature" = []), ("hook_token" = [])), responses(crate::openapi::GitHook))]
pub async fn git_hook(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    if !matches!(caller, Caller::Operator(_)) {
        let webhook = headers.contains_key(GITHUB_SIGNATURE) || headers.contains_key(GITLAB_TOKEN);
        if !webhook {
            caller.require_operator()?;
        }
        let Some(secrets) = &state.hook_secrets else {
            return Err(AppError::Unauthorized(
                "a signed webhook cannot be checked: this server has no `hook_secret_file`\nhint: set `hook_secret_file` in server.toml to a file holding the webhook's secret".into(),
            ));
        };
        secrets
            .verify(&headers, &body?)
            .map_err(AppError::Unauthorized)?;
    }
    match state.snapshots.request_refresh(HOOK_WAIT).await {
        Requested::Refreshed => Ok(accepted(true)),
        Requested::Pending => Ok(accepted(false)),
        Requested::Failed(error) => Err(AppError::Status(
            StatusCode::BAD_GATEWAY,
            format!(
                "the repository refresh failed: {error}\nhint: the previous commits are still served; `GET /api/v1/environments` shows the last refresh error"
            ),
        )),
    }
}

fn accepted(refreshed: bool) -> Response {
    (StatusCode::ACCEPTED, Json(json!({"refreshed": refreshed}))).into_response()
}

/// The document `crate::routes::api` assembled, served as it is.
#[derive(Clone)]
pub struct Document(pub Arc<utoipa::openapi::OpenApi>);

/// This document (open: it describes routes, it holds no secret).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route above.",
        body = Object, content_type = "application/json")),
)]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    Json(doc.0.as_ref()).into_response()
}
