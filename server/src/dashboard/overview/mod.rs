//! `GET /`: the fleet at a glance, triage first: the state cards, the nodes
//! (filtered, in the order asked for, a page at a time; `query.rs` reads
//! the query string, `download.rs` gives every match as JSON or CSV), the
//! runs over a chosen range, and what each environment serves.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;

mod download;
mod query;

use super::page::{SignedIn, page};
use super::{chart, format};
use crate::error::AppError;
use crate::export;
use crate::fleet::{self, NodeLine, NodeState, Sort, StateFilter, urlencode};
use crate::routes::operator::environments_view;
use crate::state::AppState;
use query::{Heading, Params, headings};

/// Nodes per page.
pub(super) const PAGE_SIZE: u32 = 100;

struct Card {
    state: &'static str,
    label: &'static str,
    count: i64,
    selected: bool,
    /// Needs an operator: failed, compile error, unresponsive.
    alarm: bool,
}

/// The state cards in triage order, each opening its list.
fn cards(counts: &fleet::Counts, selected: Option<&str>) -> Vec<Card> {
    let card = |state: &'static str, label: &'static str, count: i64, alarm: bool| Card {
        state,
        label,
        count,
        selected: selected == Some(state),
        alarm: alarm && count > 0,
    };
    let of = |s: NodeState, alarm: bool| card(s.as_str(), s.label(), counts.get(s), alarm);
    vec![
        of(NodeState::Failed, true),
        card("compile_error", "compile error", counts.compile_error, true),
        card("corrective", "repaired drift", counts.corrective, false),
        of(NodeState::NoopPending, false),
        of(NodeState::Unresponsive, true),
        card("stale", "stale catalog", counts.stale, false),
        of(NodeState::Changed, false),
        of(NodeState::NeverReported, false),
        of(NodeState::Unchanged, false),
    ]
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
    /// Kept through the form, which only filters.
    sort: String,
    range: &'static str,
}

struct Row {
    name: String,
    href: String,
    state: &'static str,
    state_label: &'static str,
    stale: bool,
    compile_error: bool,
    /// Resources its last run repaired.
    corrective: i64,
    /// Cordoned or drained.
    maintenance: bool,
    environment: String,
    roles: String,
    last_run_href: Option<String>,
    last_run_at: String,
    last_run_ago: String,
    duration: String,
    /// The commit its last run applied, short; its subject, author and time
    /// (when the mirror has it), and its forge page when `commit_url` is set.
    commit: String,
    commit_title: String,
    commit_href: Option<String>,
}

/// What the page says of a commit: its subject, author and time (read from
/// the mirror), and its forge link.
struct Commits<'a> {
    known: std::collections::HashMap<String, crate::git::CommitInfo>,
    config: &'a crate::config::Config,
}

impl Commits<'_> {
    /// The environments' heads, and the commits the listed nodes ran.
    async fn of<'a>(state: &'a AppState, nodes: &[NodeLine]) -> Commits<'a> {
        let heads = state.snapshots.list();
        let ran = nodes.iter().filter_map(|n| n.last_commit.as_deref());
        let commits = heads.iter().map(|s| s.commit.as_str()).chain(ran);
        Commits {
            known: super::commit::infos(state, commits).await,
            config: &state.config,
        }
    }

    fn title(&self, commit: &str) -> String {
        self.known
            .get(commit)
            .map_or_else(String::new, super::commit::text)
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
            corrective: n.corrective,
            maintenance: n.cordoned,
            environment: format::or_dash(n.environment.as_deref()),
            roles: n.roles.join(", "),
            last_run_href: n
                .last_run_id
                .as_deref()
                .map(|id| super::run::href(&n.name, id)),
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
    chart_range: &'static str,
    range_links: Vec<chart::RangeLink>,
    chart: String,
    headings: Vec<Heading>,
    triage: bool,
    json_href: String,
    csv_href: String,
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
    cluster: super::cluster::ClusterView,
}

/// "12", "12 of 340 matching, from web-07" or "0 of 340".
fn page_summary(nodes: &fleet::NodePage, paged: bool) -> String {
    match (nodes.nodes.len(), paged) {
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
    }
}

fn env_rows(envs: &crate::routes::operator::Environments, commits: &Commits<'_>) -> Vec<EnvRow> {
    envs.environments
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
                commit_said: commits.title(&env.commit),
                commit_href: env.commit_url.clone(),
                errors,
            }
        })
        .collect()
}

async fn build(state: &AppState, params: &Params) -> Result<Response, AppError> {
    let now = jiff::Timestamp::now();
    let ctx = state.fleet_context();
    let asked = params.read();
    let filter = &asked.filter;
    let counts = fleet::counts(&state.db, &ctx).await?;
    let nodes = fleet::page(
        &state.db,
        &ctx,
        filter,
        asked.sort,
        asked.after.as_ref(),
        PAGE_SIZE,
    )
    .await?;
    let history =
        fleet::fleet_history(&state.db, now.as_microsecond(), asked.range.hours() + 1).await?;
    let timeline = chart::Timeline::of_hours(asked.range, now.as_microsecond(), &history);
    let envs = environments_view(state).await?;
    let commits = Commits::of(state, &nodes.nodes).await;
    let cluster = super::cluster::ClusterView::of(state.cluster.status().await?);
    let cards = cards(&counts, filter.state.map(StateFilter::as_str));
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
    let paged = asked.after.is_some();
    let view = Overview {
        filter: FormText {
            q: &params.filter.q,
            role: &params.filter.role,
            fact: &params.filter.fact,
            sort: asked.sort.as_param(),
            range: asked.range.param,
        },
        filter_error: (!asked.errors.is_empty()).then(|| asked.errors.join("; ")),
        state_options,
        environment_options,
        cards,
        total_nodes: counts.total,
        chart_range: asked.range.label,
        range_links: chart::RANGES
            .into_iter()
            .map(|r| chart::RangeLink {
                label: r.label,
                href: params.href_with(&asked.sort.as_param(), r.param, None),
                selected: r == asked.range,
            })
            .collect(),
        chart: chart::timeline(
            "fleet-chart",
            "the fleet's runs by status over time, and their mean duration",
            &timeline,
        ),
        headings: headings(params, &asked),
        json_href: params.download_href(&asked, "json"),
        csv_href: params.download_href(&asked, "csv"),
        triage: asked.sort == Sort::default(),
        page_summary: page_summary(&nodes, paged),
        nodes: nodes
            .nodes
            .into_iter()
            .map(|n| Row::new(n, now, &commits))
            .collect(),
        paged,
        first_href: params.href(&asked, None),
        next_href: nodes
            .next_after
            .as_deref()
            .map(|a| params.href(&asked, Some(a))),
        page_size: PAGE_SIZE,
        source: envs.source,
        default_environment: envs.default_environment.clone(),
        refreshed_at: envs
            .refreshed_at
            .map_or_else(|| "never".to_owned(), |t| format::when(&t.to_string())),
        refresh_error: envs.refresh_error.clone(),
        environments: env_rows(&envs, &commits),
        cluster,
    };
    page(&view)
}

/// `GET /?q=&state=&role=&environment=&fact=&sort=&range=&after=&format=`.
pub(super) async fn show(
    State(state): State<AppState>,
    _: SignedIn,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    match export::Format::parse(&params.format)? {
        export::Format::Html => build(&state, &params).await,
        format => download::export(&state, &params.read(), format).await,
    }
}
