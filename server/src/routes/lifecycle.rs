//! A node's lifecycle, for operators: run now, deactivate, purge (Puppet's
//! `puppet job run`, `puppet node deactivate`, `puppet node purge`).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::cluster::notify;
use crate::db::lifecycle;
use crate::error::AppError;
use crate::state::AppState;

/// What a lifecycle route did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub node: String,
    /// What happened, in a sentence.
    pub said: String,
}

fn unknown(node: &str) -> AppError {
    AppError::NotFound(format!(
        "unknown node `{node}`: a node is known from its first catalog request"
    ))
}

/// Run a node now
///
/// The node's daemon is told through its catalog watch and runs within
/// seconds, without a commit. A node whose daemon does not watch (a timer,
/// `watch = false`) runs at its next interval as usual.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/run",
    operation_id = "run_node",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("name" = String, Path, description = "The node's name")),
    responses(
        (status = 200, description = "Asked", body = Done),
        (status = 404, description = "Unknown node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<Done>, AppError> {
    caller.require_operator()?;
    if !lifecycle::request_run(&state.db, &node).await? {
        return Err(unknown(&node));
    }
    state.watches.request_run(&node);
    if let Err(e) = notify::announce(&state.db, state.cluster.id(), notify::Event::Runs).await {
        tracing::warn!(error = %e, "telling the other servers of a run request failed");
    }
    tracing::info!(node = %node, "a run was asked");
    Ok(Json(Done {
        said: format!("`{node}` runs within seconds if its daemon watches its catalog"),
        node,
    }))
}

/// Deactivate a node
///
/// The node leaves the fleet's lists, counts and placements (its replicas
/// are placed elsewhere) until it checks in again. Its data stays.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/deactivate",
    operation_id = "deactivate_node",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("name" = String, Path, description = "The node's name")),
    responses(
        (status = 200, description = "Deactivated", body = Done),
        (status = 404, description = "Unknown node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<Done>, AppError> {
    caller.require_operator()?;
    if !lifecycle::deactivate(&state.db, &node).await? {
        return Err(unknown(&node));
    }
    state.apps.wake_control.notify_one();
    tracing::info!(node = %node, "node deactivated");
    Ok(Json(Done {
        said: format!("`{node}` is deactivated until it checks in again"),
        node,
    }))
}

/// Purge a node
///
/// Revokes its certificates (it is refused from its next TLS handshake on)
/// and deletes its data: the node, its last catalog, its reports, its
/// replica states. Its replicas are placed elsewhere.
#[utoipa::path(
    delete,
    path = "/api/v1/nodes/{name}",
    operation_id = "purge_node",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = [])),
    params(("name" = String, Path, description = "The node's name")),
    responses(
        (status = 200, description = "Purged", body = Done),
        (status = 404, description = "Neither data nor a certificate of that node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn purge(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<Done>, AppError> {
    caller.require_operator()?;
    drover_catalog::names::check_node_name(&node)
        .map_err(|e| AppError::BadRequest(format!("invalid node name: {e}")))?;
    let pki = state.pki.clone();
    let name = node.clone();
    // Revoked first: a node whose data is gone must not come back with it.
    // A failure to revoke stops the purge (its data stays); a node with no
    // valid certificate has nothing to revoke.
    let revoked = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let now = jiff::Timestamp::now();
        let holds =
            pki.listing()?.certificates.iter().any(|(cert, revoked)| {
                cert.name == name && revoked.is_none() && !cert.is_expired(now)
            });
        if !holds {
            return Ok(0);
        }
        Ok(pki.revoke(&name)?.len())
    })
    .await
    .map_err(|e| AppError::Internal(format!("the CA task failed: {e}")))?
    .map_err(|e| AppError::Internal(format!("revoking `{node}`'s certificates failed: {e:#}")))?;
    let deleted = lifecycle::purge(&state.db, &node).await?;
    if !deleted && revoked == 0 {
        return Err(unknown(&node));
    }
    state.apps.wake_control.notify_one();
    tracing::info!(node = %node, revoked, deleted, "node purged");
    Ok(Json(Done {
        said: format!(
            "`{node}`: {revoked} certificate(s) revoked, {}",
            if deleted {
                "its data deleted"
            } else {
                "no data to delete"
            }
        ),
        node,
    }))
}
