//! `GET nodes/{name}/catalog/watch`: a node's long-poll on its catalog
//! version, so a git push reaches the fleet in about a second instead of at
//! the next run interval (see [`crate::watch`]).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::AppError;
use crate::served::parse_sha;
use crate::state::AppState;

/// What a wait lasts when the node does not say: under the minute that
/// proxies and NAT tables commonly keep an idle connection.
pub const DEFAULT_TIMEOUT_SECS: u64 = 55;
/// The longest wait a node may ask for.
pub const MAX_TIMEOUT_SECS: u64 = 300;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// The catalog version the node holds (64 lowercase hex digits, the
    /// `ETag` of its last catalog); leave it out when it holds none.
    #[param(example = "9b2d0c6f2a4e8b1d3c5f7a9e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d")]
    version: Option<String>,
    /// Seconds to wait for a change (default 55, at most 300; 0 answers at once).
    // Parsed here rather than by serde, so the error names the parameter.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 300)]
    timeout_secs: Option<String>,
}

/// The answer of a watch.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchAnswer {
    /// The version the server knows for the node when `changed`, else the
    /// one the node sent (null when it sent none and the server knows none).
    #[schema(nullable = true)]
    pub version: Option<String>,
    /// Whether the node should fetch its catalog now.
    pub changed: bool,
    /// An operator asked the node to run now (`drover-server node run`),
    /// changed or not.
    pub run: bool,
}

/// Wait for a new catalog version
///
/// Answers as soon as the server knows a catalog version for the node other
/// than `version`: at once when it already does (so a node that was not
/// listening when the version moved learns at its next watch), else when a
/// compile moves it (the node's own catalog request, or the recompile after
/// a git refresh such as `POST /api/v1/hooks/git`). A commit that does not
/// compile does not move it. An operator's `POST /api/v1/nodes/{name}/run`
/// answers it at once with `run: true`. After `timeout_secs` without a change, or when
/// the server shuts down, it answers `changed: false`. The server forgets
/// versions when it restarts; a watch then waits for the next compile.
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{name}/catalog/watch",
    operation_id = "watch_catalog",
    tag = "node",
    security(("node_certificate" = [])),
    params(
        ("name" = String, Path, description = "The node's name (its certificate's)"),
        WatchQuery,
    ),
    responses(
        (status = 200, description = "A new version (`changed: true`), or the wait ended without one", body = WatchAnswer),
        (status = 400, description = "A `version` that is not a catalog version, or a `timeout_secs` that is not a number of seconds up to 300", body = crate::openapi::wire::ErrorBody),
        crate::openapi::NodeOnly,
    ),
)]
pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Result<Json<WatchAnswer>, AppError> {
    caller.require_node(&node)?;
    let Query(query) = query?;
    // A version is a sha256, as a content is.
    if let Some(version) = query.version.as_deref().filter(|v| parse_sha(v).is_none()) {
        return Err(AppError::BadRequest(format!(
            "invalid `version` `{version}`: expected a catalog version (64 lowercase hex digits, the catalog's ETag without quotes)"
        )));
    }
    let timeout = match query.timeout_secs.as_deref() {
        None => DEFAULT_TIMEOUT_SECS,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|secs| *secs <= MAX_TIMEOUT_SECS)
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "invalid `timeout_secs` `{text}`: expected a whole number of seconds from 0 to {MAX_TIMEOUT_SECS}"
                ))
            })?,
    };
    // The open watch is the daemon's heartbeat (see `crate::apps::liveness`).
    let _alive = state.apps.liveness.watching(&node);
    let outcome = state
        .watches
        .wait(
            &node,
            query.version.as_deref(),
            Duration::from_secs(timeout),
        )
        .await;
    if outcome.run {
        crate::db::lifecycle::run_answered(&state.db, &node).await?;
    }
    Ok(Json(WatchAnswer {
        version: outcome.version,
        changed: outcome.changed,
        run: outcome.run,
    }))
}
