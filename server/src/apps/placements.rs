//! The placements as every server holds them in memory: what each node's
//! catalog gets (its replicas) and what templates see (`apps.NAME.replicas`).
//! Reloaded from the database when the control loop or a report changes
//! them (here, or on another server through a notification) and every few
//! seconds anyway; a reload tells which nodes' catalogs may have changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use drover_catalog::schedule::Placement;
use drover_catalog::{AppsInput, ReplicaView};

use crate::db::apps::{PlacementRow, ReplicaStateRow};
use crate::db::updates::StoredSpec;
use crate::db::{self, Db, DbError};
use crate::snapshot::Snapshots;

/// One load of the placements and replica states.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every row, by environment, app and replica.
    pub rows: Vec<PlacementRow>,
    /// By (node, container).
    pub states: HashMap<(String, String), ReplicaStateRow>,
    /// The nodes `states` has rows of.
    reporting: std::collections::HashSet<String>,
    /// The replicas placed on each (environment, node).
    placed: HashMap<(String, String), Vec<Placement>>,
    /// What templates of each environment see as `apps`, and its digest.
    discovery: HashMap<String, Discovery>,
    /// Stored app file bodies by spec hash (see `AppsInput::specs`).
    bodies: HashMap<String, Arc<str>>,
}

#[derive(Debug, Default, Clone)]
pub struct Discovery {
    pub apps: BTreeMap<String, Vec<ReplicaView>>,
    /// sha256 of `apps` as JSON: a compile that read `apps` is stale when
    /// it moved.
    pub digest: String,
}

/// The state of a replica as the API shows it: `pending` (no node),
/// `starting` (placed, not reported yet), then the report's `running`,
/// `healthy` or `unhealthy` (an exited or missing container is unhealthy).
pub fn replica_state(
    row: &PlacementRow,
    states: &HashMap<(String, String), ReplicaStateRow>,
) -> &'static str {
    let (Some(node), Some(id)) = (&row.node, &row.placement_id) else {
        return "pending";
    };
    let container = container_name(&row.app, row.replica, id);
    match states.get(&(node.clone(), container)) {
        None => "starting",
        Some(s) => reported_state(&s.state),
    }
}

/// A reported container state as the API says it: an exited or missing
/// container is unhealthy.
pub fn reported_state(state: &str) -> &'static str {
    match state {
        "running" => "running",
        "healthy" => "healthy",
        _ => "unhealthy",
    }
}

/// `APP-REPLICA-ID`, as `Placement::container_name`.
pub fn container_name(app: &str, replica: u32, id: &str) -> String {
    format!("{app}-{replica}-{id}")
}

impl Snapshot {
    fn build(
        rows: Vec<PlacementRow>,
        states: Vec<ReplicaStateRow>,
        specs: Vec<StoredSpec>,
        snapshots: &Snapshots,
    ) -> Snapshot {
        let states: HashMap<(String, String), ReplicaStateRow> = states
            .into_iter()
            .map(|s| ((s.node.clone(), s.container.clone()), s))
            .collect();
        let mut placed: HashMap<(String, String), Vec<Placement>> = HashMap::new();
        let mut apps: HashMap<String, BTreeMap<String, Vec<ReplicaView>>> = HashMap::new();
        let mut ports: HashMap<(String, String), Vec<u16>> = HashMap::new();
        for row in &rows {
            // A moving replica runs twice, at its node and at its
            // replacement's, until the move is done (see `drain`).
            let running = row
                .node
                .clone()
                .zip(row.placement_id.clone())
                .map(|(node, id)| (node, id, row.address.clone(), row.spec_hash.clone()))
                .into_iter()
                .chain(row.next.iter().map(|n| {
                    (
                        n.node.clone(),
                        n.placement_id.clone(),
                        n.address.clone(),
                        n.spec_hash.clone(),
                    )
                }));
            for (node, id, address, spec_hash) in running {
                let container = container_name(&row.app, row.replica, &id);
                let state = match states.get(&(node.clone(), container)) {
                    None => "starting",
                    Some(s) => reported_state(&s.state),
                };
                placed
                    .entry((row.environment.clone(), node.clone()))
                    .or_default()
                    .push(Placement {
                        app: row.app.clone(),
                        replica: row.replica,
                        node: node.clone(),
                        id,
                        spec_hash,
                    });
                let host_ports = ports
                    .entry((row.environment.clone(), row.app.clone()))
                    .or_insert_with(|| host_ports(snapshots, &row.environment, &row.app))
                    .clone();
                apps.entry(row.environment.clone())
                    .or_default()
                    .entry(row.app.clone())
                    .or_default()
                    .push(ReplicaView {
                        replica: row.replica,
                        node,
                        address,
                        ports: host_ports,
                        state: state.to_owned(),
                    });
            }
        }
        let discovery = apps
            .into_iter()
            .map(|(env, apps)| {
                let digest =
                    drover_catalog::sha256_hex(&serde_json::to_vec(&apps).unwrap_or_default());
                (env, Discovery { apps, digest })
            })
            .collect();
        Snapshot {
            reporting: states.keys().map(|(node, _)| node.clone()).collect(),
            rows,
            states,
            placed,
            discovery,
            bodies: specs
                .into_iter()
                .map(|s| (s.spec_hash, Arc::from(s.body)))
                .collect(),
        }
    }

    /// Whether a report of `node` said something of its replicas before:
    /// one that says nothing now changes the states (asked at every report,
    /// so a lookup, not a scan).
    pub fn has_states(&self, node: &str) -> bool {
        self.reporting.contains(node)
    }

    /// Replicas by (environment, app, state), for `/metrics`.
    pub fn replica_counts(&self) -> crate::metrics::ReplicaCounts {
        let mut counts = crate::metrics::ReplicaCounts::new();
        for row in &self.rows {
            let key = (
                row.environment.clone(),
                row.app.clone(),
                replica_state(row, &self.states),
            );
            *counts.entry(key).or_default() += 1;
        }
        counts
    }

    /// What compiling `node` in `environment` takes from the placements.
    pub fn input(&self, environment: &str, node: &str) -> (AppsInput, String) {
        let placed = self
            .placed
            .get(&(environment.to_owned(), node.to_owned()))
            .cloned()
            .unwrap_or_default();
        let discovery = self.discovery.get(environment).cloned().unwrap_or_default();
        let specs = placed
            .iter()
            .filter_map(|p| Some((p.spec_hash.clone(), self.bodies.get(&p.spec_hash)?.clone())))
            .collect();
        (
            AppsInput {
                placed,
                discovery: discovery.apps,
                specs,
            },
            discovery.digest,
        )
    }

    /// The nodes whose catalogs differ between `self` and `next`: those
    /// whose own replicas changed, and, when what templates see changed,
    /// `readers` (the nodes whose last compile read `apps`).
    fn affected(&self, next: &Snapshot, readers: &BTreeSet<String>) -> BTreeSet<String> {
        let mut nodes = BTreeSet::new();
        for key in self.placed.keys().chain(next.placed.keys()) {
            if self.placed.get(key) != next.placed.get(key) {
                nodes.insert(key.1.clone());
            }
        }
        let moved = |env: &String| {
            self.discovery.get(env).map(|d| &d.digest) != next.discovery.get(env).map(|d| &d.digest)
        };
        if self
            .discovery
            .keys()
            .chain(next.discovery.keys())
            .any(moved)
        {
            nodes.extend(readers.iter().cloned());
        }
        nodes
    }
}

fn host_ports(snapshots: &Snapshots, environment: &str, app: &str) -> Vec<u16> {
    let Some(snap) = snapshots.get(environment) else {
        return Vec::new();
    };
    let Ok(repo) = &snap.repo else {
        return Vec::new();
    };
    repo.app_demands()
        .into_iter()
        .find(|d| d.name == app)
        .map(|d| d.host_ports.iter().map(|p| p.port).collect())
        .unwrap_or_default()
}

/// The current [`Snapshot`], and the nodes whose last compile read `apps`.
#[derive(Debug, Default)]
pub struct Placements {
    current: RwLock<Arc<Snapshot>>,
    readers: RwLock<BTreeSet<String>>,
}

impl Placements {
    pub fn current(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Notes whether `node`'s last compile read `apps`.
    pub fn read_apps(&self, node: &str, read: bool) {
        let known = self
            .readers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(node);
        if known != read {
            let mut readers = self.readers.write().unwrap_or_else(|e| e.into_inner());
            if read {
                readers.insert(node.to_owned());
            } else {
                readers.remove(node);
            }
        }
    }

    /// Loads the placements again; the nodes whose catalogs may have changed.
    pub async fn reload(
        &self,
        db: &Db,
        snapshots: &Snapshots,
    ) -> Result<BTreeSet<String>, DbError> {
        let rows = db::apps::placements(db).await?;
        let states = db::apps::replica_states(db).await?;
        let specs = db::updates::specs_in_use(db).await?;
        let next = Snapshot::build(rows, states, specs, snapshots);
        let readers = self
            .readers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let affected = self.current().affected(&next, &readers);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(affected)
    }
}
