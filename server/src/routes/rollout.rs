//! The staged rollout of an environment's newest commit: its status, and
//! an operator's `resume` or `abort` (applied by the leader's loop, so the
//! answer is 202 with the request shown).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::Caller;
use crate::error::AppError;
use crate::rollout::view::{self, Request, RolloutStatus};
use crate::state::AppState;

/// An environment's rollout
///
/// Its newest commit, whether it has a `[rollout]`, and the rollout: from
/// and to commit, `state` (`rolling`, `paused`, `done`, `aborted`), the
/// stage being gated, each stage's nodes and times, and `reason` (what
/// blocks it or why it paused).
#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/rollout",
    operation_id = "get_rollout",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("env" = String, Path, description = "The environment (a branch)")),
    responses(
        (status = 200, description = "The rollout", body = RolloutStatus),
        (status = 404, description = "Unknown environment", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(env): Path<String>,
) -> Result<Json<RolloutStatus>, AppError> {
    caller.require_operator()?;
    Ok(Json(view::status(&state, &env).await?))
}

/// Resume a paused rollout
///
/// Passes the stage whose gate failed anyway: the next stage begins.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/rollout/resume",
    operation_id = "resume_rollout",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("env" = String, Path, description = "The environment (a branch)")),
    responses(
        (status = 202, description = "Recorded; the leader applies it", body = RolloutStatus),
        (status = 404, description = "Unknown environment", body = crate::openapi::wire::ErrorBody),
        (status = 409, description = "The rollout is not paused", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(env): Path<String>,
) -> Result<(StatusCode, Json<RolloutStatus>), AppError> {
    caller.require_operator()?;
    let status = view::request(&state, &env, Request::Resume).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// Abort a rollout
///
/// Sends every node of a rolling or paused rollout back to its `from`
/// commit's catalogs.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/rollout/abort",
    operation_id = "abort_rollout",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("env" = String, Path, description = "The environment (a branch)")),
    responses(
        (status = 202, description = "Recorded; the leader applies it", body = RolloutStatus),
        (status = 404, description = "Unknown environment", body = crate::openapi::wire::ErrorBody),
        (status = 409, description = "The rollout is done or aborted", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(env): Path<String>,
) -> Result<(StatusCode, Json<RolloutStatus>), AppError> {
    caller.require_operator()?;
    let status = view::request(&state, &env, Request::Abort).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}
