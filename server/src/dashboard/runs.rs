//! `GET /runs` (every node's runs) and `GET /changes` (every resource
//! event), filtered by the form both share (`run_filters.html`): status,
//! node, environment, resource, corrective, and a time range (6 h, 24 h,
//! 7 d, 14 d, or a custom since/until), a page at a time with a "next page"
//! link that keeps the filters, and links to the same list as CSV and JSON
//! (the API routes, which take the dashboard's cookie). The lists and
//! their filters are `crate::runs`'s, as the API serves them.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::page::{SignedIn, render};
use super::{chart, format};
use crate::db::ReportSummary;
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::runs::{self, EventLine, List, RunsQuery};
use crate::state::AppState;

/// The time ranges the form offers, as `since` ages.
/// The query string: the API's filter, and the form's time range.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    #[serde(flatten)]
    query: RunsQuery,
    /// One of the charts' ranges (`chart::RANGES`: an age back from now),
    /// `custom` (since/until as typed), or empty.
    #[serde(default)]
    range: String,
}

impl Params {
    /// The filter the list is read with: a preset range is its `since`.
    fn effective(&self) -> RunsQuery {
        let mut query = self.query.clone();
        if chart::RANGES.iter().any(|r| r.param == self.range) {
            query.since = self.range.clone();
            query.until = String::new();
        }
        query
    }

    /// This page's URL under `path`, with `after` replaced.
    fn href(&self, path: &str, after: Option<&str>) -> String {
        let query = self.query.query(&[
            ("range", &self.range),
            ("limit", &self.query.limit),
            ("after", after.unwrap_or_default()),
        ]);
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    }
}

struct SelectOption {
    value: &'static str,
    label: String,
    selected: bool,
}

/// The form as typed, and what it offers.
struct Form {
    action: &'static str,
    statuses: Vec<SelectOption>,
    ranges: Vec<SelectOption>,
    node: String,
    environment: String,
    resource: String,
    corrective: bool,
    since: String,
    until: String,
    error: Option<String>,
    /// The same list as a download.
    csv_href: String,
    json_href: String,
}

impl Form {
    fn new(
        action: &'static str,
        list: List,
        params: &Params,
        api: &str,
        error: Option<String>,
    ) -> Form {
        let statuses: &[&'static str] = match list {
            List::Runs => &["changed", "noop", "unchanged", "failed"],
            List::Events => &["changed", "noop", "failed", "skipped"],
        };
        let q = &params.query;
        let export = |format| {
            let query = params.effective().query(&[("format", format)]);
            format!("{api}?{query}")
        };
        let range = if params.range.is_empty() && !(q.since.is_empty() && q.until.is_empty()) {
            "custom"
        } else {
            params.range.as_str()
        };
        Form {
            action,
            statuses: statuses
                .iter()
                .map(|s| SelectOption {
                    value: s,
                    label: (*s).to_owned(),
                    selected: q.status.trim() == *s,
                })
                .collect(),
            ranges: chart::RANGES
                .iter()
                .map(|r| (r.param, format!("last {}", r.label)))
                .chain([("custom", "custom since/until".to_owned())])
                .map(|(value, label)| SelectOption {
                    value,
                    label,
                    selected: range == value,
                })
                .collect(),
            node: q.node.clone(),
            environment: q.environment.clone(),
            resource: q.resource.clone(),
            corrective: !matches!(q.corrective.trim(), "" | "false" | "0" | "off"),
            since: q.since.clone(),
            until: q.until.clone(),
            error,
            csv_href: export("csv"),
            json_href: export("json"),
        }
    }
}

struct RunRow {
    href: String,
    node: String,
    node_href: String,
    status: String,
    noop: bool,
    environment: String,
    finished_at: String,
    finished_ago: String,
    duration: String,
    changed: i64,
    failed: i64,
    resources: i64,
    commit: String,
    /// `subject (author, time)` when the mirror has the commit.
    commit_said: String,
    commit_href: Option<String>,
}

impl RunRow {
    fn new(
        r: ReportSummary,
        now: jiff::Timestamp,
        said: &std::collections::HashMap<String, String>,
        config: &crate::config::Config,
    ) -> RunRow {
        RunRow {
            commit_said: said.get(&r.commit).cloned().unwrap_or_default(),
            commit_href: config.commit_link(&r.commit),
            href: super::run::href(&r.node, &r.id),
            node_href: format!("/nodes/{}", urlencode(&r.node)),
            finished_ago: format::ago(&r.finished_at, now),
            finished_at: format::when(&r.finished_at),
            duration: format::duration_ms(r.duration_ms),
            commit: format::short(&r.commit),
            node: r.node,
            status: r.status,
            noop: r.noop,
            environment: r.environment,
            changed: r.changed,
            failed: r.failed,
            resources: r.resources,
        }
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    form: Form,
    runs: Vec<RunRow>,
    first_href: Option<String>,
    next_href: Option<String>,
}

struct EventRow {
    href: String,
    node: String,
    node_href: String,
    resource: String,
    resource_href: String,
    status: String,
    corrective: bool,
    finished_at: String,
    finished_ago: String,
    summary: String,
}

impl EventRow {
    fn new(e: EventLine, now: jiff::Timestamp) -> EventRow {
        EventRow {
            href: super::run::href(&e.node, &e.run_id),
            node_href: format!("/nodes/{}", urlencode(&e.node)),
            resource_href: format!("/changes?resource={}", urlencode(&e.resource)),
            finished_ago: format::ago(&e.finished_at, now),
            finished_at: format::when(&e.finished_at),
            node: e.node,
            resource: e.resource,
            status: e.status,
            corrective: e.corrective,
            summary: e.summary,
        }
    }
}

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    form: Form,
    events: Vec<EventRow>,
    first_href: Option<String>,
    next_href: Option<String>,
}

/// `GET /runs?status=&node=&environment=&resource=&corrective=&range=&since=&until=&after=`.
pub(super) async fn list(
    State(state): State<AppState>,
    _: SignedIn,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    let now = jiff::Timestamp::now();
    let (rows, next, error) = match params.effective().parse(List::Runs, now) {
        Ok(filter) => {
            let page = runs::runs(&state.db, &filter).await?;
            (page.runs, page.next_after, None)
        }
        Err(error) => (Vec::new(), None, Some(error)),
    };
    let status = status_of(error.as_ref());
    let said = super::commit::said_of_all(&state, rows.iter().map(|r| r.commit.as_str())).await;
    let view = RunsPage {
        form: Form::new("/runs", List::Runs, &params, "/api/v1/reports", error),
        runs: rows
            .into_iter()
            .map(|r| RunRow::new(r, now, &said, &state.config))
            .collect(),
        first_href: first(&params, "/runs"),
        next_href: next.map(|a| params.href("/runs", Some(&a))),
    };
    render(status, &view)
}

/// `GET /changes`, with the filters of `/runs`.
pub(super) async fn changes(
    State(state): State<AppState>,
    _: SignedIn,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    let now = jiff::Timestamp::now();
    let (rows, next, error) = match params.effective().parse(List::Events, now) {
        Ok(filter) => {
            let page = runs::events(&state.db, &filter).await?;
            (page.events, page.next_after, None)
        }
        Err(error) => (Vec::new(), None, Some(error)),
    };
    let status = status_of(error.as_ref());
    let view = ChangesPage {
        form: Form::new(
            "/changes",
            List::Events,
            &params,
            "/api/v1/reports/events",
            error,
        ),
        events: rows.into_iter().map(|e| EventRow::new(e, now)).collect(),
        first_href: first(&params, "/changes"),
        next_href: next.map(|a| params.href("/changes", Some(&a))),
    };
    render(status, &view)
}

/// A filter that cannot be used answers 400, with the form and the reason.
fn status_of(error: Option<&String>) -> StatusCode {
    if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// The first page's link, on a later page.
fn first(params: &Params, path: &str) -> Option<String> {
    (!params.query.after.is_empty()).then(|| params.href(path, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preset_range_is_a_since_and_links_keep_every_filter() {
        let params = Params {
            query: RunsQuery {
                resource: "file:/etc/motd".into(),
                since: "2026-01-01T00:00:00Z".into(),
                ..RunsQuery::default()
            },
            range: "24h".into(),
        };
        assert_eq!(params.effective().since, "24h");
        assert_eq!(
            params.href("/runs", Some("5.6")),
            "/runs?resource=file%3A%2Fetc%2Fmotd&since=2026-01-01T00%3A00%3A00Z&range=24h&after=5.6"
        );
        let form = Form::new("/runs", List::Runs, &params, "/api/v1/reports", None);
        assert_eq!(
            form.csv_href,
            "/api/v1/reports?resource=file%3A%2Fetc%2Fmotd&since=24h&format=csv"
        );
        assert!(form.ranges.iter().any(|r| r.value == "24h" && r.selected));
    }
}
