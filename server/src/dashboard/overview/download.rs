//! The overview's list as a download: every node the filter matches (not
//! one page), in the order asked for, as JSON or CSV; past
//! `export::MAX_ROWS` nodes, cut there with `Drover-Next-After` naming
//! where the rest begins.

use axum::response::Response;
use serde::Serialize;

use super::Commits;
use super::query::Asked;
use crate::error::AppError;
use crate::export;
use crate::fleet::{self, Cursor, NodeLine};
use crate::state::AppState;

/// A node as the list's download gives it.
#[derive(Serialize)]
struct NodeExport {
    name: String,
    state: &'static str,
    stale: bool,
    compile_error: bool,
    corrective: i64,
    cordoned: bool,
    environment: Option<String>,
    roles: Vec<String>,
    last_run_at: Option<String>,
    last_run_id: Option<String>,
    duration_ms: Option<f64>,
    commit: Option<String>,
    commit_subject: Option<String>,
}

/// Every node the filter matches from `after` on, in the order asked for,
/// as a download; a filter that cannot be used is a 400, not the whole
/// fleet.
pub(super) async fn export(
    state: &AppState,
    asked: &Asked,
    format: export::Format,
) -> Result<Response, AppError> {
    if !asked.errors.is_empty() {
        return Err(AppError::BadRequest(asked.errors.join("; ")));
    }
    let ctx = state.fleet_context();
    let mut lines: Vec<NodeLine> = Vec::new();
    let mut after: Option<Cursor> = asked.after.clone();
    let cut = loop {
        let page = fleet::page(
            &state.db,
            &ctx,
            &asked.filter,
            asked.sort,
            after.as_ref(),
            1000,
        )
        .await?;
        lines.extend(page.nodes);
        match page.next_after {
            Some(next) if lines.len() < export::MAX_ROWS => {
                after = Some(asked.sort.parse_cursor(&next).map_err(AppError::Internal)?);
            }
            next => break next,
        }
    };
    let commits = Commits::of(state, &lines).await;
    let rows: Vec<NodeExport> = lines
        .into_iter()
        .map(|n| NodeExport {
            state: n.state.as_str(),
            stale: n.stale,
            compile_error: n.has_compile_error,
            corrective: n.corrective,
            cordoned: n.cordoned,
            environment: n.environment,
            roles: n.roles,
            last_run_at: n.last_run_at,
            last_run_id: n.last_run_id,
            duration_ms: n.last_duration_ms,
            commit_subject: n
                .last_commit
                .as_deref()
                .and_then(|c| commits.known.get(c))
                .map(|i| i.subject.clone()),
            commit: n.last_commit,
            name: n.name,
        })
        .collect();
    Ok(export::cut_at(
        export::download(format, "nodes", &rows)?,
        cut.as_deref(),
    ))
}
