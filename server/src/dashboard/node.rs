//! `GET /nodes/{name}`: one node: its state, catalog, maintenance (cordon,
//! drain, the replicas placed on it, and the buttons of [`super::maintenance`]),
//! facts, and its runs (a chart and a page of the history, newest first).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::maintenance::MaintenanceView;
use super::page::{SignedIn, page};
use super::{chart, format};
use crate::db::{self, ReportSummary};
use crate::error::AppError;
use crate::fleet;
use crate::fleet::urlencode;
use crate::state::AppState;

/// Runs per page.
const RUNS: u32 = 50;
/// Runs the chart draws at most (the newest of its range).
const CHART_RUNS: u32 = 20_000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    /// RFC 3339: runs that finished strictly before it.
    #[serde(default)]
    before: String,
    /// The chart's range (`6h`, `24h`, `7d`, `14d`).
    #[serde(default)]
    range: String,
}

/// The node's runs in the chart's range, placed at their times.
async fn node_timeline(
    state: &AppState,
    name: &str,
    range: chart::Range,
    now: jiff::Timestamp,
) -> Result<chart::Timeline, AppError> {
    let mut timeline = chart::Timeline::empty(range, now.as_microsecond(), "run duration");
    let window = range.window(now.as_microsecond());
    for run in db::run_points(&state.db, name, window, CHART_RUNS).await? {
        if let Some(slot) = timeline.slot_mut(run.finished_at_us) {
            slot.add(&run.status, run.noop != 0, run.duration_ms);
        }
        timeline
            .durations
            .push((run.finished_at_us, run.duration_ms));
    }
    Ok(timeline)
}

pub(super) struct RunRow {
    pub id: String,
    pub href: String,
    pub status: String,
    pub noop: bool,
    pub cached: bool,
    pub finished_at: String,
    pub finished_ago: String,
    pub duration: String,
    pub resources: i64,
    pub changed: i64,
    pub failed: i64,
    pub skipped: i64,
    pub catalog_version: String,
}

impl RunRow {
    fn new(r: &ReportSummary, now: jiff::Timestamp) -> RunRow {
        RunRow {
            id: r.id.clone(),
            href: super::run::href(&r.node, &r.id),
            status: r.status.clone(),
            noop: r.noop,
            cached: r.cached_catalog == "on_failure",
            finished_at: format::when(&r.finished_at),
            finished_ago: format::ago(&r.finished_at, now),
            duration: format::duration_ms(r.duration_ms),
            resources: r.resources,
            changed: r.changed,
            failed: r.failed,
            skipped: r.skipped,
            catalog_version: format::short(&r.catalog_version),
        }
    }
}

#[derive(Template)]
#[template(path = "node.html")]
struct NodePage {
    name: String,
    state: &'static str,
    state_label: &'static str,
    stale: bool,
    environment: String,
    requested_environment: Option<String>,
    catalog_version: String,
    commit: String,
    /// `subject (author, time)` when the commit is an environment's head.
    commit_said: String,
    commit_href: Option<String>,
    environment_head: Option<String>,
    roles: String,
    last_seen: String,
    last_run: String,
    compile_error: Vec<String>,
    runs_summary: String,
    chart: String,
    chart_range: &'static str,
    range_links: Vec<chart::RangeLink>,
    runs: Vec<RunRow>,
    paged: bool,
    newest_href: String,
    older_href: Option<String>,
    facts: Vec<(String, String)>,
    maintenance: MaintenanceView,
}

/// `GET /nodes/{name}?before=RFC3339`.
pub(super) async fn page_of(
    State(state): State<AppState>,
    _: SignedIn,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    let before = match params.before.trim() {
        "" => None,
        text => Some(text.parse::<jiff::Timestamp>().map_err(|e| {
            AppError::BadRequest(format!(
                "invalid `before` timestamp `{text}`: {e} (hint: use RFC 3339, e.g. 2025-01-31T12:00:00Z)"
            ))
        })?),
    };
    let range = chart::Range::parse(&params.range).map_err(AppError::BadRequest)?;
    let ctx = state.fleet_context();
    let (Some(node), Some((node_state, stale))) = (
        db::node(&state.db, &name).await?,
        fleet::node_state(&state.db, &ctx, &name).await?,
    ) else {
        return Ok(super::page::not_found(&format!(
            "No node is named `{name}`: a node is known from its first catalog request."
        )));
    };
    let now = jiff::Timestamp::now();
    let history = db::reports(&state.db, &name, RUNS + 1, before).await?;
    let more = history.len() > RUNS as usize;
    let runs: Vec<&ReportSummary> = history.iter().take(RUNS as usize).collect();
    let older_href = more
        .then(|| runs.last())
        .flatten()
        .map(|r| node_href(&name, &r.finished_at, &params.range));
    let environment_head = node
        .environment
        .as_ref()
        .and_then(|env| ctx.heads.get(env))
        .filter(|head| node.commit.as_deref() != Some(head.as_str()))
        .map(|head| format::short(head));
    let runs_summary = match runs.len() {
        0 => String::new(),
        n => format!(
            "the {n} {} shown",
            if before.is_some() { "older" } else { "latest" }
        ),
    };
    let drain = db::drains::drain(&state.db, &name).await?;
    let replicas = crate::apps::view::node_replicas(&state, &name).await?;
    let maintenance = MaintenanceView::new(
        &name,
        node.cordoned,
        drain.as_ref(),
        &replicas,
        super::forms::session_id(&headers),
    );
    let view = NodePage {
        maintenance,
        state: node_state.as_str(),
        state_label: node_state.label(),
        stale,
        environment: format::or_dash(node.environment.as_deref()),
        requested_environment: node.requested_environment.clone(),
        catalog_version: format::or_dash(node.catalog_version.as_deref()),
        commit: format::or_dash(node.commit.as_deref()),
        commit_said: super::commit::said(&state, node.commit.as_deref()).await,
        commit_href: node
            .commit
            .as_deref()
            .and_then(|c| state.config.commit_link(c)),
        environment_head,
        roles: node.roles.join(", "),
        last_seen: node
            .last_seen_at
            .as_deref()
            .map_or_else(|| "never".to_owned(), |t| timestamp(t, now)),
        last_run: node
            .last_run_at
            .as_deref()
            .map_or_else(|| "never".to_owned(), |t| timestamp(t, now)),
        compile_error: node
            .compile_error
            .as_ref()
            .map(|e| e.diagnostics.clone())
            .unwrap_or_default(),
        runs_summary,
        chart: chart::timeline(
            "node-chart",
            "this node's runs by status over time, and each run's duration",
            &node_timeline(&state, &name, range, now).await?,
        ),
        chart_range: range.label,
        range_links: chart::range_links(
            &format!("/nodes/{}", urlencode(&name)),
            &if before.is_some() {
                format!("before={}", urlencode(params.before.trim()))
            } else {
                String::new()
            },
            range,
        ),
        runs: runs.iter().map(|r| RunRow::new(r, now)).collect(),
        paged: before.is_some(),
        newest_href: node_href(&name, "", &params.range),
        older_href,
        facts: flatten_facts(&node.facts),
        name,
    };
    page(&view)
}

/// The node page of `name` from `before` on (empty: the newest runs), its
/// chart over `range` (empty: the default), so paging keeps the range.
fn node_href(name: &str, before: &str, range: &str) -> String {
    let query: Vec<String> = [("before", before), ("range", range.trim())]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let path = format!("/nodes/{}", urlencode(name));
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn timestamp(rfc3339: &str, now: jiff::Timestamp) -> String {
    format!("{} ({})", format::when(rfc3339), format::ago(rfc3339, now))
}

/// Facts as `os.id = "debian"` lines, sorted by path.
fn flatten_facts(facts: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, value, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    if facts.as_object().is_some_and(|m| !m.is_empty()) {
        walk("", facts, &mut out);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_flatten_to_dotted_paths() {
        let facts = serde_json::json!({"os": {"id": "debian", "version": 12}, "tags": ["a"]});
        assert_eq!(
            flatten_facts(&facts),
            vec![
                ("os.id".to_owned(), "debian".to_owned()),
                ("os.version".to_owned(), "12".to_owned()),
                ("tags".to_owned(), "[\"a\"]".to_owned()),
            ]
        );
        assert!(flatten_facts(&serde_json::json!({})).is_empty());
    }
}
