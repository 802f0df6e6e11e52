//! Drains, make-before-break, as one step of the control loop's round.
//!
//! A replica on a draining node is left out of what the scheduler is told
//! runs, so the scheduler places it anew (a cordoned node takes nothing
//! new): that placement becomes its replacement (`next`), which runs beside
//! it. Once the replacement has been healthy for the app's
//! `update.min_healthy_secs` (healthy by its healthcheck, or running when it
//! has none, as its node's last report says), the row swaps to it and the
//! old node's catalog drops the replica. Replicas of one app move
//! `update.max_parallel` at a time; apps move in parallel.
//!
//! A replica that fits nowhere is stopped (left pending) only when the
//! app keeps `disruption.min_available` healthy replicas without it;
//! otherwise the drain waits and says why. When the drain's deadline
//! passes, what is left stops: a replacement is taken as it is, a replica
//! without one stops. Every wait is said in the drain's status.

use std::collections::{BTreeMap, HashMap, HashSet};

use drover_catalog::Repository;
use drover_catalog::schedule::{Decision, Placement, Schedule};

use super::placements::container_name;
use crate::db::apps::{FleetNode, PlacementRow, Replacement, ReplicaStateRow};
use crate::db::drains::{self, Drain};

/// What one round of drains decided.
#[derive(Debug, Default)]
pub struct Step {
    /// Rows to write.
    pub upsert: Vec<PlacementRow>,
    /// The replicas this step decided (the round's other rules leave them).
    pub handled: HashSet<(String, u32)>,
    /// (node, state, status) of each active drain.
    pub progress: Vec<(String, &'static str, String)>,
}

/// What the round knows that a drain reads.
pub struct Inputs<'a> {
    pub repo: &'a Repository,
    pub rows: &'a [&'a PlacementRow],
    pub schedule: &'a Schedule,
    /// Active drains by node.
    /// The active drains of this environment's nodes, by node.
    pub drains: &'a HashMap<String, Drain>,
    pub states: &'a HashMap<(String, String), ReplicaStateRow>,
    pub members: &'a HashMap<&'a str, &'a FleetNode>,
    pub now_us: i64,
}

/// What the scheduler is told runs now: a moving replica runs at its
/// replacement; one on a draining node without a replacement is left out,
/// so the scheduler places its replacement.
pub fn scheduler_view(rows: &[&PlacementRow], drains: &HashMap<String, Drain>) -> Vec<Placement> {
    rows.iter()
        .filter_map(|row| match &row.next {
            Some(next) => Some(Placement {
                node: next.node.clone(),
                id: next.placement_id.clone(),
                ..row.placement()?
            }),
            None => row.placement().filter(|p| !drains.contains_key(&p.node)),
        })
        .collect()
}

/// Moves what the drains ask for by one step.
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
        let app = input.repo.apps().find(|(name, _)| *name == row.app);
        let Some((_, Ok(app))) = app else { continue };
        let drain = row.node.as_deref().and_then(|n| input.drains.get(n));
        let past_deadline = drain
            .and_then(|d| d.deadline_at_us)
            .is_some_and(|deadline| input.now_us >= deadline);
        if let Some(next) = &row.next {
            step.handled.insert((row.app.clone(), row.replica));
            let mut row = (*row).clone();
            let mut next = next.clone();
            let mut respecified = false;
            if let Some(decision) = decisions.get(&key) {
                match placed.get(&key).filter(|p| p.node == next.node) {
                    // Placed again where its replacement runs (its app's
                    // spec changed): the replacement stays, with that spec.
                    Some(again) => {
                        row.spec_hash.clone_from(&again.spec_hash);
                        next.placement_id.clone_from(&again.id);
                        respecified = true;
                    }
                    // The replacement's node no longer fits: it goes, the
                    // replica stays where it is and moves again next round.
                    None => {
                        tracing::info!(
                            app = %row.app, replica = row.replica, replacement = %next.node,
                            reason = decision.reason.as_deref().unwrap_or(""),
                            "a replacement no longer fits its node"
                        );
                        step.upsert.push(PlacementRow { next: None, ..row });
                        continue;
                    }
                }
            }
            let healthy_for =
                healthy_secs(input, &row.app, row.replica, &next, app.has_healthcheck());
            let min = app.update.min_healthy_secs;
            if healthy_for.is_some_and(|secs| secs >= min) || past_deadline {
                step.upsert.push(PlacementRow {
                    node: Some(next.node.clone()),
                    placement_id: Some(next.placement_id.clone()),
                    address: next.address.clone(),
                    next: None,
                    ..row
                });
            } else if let Some(old) = &row.node {
                let container = container_name(&row.app, row.replica, &next.placement_id);
                let why = match healthy_for {
                    Some(secs) => format!(
                        "waiting for {container} on {} to be healthy for {min} s ({secs} s so far)",
                        next.node
                    ),
                    None => {
                        let waited = (input.now_us - next.since_us).max(0) / 1_000_000;
                        format!(
                            "waiting for {container} on {} to become healthy ({waited} s)",
                            next.node
                        )
                    }
                };
                waits.entry(old.clone()).or_default().push(why);
                if respecified {
                    step.upsert.push(PlacementRow {
                        next: Some(next),
                        ..row
                    });
                }
            }
            continue;
        }
        let (Some(node), true) = (&row.node, drain.is_some()) else {
            continue;
        };
        step.handled.insert((row.app.clone(), row.replica));
        let name = format!("{}-{}", row.app, row.replica);
        match placed.get(&key).filter(|p| p.node != *node) {
            Some(target) => {
                let running = moving.entry(row.app.as_str()).or_default();
                if *running >= app.update.max_parallel.max(1) {
                    waits.entry(node.clone()).or_default().push(format!(
                        "{name} waits: {running} replica(s) of {} already moving (max_parallel {})",
                        row.app, app.update.max_parallel
                    ));
                    continue;
                }
                *running += 1;
                step.upsert.push(PlacementRow {
                    // The replacement runs the app's spec of now.
                    spec_hash: target.spec_hash.clone(),
                    next: Some(Replacement {
                        node: target.node.clone(),
                        placement_id: target.id.clone(),
                        address: input
                            .members
                            .get(target.node.as_str())
                            .and_then(|n| super::control::address(input.repo, n)),
                        since_us: input.now_us,
                    }),
                    ..(*row).clone()
                });
                waits
                    .entry(node.clone())
                    .or_default()
                    .push(format!("moving {name} to {}", target.node));
            }
            None => {
                let reason = decisions
                    .get(&key)
                    .and_then(|d| d.reason.clone())
                    .unwrap_or_else(|| "no node fits".to_owned());
                let counted = healthy.entry(row.app.clone()).or_default();
                let own = u32::from(is_healthy(input, row, app.has_healthcheck()));
                let min = app.disruption.min_available;
                if past_deadline || counted.saturating_sub(own) >= min {
                    *counted -= own;
                    step.upsert.push(PlacementRow {
                        node: None,
                        placement_id: None,
                        address: None,
                        reason: Some(format!("stopped by the drain of {node}: {reason}")),
                        ..(*row).clone()
                    });
                } else {
                    waits.entry(node.clone()).or_default().push(format!(
                        "no node fits {name}: {reason}; stopping it would break min_available {min} \
                         ({counted} healthy)"
                    ));
                }
            }
        }
    }
    step.progress = progress(input, &step, &waits);
    step
}

/// Each active drain's state and status after this step.
fn progress(
    input: &Inputs<'_>,
    step: &Step,
    waits: &BTreeMap<String, Vec<String>>,
) -> Vec<(String, &'static str, String)> {
    let after: HashMap<(&str, u32), &PlacementRow> = step
        .upsert
        .iter()
        .map(|r| ((r.app.as_str(), r.replica), r))
        .collect();
    let mut out = Vec::new();
    for (node, drain) in input.drains {
        let left = input
            .rows
            .iter()
            .map(|r| {
                after
                    .get(&(r.app.as_str(), r.replica))
                    .copied()
                    .unwrap_or(r)
            })
            .filter(|r| r.node.as_deref() == Some(node.as_str()))
            .count();
        let past_deadline = drain
            .deadline_at_us
            .is_some_and(|deadline| input.now_us >= deadline);
        let (state, status) = if left == 0 && past_deadline {
            (
                drains::STOPPED,
                "the deadline passed: what was left was stopped; no replica left".to_owned(),
            )
        } else if left == 0 {
            (drains::DONE, "drained: no replica left".to_owned())
        } else {
            let said = waits.get(node).map(|w| w.join("; ")).unwrap_or_default();
            (drains::DRAINING, format!("{left} replica(s) left: {said}"))
        };
        out.push((node.clone(), state, status));
    }
    out
}

/// Healthy replicas per app (old and replacement containers alike).
fn healthy_counts(input: &Inputs<'_>) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for row in input.rows {
        let Some(Ok(app)) = input
            .repo
            .apps()
            .find(|(name, _)| *name == row.app)
            .map(|(_, app)| app)
        else {
            continue;
        };
        *counts.entry(row.app.clone()).or_default() +=
            u32::from(is_healthy(input, row, app.has_healthcheck()));
    }
    counts
}

fn is_healthy(input: &Inputs<'_>, row: &PlacementRow, has_check: bool) -> bool {
    let (Some(node), Some(id)) = (&row.node, &row.placement_id) else {
        return false;
    };
    let container = container_name(&row.app, row.replica, id);
    input
        .states
        .get(&(node.clone(), container))
        .is_some_and(|s| healthy_state(&s.state, has_check))
}

fn healthy_state(state: &str, has_check: bool) -> bool {
    state == "healthy" || (state == "running" && !has_check)
}

/// How long the replacement has been healthy, as its node reported it.
fn healthy_secs(
    input: &Inputs<'_>,
    app: &str,
    replica: u32,
    next: &Replacement,
    has_check: bool,
) -> Option<u64> {
    let container = container_name(app, replica, &next.placement_id);
    let state = input.states.get(&(next.node.clone(), container))?;
    if !healthy_state(&state.state, has_check) {
        return None;
    }
    let since = state
        .since
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(next.since_us, |t| t.as_microsecond());
    Some(u64::try_from((input.now_us - since).max(0) / 1_000_000).unwrap_or(0))
}
