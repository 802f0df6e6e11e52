//! Read-only routes for operators: nodes, run history, environments.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::db::{self, CompileError, NodeRow, ReportSummary};
use crate::error::AppError;
use crate::state::AppState;

/// `GET /api/v1/nodes`.
pub async fn nodes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<NodeRow>>, AppError> {
    caller.require_operator()?;
    Ok(Json(db::nodes(&state.db).await?))
}

/// `GET /api/v1/nodes/{name}`: operators, and the node itself.
pub async fn node(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<NodeRow>, AppError> {
    caller.require_node_or_operator(&name)?;
    db::node(&state.db, &name)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("unknown node `{name}`")))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    limit: Option<u32>,
    /// RFC 3339: only runs that finished strictly before it (for paging).
    before: Option<String>,
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

/// `GET /api/v1/nodes/{name}/reports?limit=N&before=RFC3339`, newest first:
/// operators, and the node itself.
pub async fn node_reports(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<ReportSummary>>, AppError> {
    caller.require_node_or_operator(&name)?;
    let before = query
        .before
        .as_deref()
        .map(|b| {
            b.parse::<jiff::Timestamp>().map_err(|e| {
                AppError::BadRequest(format!(
                    "invalid `before` timestamp `{b}`: {e} (hint: use RFC 3339, e.g. 2025-01-31T12:00:00Z)"
                ))
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    if db::node(&state.db, &name).await?.is_none() {
        return Err(AppError::NotFound(format!("unknown node `{name}`")));
    }
    Ok(Json(db::reports(&state.db, &name, limit, before).await?))
}

/// `GET /api/v1/reports/{id}`: the report exactly as the agent posted it,
/// to operators and to the node that posted it. Another node gets the same
/// 404 as for a report that does not exist, so run ids cannot be probed.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if matches!(caller, Caller::Anonymous) {
        caller.require_operator()?;
    }
    let not_found = || AppError::NotFound(format!("no report with run_id `{id}`"));
    let (node, body) = db::report_body(&state.db, &id)
        .await?
        .ok_or_else(not_found)?;
    caller
        .require_node_or_operator(&node)
        .map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Serialize)]
pub struct Environments {
    /// `git` (a mirror) or `directory` (development mode).
    pub source: &'static str,
    pub default_environment: String,
    /// Last successful refresh.
    pub refreshed_at: Option<jiff::Timestamp>,
    /// Why the last refresh failed, if it did (the previous snapshots stay).
    pub refresh_error: Option<String>,
    pub environments: Vec<Environment>,
}

#[derive(Debug, Serialize)]
pub struct Environment {
    pub name: String,
    pub commit: String,
    /// When this commit was loaded.
    pub refreshed_at: jiff::Timestamp,
    /// Why the repository at this commit does not parse (`file:line:col: msg`).
    pub parse_errors: Vec<String>,
    /// Entries skipped while reading (symlinks, submodules).
    pub notes: Vec<String>,
    /// Nodes whose last compile in this environment failed.
    pub compile_errors: Vec<NodeCompileError>,
}

#[derive(Debug, Serialize)]
pub struct NodeCompileError {
    pub node: String,
    #[serde(flatten)]
    pub error: CompileError,
}

/// Builds the environments view (also used by the HTML page).
pub async fn environments_view(state: &AppState) -> Result<Environments, AppError> {
    let nodes = db::nodes(&state.db).await?;
    let (refreshed_at, refresh_error) = state.snapshots.status();
    let environments = state
        .snapshots
        .list()
        .iter()
        .map(|snap| Environment {
            name: snap.name.clone(),
            commit: snap.commit.clone(),
            refreshed_at: snap.loaded_at,
            parse_errors: snap.repo.as_ref().err().cloned().unwrap_or_default(),
            notes: snap.notes.clone(),
            compile_errors: nodes
                .iter()
                .filter_map(|n| {
                    let error = n.compile_error.as_ref()?;
                    (error.environment == snap.name).then(|| NodeCompileError {
                        node: n.name.clone(),
                        error: error.clone(),
                    })
                })
                .collect(),
        })
        .collect();
    Ok(Environments {
        source: state.snapshots.source().kind(),
        default_environment: state.snapshots.default_environment(),
        refreshed_at,
        refresh_error,
        environments,
    })
}

/// `GET /api/v1/environments`.
pub async fn environments(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Environments>, AppError> {
    caller.require_operator()?;
    Ok(Json(environments_view(&state).await?))
}
