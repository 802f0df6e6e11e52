//! Which commit a node is served: [`pick`], a pure function of the node,
//! the environment's newest commit and its rollout row, and [`Rollouts`],
//! the copy of the rows it reads. Apart from `rollout/mod.rs` so that the
//! compile path and `AppState` import it without importing the reload.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::db::rollouts::{self, ABORTED, DONE, Rollout};
use crate::db::{Db, DbError};
use crate::snapshot::Snapshots;

/// Which commit a node's catalog is compiled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The environment's newest commit.
    Head,
    /// An earlier commit: the rollout has not reached the node.
    Commit(String),
}

/// The commit `node` is served in an environment whose newest commit is
/// `head` (`staged`: that commit has a `[rollout]`), given the rollout row.
/// Until the leader has seen a new staged commit (the row's `to` is not
/// `head`), every node keeps what the row serves it, so no node outruns
/// its stage in between.
pub fn pick(node: &str, head: &str, staged: bool, rollout: Option<&Rollout>) -> Pick {
    let Some(r) = rollout else {
        return Pick::Head;
    };
    let serves = match r.state.as_str() {
        DONE => &r.to_commit,
        ABORTED => &r.from_commit,
        _ if r.reached(node) => &r.to_commit,
        _ => &r.from_commit,
    };
    if (r.to_commit != head && !staged) || serves == head {
        Pick::Head
    } else {
        Pick::Commit(serves.clone())
    }
}

/// Every server's copy of the rollout rows, by environment.
#[derive(Debug, Default)]
pub struct Rollouts {
    rows: RwLock<BTreeMap<String, Arc<Rollout>>>,
    /// Wakes the leader's rollout loop (a commit, an operator's request).
    pub wake: Arc<tokio::sync::Notify>,
    /// Wakes every server's reload (another server wrote).
    pub reload: Arc<tokio::sync::Notify>,
}

impl Rollouts {
    pub fn get(&self, environment: &str) -> Option<Arc<Rollout>> {
        self.rows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(environment)
            .cloned()
    }

    /// Replaces the copy; the environments whose row changed in a way that
    /// may change a node's commit.
    /// Environment → the earlier commit its rollout still serves some
    /// nodes (rolling, paused or aborted), for the fleet's `stale`.
    pub fn held(&self) -> BTreeMap<String, String> {
        self.rows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|r| r.state != DONE && r.from_commit != r.to_commit)
            .map(|r| (r.environment.clone(), r.from_commit.clone()))
            .collect()
    }

    /// Reads the rows, makes sure the commits they serve are at hand (a
    /// previous commit is read from the mirror after a restart), and swaps
    /// the copy. The environments whose nodes may be served another commit
    /// now.
    pub async fn load(&self, db: &Db, snapshots: &Snapshots) -> Result<Vec<String>, DbError> {
        let fresh = rollouts::rollouts(db).await?;
        let mut wanted = Vec::new();
        for row in &fresh {
            for commit in [&row.from_commit, &row.to_commit] {
                wanted.push((row.environment.clone(), commit.clone()));
            }
        }
        snapshots.keep_commits(&wanted).await;
        Ok(self.replace(fresh))
    }

    pub(super) fn replace(&self, fresh: Vec<Rollout>) -> Vec<String> {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = Vec::new();
        let mut next = BTreeMap::new();
        for row in fresh {
            // A settled row (every node served one commit) written after
            // none or another settled row serves every node what `pick`
            // already served it: nothing to recompile.
            let settled = |r: &Rollout| r.state == DONE && r.stages.is_empty();
            let moved = match rows.get(&row.environment) {
                None => !settled(&row),
                Some(old) if settled(old) && settled(&row) => false,
                Some(old) => {
                    (
                        &old.from_commit,
                        &old.to_commit,
                        &old.state,
                        old.stage,
                        &old.stages,
                    ) != (
                        &row.from_commit,
                        &row.to_commit,
                        &row.state,
                        row.stage,
                        &row.stages,
                    )
                }
            };
            if moved {
                changed.push(row.environment.clone());
            }
            next.insert(row.environment.clone(), Arc::new(row));
        }
        *rows = next;
        changed
    }
}
