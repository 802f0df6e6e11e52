//! Staged rollouts on the server: every server's copy of the `rollouts`
//! rows ([`Rollouts`], reloaded on a notification and every
//! [`RELOAD_EVERY`]) and [`pick`], the one decision of which commit a
//! node's catalog is compiled from (both in `pick.rs`, which the compile
//! path imports), and the reload that recompiles the nodes
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
pub mod pick;
pub mod view;

use std::time::Duration;

pub use pick::{Pick, Rollouts, pick};

use crate::compile::{self, Recompile};
use crate::state::AppState;

/// How often a server reloads the rollouts without being told.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Reloads the rows and recompiles the nodes of environments whose row
/// changed: the leader every known node (writing compile errors), a
/// follower the nodes that watch it.
pub async fn reload(state: &AppState) {
    let changed = match state.rollouts.load(&state.db, &state.snapshots).await {
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
