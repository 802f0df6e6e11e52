//! `GET /`: the fleet at a glance: nodes per state, runs per hour, the nodes
//! (filtered, a page at a time), and what each environment serves.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::page::{page, sign_in_first};
use super::{chart, format};
use crate::auth::Caller;
use crate::error::AppError;
use crate::fleet::{self, Filter, FilterText, NodeLine, NodeState, StateFilter, urlencode};
use crate::routes::operator::environments_view;
use crate::state::AppState;

/// Nodes per page.
pub(super) const PAGE_SIZE: u32 = 100;
/// Hours the fleet chart covers.
const CHART_HOURS: i64 = 48;

/// The query string, as typed into the filter form (empty means unset).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    #[serde(flatten)]
    filter: FilterText,
    #[serde(default)]
    after: String,
}

impl Params {
    /// The filter, or why a part of it cannot be used (that part is
    /// ignored): the same parse as the node API's.
    fn filter(&self) -> (Filter, Option<String>) {
        self.filter.parse()
    }

    /// This query string with `after` replaced (`None`: the first page).
    fn href(&self, after: Option<&str>) -> String {
        let query = self.filter.query(&[("after", after.unwrap_or_default())]);
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }
}

struct Card {
    state: &'static str,
    label: &'static str,
    count: i64,
    selected: bool,
}

struct SelectOption {
    value: String,
    label: String,
    selected: bool,
}

struct FormText<'a> {
    q: &'a str,
    role: &'a str,
    fact: &'a str,
}

struct Row {
    name: String,
    href: String,
    state: &'static str,
    state_label: &'static str,
    stale: bool,
    compile_error: bool,
    /// Cordoned or drained.
    maintenance: bool,
    environment: String,
    roles: String,
    last_run_href: Option<String>,
    last_run_at: String,
    last_run_ago: String,
    duration: String,
    /// The commit its last run applied, short; its subject when it is an
    /// environment's head, and its forge page when `commit_url` is set.
    commit: String,
    commit_title: String,
    commit_href: Option<String>,
}

/// What the page says of a commit: its subject, author and time (known for
/// the environments' heads), and its forge link.
struct Commits<'a> {
    known: std::collections::HashMap<String, crate::git::CommitInfo>,
    config: &'a crate::config::Config,
}

impl Commits<'_> {
    fn title(&self, commit: &str) -> String {
        self.known.get(commit).map_or_else(String::new, |i| {
            format!("{} ({}, {})", i.subject, i.author, format::when(&i.time))
        })
    }
}

impl Row {
    fn new(n: NodeLine, now: jiff::Timestamp, commits: &Commits<'_>) -> Row {
        let commit = n.last_commit.as_deref().unwrap_or_default();
        let last_run_at = n.last_run_at.as_deref().unwrap_or_default();
        Row {
            href: format!("/nodes/{}", urlencode(&n.name)),
            state: n.state.as_str(),
            state_label: n.state.label(),
            stale: n.stale,
            compile_error: n.has_compile_error,
            maintenance: n.cordoned,
            environment: format::or_dash(n.environment.as_deref()),
            roles: n.roles.join(", "),
            last_run_href: n
                .last_run_id
                .as_deref()
                .map(|id| format!("/runs/{}", urlencode(id))),
            last_run_at: format::when(last_run_at),
            last_run_ago: format::ago(last_run_at, now),
            duration: n
                .last_duration_ms
                .map_or_else(|| "-".to_owned(), format::duration_ms),
            commit: if commit.is_empty() {
                "-".to_owned()
            } else {
                format::short(commit)
            },
            commit_title: commits.title(commit),
            commit_href: commits.config.commit_link(commit),
            name: n.name,
        }
    }
}

struct EnvRow {
    name: String,
    commit: String,
    /// `subject (author, time)`; empty in development mode.
    commit_said: String,
    commit_href: Option<String>,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview<'a> {
    filter: FormText<'a>,
    filter_error: Option<String>,
    state_options: Vec<SelectOption>,
    environment_options: Vec<SelectOption>,
    cards: Vec<Card>,
    total_nodes: i64,
    chart_hours: i64,
    chart: String,
    page_summary: String,
    nodes: Vec<Row>,
    paged: bool,
    first_href: String,
    next_href: Option<String>,
    page_size: u32,
    source: &'static str,
    default_environment: String,
    refreshed_at: String,
    refresh_error: Option<String>,
    environments: Vec<EnvRow>,
    cluster: ClusterView,
}

/// The servers sharing the database, as the overview lists them.
struct ClusterView {
    database: &'static str,
    leader: String,
    servers: Vec<ServerRow>,
}

struct ServerRow {
    id: String,
    listen: String,
    version: String,
    heartbeat: String,
    role: String,
    this: bool,
}

impl ClusterView {
    fn of(status: crate::cluster::ClusterStatus) -> ClusterView {
        let term = status.leader.as_ref().map_or(0, |l| l.term);
        ClusterView {
            database: status.database,
            leader: status.leader.as_ref().map_or_else(
                || "none (an election is due)".to_owned(),
                |l| format!("{} (term {})", l.id, l.term),
            ),
            servers: status
                .servers
                .into_iter()
                .map(|s| ServerRow {
                    this: s.id == status.this_server,
                    role: if s.leader {
                        format!("leader, term {term}")
                    } else {
                        "follower".to_owned()
                    },
                    heartbeat: format!("{:.1} s ago", s.heartbeat_age_ms.max(0) as f64 / 1000.0),
                    id: s.id,
                    listen: s.listen,
                    version: s.version,
                })
                .collect(),
        }
    }
}

async fn build(state: &AppState, params: &Params) -> Result<Response, AppError> {
    let now = jiff::Timestamp::now();
    let ctx = state.fleet_context();
    let (filter, filter_error) = params.filter();
    let after = Some(params.after.as_str()).filter(|a| !a.is_empty());
    let counts = fleet::counts(&state.db, &ctx).await?;
    let nodes = fleet::page(&state.db, &ctx, &filter, after, PAGE_SIZE).await?;
    let history = fleet::fleet_history(&state.db, now.as_microsecond(), CHART_HOURS).await?;
    let envs = environments_view(state).await?;
    let commits = Commits {
        known: state
            .snapshots
            .list()
            .iter()
            .filter_map(|snap| Some((snap.commit.clone(), snap.info.clone()?)))
            .collect(),
        config: &state.config,
    };
    let cluster = ClusterView::of(state.cluster.status().await?);
    let selected = filter.state.map(StateFilter::as_str);
    let mut cards: Vec<Card> = NodeState::ALL
        .into_iter()
        .map(|s| Card {
            state: s.as_str(),
            label: s.label(),
            count: counts.get(s),
            selected: selected == Some(s.as_str()),
        })
        .collect();
    cards.push(Card {
        state: "stale",
        label: "stale catalog",
        count: counts.stale,
        selected: selected == Some("stale"),
    });
    let state_options = cards
        .iter()
        .map(|c| SelectOption {
            value: c.state.to_owned(),
            label: c.label.to_owned(),
            selected: c.selected,
        })
        .collect();
    let environment_options = envs
        .environments
        .iter()
        .map(|e| SelectOption {
            value: e.name.clone(),
            label: e.name.clone(),
            selected: filter.environment.as_deref() == Some(e.name.as_str()),
        })
        .collect();
    let shown = nodes.nodes.len();
    let page_summary = match (shown, after.is_some()) {
        (0, _) => format!("0 of {}", nodes.total),
        (n, false) if i64::try_from(n).ok() == Some(nodes.total) => format!("{n}"),
        (n, _) => format!(
            "{n} of {} matching, from {}",
            nodes.total,
            nodes
                .nodes
                .first()
                .map(|r| r.name.as_str())
                .unwrap_or_default()
        ),
    };
    let environments = envs
        .environments
        .iter()
        .map(|env| {
            let mut errors = env.parse_errors.clone();
            for ce in &env.compile_errors {
                errors.extend(
                    ce.error
                        .diagnostics
                        .iter()
                        .map(|d| format!("{}: {d}", ce.node)),
                );
            }
            EnvRow {
                name: env.name.clone(),
                commit: env.commit.clone(),
                commit_said: match (&env.commit_subject, &env.commit_author, &env.commit_time) {
                    (Some(subject), Some(author), Some(time)) => {
                        format!("{subject} ({author}, {})", format::when(time))
                    }
                    _ => String::new(),
                },
                commit_href: env.commit_url.clone(),
                errors,
            }
        })
        .collect();
    let view = Overview {
        filter: FormText {
            q: &params.filter.q,
            role: &params.filter.role,
            fact: &params.filter.fact,
        },
        filter_error,
        state_options,
        environment_options,
        cards,
        total_nodes: counts.total,
        chart_hours: CHART_HOURS,
        chart: chart::fleet(&history),
        page_summary,
        nodes: nodes
            .nodes
            .into_iter()
            .map(|n| Row::new(n, now, &commits))
            .collect(),
        paged: after.is_some(),
        first_href: params.href(None),
        next_href: nodes.next_after.as_deref().map(|a| params.href(Some(a))),
        page_size: PAGE_SIZE,
        source: envs.source,
        default_environment: envs.default_environment,
        refreshed_at: envs
            .refreshed_at
            .map_or_else(|| "never".to_owned(), |t| format::when(&t.to_string())),
        refresh_error: envs.refresh_error,
        environments,
        cluster,
    };
    page(&view)
}

/// `GET /?q=&state=&role=&environment=&fact=&after=`.
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    if let Some(login) = sign_in_first(&caller) {
        return Ok(login);
    }
    build(&state, &params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_fact_filter_is_explained_and_ignored() {
        let params = Params {
            filter: FilterText {
                fact: "os.id".into(),
                q: " web ".into(),
                ..FilterText::default()
            },
            ..Params::default()
        };
        let (filter, error) = params.filter();
        assert!(filter.fact.is_none());
        assert_eq!(filter.name.as_deref(), Some("web"));
        assert!(error.unwrap().contains("KEY=VALUE"));
    }

    #[test]
    fn paging_links_keep_the_filters() {
        let params = Params {
            filter: FilterText {
                state: "failed".into(),
                fact: "os.id=debian 12".into(),
                ..FilterText::default()
            },
            ..Params::default()
        };
        assert_eq!(
            params.href(Some("web-100")),
            "/?state=failed&fact=os.id%3Ddebian%2012&after=web-100"
        );
        assert_eq!(Params::default().href(None), "/");
    }
}
