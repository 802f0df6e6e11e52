//! Keeping every server's placements current: the background tasks (the
//! heartbeat writer, the reloads, the control loop while leading), the
//! reload that recompiles the catalogs placements change, and what a report
//! of replica states sets off.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster;
use crate::compile::{self, Recompile};
use crate::state::AppState;

use super::control;

/// How often a server reloads placements without being told (a lost
/// notification).
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Spawns the heartbeat writer, the placements' reloads and, while this
/// server leads, the control loop.
pub fn spawn(state: &AppState, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let period_state = state.clone();
    tracker.spawn(state.apps.liveness.clone().flush_loop(
        state.db.clone(),
        move || heartbeat_period(&period_state),
        shutdown.clone(),
    ));
    let (reloading, token) = (state.clone(), shutdown.clone());
    tracker.spawn(async move {
        loop {
            placements_changed(&reloading).await;
            tokio::select! {
                () = token.cancelled() => return,
                () = reloading.apps.reload.notified() => {}
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
        }
    });
    let controlling = state.clone();
    tracker.spawn(cluster::while_leading(
        state.cluster.clone(),
        shutdown.clone(),
        move |stop| {
            let (state, wake) = (controlling.clone(), controlling.apps.wake_control.clone());
            control::run(state, wake, stop)
        },
    ));
}

/// Heartbeats are written five times per `lost_after` (of the default
/// environment's policy, for the nodes this server hears), at least every
/// second and at most every 15 s.
fn heartbeat_period(state: &AppState) -> Duration {
    let default = state.snapshots.default_environment();
    let lost_after = state
        .snapshots
        .get(&default)
        .and_then(|snap| snap.repo.as_ref().ok().cloned())
        .map_or(60, |repo| {
            repo.policy()
                .lost_after_secs_for(state.watches.watched().len())
        });
    Duration::from_secs((lost_after / 5).clamp(1, 15))
}

/// Reloads the placements and recompiles the nodes whose catalogs they
/// change (which wakes their watches). The leader writes those nodes'
/// compile errors; a follower only wakes the ones watching it.
pub async fn placements_changed(state: &AppState) {
    let affected = match state
        .apps
        .placements
        .reload(&state.db, &state.snapshots)
        .await
    {
        Ok(affected) => affected,
        Err(e) => {
            tracing::warn!(error = %e, "reloading the placements failed");
            return;
        }
    };
    if affected.is_empty() {
        return;
    }
    let environments = state.snapshots.names();
    let scope = if state.cluster.leadership().is_leader() {
        Recompile::Placed(affected)
    } else {
        let watched = state.watches.watched();
        Recompile::Watched(affected.intersection(&watched).cloned().collect())
    };
    if let Err(e) = compile::recompile_known(state, &environments, scope).await {
        tracing::warn!(error = %e, "recompiling the nodes of changed placements failed");
    }
}

/// Whether a stored report may have changed what the replica states say:
/// it lists replicas, or its node had some.
pub fn may_change_replicas(state: &AppState, report: &drover_catalog::Report) -> bool {
    !report.replicas.is_empty() || state.apps.placements.current().has_states(&report.node)
}

/// After a report changed replica states: this server reloads (and
/// recompiles the catalogs that read them) in the background, the others
/// are told, and the control loop is woken.
pub fn replicas_reported(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        placements_changed(&state).await;
        state.apps.wake_control.notify_one();
        if let Err(e) = crate::cluster::notify::announce(
            &state.db,
            state.cluster.id(),
            crate::cluster::notify::Event::Placements,
        )
        .await
        {
            tracing::warn!(error = %e, "telling the other servers of replica states failed");
        }
    });
}
