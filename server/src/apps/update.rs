//! App updates: which spec each app's replicas are to run, and how its
//! update goes, decided at the start of each round of the control loop
//! from the commit, the stored update (`app_updates`) and what reports say.
//!
//! - A commit that changes an app's spec starts an update (`rolling`):
//!   the replicas of the old spec are replaced, make-before-break, by the
//!   replacement step (`moves`).
//! - The update is `done` once every replica runs the new spec and is
//!   healthy; that spec becomes the app's stable one.
//! - A replica of the new spec that is not healthy within
//!   `update.healthy_deadline_secs` (a replacement since it was placed, a
//!   replica updated in place since its decision) fails the update: with
//!   `auto_revert` and a stable spec stored, the app goes back to it
//!   (`reverted`: the replicas of the failed spec are replaced by ones of
//!   the stable spec the same way); without, it is `failed`: what runs
//!   stays, failing replacements go, nothing more is replaced.
//! - Either holds until a commit changes the spec again.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use drover_catalog::{App, Repository};

use super::health::{Container, States, micros};
use crate::db::apps::PlacementRow;
use crate::db::updates::{AppUpdate, DONE, FAILED, REVERTED, ROLLING};

/// What an app's replicas are to run this round.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The commit's app, or the stable one it reverted to.
    pub app: Arc<App>,
    /// Whether replicas of another spec are replaced (not after a failure
    /// without revert).
    pub rolling: bool,
}

impl Desired {
    pub fn spec(&self) -> &str {
        &self.app.demand.spec_hash
    }
}

/// What one environment's update step reads.
pub struct Round<'a> {
    pub environment: &'a str,
    pub repo: &'a Repository,
    /// The environment's placements (of valid apps).
    pub rows: &'a [&'a PlacementRow],
    /// The environment's stored updates, by app.
    pub updates: &'a HashMap<String, AppUpdate>,
    /// Stored app file bodies by (app, spec hash).
    pub bodies: &'a HashMap<(String, String), Arc<str>>,
    pub states: &'a States,
    pub now_us: i64,
}

/// What the update step decided.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per valid app of the commit.
    pub desired: HashMap<String, Desired>,
    /// Each valid app's update after this round, by app.
    pub updates: HashMap<String, AppUpdate>,
}

/// Moves each app's update on by what this round sees.
pub fn advance(round: &Round<'_>) -> Outcome {
    let mut outcome = Outcome::default();
    for (name, app) in round.repo.apps() {
        let Ok(app) = app else { continue };
        let rows: Vec<&PlacementRow> = round
            .rows
            .iter()
            .filter(|r| r.app == name)
            .copied()
            .collect();
        let old = round.updates.get(name);
        let next = next_state(round, app, &rows, old);
        outcome
            .desired
            .insert(name.to_owned(), desired(round, app, &next));
        outcome.updates.insert(name.to_owned(), next);
    }
    outcome
}

/// The updates to write: those that differ from what is stored, a rolling
/// one saying what it waits for (`waits`, from the replacement step). A
/// change of what it says alone keeps its `since`.
pub fn changed(
    stored: &HashMap<String, AppUpdate>,
    updates: HashMap<String, AppUpdate>,
    waits: &BTreeMap<String, Vec<String>>,
) -> Vec<AppUpdate> {
    let mut out: Vec<AppUpdate> = updates
        .into_values()
        .filter_map(|mut u| {
            if u.state == ROLLING {
                u.reason = waits.get(&u.app).map(|w| w.join("; "));
            }
            let Some(old) = stored.get(&u.app) else {
                return Some(u);
            };
            if (&old.spec_hash, &old.state) == (&u.spec_hash, &u.state) {
                u.since.clone_from(&old.since);
            }
            (*old != u).then_some(u)
        })
        .collect();
    out.sort_by(|a, b| a.app.cmp(&b.app));
    out
}

fn next_state(
    round: &Round<'_>,
    app: &App,
    rows: &[&PlacementRow],
    old: Option<&AppUpdate>,
) -> AppUpdate {
    let spec = &app.demand.spec_hash;
    let now = jiff::Timestamp::now().to_string();
    let fresh = |state: &str, stable: Option<String>, reason: Option<String>| AppUpdate {
        environment: round.environment.to_owned(),
        app: app.name.clone(),
        spec_hash: spec.clone(),
        stable_spec_hash: stable,
        state: state.to_owned(),
        reason,
        since: now.clone(),
    };
    let Some(old) = old else {
        return match settled(round, app, rows) {
            true => fresh(DONE, Some(spec.clone()), None),
            false => fresh(ROLLING, None, None),
        };
    };
    if old.spec_hash != *spec {
        return fresh(ROLLING, old.stable_spec_hash.clone(), None);
    }
    if old.state != ROLLING {
        return old.clone();
    }
    if let Some(why) = failure(round, app, rows) {
        let stable = old.stable_spec_hash.as_ref().filter(|s| *s != spec);
        let stored =
            stable.filter(|s| round.bodies.contains_key(&(app.name.clone(), (*s).clone())));
        return match (app.update.auto_revert, stored) {
            (true, Some(stable)) => fresh(
                REVERTED,
                old.stable_spec_hash.clone(),
                Some(format!(
                    "{why}; reverted to spec {}, the last one every replica was healthy at",
                    short(stable)
                )),
            ),
            (true, None) => fresh(
                FAILED,
                old.stable_spec_hash.clone(),
                Some(format!(
                    "{why}; no earlier spec was healthy, so there is nothing to revert to"
                )),
            ),
            (false, _) => fresh(
                FAILED,
                old.stable_spec_hash.clone(),
                Some(format!("{why}; auto_revert is off, so what runs stays")),
            ),
        };
    }
    if settled(round, app, rows) {
        return fresh(DONE, Some(spec.clone()), None);
    }
    old.clone()
}

/// The spec an app's replicas are to run, by its update's state.
fn desired(round: &Round<'_>, app: &App, update: &AppUpdate) -> Desired {
    let current = || Arc::new(app.clone());
    match update.state.as_str() {
        REVERTED => {
            let stable = update
                .stable_spec_hash
                .as_ref()
                .and_then(|s| round.bodies.get(&(app.name.clone(), s.clone())))
                .and_then(|body| App::parse(&app.name, body).ok());
            match stable {
                Some(stable) => Desired {
                    app: Arc::new(stable),
                    rolling: true,
                },
                None => Desired {
                    app: current(),
                    rolling: false,
                },
            }
        }
        FAILED => Desired {
            app: current(),
            rolling: false,
        },
        _ => Desired {
            app: current(),
            rolling: true,
        },
    }
}

/// Every replica asked for runs `app`'s spec, alone, and is healthy.
fn settled(round: &Round<'_>, app: &App, rows: &[&PlacementRow]) -> bool {
    let check = app.has_healthcheck();
    rows.len() == app.demand.replicas as usize
        && rows.iter().all(|row| {
            row.next.is_none()
                && row.spec_hash == app.demand.spec_hash
                && at_node(row).is_some_and(|c| c.is_healthy(round.states, check))
        })
}

/// The first replica of `app`'s spec not healthy within its deadline.
fn failure(round: &Round<'_>, app: &App, rows: &[&PlacementRow]) -> Option<String> {
    let spec = &app.demand.spec_hash;
    let deadline = app.update.healthy_deadline_secs;
    let deadline_us = i64::try_from(deadline)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    let check = app.has_healthcheck();
    rows.iter().find_map(|row| {
        let (container, since_us) = match &row.next {
            Some(next) if next.spec_hash == *spec && row.spec_hash != *spec => (
                Container {
                    app: &row.app,
                    replica: row.replica,
                    node: &next.node,
                    id: &next.placement_id,
                },
                next.since_us,
            ),
            None if row.spec_hash == *spec => (at_node(row)?, micros(&row.decided_at)),
            _ => return None,
        };
        let late = round.now_us.saturating_sub(since_us) > deadline_us;
        (late && !container.is_healthy(round.states, check)).then(|| {
            format!(
                "{} on {} was not healthy within healthy_deadline_secs ({deadline} s): it is {}",
                container.name(),
                container.node,
                container.said(round.states)
            )
        })
    })
}

/// The replica's container at its node, when placed.
pub fn at_node(row: &PlacementRow) -> Option<Container<'_>> {
    Some(Container {
        app: &row.app,
        replica: row.replica,
        node: row.node.as_deref()?,
        id: row.placement_id.as_deref()?,
    })
}

/// The first 8 hex digits of a spec hash, as the API and logs show it.
pub fn short(spec: &str) -> &str {
    spec.get(..8).unwrap_or(spec)
}
