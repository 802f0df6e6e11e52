//! Read-only routes of apps for operators: the apps and their replicas
//! (with the decisions that placed them), and the fleet's capacity.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

/// A node's maintenance state, as the cordon and drain routes answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Maintenance {
    pub node: String,
    /// No new replica is placed on it.
    pub cordoned: bool,
    /// Its drain, until it is uncordoned.
    #[schema(nullable = true)]
    pub drain: Option<crate::db::drains::Drain>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Seconds after which what is left on the node is stopped (default: none).
    #[schema(example = 600)]
    pub deadline_secs: Option<u64>,
}

async fn maintenance(state: &AppState, node: &str) -> Result<Json<Maintenance>, AppError> {
    state.apps.wake_control.notify_one();
    let drain = crate::db::drains::drain(&state.db, node).await?;
    let cordoned = crate::db::node(&state.db, node)
        .await?
        .is_some_and(|n| n.cordoned);
    Ok(Json(Maintenance {
        node: node.to_owned(),
        cordoned,
        drain,
    }))
}

fn unknown(node: &str) -> AppError {
    AppError::NotFound(format!(
        "unknown node `{node}`: a node is known from its first catalog request"
    ))
}

/// Cordon a node
///
/// No new replica is placed on it; the replicas it runs stay.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/cordon",
    operation_id = "cordon_node",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("name" = String, Path, description = "The node's name")),
    responses(
        (status = 200, description = "Cordoned", body = Maintenance),
        (status = 404, description = "Unknown node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn cordon(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<Maintenance>, AppError> {
    caller.require_operator()?;
    if !crate::db::drains::set_cordon(&state.db, &node, true).await? {
        return Err(unknown(&node));
    }
    maintenance(&state, &node).await
}

/// Uncordon a node
///
/// Replicas may be placed on it again; its drain, if any, ends (replicas
/// already moving finish their move).
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/uncordon",
    operation_id = "uncordon_node",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("name" = String, Path, description = "The node's name")),
    responses(
        (status = 200, description = "Uncordoned", body = Maintenance),
        (status = 404, description = "Unknown node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn uncordon(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<Maintenance>, AppError> {
    caller.require_operator()?;
    if !crate::db::drains::set_cordon(&state.db, &node, false).await? {
        return Err(unknown(&node));
    }
    maintenance(&state, &node).await
}

/// Drain a node
///
/// Cordons it, then the control loop moves every replica away
/// make-before-break: each replacement is placed and must be healthy for
/// the app's `update.min_healthy_secs` before the old replica stops, and a
/// replica that fits nowhere stops only when the app keeps
/// `disruption.min_available` healthy replicas. After `deadline_secs` what
/// is left stops. The drain's `status` says what it waits for; poll
/// `GET /api/v1/nodes/{name}` (or this route's answer) for its `state`:
/// `draining`, `done`, `stopped`.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/drain",
    operation_id = "drain_node",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("name" = String, Path, description = "The node's name")),
    request_body(content = DrainRequest, description = "Optional; `{}` drains without a deadline", example = json!({"deadline_secs": 600})),
    responses(
        (status = 200, description = "The drain started", body = Maintenance),
        (status = 400, description = "A body that is not a drain request", body = crate::openapi::wire::ErrorBody),
        (status = 404, description = "Unknown node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Maintenance>, AppError> {
    caller.require_operator()?;
    let request: DrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DrainRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::BadRequest(format!("invalid drain request: {e}")))?
    };
    let deadline = request.deadline_secs.map(crate::db::drains::deadline_in);
    if !crate::db::drains::start(&state.db, &node, deadline).await? {
        return Err(unknown(&node));
    }
    maintenance(&state, &node).await
}
