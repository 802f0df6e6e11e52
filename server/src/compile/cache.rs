//! The compile cache's types: what a compile produced, kept per
//! (environment, commit, node, facts, placed replicas), apart from the functions that take
//! the whole server state (`compile`), so that the state can hold a cache
//! without importing them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use drover_catalog::Catalog;

use crate::db::CompileError;

/// A catalog that compiled, with the roles the node got.
#[derive(Debug)]
pub struct Compiled {
    pub catalog: Catalog,
    pub roles: Vec<String>,
    /// The digest of the replicas its templates read (`apps`), when they
    /// read any: the entry is stale once they moved.
    pub apps_digest: Option<String>,
}

pub type Outcome = Result<Arc<Compiled>, CompileError>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    pub(super) environment: String,
    pub(super) commit: String,
    pub(super) node: String,
    pub(super) facts: String,
    /// The digest of the replicas placed on the node.
    pub(super) placed: String,
}

/// Compile results per (environment, commit, node, facts hash, placed replicas); cleared when
/// a refresh moves a commit.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<CacheKey, Outcome>>,
}

/// Enough for every node of a big site several times over; past it the
/// cache starts again rather than grow without bound.
const CACHE_LIMIT: usize = 20_000;

impl Cache {
    /// The entry of `key`, unless it read `apps` when they were other
    /// than `apps_digest` says they are now.
    pub(super) fn get(&self, key: &CacheKey, apps_digest: &str) -> Option<Outcome> {
        let outcome = self.lock().get(key).cloned()?;
        let stale = outcome
            .as_ref()
            .is_ok_and(|c| c.apps_digest.as_deref().is_some_and(|d| d != apps_digest));
        (!stale).then_some(outcome)
    }

    pub(super) fn put(&self, key: CacheKey, outcome: Outcome) {
        let mut entries = self.lock();
        if entries.len() >= CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(key, outcome);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Every content the cached catalogs reference (the collector keeps them).
    pub fn referenced(&self) -> std::collections::HashSet<[u8; 32]> {
        self.lock()
            .values()
            .filter_map(|outcome| outcome.as_ref().ok())
            .flat_map(|compiled| compiled.catalog.referenced_hashes())
            .filter_map(crate::served::parse_sha)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Outcome>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
