//! The agent as a systemd service: readiness, status and watchdog pings over
//! `$NOTIFY_SOCKET` (sd_notify), the watchdog's time budget for a run, the
//! status line `systemctl status` shows, and the journal's native protocol.
//!
//! Everything here is a no-op outside systemd: without `$NOTIFY_SOCKET`
//! nothing is sent, without `$WATCHDOG_USEC` nothing pings, and output stays
//! plain lines unless stderr is the journal stream systemd connected.

pub(crate) mod journal;
pub(crate) mod notify;
pub(crate) mod status;
pub(crate) mod watchdog;

pub(crate) use notify::Notifier;
