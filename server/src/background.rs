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
//!
//! With several servers (see `crate::cluster`): the leader recompiles every
//! known node and writes their compile errors; a follower recompiles only
//! the nodes whose watches it holds, to wake them. A refresh that moved an
//! environment is announced to the other servers, which refresh too.
//! Retention runs on the leader only; the collection of contents only on
//! SQLite, since on PostgreSQL another server may have just stored a
//! content this one does not know is in use.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{self, notify};
use crate::compile::{self, Recompile};
use crate::db::Backend;
use crate::state::AppState;

/// Spawns the refresh loop and report retention on `tracker`; they stop,
/// and the live feed and the catalog watches close, when `shutdown` is
/// cancelled.
pub fn spawn(state: &AppState, shutdown: &CancellationToken, tracker: &TaskTracker) {
    tracker.spawn(state.cluster.clone().run(shutdown.clone()));
    let (looping, token) = (state.clone(), shutdown.clone());
    tracker.spawn(async move { refresh_loop(looping, token).await });
    // Notifications of CA changes only wake the one task that pulls: a
    // burst of enrollments on another server costs one pull per round, not
    // a task per notification.
    let ca_changed = Arc::new(tokio::sync::Notify::new());
    let runs_asked = Arc::new(tokio::sync::Notify::new());
    let (url, snapshots, ca, apps, runs, rollouts, token) = (
        state.config.database_url.clone(),
        state.snapshots.clone(),
        ca_changed.clone(),
        state.apps.clone(),
        runs_asked.clone(),
        state.rollouts.clone(),
        shutdown.clone(),
    );
    let me = state.cluster.id().to_owned();
    tracker.spawn(async move {
        notify::listen(&url, &me, token, |event| match event {
            notify::Event::Refresh => snapshots.wake(),
            notify::Event::Ca => ca.notify_one(),
            notify::Event::Placements => apps.reload.notify_one(),
            notify::Event::Runs => runs.notify_one(),
            notify::Event::Rollouts => {
                rollouts.reload.notify_one();
                rollouts.wake.notify_one();
            }
        })
        .await;
    });
    tracker.spawn(answer_runs(state.clone(), runs_asked, shutdown.clone()));
    if state.pki.store().replica().is_some() {
        tracker.spawn(follow_ca(state.pki.clone(), ca_changed, shutdown.clone()));
    }
    let (leader, retention) = (state.cluster.clone(), state.config.report_retention);
    tracker.spawn(cluster::while_leading(
        state.cluster.clone(),
        shutdown.clone(),
        move |stop| {
            let leader = leader.clone();
            async move { crate::retention::prune_loop(&leader, retention, stop).await }
        },
    ));
    if let Some(days) = state.config.node_ttl_days {
        let db = state.db.clone();
        tracker.spawn(cluster::while_leading(
            state.cluster.clone(),
            shutdown.clone(),
            move |stop| {
                let db = db.clone();
                async move { deactivate_silent(&db, days, stop).await }
            },
        ));
    }
    crate::apps::reload::spawn(state, shutdown, tracker);
    crate::rollout::spawn(state, shutdown, tracker);
    if state.db.backend() == Backend::Sqlite {
        tracker.spawn(state.collector().run(shutdown.clone()));
    }
    let (live, watches, token) = (state.live.clone(), state.watches.clone(), shutdown.clone());
    tracker.spawn(async move {
        token.cancelled().await;
        live.close();
        watches.close();
    });
}

/// How often a server brings its copy of the shared CA up to date without
/// being told (a lost notification).
const CA_PULL_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Brings this server's copy of the shared CA up to date (PostgreSQL) when
/// another server changed it, and every [`CA_PULL_EVERY`] anyway.
async fn follow_ca(pki: Arc<crate::tls::Pki>, changed: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = changed.notified() => {}
            () = tokio::time::sleep(CA_PULL_EVERY) => {}
        }
        let pki = pki.clone();
        let pulled = tokio::task::spawn_blocking(move || match pki.store().replica() {
            Some(replica) => replica.pull(),
            None => Ok(0),
        })
        .await;
        log_pull(pulled);
    }
}

fn log_pull(pulled: Result<anyhow::Result<usize>, tokio::task::JoinError>) {
    match pulled {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::debug!(files = n, "brought the shared CA's copy up to date"),
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "bringing the shared CA's copy up to date failed")
        }
        Err(e) => tracing::warn!(error = %e, "the CA's copy task failed"),
    }
}

/// One refresh: fetch, reparse moved environments, drop stale cache entries,
/// recompile known nodes of moved environments, then mark requests served.
pub async fn refresh(state: &AppState) {
    let (ticket, changed) = state.fetch().await;
    if !changed.is_empty() {
        state.cache.clear();
        // The leader's rollout loop starts a rollout for a staged commit.
        state.rollouts.wake.notify_one();
        if let Err(e) =
            notify::announce(&state.db, state.cluster.id(), notify::Event::Refresh).await
        {
            tracing::warn!(error = %e, "telling the other servers of the new commits failed");
        }
        recompile(state, &changed).await;
    }
    state.snapshots.finish(ticket);
}

/// The leader recompiles every known node; a follower the nodes it holds
/// watches for.
async fn recompile(state: &AppState, environments: &[String]) {
    let scope = if state.cluster.leadership().is_leader() {
        Recompile::Known
    } else {
        Recompile::Watched(state.watches.watched())
    };
    recompile_in(state, environments, scope).await;
}

async fn recompile_in(state: &AppState, environments: &[String], scope: Recompile) {
    if let Err(e) = compile::recompile_known(state, environments, scope).await {
        tracing::warn!(error = %e, "recompiling known nodes failed");
    }
}

async fn refresh_loop(state: AppState, shutdown: CancellationToken) {
    // First the nodes known from before the start: their compile errors
    // show and their watches hear of the commits loaded at start.
    let loaded = state.snapshots.names();
    // Every server learns every known node's version at start (a follower
    // too: any node may watch it next), so a daemon that missed a commit
    // while this server was down hears of it at its next watch.
    let scope = if state.cluster.leadership().is_leader() {
        Recompile::Known
    } else {
        Recompile::KnownVersions
    };
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = recompile_in(&state, &loaded, scope) => {}
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

/// Another server was asked to run nodes: this one tells those whose
/// watch it holds (with PostgreSQL; on SQLite the asking server holds them).
async fn answer_runs(state: AppState, asked: Arc<tokio::sync::Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = asked.notified() => {}
        }
        match crate::db::lifecycle::runs_requested(&state.db).await {
            Ok(nodes) => {
                let here = state.watches.watched();
                for node in nodes.iter().filter(|n| here.contains(*n)) {
                    state.watches.request_run(node);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the runs asked failed"),
        }
    }
}

/// `node_ttl_days`: the leader deactivates the nodes silent that long
/// (PuppetDB's node-ttl), hourly.
async fn deactivate_silent(db: &crate::db::Db, days: u64, stop: CancellationToken) {
    loop {
        let ttl_us = i64::try_from(days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
        let before = jiff::Timestamp::now()
            .as_microsecond()
            .saturating_sub(ttl_us);
        match crate::db::lifecycle::deactivate_silent(db, before).await {
            Ok(names) if !names.is_empty() => tracing::info!(
                nodes = %names.join(", "), days, "deactivated nodes silent for node_ttl_days"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deactivating silent nodes failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}
