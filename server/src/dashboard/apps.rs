//! `GET /apps`: every app with its replicas (where each runs, its state, why
//! a pending one waits) and the capacity of one environment's fleet against
//! what the placed replicas request, with the packing lower bound (the room
//! for consolidation); `GET /apps/{name}`: one app's replicas, each with the
//! scheduler's decision laid out as `drover-server explain` prints it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use drover_catalog::schedule::{Decision, Verdict};
use serde::Deserialize;

use super::format;
use super::page::{SignedIn, page, render};
use crate::apps::update::short;
use crate::apps::view::{self, AppStatus, Capacity, Quantities, ReplicaStatus};
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::state::AppState;

/// The query string: `?environment=` (empty means every environment for
/// the apps and the default one for the capacity).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    environment: String,
}

impl Params {
    fn environment(&self) -> Option<&str> {
        Some(self.environment.trim()).filter(|e| !e.is_empty())
    }
}

struct ReplicaRow {
    index: u32,
    node: Option<String>,
    node_href: String,
    container: String,
    address: String,
    state: String,
    since: String,
    since_at: String,
    reason: Option<String>,
    /// `moving to NODE (spec abcd1234)` while a replacement runs beside it.
    moving: Option<String>,
}

impl ReplicaRow {
    fn new(r: &ReplicaStatus, now: jiff::Timestamp) -> ReplicaRow {
        // A replica no report speaks of yet is as old as its decision.
        let since = r.since.as_deref().unwrap_or(&r.decided_at);
        ReplicaRow {
            index: r.index,
            node_href: r
                .node
                .as_deref()
                .map(|n| format!("/nodes/{}", urlencode(n)))
                .unwrap_or_default(),
            node: r.node.clone(),
            container: format::or_dash(r.container.as_deref()),
            address: format::or_dash(r.address.as_deref()),
            state: r.state.clone(),
            since: format::ago(since, now),
            since_at: format::when(since),
            reason: r.node.is_none().then(|| {
                r.reason
                    .clone()
                    .unwrap_or_else(|| "not yet scheduled".to_owned())
            }),
            moving: r.moving_to.as_ref().map(|node| {
                let spec = r.moving_spec.as_deref().unwrap_or_default();
                format!("moving to {node} (spec {})", short(spec))
            }),
        }
    }
}

struct AppRow {
    name: String,
    environment: String,
    href: String,
    desired: u32,
    up: usize,
    pending: usize,
    requests: String,
    spread: Option<String>,
    errors: Vec<String>,
    /// The update's state and what it says, unless it is done.
    update: Option<(String, String)>,
    replicas: Vec<ReplicaRow>,
}

impl AppRow {
    fn new(app: &AppStatus, now: jiff::Timestamp) -> AppRow {
        AppRow {
            name: app.name.clone(),
            environment: app.environment.clone(),
            href: app_href(&app.name, &app.environment),
            desired: app.desired,
            up: app
                .replicas
                .iter()
                .filter(|r| matches!(r.state.as_str(), "running" | "healthy"))
                .count(),
            pending: app.replicas.iter().filter(|r| r.node.is_none()).count(),
            requests: requests(&app.requests),
            spread: app.spread.clone(),
            errors: app.errors.clone(),
            update: app.update.as_ref().filter(|u| u.state != "done").map(|u| {
                (
                    u.state.clone(),
                    format!(
                        "to spec {}{}",
                        short(&u.spec_hash),
                        u.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                )
            }),
            replicas: app
                .replicas
                .iter()
                .map(|r| ReplicaRow::new(r, now))
                .collect(),
        }
    }
}

fn app_href(name: &str, environment: &str) -> String {
    format!(
        "/apps/{}?environment={}",
        urlencode(name),
        urlencode(environment)
    )
}

/// `0.5 CPU, 64 MiB memory`: what one replica reserves, zeros left out.
fn requests(q: &Quantities) -> String {
    let mut parts = Vec::new();
    if q.cpu > 0.0 {
        parts.push(format!("{} CPU", format::cpus(q.cpu)));
    }
    if q.memory_bytes > 0 {
        parts.push(format!("{} memory", format::bytes(q.memory_bytes)));
    }
    if q.disk_bytes > 0 {
        parts.push(format!("{} disk", format::bytes(q.disk_bytes)));
    }
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    }
}

/// One resource of the fleet: requested against capacity.
struct Gauge {
    resource: &'static str,
    requested: String,
    capacity: String,
    /// For `<meter>`: 0..=1 (an over-committed fleet shows full).
    ratio: String,
    percent: String,
    over: bool,
}

impl Gauge {
    fn new(
        resource: &'static str,
        requested: f64,
        capacity: f64,
        show: fn(f64) -> String,
    ) -> Gauge {
        let ratio = if capacity > 0.0 {
            requested / capacity
        } else if requested > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        let percent = match ratio * 100.0 {
            p if !p.is_finite() => "no capacity".to_owned(),
            p if p > 0.0 && p < 1.0 => "<1%".to_owned(),
            p => format!("{p:.0}%"),
        };
        Gauge {
            resource,
            requested: show(requested),
            capacity: show(capacity),
            ratio: format!("{:.4}", ratio.clamp(0.0, 1.0)),
            percent,
            over: ratio > 1.0,
        }
    }
}

struct NodeRow {
    name: String,
    href: String,
    cpu: String,
    memory: String,
    disk: String,
    replicas: usize,
    health: String,
    cordoned: bool,
}

struct CapacityView {
    environment: String,
    gauges: Vec<Gauge>,
    nodes_used: usize,
    lower_bound: usize,
    packing: String,
    nodes: Vec<NodeRow>,
}

fn show_cpus(cpu: f64) -> String {
    format!("{} CPU", format::cpus(cpu))
}

fn show_bytes(bytes: f64) -> String {
    format::bytes(bytes as u64)
}

impl CapacityView {
    fn new(c: &Capacity) -> CapacityView {
        let pair = |requested: String, capacity: String| format!("{requested} / {capacity}");
        CapacityView {
            environment: c.environment.clone(),
            gauges: vec![
                Gauge::new("cpu", c.requested.cpu, c.capacity.cpu, show_cpus),
                Gauge::new(
                    "memory",
                    c.requested.memory_bytes as f64,
                    c.capacity.memory_bytes as f64,
                    show_bytes,
                ),
                Gauge::new(
                    "disk",
                    c.requested.disk_bytes as f64,
                    c.capacity.disk_bytes as f64,
                    show_bytes,
                ),
            ],
            nodes_used: c.nodes_used,
            lower_bound: c.lower_bound,
            packing: packing(c.nodes_used, c.lower_bound),
            nodes: c
                .nodes
                .iter()
                .map(|n| NodeRow {
                    href: format!("/nodes/{}", urlencode(&n.name)),
                    name: n.name.clone(),
                    cpu: pair(format::cpus(n.requested.cpu), format::cpus(n.capacity.cpu)),
                    memory: pair(
                        format::bytes(n.requested.memory_bytes),
                        format::bytes(n.capacity.memory_bytes),
                    ),
                    disk: pair(
                        format::bytes(n.requested.disk_bytes),
                        format::bytes(n.capacity.disk_bytes),
                    ),
                    replicas: n.replicas,
                    health: n.health.clone(),
                    cordoned: n.cordoned,
                })
                .collect(),
        }
    }
}

/// The packing sentence: how many nodes the placed replicas need at least
/// against how many hold them.
fn packing(used: usize, bound: usize) -> String {
    if used == 0 {
        return "no replica is placed, so no node holds one".to_owned();
    }
    let nodes = |n: usize| if n == 1 { "node" } else { "nodes" };
    let room = if used > bound {
        format!("room to consolidate: {}", used - bound)
    } else {
        "no room to consolidate".to_owned()
    };
    format!(
        "the placed replicas need at least {bound} {}; {used} {} replicas now ({room})",
        nodes(bound),
        if used == 1 { "holds" } else { "hold" }
    )
}

struct EnvLink {
    name: String,
    href: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    filtered: Option<String>,
    apps: Vec<AppRow>,
    environments: Vec<EnvLink>,
    capacity: Option<CapacityView>,
    capacity_error: Option<String>,
}

/// `GET /apps?environment=`.
pub(super) async fn show(
    State(state): State<AppState>,
    _: SignedIn,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    let environment = params.environment();
    let now = jiff::Timestamp::now();
    let apps = view::apps(&state, environment, None, false).await?;
    let (capacity, capacity_error) = match view::capacity(&state, environment).await {
        Ok(c) => (Some(CapacityView::new(&c)), None),
        // An unknown or broken environment is said on the page, not a 404.
        Err(AppError::NotFound(e) | AppError::Status(_, e)) => (None, Some(e)),
        Err(e) => return Err(e),
    };
    let shown = capacity.as_ref().map(|c| c.environment.as_str());
    let environments = state
        .snapshots
        .list()
        .iter()
        .map(|snap| EnvLink {
            href: format!("/apps?environment={}", urlencode(&snap.name)),
            selected: shown == Some(snap.name.as_str()),
            name: snap.name.clone(),
        })
        .collect();
    page(&AppsPage {
        filtered: environment.map(str::to_owned),
        apps: apps.iter().map(|a| AppRow::new(a, now)).collect(),
        environments,
        capacity,
        capacity_error,
    })
}

struct DecisionRow {
    node: String,
    href: String,
    /// `chosen`, `scored` or `refused`.
    verdict: &'static str,
    /// `refused by resources: insufficient memory`.
    refused: Option<String>,
    /// One per column of [`DecisionTable::priorities`] (`-` when absent).
    scores: Vec<String>,
    total: String,
}

struct DecisionTable {
    priorities: Vec<&'static str>,
    rows: Vec<DecisionRow>,
}

impl DecisionTable {
    /// As `drover-server explain` prints it: the chosen node first, then
    /// the scored nodes best first, then the refused ones with the
    /// predicate that refused each.
    fn new(decision: &Decision) -> DecisionTable {
        let mut scored: Vec<&Verdict> = decision
            .verdicts
            .iter()
            .filter(|v| v.refused.is_none())
            .collect();
        let chosen = |v: &Verdict| decision.node.as_deref() == Some(v.node.as_str());
        scored.sort_by(|a, b| chosen(b).cmp(&chosen(a)).then(b.total.total_cmp(&a.total)));
        let mut priorities = Vec::new();
        for (priority, _) in scored.iter().flat_map(|v| &v.scores) {
            if !priorities.contains(&priority.name()) {
                priorities.push(priority.name());
            }
        }
        let href = |node: &str| format!("/nodes/{}", urlencode(node));
        let mut rows: Vec<DecisionRow> = scored
            .iter()
            .map(|v| DecisionRow {
                node: v.node.clone(),
                href: href(&v.node),
                verdict: if chosen(v) { "chosen" } else { "scored" },
                refused: None,
                scores: priorities
                    .iter()
                    .map(|p| {
                        v.scores
                            .iter()
                            .find(|(priority, _)| priority.name() == *p)
                            .map_or_else(|| "-".to_owned(), |(_, s)| format!("{s:.2}"))
                    })
                    .collect(),
                total: format!("{:.2}", v.total),
            })
            .collect();
        rows.extend(decision.verdicts.iter().filter_map(|v| {
            let refusal = v.refused.as_ref()?;
            Some(DecisionRow {
                node: v.node.clone(),
                href: href(&v.node),
                verdict: "refused",
                refused: Some(format!(
                    "refused by {}: {}",
                    refusal.predicate.name(),
                    refusal.reason
                )),
                scores: Vec::new(),
                total: String::new(),
            })
        }));
        DecisionTable { priorities, rows }
    }

    /// The columns a refusal spans: every priority and the total.
    fn refused_span(&self) -> usize {
        self.priorities.len() + 1
    }
}

struct ReplicaDecision {
    index: u32,
    node: Option<String>,
    decided: String,
    reason: Option<String>,
    table: Option<DecisionTable>,
}

impl ReplicaDecision {
    fn new(r: &ReplicaStatus, now: jiff::Timestamp) -> ReplicaDecision {
        let decision = r
            .decision
            .clone()
            .and_then(|d| serde_json::from_value::<Decision>(d).ok());
        ReplicaDecision {
            index: r.index,
            node: r.node.clone(),
            decided: format!(
                "{} ({})",
                format::when(&r.decided_at),
                format::ago(&r.decided_at, now)
            ),
            reason: decision
                .as_ref()
                .and_then(|d| d.reason.clone())
                .or_else(|| r.node.is_none().then(|| r.reason.clone()).flatten()),
            table: decision.as_ref().map(DecisionTable::new),
        }
    }
}

struct AppDetail {
    app: AppRow,
    decisions: Vec<ReplicaDecision>,
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    name: String,
    /// The app in every environment that has it (none: a 404).
    environments: Vec<AppDetail>,
}

/// `GET /apps/{name}?environment=`.
pub(super) async fn page_of(
    State(state): State<AppState>,
    _: SignedIn,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    let now = jiff::Timestamp::now();
    let apps = view::apps(&state, params.environment(), Some(&name), true).await?;
    let view = AppPage {
        environments: apps
            .iter()
            .map(|app| AppDetail {
                app: AppRow::new(app, now),
                decisions: app
                    .replicas
                    .iter()
                    .map(|r| ReplicaDecision::new(r, now))
                    .collect(),
            })
            .collect(),
        name,
    };
    if view.environments.is_empty() {
        return render(StatusCode::NOT_FOUND, &view);
    }
    page(&view)
}

#[cfg(test)]
mod tests;
