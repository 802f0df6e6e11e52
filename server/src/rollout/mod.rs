//! Staged rollouts on the server: every server's copy of the `rollouts`
//! rows ([`Rollouts`], reloaded on a notification and every
//! [`RELOAD_EVERY`]), [`pick`], the one decision of which commit a node's
//! catalog is compiled from, and the reload that recompiles the nodes
//! whose commit changed (which wakes their watches). The state machine is
//! in `control` (on the leader only); `view` is what the API, the CLI and
//! the dashboard show.
//!
//! A new commit during a rollout replaces it: the new rollout goes from
//! the commit the stages not yet reached run (the old `from`) to the new
//! commit, starting again at the first stage; nodes of the old rollout's
//! passed stages that are not in the new first stage return to `from`.
//! After an abort the next commit rolls out from the commit the abort went
//! back to. A commit without `[rollout]` reaches every node at once.

pub mod control;
pub mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::compile::{self, Recompile};
use crate::db::rollouts::{self, ABORTED, DONE, Rollout};
use crate::state::AppState;

/// How often a server reloads the rollouts without being told.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Which commit a node's catalog is compiled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The environment's newest commit.
    Head,
    /// An earlier commit: the rollout has not reached the node.
    Commit(String),
}

/// The commit `node` is served in an environment whose newest commit is
/// `head` (`staged`: that commit has a `[rollout]`), given the rollout row.
/// Until the leader has seen a new staged commit (the row's `to` is not
/// `head`), every node keeps what the row serves it, so no node outruns
/// its stage in between.
pub fn pick(node: &str, head: &str, staged: bool, rollout: Option<&Rollout>) -> Pick {
    let Some(r) = rollout else {
        return Pick::Head;
    };
    let serves = match r.state.as_str() {
        DONE => &r.to_commit,
        ABORTED => &r.from_commit,
        _ if r.reached(node) => &r.to_commit,
        _ => &r.from_commit,
    };
    if (r.to_commit != head && !staged) || serves == head {
        Pick::Head
    } else {
        Pick::Commit(serves.clone())
    }
}

/// Every server's copy of the rollout rows, by environment.
#[derive(Debug, Default)]
pub struct Rollouts {
    rows: RwLock<BTreeMap<String, Arc<Rollout>>>,
    /// Wakes the leader's rollout loop (a commit, an operator's request).
    pub wake: Arc<tokio::sync::Notify>,
    /// Wakes every server's reload (another server wrote).
    pub reload: Arc<tokio::sync::Notify>,
}

impl Rollouts {
    pub fn get(&self, environment: &str) -> Option<Arc<Rollout>> {
        self.rows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(environment)
            .cloned()
    }

    /// Replaces the copy; the environments whose row changed in a way that
    /// may change a node's commit.
    fn replace(&self, fresh: Vec<Rollout>) -> Vec<String> {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = Vec::new();
        let mut next = BTreeMap::new();
        for row in fresh {
            let moved = rows.get(&row.environment).is_none_or(|old| {
                (&old.from_commit, &old.to_commit, &old.state, old.stage, &old.stages)
                    != (&row.from_commit, &row.to_commit, &row.state, row.stage, &row.stages)
            });
            if moved {
                changed.push(row.environment.clone());
            }
            next.insert(row.environment.clone(), Arc::new(row));
        }
        *rows = next;
        changed
    }
}

/// Reads the rows, makes sure the commits they serve are at hand (a
/// previous commit is read from the mirror after a restart), and swaps the
/// copy. The environments whose nodes may be served another commit now.
pub async fn load(state: &AppState) -> Result<Vec<String>, crate::error::AppError> {
    let fresh = rollouts::rollouts(&state.db).await?;
    let mut wanted = Vec::new();
    for row in &fresh {
        for commit in [&row.from_commit, &row.to_commit] {
            wanted.push((row.environment.clone(), commit.clone()));
        }
    }
    state.snapshots.keep_commits(&wanted).await;
    Ok(state.rollouts.replace(fresh))
}

/// Reloads the rows and recompiles the nodes of environments whose row
/// changed: the leader every known node (writing compile errors), a
/// follower the nodes that watch it.
pub async fn reload(state: &AppState) {
    let changed = match load(state).await {
        Ok(changed) => changed,
        Err(e) => {
            tracing::warn!(error = %e, "reloading the rollouts failed");
            return;
        }
    };
    if changed.is_empty() {
        return;
    }
    let scope = if state.cluster.leadership().is_leader() {
        Recompile::Known
    } else {
        Recompile::Watched(state.watches.watched())
    };
    if let Err(e) = compile::recompile_known(state, &changed, scope).await {
        tracing::warn!(error = %e, "recompiling the nodes of a rollout failed");
    }
}

/// Spawns the reloads and, while this server leads, the rollout loop.
pub fn spawn(
    state: &AppState,
    shutdown: &tokio_util::sync::CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) {
    let (reloading, token) = (state.clone(), shutdown.clone());
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = reloading.rollouts.reload.notified() => {}
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            reload(&reloading).await;
        }
    });
    let leading = state.clone();
    tracker.spawn(crate::cluster::while_leading(
        state.cluster.clone(),
        shutdown.clone(),
        move |stop| control::run(leading.clone(), stop),
    ));
}

#[cfg(test)]
mod tests;
