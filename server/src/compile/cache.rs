//! The compile cache's types: what a compile produced, kept per
//! (environment, commit, node, facts), apart from the functions that take
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
}

pub type Outcome = Result<Arc<Compiled>, CompileError>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    pub(super) environment: String,
    pub(super) commit: String,
    pub(super) node: String,
    pub(super) facts: String,
}

/// Compile results per (environment, commit, node, facts hash); cleared when
/// a refresh moves a commit.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<CacheKey, Outcome>>,
}

/// Enough for every node of a big site several times over; past it the
/// cache starts again rather than grow without bound.
const CACHE_LIMIT: usize = 20_000;

impl Cache {
    pub(super) fn get(&self, key: &CacheKey) -> Option<Outcome> {
        self.lock().get(key).cloned()
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
