//! What the file route answers from memory: the contents each node's
//! current catalog references, and the bytes of contents served lately.
//!
//! A check-in fetches every content its node does not hold yet, so the
//! file route takes most of a fleet's requests. Reading and parsing the
//! node's stored catalog and then its content from the database for each
//! one made it the server's heaviest route. The index of references is
//! filled as catalogs are served (and from the database for a node not
//! served since the server started). Content bytes are kept up to
//! [`BYTES_LIMIT`] in all, and only once they are in the database, so a
//! cached content is also a stored one.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use drover_catalog::Catalog;

/// A sha256 as bytes: 32 where its hex takes 64 and a heap allocation.
type Sha = [u8; 32];

/// Content bytes kept in memory, in all.
pub const BYTES_LIMIT: u64 = 64 * 1024 * 1024;

/// Weight of a cached content: its bytes, plus what the entry costs
/// anyway (never zero: weightless entries would never be evicted).
#[derive(Debug, Clone)]
struct ByteWeight;

impl quick_cache::Weighter<Sha, Bytes> for ByteWeight {
    fn weight(&self, _sha: &Sha, bytes: &Bytes) -> u64 {
        bytes.len() as u64 + 64
    }
}

/// A node's current catalog, as the file route needs it.
#[derive(Debug, Clone)]
struct Current {
    /// The catalog's version: the same version references the same contents.
    version: String,
    shas: Arc<[Sha]>,
}

pub struct Served {
    references: RwLock<HashMap<String, Current>>,
    bytes: quick_cache::sync::Cache<Sha, Bytes, ByteWeight>,
    /// When each content was last produced by a compile or served from
    /// the compile cache; also the lock that makes "is it stored?" and the
    /// collector's "delete it" exclusive (see `crate::gc`).
    used: Mutex<Used>,
}

/// See [`Served::used`].
#[derive(Debug, Default)]
struct Used {
    at: HashMap<Sha, Instant>,
    /// Bumped whenever the collector evicts: bytes read from the database
    /// before it are not kept (they may be deleted now).
    generation: u64,
}

impl Default for Served {
    fn default() -> Served {
        Served {
            references: RwLock::default(),
            // The first figure only sizes the table; the weight bounds it.
            bytes: quick_cache::sync::Cache::with_weighter(16_384, BYTES_LIMIT, ByteWeight),
            used: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("bytes_weight", &self.bytes.weight())
            .finish_non_exhaustive()
    }
}

/// The sha256 of 64 lowercase hex digits; `None` for anything else.
pub fn parse_sha(hex_sha: &str) -> Option<Sha> {
    drover_catalog::sha::Sha256::parse(hex_sha).map(drover_catalog::sha::Sha256::into_bytes)
}

fn current(catalog: &Catalog) -> Current {
    let mut shas: Vec<Sha> = catalog.referenced_hashes().filter_map(parse_sha).collect();
    shas.sort_unstable();
    shas.dedup();
    Current {
        version: catalog.version.clone(),
        shas: shas.into(),
    }
}

impl Served {
    /// `catalog` was just served to its node: from now on its contents are
    /// the ones the node may fetch.
    pub fn record(&self, catalog: &Catalog) {
        // Most check-ins are served the catalog they had: nothing to redo.
        if self
            .read()
            .get(&catalog.node)
            .is_some_and(|c| c.version == catalog.version)
        {
            return;
        }
        self.write().insert(catalog.node.clone(), current(catalog));
    }

    /// `catalog` was read from the database for a node not in the index.
    /// A catalog served meanwhile is newer, so it is kept.
    pub fn record_stored(&self, catalog: &Catalog) -> Arc<[Sha]> {
        let stored = current(catalog);
        Arc::clone(
            &self
                .write()
                .entry(catalog.node.clone())
                .or_insert(stored)
                .shas,
        )
    }

    /// What `node`'s current catalog references, if it is in the index.
    pub fn references(&self, node: &str) -> Option<Arc<[Sha]>> {
        self.read().get(node).map(|c| Arc::clone(&c.shas))
    }

    /// Cached bytes of a stored content.
    pub fn content(&self, sha: &Sha) -> Option<Bytes> {
        self.bytes.get(sha)
    }

    /// `bytes` (of `sha`) are in the database: keep them at hand.
    pub fn keep(&self, sha: Sha, bytes: Bytes) {
        self.bytes.insert(sha, bytes);
    }

    /// Whether the content is known to be in the database already.
    pub fn is_stored(&self, sha: &Sha) -> bool {
        self.bytes.contains_key(sha)
    }

    /// A compile produced these contents: marks them used now, and says of
    /// each whether it is known to be stored (those not must be written).
    /// One step under the collector's lock, so a content the collector
    /// deletes is either marked before it looks (and kept) or found not
    /// stored here (and written again, after the delete).
    pub fn produced(&self, shas: &[Sha]) -> Vec<bool> {
        let mut used = self.used();
        let now = Instant::now();
        shas.iter()
            .map(|sha| {
                used.at.insert(*sha, now);
                self.is_stored(sha)
            })
            .collect()
    }

    /// `catalog` is about to be served again (from the compile cache): its
    /// contents are in use.
    pub fn touch(&self, catalog: &Catalog) {
        let mut used = self.used();
        let now = Instant::now();
        for sha in catalog.referenced_hashes().filter_map(parse_sha) {
            used.at.insert(sha, now);
        }
    }

    /// The collector's generation, before reading a content from the database.
    pub fn generation(&self) -> u64 {
        self.used().generation
    }

    /// [`Served::keep`] for bytes read from the database at `generation`:
    /// not kept if the collector has deleted contents since.
    pub fn keep_read(&self, sha: Sha, bytes: Bytes, generation: u64) {
        let used = self.used();
        if used.generation == generation {
            self.bytes.insert(sha, bytes);
        }
    }

    /// The collector's step (see `crate::gc`): of `candidates` (contents no
    /// stored catalog references), those that may be deleted now: not used
    /// within `grace`, not referenced by a node's current catalog nor by
    /// `live()` (the compile cache's catalogs). They are evicted from the
    /// bytes at hand; the caller deletes them before anything else writes.
    /// Marks older than `grace` are forgotten.
    pub fn sweep(
        &self,
        candidates: &[Sha],
        grace: Duration,
        live: impl FnOnce() -> HashSet<Sha>,
    ) -> Vec<Sha> {
        let mut used = self.used();
        used.at.retain(|_, at| at.elapsed() < grace);
        let mut referenced = live();
        for current in self.read().values() {
            referenced.extend(current.shas.iter().copied());
        }
        let doomed: Vec<Sha> = candidates
            .iter()
            .filter(|sha| !used.at.contains_key(*sha) && !referenced.contains(*sha))
            .copied()
            .collect();
        if !doomed.is_empty() {
            used.generation += 1;
            for sha in &doomed {
                self.bytes.remove(sha);
            }
        }
        doomed
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Current>> {
        self.references.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Current>> {
        self.references.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_catalog::model::sha256_hex;

    fn catalog(node: &str, contents: &[&str]) -> Catalog {
        let resources = contents
            .iter()
            .enumerate()
            .map(|(i, body)| {
                serde_json::from_value(serde_json::json!({
                    "id": format!("file:/f{i}"),
                    "kind": "file",
                    "path": format!("/f{i}"),
                    "sha256": sha256_hex(body.as_bytes()),
                }))
                .expect("a file resource")
            })
            .collect::<Vec<_>>();
        Catalog {
            node: node.into(),
            environment: "production".into(),
            commit: "c0".into(),
            version: Catalog::compute_version(&resources),
            resources,
            contents: Default::default(),
        }
    }

    fn sha(body: &str) -> Sha {
        parse_sha(&sha256_hex(body.as_bytes())).unwrap()
    }

    #[test]
    fn a_served_catalog_replaces_the_references_and_a_stored_one_does_not() {
        let served = Served::default();
        assert!(served.references("web-1").is_none());
        served.record(&catalog("web-1", &["new"]));
        let kept = served.record_stored(&catalog("web-1", &["old"]));
        assert_eq!(&kept[..], &[sha("new")]);
        served.record(&catalog("web-1", &["newer", "new"]));
        let mut both = [sha("newer"), sha("new")];
        both.sort_unstable();
        assert_eq!(&served.references("web-1").unwrap()[..], &both);
        assert!(served.references("web-2").is_none());
        // The same version again is the same references, not rebuilt.
        let before = served.references("web-1").unwrap();
        served.record(&catalog("web-1", &["newer", "new"]));
        assert!(Arc::ptr_eq(&before, &served.references("web-1").unwrap()));
    }

    #[test]
    fn the_sweep_spares_what_is_used_or_referenced_and_evicts_the_rest() {
        let served = Served::default();
        let hour = Duration::from_secs(3600);
        served.record(&catalog("web-1", &["current"]));
        for body in ["current", "fresh", "cached", "old"] {
            served.keep(sha(body), Bytes::from_static(b"x"));
        }
        assert_eq!(served.produced(&[sha("fresh")]), [true]);
        let all = [sha("current"), sha("fresh"), sha("cached"), sha("old")];
        let live = || HashSet::from([sha("cached")]);
        assert_eq!(served.sweep(&all, hour, live), [sha("old")]);
        assert!(!served.is_stored(&sha("old")), "evicted with its delete");
        assert!(served.is_stored(&sha("fresh")));
        // Bytes read before the sweep are not kept after it.
        let generation = served.generation() - 1;
        served.keep_read(sha("old"), Bytes::from_static(b"x"), generation);
        assert!(!served.is_stored(&sha("old")));
        // Past the grace the mark is gone: only references keep a content.
        let swept = served.sweep(&all[..3], Duration::ZERO, HashSet::new);
        assert_eq!(swept, [sha("fresh"), sha("cached")]);
        // Produced after the sweep: found not stored, so written again.
        assert_eq!(served.produced(&[sha("fresh")]), [false]);
    }

    #[test]
    fn only_lowercase_hex_of_64_digits_is_a_sha() {
        let hex_sha = sha256_hex(b"x");
        assert!(parse_sha(&hex_sha).is_some());
        assert!(parse_sha(&hex_sha.to_uppercase()).is_none());
        assert!(parse_sha(&hex_sha[1..]).is_none());
        assert!(parse_sha(&format!("{}g", &hex_sha[1..])).is_none());
    }

    #[test]
    fn kept_bytes_are_bounded_by_their_weight() {
        let served = Served::default();
        let mib = Bytes::from(vec![7u8; 1024 * 1024]);
        for i in 0..100u8 {
            served.keep([i; 32], mib.clone());
        }
        assert!(served.bytes.weight() <= BYTES_LIMIT);
        let held = (0..100u8)
            .filter(|i| served.content(&[*i; 32]).is_some())
            .count();
        assert!((1..=64).contains(&held), "{held} MiB held");
    }
}
