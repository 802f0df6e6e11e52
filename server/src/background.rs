//! The server's background work: the refresh loop (fetch, reparse the
//! environments that moved, recompile their known nodes), report retention
//! and the collection of unreferenced contents. Stopped by the shutdown token.
//!
//! Recompiling known nodes: after a refresh moves an environment,
//! `recompile_known` compiles its known nodes with their stored facts, as
//! many at once as there are compile slots, publishing each good version to
//! the node's watch as soon as its compile is done and writing a compile
//! error only when it changed; the compiles land in the compile cache, so the
//! nodes' own requests that follow are cache hits. At start the server loads
//! the environments and listens first; the recompile of the nodes known from
//! before runs in the background.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::compile;
use crate::state::AppState;

/// Spawns the refresh loop and report retention on `tracker`; they stop,
/// and the live feed and the catalog watches close, when `shutdown` is
/// cancelled.
pub fn spawn(state: &AppState, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let (looping, token) = (state.clone(), shutdown.clone());
    tracker.spawn(async move { refresh_loop(looping, token).await });
    let (db, retention, token) = (
        state.db.clone(),
        state.config.report_retention,
        shutdown.clone(),
    );
    tracker.spawn(crate::retention::prune_loop(db, retention, token));
    tracker.spawn(state.collector().run(shutdown.clone()));
    let (live, watches, token) = (state.live.clone(), state.watches.clone(), shutdown.clone());
    tracker.spawn(async move {
        token.cancelled().await;
        live.close();
        watches.close();
    });
}

/// One refresh: fetch, reparse moved environments, drop stale cache entries,
/// recompile known nodes of moved environments, then mark requests served.
pub async fn refresh(state: &AppState) {
    let (ticket, changed) = state.fetch().await;
    if !changed.is_empty() {
        state.cache.clear();
        recompile(state, &changed).await;
    }
    state.snapshots.finish(ticket);
}

async fn recompile(state: &AppState, environments: &[String]) {
    if let Err(e) = compile::recompile_known(state, environments).await {
        tracing::warn!(error = %e, "recompiling known nodes failed");
    }
}

async fn refresh_loop(state: AppState, shutdown: CancellationToken) {
    // First the nodes known from before the start: their compile errors
    // show and their watches hear of the commits loaded at start.
    let loaded: Vec<String> = state
        .snapshots
        .list()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = recompile(&state, &loaded) => {}
    }
    let interval = state.config.refresh_interval;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
            () = state.snapshots.woken() => {}
        }
        refresh(&state).await;
    }
}
