//! Read-only routes of apps for operators: the apps and their replicas
//! (with the decisions that placed them), and the fleet's capacity.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::apps::view::{self, AppStatus, Capacity};
use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentQuery {
    /// Only this environment (for capacity: default, the default environment).
    #[param(example = "production")]
    environment: Option<String>,
}

/// The apps and their replicas
///
/// Every app of every environment (or of `environment`), with each
/// replica's node (null while pending), state, pending reason and
/// container. The decisions are left out here: `GET /api/v1/apps/{name}`
/// gives them.
#[utoipa::path(
    get,
    path = "/api/v1/apps",
    operation_id = "list_apps",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    params(EnvironmentQuery),
    responses(
        (status = 200, description = "By environment and name", body = [AppStatus]),
        (status = 400, description = "A query that cannot be read", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<EnvironmentQuery>, QueryRejection>,
) -> Result<Json<Vec<AppStatus>>, AppError> {
    caller.require_operator()?;
    let Query(query) = query?;
    Ok(Json(
        view::apps(&state, query.environment.as_deref(), None, false).await?,
    ))
}

/// One app, with every decision
///
/// The app in each environment that has it (or in `environment`), each
/// replica with the decision that placed it or keeps it pending: per node,
/// the predicate that refused it or its score per priority.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{name}",
    operation_id = "get_app",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    params(("name" = String, Path, description = "The app (its file's stem)"), EnvironmentQuery),
    responses(
        (status = 200, description = "The app, in each environment that has it", body = [AppStatus]),
        (status = 400, description = "A query that cannot be read", body = crate::openapi::wire::ErrorBody),
        (status = 404, description = "No environment has this app", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<EnvironmentQuery>, QueryRejection>,
) -> Result<Json<Vec<AppStatus>>, AppError> {
    caller.require_operator()?;
    let Query(query) = query?;
    let apps = view::apps(&state, query.environment.as_deref(), Some(&name), true).await?;
    if apps.is_empty() {
        return Err(AppError::NotFound(format!(
            "no environment has an app `{name}` (apps/{name}.toml)"
        )));
    }
    Ok(Json(apps))
}

/// Capacity against requests
///
/// Per node of the environment's fleet and summed: its capacity (facts
/// less `[scheduler] reserved`), what the replicas placed on it request,
/// and how many nodes the placed replicas would need if packed tightly (a
/// lower bound): the room for consolidation.
#[utoipa::path(
    get,
    path = "/api/v1/capacity",
    operation_id = "capacity",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    params(EnvironmentQuery),
    responses(
        (status = 200, description = "The environment's capacity", body = Capacity),
        (status = 400, description = "A query that cannot be read", body = crate::openapi::wire::ErrorBody),
        (status = 404, description = "No such environment", body = crate::openapi::wire::ErrorBody),
        (status = 409, description = "The environment's commit does not parse", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn capacity(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<EnvironmentQuery>, QueryRejection>,
) -> Result<Json<Capacity>, AppError> {
    caller.require_operator()?;
    let Query(query) = query?;
    Ok(Json(
        view::capacity(&state, query.environment.as_deref()).await?,
    ))
}
