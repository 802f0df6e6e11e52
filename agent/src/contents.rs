//! The content store, STATE/content/<sha256>: the file contents the cached
//! catalog references, so a node converges from its cached catalog (drift
//! repaired included) while the server is away.
//!
//! It holds exactly the contents of the last catalog applied: filled by
//! fetches and by copying managed files already right on disk, pruned of
//! what that catalog no longer references.
//!
//! The content store (`STATE/content/SHA256`) holds exactly the contents the
//! last applied catalog references: filled by fetches and by copying managed
//! files that are already right, pruned of the rest. Without it a node could
//! apply its cached catalog while the server is away but not repair a drifted
//! file. A fresh catalog becomes the cached one once applied, even if some
//! resources failed: it is the current desired state, and a report's
//! `corrective` flag means "changed although the spec equals the cached one".

use std::cell::Cell;
use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use drover_catalog::model::{Ensure, sha256_hex};
use drover_catalog::{Catalog, Spec};

use crate::fsutil::write_unsynced;
use crate::resources::ContentSource;

pub(crate) struct ContentStore {
    dir: PathBuf,
}

impl ContentStore {
    pub(crate) fn new(dir: PathBuf) -> ContentStore {
        ContentStore { dir }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Stored content whose hash still matches; a damaged entry is dropped.
    pub(crate) fn get(&self, sha256: &str) -> Option<Arc<[u8]>> {
        let path = self.path(sha256);
        let bytes = fs_err::read(&path).ok()?;
        if sha256_hex(&bytes) == sha256 {
            return Some(Arc::from(bytes));
        }
        eprintln!(
            "warning: dropping damaged stored content {}",
            path.display()
        );
        let _ = fs_err::remove_file(&path);
        None
    }

    /// Not fsynced: an entry is checked against its name when read, so one
    /// torn by a power loss is dropped and fetched again, and a run that
    /// fetches 10,000 contents does not wait for 20,000 fsyncs.
    pub(crate) fn put(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        write_unsynced(&self.path(sha256), bytes)
    }

    /// Makes the store hold what `catalog` references: keeps what is there,
    /// copies managed files that already have their desired content, and
    /// removes contents no longer referenced.
    pub(crate) fn sync_with(&self, catalog: &Catalog) -> Result<()> {
        let mut wanted = HashSet::new();
        for resource in &catalog.resources {
            let Spec::File(file) = &resource.spec else {
                continue;
            };
            let (Ensure::Present, Some(sha)) = (file.ensure, &file.sha256) else {
                continue;
            };
            wanted.insert(sha.as_str());
            if self.path(sha).exists() {
                continue;
            }
            if let Ok(bytes) = fs_err::read(&file.path)
                && &sha256_hex(&bytes) == sha
            {
                self.put(sha, &bytes)?;
            }
        }
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| wanted.contains(n)) {
                let _ = fs_err::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Contents from the store first, else from `upstream` (then stored).
pub(crate) struct StoreFirst<'a> {
    pub store: &'a ContentStore,
    pub upstream: &'a dyn ContentSource,
}

impl ContentSource for StoreFirst<'_> {
    fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>> {
        if let Some(bytes) = self.store.get(sha256) {
            return Ok(bytes);
        }
        let bytes = self.upstream.fetch(sha256)?;
        if sha256_hex(&bytes) == sha256
            && let Err(e) = self.store.put(sha256, &bytes)
        {
            eprintln!("warning: cannot keep content {sha256}: {e:#}");
        }
        Ok(bytes)
    }
}

/// A source that keeps the time spent in its fetches, so a run's metrics
/// count fetching file contents with fetching the catalog, not with converging.
pub(crate) struct Timed<'a> {
    inner: &'a dyn ContentSource,
    spent: Cell<Duration>,
}

impl<'a> Timed<'a> {
    pub(crate) fn new(inner: &'a dyn ContentSource) -> Timed<'a> {
        Timed {
            inner,
            spent: Cell::new(Duration::ZERO),
        }
    }

    /// Time spent in fetches so far, failed ones included.
    pub(crate) fn spent(&self) -> Duration {
        self.spent.get()
    }
}

impl ContentSource for Timed<'_> {
    fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>> {
        let started = Instant::now();
        let result = self.inner.fetch(sha256);
        self.spent.set(self.spent.get() + started.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use anyhow::bail;
    use drover_catalog::Resource;
    use drover_catalog::model::FileSpec;

    use super::*;

    struct Offline;

    impl ContentSource for Offline {
        fn fetch(&self, sha256: &str) -> Result<Arc<[u8]>> {
            bail!("server away, cannot fetch {sha256}")
        }
    }

    fn file(path: &str, content: &[u8]) -> Resource {
        Resource::new(Spec::File(FileSpec::with_content(path, content)))
    }

    #[test]
    fn sync_copies_right_files_and_prunes_the_rest_then_serves_offline() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path().join("content"));
        let managed = dir.path().join("a").display().to_string();
        fs_err::write(&managed, b"desired").unwrap();
        store.put(&sha256_hex(b"old"), b"old").unwrap();
        let resources = vec![file(&managed, b"desired")];
        let catalog = Catalog {
            node: "n".into(),
            environment: "e".into(),
            commit: "c".into(),
            version: Catalog::compute_version(&resources),
            resources,
            contents: BTreeMap::new(),
        };
        store.sync_with(&catalog).unwrap();
        assert!(store.get(&sha256_hex(b"old")).is_none());

        let source = StoreFirst {
            store: &store,
            upstream: &Offline,
        };
        assert_eq!(&*source.fetch(&sha256_hex(b"desired")).unwrap(), b"desired");
        assert!(source.fetch(&sha256_hex(b"other")).is_err());
    }

    struct Slow;

    impl ContentSource for Slow {
        fn fetch(&self, _: &str) -> Result<Arc<[u8]>> {
            std::thread::sleep(Duration::from_millis(20));
            Ok(Arc::from(&b"x"[..]))
        }
    }

    #[test]
    fn timed_adds_up_the_time_of_every_fetch() {
        let timed = Timed::new(&Slow);
        assert_eq!(timed.spent(), Duration::ZERO);
        timed.fetch("a").unwrap();
        timed.fetch("b").unwrap();
        assert!(
            timed.spent() >= Duration::from_millis(40),
            "{:?}",
            timed.spent()
        );
        let failing = Timed::new(&Offline);
        assert!(failing.fetch("a").is_err());
    }

    #[test]
    fn damaged_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path().to_owned());
        let sha = sha256_hex(b"good");
        fs_err::write(dir.path().join(&sha), b"evil").unwrap();
        assert!(store.get(&sha).is_none());
        assert!(!dir.path().join(&sha).exists());
    }
}
