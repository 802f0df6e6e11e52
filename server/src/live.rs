//! New reports as they are stored, for the dashboard pages that are open.
//!
//! A broadcast channel: a slow page misses events (it refreshes anyway on
//! the next one) instead of holding memory, and shutdown closes every stream
//! so that open pages never hold the server's graceful shutdown.

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Enough for a burst of reports between two refreshes of a page.
const CAPACITY: usize = 256;

/// One stored report, as the live feed announces it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredReport {
    pub node: String,
    pub run_id: String,
    pub status: String,
}

#[derive(Debug)]
pub struct Live {
    sender: broadcast::Sender<StoredReport>,
    closed: CancellationToken,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            sender: broadcast::channel(CAPACITY).0,
            closed: CancellationToken::new(),
        }
    }
}

impl Live {
    /// Announces a report; nobody listening is fine.
    pub fn publish(&self, report: StoredReport) {
        let _ = self.sender.send(report);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StoredReport> {
        self.sender.subscribe()
    }

    /// Cancelled when the server shuts down: every stream ends.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    pub fn close(&self) {
        self.closed.cancel();
    }
}
