//! sd_notify(3): READY, STATUS, WATCHDOG and STOPPING messages to the
//! service manager.
//!
//! `libsystemd` sends them: it reads `$NOTIFY_SOCKET` on every send and
//! understands both forms systemd uses, a path and an `@abstract` address
//! (the `sd-notify` crate connects to the string as a path, so an abstract
//! address would fail).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libsystemd::daemon::{self, NotifyState};

/// The connection to the service manager; every method is a no-op when the
/// agent was not started by systemd with `Type=notify`.
#[derive(Debug)]
pub(crate) struct Notifier {
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, so a child that inherits
    /// the variables does not think the watchdog is its own).
    pub(crate) fn from_env() -> Notifier {
        Notifier {
            watchdog: daemon::watchdog_enabled(false).filter(|timeout| !timeout.is_zero()),
            warned: AtomicBool::new(false),
        }
    }

    /// How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises.
    pub(crate) fn ping_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status.to_owned())]);
    }

    pub(crate) fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status.to_owned())]);
    }

    /// A watchdog ping (when the watchdog is on) together with a fresh status line.
    pub(crate) fn alive(&self, status: &str) {
        let status = NotifyState::Status(status.to_owned());
        match self.watchdog {
            Some(_) => self.send(&[NotifyState::Watchdog, status]),
            None => self.send(&[status]),
        }
    }

    pub(crate) fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    pub(crate) fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status(super::status::STOPPING.to_owned()),
        ]);
    }

    /// A notification that cannot be sent is worth one warning, not one every ping.
    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = daemon::notify(false, states)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            crate::output::warning(&format!(
                "cannot notify systemd through $NOTIFY_SOCKET: {e}\n\
                 hint: systemd sees neither readiness nor watchdog pings (the watchdog will \
                 restart the agent); check that the socket in $NOTIFY_SOCKET is reachable"
            ));
        }
    }
}
