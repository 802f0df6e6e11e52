//! Which nodes are alive, as this server hears them: a daemon's open catalog
//! watch is its heartbeat (held for as long as the agent runs, dropped when
//! its connection closes), and any request counts once. Each server writes
//! what it heard to `node_liveness` every few seconds, in one write for all
//! nodes, so the leader's control loop sees every server's heartbeats.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::{self, Db};

#[derive(Debug, Default)]
pub struct Liveness {
    inner: Mutex<Heard>,
}

#[derive(Debug, Default)]
struct Heard {
    /// Open watches per node.
    watching: HashMap<String, usize>,
    /// Heard from since the last flush (a request, a watch that ended).
    since_flush: HashSet<String>,
}

/// Held for as long as a node's watch is open.
#[derive(Debug)]
pub struct Watching {
    liveness: Arc<Liveness>,
    node: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut heard = self.liveness.lock();
        heard.since_flush.insert(self.node.clone());
        if let Some(open) = heard.watching.get_mut(&self.node) {
            *open -= 1;
            if *open == 0 {
                heard.watching.remove(&self.node);
            }
        }
    }
}

impl Liveness {
    /// The node was heard from now.
    pub fn heard(&self, node: &str) {
        self.lock().since_flush.insert(node.to_owned());
    }

    /// The node holds a watch open until the guard drops.
    pub fn watching(self: &Arc<Self>, node: &str) -> Watching {
        *self.lock().watching.entry(node.to_owned()).or_default() += 1;
        Watching {
            liveness: self.clone(),
            node: node.to_owned(),
        }
    }

    /// The nodes alive now: every open watch, and every node heard from
    /// since the last call.
    fn take_alive(&self) -> Vec<String> {
        let mut heard = self.lock();
        let mut alive: HashSet<String> = std::mem::take(&mut heard.since_flush);
        alive.extend(heard.watching.keys().cloned());
        let mut alive: Vec<String> = alive.into_iter().collect();
        alive.sort();
        alive
    }

    fn lock(&self) -> MutexGuard<'_, Heard> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what this server heard every `period` until `shutdown`.
    pub async fn flush_loop(
        self: Arc<Self>,
        db: Db,
        period: impl Fn() -> Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period()) => {}
            }
            let alive = self.take_alive();
            let now = jiff::Timestamp::now().as_microsecond();
            if let Err(e) = db::apps::touch_liveness(&db, alive, now).await {
                tracing::warn!(error = %e, "recording the nodes' heartbeats failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_watch_keeps_a_node_alive_and_a_closed_one_counts_once() {
        let liveness = Arc::new(Liveness::default());
        let first = liveness.watching("web-1");
        let second = liveness.watching("web-1");
        liveness.heard("db-1");
        assert_eq!(liveness.take_alive(), ["db-1", "web-1"]);
        drop(first);
        assert_eq!(liveness.take_alive(), ["web-1"], "one watch is still open");
        drop(second);
        assert_eq!(
            liveness.take_alive(),
            ["web-1"],
            "the closed watch counts once"
        );
        assert!(liveness.take_alive().is_empty());
    }
}
