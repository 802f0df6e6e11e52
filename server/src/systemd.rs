//! The server under systemd (`Type=notify`, see `server/systemd/`): READY=1
//! once it listens, a watchdog ping while the database takes writes (the
//! same check as `/healthz`; a server that cannot store reports is
//! restarted rather than left accepting them into nothing), STOPPING=1 on
//! shutdown, and SIGHUP (`systemctl reload`) re-reads what can be re-read
//! without a restart: the repository (a refresh now) and the operator
//! tokens. Everything is a no-op outside systemd.

use std::time::Duration;

use libsystemd::daemon::{self, NotifyState};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

fn send(states: &[NotifyState]) {
    if let Err(e) = daemon::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Tells systemd the server serves.
pub fn ready(listen: &str) {
    send(&[
        NotifyState::Ready,
        NotifyState::Status(format!("serving on {listen}")),
    ]);
}

/// Tells systemd the server is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its timeout while the database takes writes;
/// returns at `stop`. Without `WatchdogSec=` it returns at once.
pub async fn watchdog(state: AppState, stop: CancellationToken) {
    let Some(timeout) = daemon::watchdog_enabled(false).filter(|t| !t.is_zero()) else {
        return;
    };
    let every = timeout / 2;
    loop {
        match state.db.health().await {
            Ok(()) => send(&[NotifyState::Watchdog]),
            Err(e) => {
                tracing::error!(error = %e, "the database takes no writes: no watchdog ping");
                send(&[NotifyState::Status(format!("database refuses writes: {e}"))]);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every.min(Duration::from_secs(30))) => {}
        }
    }
}

/// SIGHUP: refresh the repository now and re-read the operator tokens.
pub async fn reload_on_sighup(state: AppState, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler");
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        send(&[NotifyState::Reloading]);
        state.snapshots.wake();
        match state.operators.reload() {
            Ok(()) => tracing::info!("SIGHUP: refreshing the repository, operator tokens re-read"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the operator tokens were not re-read; the old ones stay")
            }
        }
        send(&[NotifyState::Ready]);
    }
}
