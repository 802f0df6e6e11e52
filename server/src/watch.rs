//! The catalog version each node would get now, and the nodes waiting to
//! hear that it moved (the long-poll of `GET nodes/{name}/catalog/watch`);
//! also an operator's request for a run now (`node run`), answered to the
//! node's next (or current) wait.
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

/// What a node's waiters are told of.
#[derive(Debug, Clone, Default)]
struct Known {
    version: Option<Arc<str>>,
    /// An operator asked for a run, not yet answered to a wait.
    run: bool,
}

#[derive(Debug, Default)]
pub struct Watches {
    nodes: Mutex<HashMap<String, watch::Sender<Known>>>,
    closed: CancellationToken,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The version the server knows now when it differs from the one held,
    /// else the one held.
    pub version: Option<String>,
    pub changed: bool,
    /// An operator asked for a run (`node run`): run even when unchanged.
    pub run: bool,
}

impl Watches {
    /// Records the version compiled for `node` and wakes its waiters when
    /// it moved.
    pub fn publish(&self, node: &str, version: &str) {
        let mut nodes = self.lock();
        if let Some(sender) = nodes.get(node) {
            sender.send_if_modified(|known| {
                if known.version.as_deref() == Some(version) {
                    return false;
                }
                known.version = Some(Arc::from(version));
                true
            });
        } else {
            nodes.insert(
                node.to_owned(),
                watch::Sender::new(Known {
                    version: Some(Arc::from(version)),
                    run: false,
                }),
            );
        }
    }

    /// Asks `node` to run now: its wait answers with `run` (at once, or
    /// when it next waits on this server).
    pub fn request_run(&self, node: &str) {
        self.lock()
            .entry(node.to_owned())
            .or_insert_with(|| watch::Sender::new(Known::default()))
            .send_modify(|known| known.run = true);
    }

    /// The version known for `node`, if any.
    pub fn known(&self, node: &str) -> Option<String> {
        let nodes = self.lock();
        let version = nodes.get(node)?.borrow().version.clone();
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
            run: false,
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let outcome = loop {
            let known = receiver.borrow_and_update().clone();
            let moved = known.version.clone().filter(|k| Some(&**k) != held);
            if moved.is_some() || known.run {
                if known.run {
                    self.answered_run(node);
                }
                break Outcome {
                    changed: moved.is_some(),
                    version: moved.map(|v| v.to_string()).or(held.map(str::to_owned)),
                    run: known.run,
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

    fn subscribe(&self, node: &str) -> watch::Receiver<Known> {
        self.lock()
            .entry(node.to_owned())
            .or_insert_with(|| watch::Sender::new(Known::default()))
            .subscribe()
    }

    /// A run request was answered: it is not answered twice.
    fn answered_run(&self, node: &str) {
        if let Some(sender) = self.lock().get(node) {
            sender.send_if_modified(|known| {
                known.run = false;
                false
            });
        }
    }

    /// Drops the entry of a node with no version nor run request once
    /// nobody waits for it.
    fn forget_if_unused(&self, node: &str) {
        let mut nodes = self.lock();
        if nodes.get(node).is_some_and(|s| {
            let known = s.borrow();
            s.receiver_count() == 0 && known.version.is_none() && !known.run
        }) {
            nodes.remove(node);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<Known>>> {
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
                changed: true,
                run: false,
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
                changed: false,
                run: false,
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

    #[tokio::test]
    async fn a_run_request_answers_one_wait_at_once_or_the_next_one() {
        let watches = Watches::default();
        watches.publish("web-1", "v1");
        // asked while nobody waits: the next wait answers it at once
        watches.request_run("web-1");
        let outcome = watches.wait("web-1", Some("v1"), LONG).await;
        assert_eq!((outcome.run, outcome.changed), (true, false));
        assert_eq!(outcome.version.as_deref(), Some("v1"));
        // answered once only
        let outcome = watches
            .wait("web-1", Some("v1"), Duration::from_millis(20))
            .await;
        assert!(!outcome.run);
        // asked while a node waits: it wakes
        let shared = std::sync::Arc::new(watches);
        let waiting = {
            let w = shared.clone();
            tokio::spawn(async move { w.wait("web-1", Some("v1"), LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        shared.request_run("web-1");
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(outcome.run);
        // a node the server never compiled for keeps its request
        shared.request_run("new-node");
        assert!(shared.wait("new-node", None, LONG).await.run);
    }
}
