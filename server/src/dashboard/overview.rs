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
use crate::fleet::{
    self, Cursor, Filter, FilterText, NodeLine, NodeState, Sort, SortKey, StateFilter, urlencode,
};
use crate::routes::operator::environments_view;
use crate::state::AppState;

/// Nodes per page.
pub(super) const PAGE_SIZE: u32 = 100;

/// The query string, as typed into the filter form (empty means unset).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    #[serde(flatten)]
    filter: FilterText,
    /// `KEY` or `-KEY` (descending); triage order when empty.
    #[serde(default)]
    sort: String,
    /// The chart's range (`6h`, `24h`, `7d`, `14d`).
    #[serde(default)]
    range: String,
    #[serde(default)]
    after: String,
}

/// What the query string asks for once read: each part that cannot be used
/// is left at its default and said in `errors`.
struct Asked {
    filter: Filter,
    sort: Sort,
    range: chart::Range,
    after: Option<Cursor>,
    errors: Vec<String>,
}

impl Params {
    /// The filter (the same parse as the node API's), the order, the
    /// chart's range and the page.
    fn read(&self) -> Asked {
        let (filter, filter_error) = self.filter.parse();
        let mut errors: Vec<String> = filter_error.into_iter().collect();
        let sort = match self.sort.trim() {
            "" => Sort::default(),
            text => Sort::parse(text).unwrap_or_else(|| {
                let keys: Vec<&str> = SortKey::ALL.iter().map(|k| k.as_str()).collect();
                errors.push(format!(
                    "unknown sort `{text}`: one of {}, `-` first for descending",
                    keys.join(", ")
                ));
                Sort::default()
            }),
        };
        let range = chart::Range::parse(&self.range).unwrap_or_else(|e| {
            errors.push(e);
            chart::RANGES[1]
        });
        let after = match self.after.trim() {
            "" => None,
            text => sort.parse_cursor(text).map_or_else(
                |e| {
                    errors.push(format!("{e}; showing the first page"));
                    None
                },
                Some,
            ),
        };
        Asked {
            filter,
            sort,
            range,
            after,
            errors,
        }
    }

    /// This query string with the order, the range and the page replaced
    /// (the defaults are left out).
    fn href_with(&self, sort: &str, range: &str, after: Option<&str>) -> String {
        let sort = Some(sort).filter(|s| *s != Sort::default().as_param());
        let range = Some(range).filter(|r| *r != chart::RANGES[1].param);
        let query = self.filter.query(&[
            ("sort", sort.unwrap_or_default()),
            ("range", range.unwrap_or_default()),
            ("after", after.unwrap_or_default()),
        ]);
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }

    /// This query string with `after` replaced (`None`: the first page).
    fn href(&self, asked: &Asked, after: Option<&str>) -> String {
        self.href_with(&asked.sort.as_param(), asked.range.param, after)
    }
}

/// A column heading of the node table: a link that sorts by it (the other
/// way when it is the order already).
struct Heading {
    label: &'static str,
    href: String,
    /// `ascending`/`descending` on the column the list is sorted by.
    aria_sort: &'static str,
}

fn headings(params: &Params, asked: &Asked) -> Vec<Heading> {
    [
        (SortKey::Name, "node"),
        (SortKey::State, "state"),
        (SortKey::Environment, "environment"),
        (SortKey::Roles, "roles"),
        (SortKey::LastRun, "last run"),
        (SortKey::Duration, "duration"),
        (SortKey::Commit, "commit"),
    ]
    .into_iter()
    .map(|(key, label)| Heading {
        label,
        href: params.href_with(&asked.sort.toggled(key).as_param(), asked.range.param, None),
        aria_sort: match (asked.sort.key == key, asked.sort.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        },
    })
    .collect()
}

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
        let mut known: std::collections::HashMap<String, crate::git::CommitInfo> = state
            .snapshots
            .list()
            .iter()
            .filter_map(|snap| Some((snap.commit.clone(), snap.info.clone()?)))
            .collect();
        let others: Vec<&str> = nodes
            .iter()
            .filter_map(|n| n.last_commit.as_deref())
            .filter(|c| !known.contains_key(*c))
            .collect();
        known.extend(state.snapshots.commits.describe(others).await);
        Commits {
            known,
            config: &state.config,
        }
    }

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
            corrective: n.corrective,
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
    chart_range: &'static str,
    range_links: Vec<super::node::RangeLink>,
    chart: String,
    headings: Vec<Heading>,
    triage: bool,
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

fn env_rows(envs: &crate::routes::operator::Environments) -> Vec<EnvRow> {
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
            .map(|r| super::node::RangeLink {
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
        environments: env_rows(&envs),
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
        let asked = params.read();
        assert!(asked.filter.fact.is_none());
        assert_eq!(asked.filter.name.as_deref(), Some("web"));
        assert!(asked.errors[0].contains("KEY=VALUE"));
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
        let asked = params.read();
        assert_eq!(
            params.href(&asked, Some("[0,\"web-100\"]")),
            "/?state=failed&fact=os.id%3Ddebian%2012&after=%5B0%2C%22web-100%22%5D"
        );
        assert_eq!(Params::default().href(&Params::default().read(), None), "/");
    }

    #[test]
    fn sorting_and_ranges_are_kept_and_bad_ones_explained() {
        let params = Params {
            sort: "-last_run".into(),
            range: "7d".into(),
            after: "web-1".into(),
            ..Params::default()
        };
        let asked = params.read();
        assert_eq!(asked.sort.as_param(), "-last_run");
        assert_eq!(asked.range.param, "7d");
        assert!(asked.after.is_none(), "a name is no cursor of this order");
        assert!(
            asked.errors[0].contains("does not fit"),
            "{:?}",
            asked.errors
        );
        assert_eq!(params.href(&asked, None), "/?sort=-last_run&range=7d");
        let names = headings(&params, &asked);
        assert_eq!(names[4].aria_sort, "descending");
        assert_eq!(names[4].href, "/?sort=last_run&range=7d");
        assert_eq!(names[0].href, "/?sort=name&range=7d");
        let bad = Params {
            sort: "size".into(),
            range: "1y".into(),
            ..Params::default()
        }
        .read();
        assert_eq!(bad.sort, Sort::default());
        assert_eq!(bad.errors.len(), 2, "{:?}", bad.errors);
    }
}
