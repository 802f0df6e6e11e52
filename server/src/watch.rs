//! The catalog version each node would get now, and the nodes waiting to
//! hear that it moved (the long-poll of `GET nodes/{name}/catalog/watch`).
//!
//! In memory only: a restart forgets every version, and the next compile
//! (a node's catalog request, or the recompile after a git refresh) puts it
//! back. A waiter that finds no version waits for one. The map holds one
//! entry per node the server compiled for, plus one per node being waited
//! for without a version, removed when its last waiter goes: it stays
//! bounded by the nodes that hold certificates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Version = Option<Arc<str>>;

#[derive(Debug, Default)]
pub struct Watches {
    nodes: Mutex<HashMap<String, watch::Sender<Version>>>,
    closed: CancellationToken,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The version the server knows now when it differs from the one held,
    /// else the one held.
    pub version: Option<String>,
    pub changed: bool,
}

impl Watches {
    /// Records the version compiled for `node` and wakes its waiters when
    /// it moved.
    pub fn publish(&self, node: &str, version: &str) {
        let mut nodes = self.lock();
        if let Some(sender) = nodes.get(node) {
            sender.send_if_modified(|known| {
                if known.as_deref() == Some(version) {
                    return false;
                }
                *known = Some(Arc::from(version));
                true
            });
        } else {
            nodes.insert(
                node.to_owned(),
                watch::Sender::new(Some(Arc::from(version))),
            );
        }
    }

    /// The version known for `node`, if any.
    pub fn known(&self, node: &str) -> Option<String> {
        let nodes = self.lock();
        let version = nodes.get(node)?.borrow().clone();
        version.map(|v| v.to_string())
    }

    /// Waits until the server knows a version of `node` other than `held`
    /// (at once when it already does), at most `timeout`, and no longer
    /// than until [`Watches::close`].
    pub async fn wait(&self, node: &str, held: Option<&str>, timeout: Duration) -> Outcome {
        let mut receiver = self.subscribe(node);
        let unchanged = || Outcome {
            version: held.map(str::to_owned),
            changed: false,
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let outcome = loop {
            let known = receiver.borrow_and_update().clone();
            if let Some(known) = known.filter(|k| Some(&**k) != held) {
                break Outcome {
                    version: Some(known.to_string()),
                    changed: true,
                };
            }
            tokio::select! {
                changed = receiver.changed() => {
                    // The sender lives in the map for as long as a receiver
                    // does; gone means the entry was replaced, not changed.
                    if changed.is_err() {
                        break unchanged();
                    }
                }
                () = &mut deadline => break unchanged(),
                () = self.closed.cancelled() => break unchanged(),
            }
        };
        drop(receiver);
        self.forget_if_unused(node);
        outcome
    }

    /// The nodes this server compiled for or holds a watch of: the nodes
    /// that talk to it.
    pub fn watched(&self) -> std::collections::BTreeSet<String> {
        self.lock().keys().cloned().collect()
    }

    /// Ends every wait (server shutdown), and the ones that start later at once.
    pub fn close(&self) {
        self.closed.cancel();
    }

    fn subscribe(&self, node: &str) -> watch::Receiver<Version> {
        self.lock()
            .entry(node.to_owned())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    /// Drops the entry of a node with no version once nobody waits for it.
    fn forget_if_unused(&self, node: &str) {
        let mut nodes = self.lock();
        if nodes
            .get(node)
            .is_some_and(|s| s.receiver_count() == 0 && s.borrow().is_none())
        {
            nodes.remove(node);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<Version>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_different_known_version_answers_at_once() {
        let watches = Watches::default();
        watches.publish("web-1", "v2");
        let outcome = watches.wait("web-1", Some("v1"), LONG).await;
        assert_eq!(outcome.version.as_deref(), Some("v2"));
        assert!(outcome.changed);
        let outcome = watches.wait("web-1", None, LONG).await;
        assert!(outcome.changed, "holding nothing, any version is news");
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_version_moves_and_not_on_the_same_one() {
        let watches = Arc::new(Watches::default());
        watches.publish("web-1", "v1");
        let waiter = {
            let watches = Arc::clone(&watches);
            tokio::spawn(async move { watches.wait("web-1", Some("v1"), LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        watches.publish("web-1", "v1");
        watches.publish("web-2", "v9");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "neither republishing nor another node wakes it"
        );
        watches.publish("web-1", "v2");
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome,
            Outcome {
                version: Some("v2".into()),
                changed: true
            }
        );
    }

    #[tokio::test]
    async fn a_wait_times_out_unchanged_and_leaves_no_entry_for_an_unknown_node() {
        let watches = Watches::default();
        let outcome = watches
            .wait("new-node", Some("v1"), Duration::from_millis(20))
            .await;
        assert_eq!(
            outcome,
            Outcome {
                version: Some("v1".into()),
                changed: false
            }
        );
        assert_eq!(watches.len(), 0, "bounded by the nodes with versions");
        watches.publish("web-1", "v1");
        let _ = watches
            .wait("web-1", Some("v1"), Duration::from_millis(1))
            .await;
        assert_eq!(watches.known("web-1").as_deref(), Some("v1"));
    }

    #[tokio::test]
    async fn a_node_without_a_version_learns_the_first_one() {
        let watches = Arc::new(Watches::default());
        let waiter = {
            let watches = Arc::clone(&watches);
            tokio::spawn(async move { watches.wait("web-1", Some("v1"), LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        watches.publish("web-1", "v2");
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(outcome.changed);
        assert_eq!(outcome.version.as_deref(), Some("v2"));
    }

    #[tokio::test]
    async fn close_ends_every_wait_unchanged() {
        let watches = Arc::new(Watches::default());
        watches.publish("web-1", "v1");
        let waiter = {
            let watches = Arc::clone(&watches);
            tokio::spawn(async move { watches.wait("web-1", Some("v1"), LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        watches.close();
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(!outcome.changed);
        let later = tokio::time::timeout(
            Duration::from_secs(5),
            watches.wait("web-1", Some("v1"), LONG),
        )
        .await;
        assert!(
            later.is_ok_and(|o| !o.changed),
            "a wait after close ends at once"
        );
    }
}
