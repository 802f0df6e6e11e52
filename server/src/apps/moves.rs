//! Replacements, make-before-break, as one step of the control loop's
//! round, for the two reasons a replica moves while it runs: its node is
//! drained (`drain`), or its app's spec changed (`update`).
//!
//! A replica that is to move is left out of what the scheduler is told
//! runs, and its container is held where it is (its room, ports and place
//! stay taken), so the scheduler places its replacement beside it: that
//! placement becomes the row's `next`, which runs the desired spec beside
//! the old container. Once the replacement has been healthy for the app's
//! `update.min_healthy_secs` (as its node's last report says; see
//! `health`), the row swaps to it and the old node's catalog drops the old
//! container. Replicas of one app move `update.max_parallel` at a time
//! (after `update.canary` of them alone, for an update); apps move in
//! parallel.
//!
//! When no node fits a replacement beside the old container, a drain
//! stops the replica and an update replaces it in place, each only when
//! the app keeps `disruption.min_available` healthy replicas without it;
//! otherwise they wait and say why.

use std::collections::{BTreeMap, HashMap, HashSet};

use drover_catalog::schedule::{Decision, Placement, Schedule};

use super::drain;
use super::health::{Container, States};
use super::update::{Desired, at_node, short};
use crate::db::apps::{FleetNode, PlacementRow, Replacement};
use crate::db::drains::Drain;

/// What one round of moves decided.
#[derive(Debug, Default)]
pub struct Step {
    /// Rows to write.
    pub upsert: Vec<PlacementRow>,
    /// The replicas this step decided (the round's other rules leave them).
    pub handled: HashSet<(String, u32)>,
    /// (node, state, status) of each active drain.
    pub progress: Vec<(String, &'static str, String)>,
    /// What each app's update waits for.
    pub update_waits: BTreeMap<String, Vec<String>>,
}

/// What the round knows that a move reads.
pub struct Inputs<'a> {
    pub rows: &'a [&'a PlacementRow],
    pub desired: &'a HashMap<String, Desired>,
    /// The replicas whose update starts this round ([`starting`]).
    pub starting: &'a HashSet<(String, u32)>,
    pub schedule: &'a Schedule,
    /// The active drains of this environment's nodes, by node.
    pub drains: &'a HashMap<String, Drain>,
    pub states: &'a States,
    pub members: &'a HashMap<&'a str, &'a FleetNode>,
    pub address: &'a dyn Fn(&FleetNode) -> Option<String>,
    pub now_us: i64,
}

/// Whether a row's replacement still goes on: it runs the desired spec,
/// and it is a drain's or an update that may go on.
fn keeps(next: &Replacement, desired: &Desired, draining: bool) -> bool {
    next.spec_hash == desired.spec() && (desired.rolling || draining)
}

fn draining(row: &PlacementRow, drains: &HashMap<String, Drain>) -> bool {
    row.node.as_deref().is_some_and(|n| drains.contains_key(n))
}

/// The replicas whose update starts this round: of each rolling app, the
/// ones of another spec (unhealthy ones first, then by index), as many as
/// `canary` (until that many of the new spec are healthy) or
/// `max_parallel` allow, less those still on their way.
pub fn starting(
    rows: &[&PlacementRow],
    desired: &HashMap<String, Desired>,
    drains: &HashMap<String, Drain>,
    states: &States,
    now_us: i64,
) -> HashSet<(String, u32)> {
    let mut out = HashSet::new();
    for (name, d) in desired.iter().filter(|(_, d)| d.rolling) {
        let app = &d.app;
        let check = app.has_healthcheck();
        let rows: Vec<&PlacementRow> = rows.iter().filter(|r| r.app == *name).copied().collect();
        let mut outdated: Vec<(bool, u32)> = rows
            .iter()
            .filter(|r| r.replica < app.demand.replicas)
            .filter(|r| r.spec_hash != d.spec() && !draining(r, drains))
            .filter(|r| r.next.as_ref().is_none_or(|n| !keeps(n, d, false)))
            .filter_map(|r| Some((at_node(r)?.is_healthy(states, check), r.replica)))
            .collect();
        if outdated.is_empty() {
            continue;
        }
        let min = app.update.min_healthy_secs;
        let proven = |r: &PlacementRow| {
            at_node(r)
                .and_then(|c| c.healthy_secs(states, check, 0, now_us))
                .is_some_and(|secs| secs >= min)
        };
        let new: Vec<&PlacementRow> = rows
            .iter()
            .filter(|r| r.spec_hash == d.spec() && r.next.is_none() && r.node.is_some())
            .copied()
            .collect();
        let healthy_new = new.iter().filter(|r| proven(r)).count() as u32;
        let on_their_way = rows.iter().filter(|r| r.next.is_some()).count() as u32
            + (new.len() as u32 - healthy_new);
        let canary = app.update.canary;
        let cap = if healthy_new < canary {
            canary - healthy_new
        } else {
            app.update.max_parallel.max(1)
        };
        outdated.sort();
        let budget = cap.saturating_sub(on_their_way) as usize;
        out.extend(
            outdated
                .into_iter()
                .take(budget)
                .map(|(_, replica)| (name.clone(), replica)),
        );
    }
    out
}

/// What the scheduler is told runs now, and the containers it must leave
/// room for (old containers beside their replacements).
pub fn scheduler_view(
    rows: &[&PlacementRow],
    desired: &HashMap<String, Desired>,
    drains: &HashMap<String, Drain>,
    starting: &HashSet<(String, u32)>,
) -> (Vec<Placement>, Vec<Placement>) {
    let mut view = Vec::new();
    let mut held = Vec::new();
    for row in rows {
        let Some(d) = desired.get(&row.app) else {
            view.extend(row.placement());
            continue;
        };
        let drained = draining(row, drains);
        let kept_next = row.next.as_ref().filter(|n| keeps(n, d, drained));
        if let Some(next) = kept_next {
            view.extend(row.placement().map(|p| Placement {
                node: next.node.clone(),
                id: next.placement_id.clone(),
                spec_hash: next.spec_hash.clone(),
                ..p
            }));
            held.extend(row.placement());
        } else if drained {
            // left out: the scheduler places its replacement
        } else if starting.contains(&(row.app.clone(), row.replica)) {
            held.extend(row.placement());
        } else {
            // one of another spec waits its turn where it is
            view.extend(row.placement().map(|p| Placement {
                spec_hash: d.spec().to_owned(),
                ..p
            }));
        }
    }
    (view, held)
}

/// Moves what drains and updates ask for by one step.
pub fn step(input: &Inputs<'_>) -> Step {
    let mut step = Step::default();
    let mut waits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let placed: HashMap<(&str, u32), &Placement> = input
        .schedule
        .placements
        .iter()
        .map(|p| ((p.app.as_str(), p.replica), p))
        .collect();
    let decisions: HashMap<(&str, u32), &Decision> = input
        .schedule
        .decisions
        .iter()
        .map(|d| ((d.app.as_str(), d.replica), d))
        .collect();
    let mut moving: HashMap<&str, u32> = HashMap::new();
    for row in input.rows.iter().filter(|r| r.next.is_some()) {
        *moving.entry(row.app.as_str()).or_default() += 1;
    }
    let mut healthy = healthy_counts(input);
    for row in input.rows {
        let key = (row.app.as_str(), row.replica);
        // A replica no longer asked for (scaled down) is removed by the
        // round's other rules, replacement and all.
        let Some(d) = input
            .desired
            .get(&row.app)
            .filter(|d| row.replica < d.app.demand.replicas)
        else {
            continue;
        };
        let drain = row.node.as_deref().and_then(|n| input.drains.get(n));
        let past_deadline = drain
            .and_then(|d| d.deadline_at_us)
            .is_some_and(|deadline| input.now_us >= deadline);
        // where this replica's waits are said: its drain, else its update
        let mut wait = |why: String| match &row.node {
            Some(node) if drain.is_some() => waits.entry(node.clone()).or_default().push(why),
            _ => step
                .update_waits
                .entry(row.app.clone())
                .or_default()
                .push(why),
        };
        if let Some(next) = &row.next {
            step.handled.insert((row.app.clone(), row.replica));
            let refused = decisions.contains_key(&key)
                && placed.get(&key).is_none_or(|p| p.node != next.node);
            if !keeps(next, d, drain.is_some()) || refused {
                tracing::info!(
                    app = %row.app, replica = row.replica, replacement = %next.node,
                    "a replacement goes: its spec is no longer the one asked for, or its node no longer fits"
                );
                step.upsert.push(PlacementRow {
                    next: None,
                    ..(*row).clone()
                });
                continue;
            }
            let container = Container {
                app: &row.app,
                replica: row.replica,
                node: &next.node,
                id: &next.placement_id,
            };
            let check = d.app.has_healthcheck();
            let healthy_for =
                container.healthy_secs(input.states, check, next.since_us, input.now_us);
            let min = d.app.update.min_healthy_secs;
            if healthy_for.is_some_and(|secs| secs >= min) || past_deadline {
                step.upsert.push(PlacementRow {
                    node: Some(next.node.clone()),
                    placement_id: Some(next.placement_id.clone()),
                    address: next.address.clone(),
                    spec_hash: next.spec_hash.clone(),
                    decided_at: jiff::Timestamp::now().to_string(),
                    next: None,
                    ..(*row).clone()
                });
                continue;
            }
            let name = container.name();
            wait(match healthy_for {
                Some(secs) => format!(
                    "waiting for {name} on {} to be healthy for {min} s ({secs} s so far)",
                    next.node
                ),
                None => {
                    let waited = (input.now_us - next.since_us).max(0) / 1_000_000;
                    format!(
                        "waiting for {name} on {} to become healthy ({waited} s)",
                        next.node
                    )
                }
            });
            continue;
        }
        let starts = input.starting.contains(&(row.app.clone(), row.replica));
        if !(drain.is_some() || starts) {
            continue;
        }
        let Some(old) = at_node(row) else { continue };
        step.handled.insert((row.app.clone(), row.replica));
        let name = format!("{}-{}", row.app, row.replica);
        let running = moving.entry(row.app.as_str()).or_default();
        let target = placed.get(&key).copied();
        if let Some(target) = target {
            if drain.is_some() && *running >= d.app.update.max_parallel.max(1) {
                wait(format!(
                    "{name} waits: {running} replica(s) of {} already moving (max_parallel {})",
                    row.app, d.app.update.max_parallel
                ));
                continue;
            }
            *running += 1;
            let id = if target.node == old.node {
                fresh_id(row, &target.node, &target.spec_hash, input.now_us)
            } else {
                target.id.clone()
            };
            step.upsert.push(PlacementRow {
                next: Some(Replacement {
                    node: target.node.clone(),
                    placement_id: id,
                    address: input
                        .members
                        .get(target.node.as_str())
                        .and_then(|n| (input.address)(n)),
                    spec_hash: target.spec_hash.clone(),
                    since_us: input.now_us,
                }),
                ..(*row).clone()
            });
            wait(match drain {
                Some(_) => format!("moving {name} to {}", target.node),
                None => format!(
                    "replacing {name} on {} with one of spec {} on {}",
                    old.node,
                    short(&target.spec_hash),
                    target.node
                ),
            });
            continue;
        }
        let reason = decisions
            .get(&key)
            .and_then(|d| d.reason.clone())
            .unwrap_or_else(|| "no node fits".to_owned());
        let counted = healthy.entry(row.app.clone()).or_default();
        let own = u32::from(old.is_healthy(input.states, d.app.has_healthcheck()));
        let min = d.app.disruption.min_available;
        let spared = counted.saturating_sub(own) >= min;
        match drain {
            Some(_) if spared || past_deadline => {
                *counted -= own;
                step.upsert.push(drain::stopped(row, old.node, &reason));
            }
            Some(_) => wait(format!(
                "no node fits {name}: {reason}; stopping it would break min_available {min} \
                 ({counted} healthy)"
            )),
            None if spared => {
                *counted -= own;
                let id = fresh_id(row, old.node, d.spec(), input.now_us);
                wait(format!(
                    "updating {name} in place on {} (no node fits a replacement beside it: {reason})",
                    old.node
                ));
                step.upsert.push(PlacementRow {
                    placement_id: Some(id),
                    spec_hash: d.spec().to_owned(),
                    decided_at: jiff::Timestamp::now().to_string(),
                    ..(*row).clone()
                });
            }
            None => wait(format!(
                "no node fits a replacement of {name} beside it: {reason}; replacing it in place \
                 would break min_available {min} ({counted} healthy)"
            )),
        }
    }
    step.progress = drain::progress(input, &step, &waits);
    step
}

/// A placement id no container of this replica had: for a replacement on
/// its own node, or a replica updated in place.
fn fresh_id(row: &PlacementRow, node: &str, spec: &str, now_us: i64) -> String {
    let seed = format!("{}\0{}\0{node}\0{spec}\0{now_us}", row.app, row.replica);
    drover_catalog::sha256_hex(seed.as_bytes())[..8].to_owned()
}

/// Healthy replicas per app (old and replacement containers alike).
fn healthy_counts(input: &Inputs<'_>) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for row in input.rows {
        let Some(d) = input.desired.get(&row.app) else {
            continue;
        };
        let check = d.app.has_healthcheck();
        let replacement = row.next.as_ref().map(|n| Container {
            app: &row.app,
            replica: row.replica,
            node: &n.node,
            id: &n.placement_id,
        });
        let healthy = at_node(row)
            .into_iter()
            .chain(replacement)
            .filter(|c| c.is_healthy(input.states, check))
            .count() as u32;
        *counts.entry(row.app.clone()).or_default() += healthy.min(1);
    }
    counts
}
