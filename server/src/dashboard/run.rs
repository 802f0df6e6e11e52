//! `GET /runs/{run_id}?node=NAME`: one run, every resource with its events,
//! diff and error. Unchanged resources are folded away unless asked for
//! (`&all=1`). Run ids are unique per node only, so every link names the
//! node ([`href`]); without `node`, the first stored run of that id is shown.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_catalog::Report;
use drover_catalog::report::{CachedCatalog, ResourceReport, ResourceStatus};
use serde::Deserialize;

use super::format;
use super::page::{SignedIn, page};
use crate::db;
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    all: String,
    /// Whose run: run ids are unique per node only.
    #[serde(default)]
    node: String,
}

/// The page of `node`'s run `run_id`.
pub(super) fn href(node: &str, run_id: &str) -> String {
    format!("/runs/{}?node={}", urlencode(run_id), urlencode(node))
}

struct EventRow {
    property: String,
    previous: String,
    desired: String,
    message: String,
}

struct DiffLine {
    class: &'static str,
    text: String,
}

struct ResourceView {
    id: String,
    status: &'static str,
    corrective: bool,
    refreshed: bool,
    duration: String,
    error: Option<String>,
    events: Vec<EventRow>,
    diff: Vec<DiffLine>,
}

impl ResourceView {
    fn new(r: &ResourceReport) -> ResourceView {
        ResourceView {
            id: r.id.to_string(),
            status: r.status.as_str(),
            corrective: r.corrective,
            refreshed: r.refreshed,
            duration: format::duration_ms(r.duration_ms),
            error: r.error.clone(),
            events: r
                .events
                .iter()
                .map(|e| EventRow {
                    property: e.property.clone(),
                    previous: e.previous.clone().unwrap_or_else(|| "(absent)".to_owned()),
                    desired: e.desired.clone().unwrap_or_else(|| "(absent)".to_owned()),
                    message: e.message.clone().unwrap_or_default(),
                })
                .collect(),
            diff: r.diff.as_deref().map(diff_lines).unwrap_or_default(),
        }
    }
}

/// A unified diff's lines, each with the class that colours it.
fn diff_lines(diff: &str) -> Vec<DiffLine> {
    diff.lines()
        .map(|line| DiffLine {
            class: if line.starts_with("+++") || line.starts_with("---") {
                "head"
            } else if line.starts_with('+') {
                "add"
            } else if line.starts_with('-') {
                "del"
            } else if line.starts_with("@@") {
                "hunk"
            } else {
                "ctx"
            },
            text: line.to_owned(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    run_id: String,
    node: String,
    node_href: String,
    status: &'static str,
    noop: bool,
    cached: bool,
    started_at: String,
    finished_at: String,
    duration: String,
    environment: String,
    commit: String,
    /// `subject (author, time)` when the mirror has the commit.
    commit_said: String,
    commit_href: Option<String>,
    catalog_version: String,
    agent_version: String,
    /// The server of the agent's list that answered the run.
    server: String,
    counts: String,
    /// When the server received the report, and how far ahead the node's clock was.
    received_at: String,
    clock_skew: Option<String>,
    error: Option<String>,
    show_all: bool,
    hidden: usize,
    all_href: String,
    changes_href: String,
    resources: Vec<ResourceView>,
}

/// `GET /runs/{run_id}?node=NAME&all=1`.
pub(super) async fn page_of(
    State(state): State<AppState>,
    _: SignedIn,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    let of = Some(params.node.as_str()).filter(|n| !n.is_empty());
    let Some((stored_node, body)) = db::report_body(&state.db, &id, of).await? else {
        let whose = of.map_or_else(String::new, |node| format!(" of node `{node}`"));
        return Ok(super::page::not_found(&format!(
            "No report{whose} has the run id `{id}` (reports older than report_retention_days are deleted)."
        )));
    };
    let report: Report = serde_json::from_str(&body)
        .map_err(|e| AppError::Internal(format!("stored report `{id}` does not parse: {e}")))?;
    let show_all = !params.all.is_empty();
    let (shown, hidden): (Vec<&ResourceReport>, Vec<&ResourceReport>) = report
        .resources
        .iter()
        .partition(|r| show_all || r.status != ResourceStatus::Unchanged);
    let href = href(&stored_node, &id);
    let received_at = db::report_received_at(&state.db, &stored_node, &id)
        .await?
        .unwrap_or_default();
    let skew = db::clock_skew_secs(&report.finished_at.to_string(), &received_at);
    let duration = report.finished_at.duration_since(report.started_at);
    let view = RunPage {
        node_href: format!("/nodes/{}", urlencode(&report.node)),
        status: report.status.as_str(),
        noop: report.noop,
        cached: report.cached_catalog == CachedCatalog::OnFailure,
        started_at: format::when(&report.started_at.to_string()),
        finished_at: format::when(&report.finished_at.to_string()),
        duration: format::duration_ms(duration.as_secs_f64() * 1000.0),
        environment: report.environment.clone(),
        commit: report.commit.clone(),
        commit_said: super::commit::said(&state, Some(&report.commit)).await,
        commit_href: state.config.commit_link(&report.commit),
        catalog_version: report.catalog_version.clone(),
        agent_version: format::or_dash(
            Some(report.agent_version.as_str()).filter(|v| !v.is_empty()),
        ),
        server: format::or_dash(report.server.as_deref()),
        counts: counts(&report.resources),
        clock_skew: (skew > 0.0).then(|| skew_text(skew)),
        received_at: format::when(&received_at),
        error: report.error.clone(),
        show_all,
        hidden: hidden.len(),
        all_href: format!("{href}&all=1"),
        changes_href: href,
        resources: shown.into_iter().map(ResourceView::new).collect(),
        node: report.node,
        run_id: id,
    };
    page(&view)
}

/// A clock skew in whole units: `3652 d 4 h`, `2 h 5 min`, `40 s`.
fn skew_text(secs: f64) -> String {
    // Rounded seconds, at most the ~300 years of jiff's range.
    let s = secs.round().clamp(0.0, 1e10) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// `12 resources: 3 changed, 1 failed, 8 unchanged`.
fn counts(resources: &[ResourceReport]) -> String {
    let parts: Vec<String> = ResourceStatus::ALL
        .iter()
        .filter_map(|&s| {
            let n = resources.iter().filter(|r| r.status == s).count();
            (n > 0).then(|| format!("{n} {}", s.as_str()))
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        format!("{}: {}", resources.len(), parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lines_get_their_classes() {
        let classes: Vec<&str> = diff_lines("--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n same")
            .iter()
            .map(|l| l.class)
            .collect();
        assert_eq!(classes, ["head", "head", "hunk", "del", "add", "ctx"]);
    }
}
