//! The control loop: desired apps against placements against what agents
//! report, on the leader only (`cluster::while_leading`), every
//! [`TICK`] and whenever something it reads changes.
//!
//! Each round, per environment that has apps or placements: the fleet of
//! that environment as the scheduler sees it (profile from `nodes.toml`,
//! capacity from facts, health from heartbeats and the last run, cordon),
//! the current placements, then `schedule`. What differs from the stored
//! rows is written in one fenced write (`Cluster::write_as_leader`), and
//! then every server reloads its placements and recompiles the nodes whose
//! catalogs change, which wakes their watches.
//!
//! A node is lost when no server heard from it for the policy's
//! `lost_after` (scaled with fleet size); counted from the later of its
//! last signal and the moment this server became leader, so a new leader
//! (or a restarted server) does not declare the fleet lost before the
//! daemons had time to reconnect to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use drover_catalog::schedule::{self, AppDemand, Explain, Health, NodeState, Placement, Schedule};
use drover_catalog::{Facts, Repository};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::health::States;
use super::{moves, update};
use crate::cluster::notify;
use crate::db::apps::{FleetNode, PlacementChanges, PlacementRow};
use crate::db::drains::{self, Drain};
use crate::db::updates::{AppUpdate, StoredSpec};
use crate::db::{self, DbError};
use crate::error::AppError;
use crate::snapshot::EnvSnapshot;
use crate::state::AppState;

/// How often the loop runs without being woken.
pub const TICK: Duration = Duration::from_secs(2);

/// Runs rounds until `stop` (the end of this server's leadership).
pub async fn run(state: AppState, wake: Arc<Notify>, stop: CancellationToken) {
    let leading_since_us = jiff::Timestamp::now().as_microsecond();
    tracing::info!("this server runs the control loop");
    loop {
        match round(&state, leading_since_us).await {
            Ok(true) => announce(&state).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "a round of the control loop failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Tells this server (reload, recompile) and the others (a notification)
/// that placements changed.
async fn announce(state: &AppState) {
    super::reload::placements_changed(state).await;
    if let Err(e) = notify::announce(&state.db, state.cluster.id(), notify::Event::Placements).await
    {
        tracing::warn!(error = %e, "telling the other servers of new placements failed");
    }
}

/// What every environment's round reads, loaded once per round.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub rows: Vec<PlacementRow>,
    pub states: States,
    /// Stored updates by (environment, app).
    pub updates: HashMap<(String, String), AppUpdate>,
    /// Stored app file bodies by (app, spec hash).
    pub bodies: HashMap<(String, String), Arc<str>>,
    /// The (app, spec hash) pairs stored.
    pub stored: HashSet<(String, String)>,
    pub now_us: i64,
    pub leading_since_us: i64,
}

/// What one environment's round writes.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    pub specs: Vec<StoredSpec>,
    pub placements: Option<PlacementChanges>,
    pub updates: Vec<AppUpdate>,
}

/// One round over every environment; whether placements were written.
async fn round(state: &AppState, leading_since_us: i64) -> Result<bool, AppError> {
    let rows = db::apps::placements(&state.db).await?;
    let mut drains: HashMap<String, Drain> = db::drains::drains(&state.db)
        .await?
        .into_iter()
        .filter(|d| d.state == drains::DRAINING)
        .map(|d| (d.node.clone(), d))
        .collect();
    let environments = state.snapshots.list();
    let has_apps = environments.iter().any(|snap| {
        snap.repo
            .as_ref()
            .is_ok_and(|repo| repo.apps().next().is_some())
    });
    if rows.is_empty() && !has_apps && drains.is_empty() {
        return Ok(false);
    }
    let fleet = db::apps::fleet(&state.db).await?;
    let world = World {
        rows,
        states: db::apps::replica_states(&state.db)
            .await?
            .into_iter()
            .map(|s| ((s.node.clone(), s.container.clone()), s))
            .collect(),
        updates: db::updates::updates(&state.db)
            .await?
            .into_iter()
            .map(|u| ((u.environment.clone(), u.app.clone()), u))
            .collect(),
        bodies: db::updates::specs_in_use(&state.db)
            .await?
            .into_iter()
            .map(|s| ((s.app, s.spec_hash), Arc::from(s.body)))
            .collect(),
        stored: db::updates::stored_specs(&state.db)
            .await?
            .into_iter()
            .collect(),
        now_us: jiff::Timestamp::now().as_microsecond(),
        leading_since_us,
    };
    let default_env = state.snapshots.default_environment();
    let mut wrote = false;
    let mut progress = Vec::new();
    for snap in environments {
        // A commit that does not parse keeps the placements it had.
        let Ok(repo) = &snap.repo else { continue };
        let members: Vec<&FleetNode> = fleet
            .iter()
            .filter(|n| n.environment.as_deref().unwrap_or(&default_env) == snap.name)
            .collect();
        let env_drains: HashMap<String, Drain> = members
            .iter()
            .filter_map(|n| drains.remove(&n.name))
            .map(|d| (d.node.clone(), d))
            .collect();
        let writes = environment_round(&snap, repo, &world, &members, &env_drains, &mut progress)?;
        if !writes.specs.is_empty() {
            state
                .cluster
                .write_as_leader(db::updates::store_specs(writes.specs))
                .await?;
        }
        if let Some(changes) = writes.placements {
            log_changes(&changes, &world.rows);
            state
                .cluster
                .write_as_leader(db::apps::write_placements(changes))
                .await?;
            wrote = true;
        }
        if !writes.updates.is_empty() {
            for u in &writes.updates {
                tracing::info!(
                    environment = %u.environment, app = %u.app, state = %u.state,
                    spec = update::short(&u.spec_hash), reason = u.reason.as_deref().unwrap_or(""),
                    "app update"
                );
            }
            state
                .cluster
                .write_as_leader(db::updates::write_updates(writes.updates))
                .await?;
        }
    }
    // Drains of nodes no environment holds replicas on are done at once.
    for node in drains.into_keys() {
        progress.push((node, drains::DONE, "drained: no replica left".to_owned()));
    }
    write_progress(state, progress).await?;
    Ok(wrote)
}

/// One environment's round: what to write (a function of what it reads;
/// `apps::update`'s tests run rounds through it).
pub(crate) fn environment_round(
    snap: &EnvSnapshot,
    repo: &Repository,
    world: &World,
    members: &[&FleetNode],
    drains: &HashMap<String, Drain>,
    progress: &mut Vec<(String, &'static str, String)>,
) -> Result<Writes, DbError> {
    // An app file that does not parse keeps its replicas where they
    // are (its nodes keep their last good catalogs) until it is fixed:
    // a typo must not stop an app.
    let broken: HashSet<&str> = repo
        .apps()
        .filter(|(_, app)| app.is_err())
        .map(|(name, _)| name)
        .collect();
    let current: Vec<&PlacementRow> = world
        .rows
        .iter()
        .filter(|r| r.environment == snap.name && !broken.contains(r.app.as_str()))
        .collect();
    let mut writes = Writes {
        specs: new_specs(repo, &world.stored),
        ..Writes::default()
    };
    if repo.app_demands().is_empty() && current.is_empty() {
        progress.extend(drains.keys().map(|node| {
            (
                node.clone(),
                drains::DONE,
                "drained: no replica left".to_owned(),
            )
        }));
        return Ok(writes);
    }
    let stored_updates: HashMap<String, AppUpdate> = world
        .updates
        .iter()
        .filter(|((env, _), _)| *env == snap.name)
        .map(|((_, app), u)| (app.clone(), u.clone()))
        .collect();
    let outcome = update::advance(&update::Round {
        environment: &snap.name,
        repo,
        rows: &current,
        updates: &stored_updates,
        bodies: &world.bodies,
        states: &world.states,
        now_us: world.now_us,
    });
    let apps: Vec<AppDemand> = outcome
        .desired
        .values()
        .map(|d| (d.app.name.clone(), d.app.demand.clone()))
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let nodes = node_states(repo, members, world.now_us, world.leading_since_us);
    let starting = moves::starting(
        &current,
        &outcome.desired,
        drains,
        &world.states,
        world.now_us,
    );
    let (view, held) = moves::scheduler_view(&current, &outcome.desired, drains, &starting);
    let schedule = schedule::schedule_holding(
        repo.policy(),
        &apps,
        &nodes,
        &view,
        &held,
        &snap.commit,
        explain_for(nodes.len()),
    );
    let by_name: HashMap<&str, &FleetNode> =
        members.iter().map(|n| (n.name.as_str(), *n)).collect();
    let step = moves::step(&moves::Inputs {
        rows: &current,
        desired: &outcome.desired,
        starting: &starting,
        schedule: &schedule,
        drains,
        states: &world.states,
        members: &by_name,
        address: &|node| address(repo, node),
        now_us: world.now_us,
    });
    progress.extend(step.progress);
    let mut changes = changes(
        snap,
        &current,
        &schedule,
        &by_name,
        repo,
        &apps,
        &step.handled,
    )?;
    changes.upsert.extend(step.upsert);
    writes.placements = (!changes.is_empty()).then_some(changes);
    writes.updates = update::changed(&stored_updates, outcome.updates, &step.update_waits);
    Ok(writes)
}

/// The bodies of this commit's app files not stored yet.
fn new_specs(repo: &Repository, stored: &HashSet<(String, String)>) -> Vec<StoredSpec> {
    repo.apps()
        .filter_map(|(name, app)| app.ok().map(|app| (name, app)))
        .filter(|(name, app)| !stored.contains(&((*name).to_owned(), app.demand.spec_hash.clone())))
        .map(|(name, app)| StoredSpec {
            app: name.to_owned(),
            spec_hash: app.demand.spec_hash.clone(),
            body: app.body().to_owned(),
        })
        .collect()
}

/// Writes the drains' progress that differs from what is stored.
async fn write_progress(
    state: &AppState,
    progress: Vec<(String, &'static str, String)>,
) -> Result<(), AppError> {
    if progress.is_empty() {
        return Ok(());
    }
    let stored: HashMap<String, Drain> = db::drains::drains(&state.db)
        .await?
        .into_iter()
        .map(|d| (d.node.clone(), d))
        .collect();
    let changed: Vec<(String, &'static str, String)> = progress
        .into_iter()
        .filter(|(node, st, status)| {
            stored
                .get(node)
                .is_some_and(|d| d.state != *st || d.status != *status)
        })
        .collect();
    for (node, st, status) in &changed {
        tracing::info!(node = %node, state = st, status = %status, "drain");
    }
    if !changed.is_empty() {
        state
            .cluster
            .write_as_leader(db::drains::write_progress(changed))
            .await?;
    }
    Ok(())
}

/// Up to this many nodes, a decision keeps every node's verdict; beyond,
/// the best [`TOP_VERDICTS`] scored ones, the refusals counted in the
/// reason of a pending replica (a row per decision stays small at 10,000
/// nodes).
pub const FULL_EXPLAIN_NODES: usize = 500;
const TOP_VERDICTS: usize = 50;

fn explain_for(nodes: usize) -> Explain {
    if nodes <= FULL_EXPLAIN_NODES {
        Explain::Full
    } else {
        Explain::Top(TOP_VERDICTS)
    }
}

/// The fleet of one environment as the scheduler sees it; a node whose
/// profile cannot be read (it matches no `nodes.toml` entry, a role is
/// broken) cannot run anything of this environment and is left out.
pub fn node_states(
    repo: &Repository,
    members: &[&FleetNode],
    now_us: i64,
    seen_floor_us: i64,
) -> Vec<NodeState> {
    let policy = repo.policy();
    let lost_after_us =
        i64::try_from(policy.lost_after_secs_for(members.len())).unwrap_or(i64::MAX) * 1_000_000;
    members
        .iter()
        .filter_map(|node| {
            let profile = repo.node_profile(&node.name, &node.facts).ok()?;
            let seen = node.seen_at_us.max(seen_floor_us);
            let health = if now_us.saturating_sub(seen) > lost_after_us {
                Health::Lost
            } else if node.last_status.as_deref() == Some("failed") {
                Health::Failed
            } else {
                Health::Ready
            };
            Some(NodeState {
                name: node.name.clone(),
                roles: profile.roles,
                capacity: schedule::capacity_from_facts(&node.facts, &policy.reserved),
                labels: profile.labels,
                taints: profile.taints,
                facts: node.facts.clone(),
                health,
                cordoned: node.cordoned,
            })
        })
        .collect()
}

/// Where services reach a replica on `node`: its `address` or `ip` label,
/// else its `networking.ip` fact.
pub fn address(repo: &Repository, node: &FleetNode) -> Option<String> {
    let labels = repo
        .node_profile(&node.name, &node.facts)
        .map(|p| p.labels)
        .unwrap_or_default();
    labels
        .get("address")
        .or_else(|| labels.get("ip"))
        .cloned()
        .or_else(|| fact_ip(&node.facts))
}

fn fact_ip(facts: &Facts) -> Option<String> {
    facts
        .get("networking")?
        .get("ip")?
        .as_str()
        .map(str::to_owned)
}

/// The rows that differ from what `schedule` decided: a decision written
/// when it is new or differs, a row deleted when its replica is no longer
/// wanted (scaled down, app removed).
fn changes(
    snap: &EnvSnapshot,
    current: &[&PlacementRow],
    schedule: &Schedule,
    members: &HashMap<&str, &FleetNode>,
    repo: &Repository,
    apps: &[AppDemand],
    handled: &HashSet<(String, u32)>,
) -> Result<PlacementChanges, DbError> {
    let now = jiff::Timestamp::now().to_string();
    let by_key: BTreeMap<(&str, u32), &PlacementRow> = current
        .iter()
        .map(|r| ((r.app.as_str(), r.replica), *r))
        .collect();
    let placed: HashMap<(&str, u32), &Placement> = schedule
        .placements
        .iter()
        .map(|p| ((p.app.as_str(), p.replica), p))
        .collect();
    let demands: HashMap<&str, &AppDemand> = apps.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut changes = PlacementChanges {
        environment: snap.name.clone(),
        ..PlacementChanges::default()
    };
    for decision in &schedule.decisions {
        if handled.contains(&(decision.app.clone(), decision.replica)) {
            continue;
        }
        let key = (decision.app.as_str(), decision.replica);
        let placement = placed.get(&key);
        let row = PlacementRow {
            environment: snap.name.clone(),
            app: decision.app.clone(),
            replica: decision.replica,
            node: placement.map(|p| p.node.clone()),
            placement_id: placement.map(|p| p.id.clone()),
            address: placement
                .and_then(|p| members.get(p.node.as_str()))
                .and_then(|node| address(repo, node)),
            spec_hash: demands
                .get(decision.app.as_str())
                .map(|d| d.spec_hash.clone())
                .unwrap_or_default(),
            reason: decision.reason.clone(),
            decision: serde_json::to_string(decision)?,
            decided_at: now.clone(),
            next: None,
        };
        let unchanged = by_key.get(&key).is_some_and(|old| {
            old.node == row.node
                && old.placement_id == row.placement_id
                && old.spec_hash == row.spec_hash
                && old.reason == row.reason
                && old.decision == row.decision
        });
        if !unchanged {
            changes.upsert.push(row);
        }
    }
    let decided: HashSet<(&str, u32)> = schedule
        .decisions
        .iter()
        .map(|d| (d.app.as_str(), d.replica))
        .collect();
    for (key, old) in &by_key {
        if decided.contains(key) || handled.contains(&(key.0.to_owned(), key.1)) {
            continue;
        }
        if !placed.contains_key(key) {
            changes.delete.push((key.0.to_owned(), key.1));
            continue;
        }
        // Kept where it is; its node's address may have changed (a label).
        let address = old
            .node
            .as_deref()
            .and_then(|node| members.get(node))
            .and_then(|node| address(repo, node));
        if address != old.address {
            changes.upsert.push(PlacementRow {
                address,
                ..(*old).clone()
            });
        }
    }
    Ok(changes)
}

fn log_changes(changes: &PlacementChanges, current: &[PlacementRow]) {
    for row in &changes.upsert {
        let before = current
            .iter()
            .find(|r| r.app == row.app && r.replica == row.replica)
            .and_then(|r| r.node.clone());
        match (&row.node, &before) {
            (Some(node), Some(old)) if node != old => tracing::info!(
                environment = %row.environment, app = %row.app, replica = row.replica,
                from = %old, to = %node, "replica moved"
            ),
            (Some(node), None) => tracing::info!(
                environment = %row.environment, app = %row.app, replica = row.replica,
                node = %node, "replica placed"
            ),
            (None, _) => tracing::info!(
                environment = %row.environment, app = %row.app, replica = row.replica,
                reason = row.reason.as_deref().unwrap_or(""), "replica pending"
            ),
            _ => {}
        }
    }
    for (app, replica) in &changes.delete {
        tracing::info!(environment = %changes.environment, app = %app, replica, "replica removed");
    }
}
