//! What the API, the CLI and the dashboard show of apps: each app's
//! replicas with their nodes, states, pending reasons and decisions, and
//! the fleet's capacity against what the placed replicas request, with the
//! packing lower bound (the room for consolidation). Read from the
//! database, so any server answers the same.

use std::collections::{BTreeMap, HashMap};

use drover_catalog::schedule::{self, AppDemand, Placement, Resources};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::control;
use super::placements::{container_name, replica_state};
use crate::db::updates::AppUpdate;
use crate::db::{self, DbError};
use crate::error::AppError;
use crate::state::AppState;

/// An app of an environment and its replicas.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppStatus {
    pub name: String,
    pub environment: String,
    /// Replicas asked for (`replicas` in `apps/NAME.toml`).
    pub desired: u32,
    /// What each replica reserves.
    pub requests: Quantities,
    /// The node label replicas are spread across, if any.
    #[schema(nullable = true)]
    pub spread: Option<String>,
    /// The app file's errors (`file:line:col: message`): it is not placed.
    pub errors: Vec<String>,
    /// The spec (a hash of the app file) the commit asks for.
    #[schema(nullable = true)]
    pub spec: Option<String>,
    /// How its update goes: `rolling` (with what it waits for), `done`,
    /// `failed` or `reverted` (with why); null before the control loop
    /// first saw the app.
    #[schema(nullable = true)]
    pub update: Option<AppUpdate>,
    pub replicas: Vec<ReplicaStatus>,
}

/// One replica.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplicaStatus {
    pub index: u32,
    /// Null while pending.
    #[schema(nullable = true)]
    pub node: Option<String>,
    /// The container's name on its node (`APP-INDEX-ID`).
    #[schema(nullable = true)]
    pub container: Option<String>,
    #[schema(nullable = true)]
    pub address: Option<String>,
    /// `pending`, `starting`, `running`, `healthy`, `unhealthy`.
    pub state: String,
    /// What the node's last report said of the container (`running`,
    /// `healthy`, `unhealthy`, `exited`, `missing`).
    #[schema(nullable = true)]
    pub reported: Option<String>,
    /// Since when the container is in the reported state.
    #[schema(nullable = true)]
    pub since: Option<String>,
    /// The spec it runs (a hash of the app file it was placed from).
    pub spec: String,
    /// Where it is moving (a drain or an update): its replacement's node,
    /// running beside it until healthy long enough.
    #[schema(nullable = true)]
    pub moving_to: Option<String>,
    /// The spec its replacement runs.
    #[schema(nullable = true)]
    pub moving_spec: Option<String>,
    /// Why it is pending: `0/12 nodes are available: ...`.
    #[schema(nullable = true)]
    pub reason: Option<String>,
    pub decided_at: String,
    /// The decision that placed it or keeps it pending: per node, the
    /// predicate that refused it or its score per priority (only with
    /// `GET /api/v1/apps/{name}`).
    #[schema(value_type = Option<Object>, nullable = true)]
    pub decision: Option<serde_json::Value>,
}

/// CPUs and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quantities {
    pub cpu: f64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl From<Resources> for Quantities {
    fn from(r: Resources) -> Quantities {
        Quantities {
            cpu: r.millicpu as f64 / 1000.0,
            memory_bytes: r.memory,
            disk_bytes: r.disk,
        }
    }
}

/// Every app of every environment (or of one), in (environment, name)
/// order; decisions only when asked for (they hold a verdict per node).
pub async fn apps(
    state: &AppState,
    environment: Option<&str>,
    name: Option<&str>,
    with_decisions: bool,
) -> Result<Vec<AppStatus>, AppError> {
    let rows = db::apps::placements(&state.db).await?;
    let states: HashMap<(String, String), db::apps::ReplicaStateRow> =
        db::apps::replica_states(&state.db)
            .await?
            .into_iter()
            .map(|s| ((s.node.clone(), s.container.clone()), s))
            .collect();
    let mut updates: HashMap<(String, String), AppUpdate> = db::updates::updates(&state.db)
        .await?
        .into_iter()
        .map(|u| ((u.environment.clone(), u.app.clone()), u))
        .collect();
    let mut out = Vec::new();
    for snap in state.snapshots.list() {
        if environment.is_some_and(|e| e != snap.name) {
            continue;
        }
        let Ok(repo) = &snap.repo else { continue };
        for (app, parsed) in repo.apps() {
            if name.is_some_and(|n| n != app) {
                continue;
            }
            let (demand, errors) = match parsed {
                Ok(parsed) => (Some(&parsed.demand), Vec::new()),
                Err(diagnostics) => (None, diagnostics.iter().map(ToString::to_string).collect()),
            };
            let replicas = rows
                .iter()
                .filter(|r| r.environment == snap.name && r.app == app)
                .map(|row| {
                    let container = row
                        .placement_id
                        .as_deref()
                        .map(|id| container_name(&row.app, row.replica, id));
                    let reported = row
                        .node
                        .clone()
                        .zip(container.clone())
                        .and_then(|key| states.get(&key));
                    ReplicaStatus {
                        index: row.replica,
                        node: row.node.clone(),
                        address: row.address.clone(),
                        state: replica_state(row, &states).to_owned(),
                        reported: reported.map(|s| s.state.clone()),
                        since: reported.and_then(|s| s.since.clone()),
                        container,
                        spec: row.spec_hash.clone(),
                        moving_to: row.next.as_ref().map(|n| n.node.clone()),
                        moving_spec: row.next.as_ref().map(|n| n.spec_hash.clone()),
                        reason: row.reason.clone(),
                        decided_at: row.decided_at.clone(),
                        decision: with_decisions
                            .then(|| serde_json::from_str(&row.decision).ok())
                            .flatten(),
                    }
                })
                .collect();
            out.push(AppStatus {
                name: app.to_owned(),
                environment: snap.name.clone(),
                desired: demand.map_or(0, |d| d.replicas),
                requests: demand.map(|d| d.requests.into()).unwrap_or_default(),
                spread: demand.and_then(|d| d.spread.clone()),
                errors,
                spec: demand.map(|d| d.spec_hash.clone()),
                update: updates.remove(&(snap.name.clone(), app.to_owned())),
                replicas,
            });
        }
    }
    out.sort_by(|a, b| (&a.environment, &a.name).cmp(&(&b.environment, &b.name)));
    Ok(out)
}

/// Requested against capacity, per node and for the fleet of an environment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    pub environment: String,
    /// Every node's capacity (facts less `[scheduler] reserved`), summed.
    pub capacity: Quantities,
    /// What the placed replicas request, summed.
    pub requested: Quantities,
    /// Nodes holding at least one replica.
    pub nodes_used: usize,
    /// The fewest nodes the placed replicas could fit on if packed tightly
    /// (a lower bound, by the largest nodes' capacities): `nodes_used`
    /// minus this is the room for consolidation.
    pub lower_bound: usize,
    pub nodes: Vec<NodeCapacity>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeCapacity {
    pub name: String,
    pub capacity: Quantities,
    pub requested: Quantities,
    pub replicas: usize,
    /// `ready`, `failed` (its last run failed) or `lost`.
    pub health: String,
    pub cordoned: bool,
}

/// The capacity of the environment's fleet (the default one when `None`).
pub async fn capacity(state: &AppState, environment: Option<&str>) -> Result<Capacity, AppError> {
    let default_env = state.snapshots.default_environment();
    let environment = environment.unwrap_or(&default_env).to_owned();
    let snap = state
        .snapshots
        .get(&environment)
        .ok_or_else(|| AppError::NotFound(format!("environment `{environment}` does not exist")))?;
    let repo = snap.repo.as_ref().map_err(|diagnostics| {
        AppError::Status(
            axum::http::StatusCode::CONFLICT,
            format!(
                "environment `{environment}` does not parse: {}",
                diagnostics.join("; ")
            ),
        )
    })?;
    let fleet = db::apps::fleet(&state.db).await?;
    let members: Vec<&db::apps::FleetNode> = fleet
        .iter()
        .filter(|n| n.environment.as_deref().unwrap_or(&default_env) == environment)
        .collect();
    let now = jiff::Timestamp::now().as_microsecond();
    let nodes = control::node_states(repo, &members, now, 0);
    let apps = repo.app_demands();
    let placements = placed(state, &environment).await?;
    Ok(summarize(environment, &nodes, &placements, &apps))
}

async fn placed(state: &AppState, environment: &str) -> Result<Vec<Placement>, DbError> {
    Ok(db::apps::placements(&state.db)
        .await?
        .iter()
        .filter(|r| r.environment == environment)
        .filter_map(db::apps::PlacementRow::placement)
        .collect())
}

/// The capacity view of a fleet and its placements.
pub fn summarize(
    environment: String,
    nodes: &[schedule::NodeState],
    placements: &[Placement],
    apps: &[AppDemand],
) -> Capacity {
    let usage = schedule::usage(placements, apps);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in placements {
        *counts.entry(p.node.as_str()).or_default() += 1;
    }
    let sum = |items: &mut dyn Iterator<Item = Resources>| {
        items.fold(Resources::default(), |a, b| Resources {
            millicpu: a.millicpu + b.millicpu,
            memory: a.memory + b.memory,
            disk: a.disk + b.disk,
        })
    };
    Capacity {
        environment,
        capacity: sum(&mut nodes.iter().map(|n| n.capacity)).into(),
        requested: sum(&mut usage.values().copied()).into(),
        nodes_used: counts.len(),
        lower_bound: schedule::packing_lower_bound(nodes, placements, apps),
        nodes: nodes
            .iter()
            .map(|n| NodeCapacity {
                name: n.name.clone(),
                capacity: n.capacity.into(),
                requested: usage.get(&n.name).copied().unwrap_or_default().into(),
                replicas: counts.get(n.name.as_str()).copied().unwrap_or(0),
                health: match n.health {
                    schedule::Health::Ready => "ready",
                    schedule::Health::Failed => "failed",
                    schedule::Health::Lost => "lost",
                }
                .to_owned(),
                cordoned: n.cordoned,
            })
            .collect(),
    }
}

/// A replica placed on a node, as the node API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeReplica {
    pub environment: String,
    pub app: String,
    pub index: u32,
    /// The container's name on the node (`APP-INDEX-ID`).
    pub container: String,
    /// `starting`, `running`, `healthy` or `unhealthy`.
    pub state: String,
}

/// The replicas placed on `node`, by environment, app and index.
pub async fn node_replicas(state: &AppState, node: &str) -> Result<Vec<NodeReplica>, DbError> {
    let rows = db::apps::placements(&state.db).await?;
    let states: HashMap<(String, String), db::apps::ReplicaStateRow> =
        db::apps::replica_states(&state.db)
            .await?
            .into_iter()
            .filter(|s| s.node == node)
            .map(|s| ((s.node.clone(), s.container.clone()), s))
            .collect();
    let mut out = Vec::new();
    for r in &rows {
        if let (Some(id), true) = (&r.placement_id, r.node.as_deref() == Some(node)) {
            out.push(NodeReplica {
                environment: r.environment.clone(),
                app: r.app.clone(),
                index: r.replica,
                container: container_name(&r.app, r.replica, id),
                state: replica_state(r, &states).to_owned(),
            });
        }
        // The replacement of a replica moving here.
        if let Some(next) = r.next.as_ref().filter(|n| n.node == node) {
            let container = container_name(&r.app, r.replica, &next.placement_id);
            let state = states
                .get(&(node.to_owned(), container.clone()))
                .map_or("starting", |s| super::placements::reported_state(&s.state));
            out.push(NodeReplica {
                environment: r.environment.clone(),
                app: r.app.clone(),
                index: r.replica,
                container,
                state: state.to_owned(),
            });
        }
    }
    Ok(out)
}
