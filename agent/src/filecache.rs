//! The file metadata cache behind the fast no-change run: per managed path,
//! the inode, size, mtime and ctime a file had when its content was hashed,
//! and that hash. A file whose metadata all still match is not read again.
//!
//! What keeps it honest:
//! - ctime cannot be set by a process: any write, rename over, chmod, chown
//!   or `touch -d` moves it, so content changed behind unchanged size and
//!   mtime still misses the cache.
//! - Racy entries (git's racy-index problem): a write right after the hash
//!   may land in the same timestamp tick as the metadata recorded. An entry
//!   is trusted only when its mtime and ctime are older than the moment it
//!   was recorded by a margin larger than the tick ([`RACY_MARGIN_NS`],
//!   [`COARSE_MARGIN_NS`] on file systems with whole-second times), so a
//!   write after the hash always shows a newer time.
//! - The cache only vouches for "this file still has the desired content":
//!   an entry with another hash, or none, means read and hash.
//! - Every `verify_interval_secs` a run trusts nothing and hashes every file
//!   (a change hidden from the metadata, or a tampered cache, is found).
//! - A missing or corrupt cache (checksummed) means "hash everything", with
//!   a warning, never a failed run. It is replaced atomically (temp file,
//!   rename), and only when it changed; no fsync, since a cache lost in a
//!   crash is only a slower next run and the checksum catches a torn one.
//!
//! The files the cache cannot vouch for are hashed up front on a few
//! threads ([`FileCache::prepare`]), so the ordered walk finds them ready.

use std::fs::Metadata;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use drover_catalog::model::Ensure;
use drover_catalog::report::FileChecks;
use drover_catalog::{Catalog, Spec};
use fs_err::os::unix::fs::OpenOptionsExt as _;
use sha2::{Digest, Sha256};

/// The cache's name in the state directory.
pub(crate) const FILE_NAME: &str = "filecache";
/// One day: a change hidden from the metadata is found within a day.
pub(crate) const DEFAULT_VERIFY_INTERVAL_SECS: u64 = 86_400;
/// Larger than the coarse clock tick file times come from (10 ms at HZ=100).
pub(crate) const RACY_MARGIN_NS: i64 = 100_000_000;
/// For file systems that keep whole seconds (FAT keeps two).
pub(crate) const COARSE_MARGIN_NS: i64 = 2_000_000_000;

/// How old the loader's lstats may be when the walk is prepared.
const LSTAT_MAX_AGE_NS: i64 = 5_000_000_000;
const READ_BUF: usize = 64 * 1024;

/// What identifies one version of a file's content, as far as metadata can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Key {
    /// `None` for times beyond what nanoseconds in an i64 hold: never cached.
    pub(crate) fn of(md: &Metadata) -> Option<Key> {
        let ns = |s: i64, n: i64| s.checked_mul(1_000_000_000)?.checked_add(n);
        Some(Key {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec())?,
            ctime_ns: ns(md.ctime(), md.ctime_nsec())?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: Key,
    /// Wall clock (ns) read before the metadata was taken and the content read.
    recorded_at: i64,
    sha: [u8; 32],
}

impl Entry {
    /// Whether no write after the hash can have kept the recorded times.
    fn settled(&self) -> bool {
        let whole_seconds = self.key.mtime_ns.rem_euclid(1_000_000_000) == 0
            && self.key.ctime_ns.rem_euclid(1_000_000_000) == 0;
        let margin = if whole_seconds {
            COARSE_MARGIN_NS
        } else {
            RACY_MARGIN_NS
        };
        let limit = self.recorded_at.saturating_sub(margin);
        self.key.mtime_ns < limit && self.key.ctime_ns < limit
    }
}

/// An entry of the last runs' cache, with the lstat the loader took of its
/// path ([`Loading`]) until a resource with that path takes it.
#[derive(Debug)]
struct Recorded {
    entry: Entry,
    lstat: Option<std::io::Result<Metadata>>,
}

/// One file resource before the pass decides on it: its cache entry (taken
/// out of the cache), its lstat, and when that was taken.
struct Looked<'p> {
    path: &'p str,
    old: Option<(Box<str>, Entry)>,
    /// `None` only until [`FileCache::lstats_of`] returns.
    lstat: Option<std::io::Result<Metadata>>,
    at: i64,
}

/// What the pass before the walk saw of one file resource.
#[derive(Debug)]
struct Observed {
    md: Option<Metadata>,
    observed_at: i64,
    known: Option<Known>,
}

#[derive(Debug)]
enum Known {
    /// The cache vouches for the desired content (its path kept for the next cache).
    Trusted(Box<str>, Entry),
    /// Hashed by the pass.
    Hashed(Entry),
}

/// Wall clock in ns since the epoch, comparable with file times.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        // A clock before 1970 settles nothing.
        .unwrap_or(i64::MIN)
}

/// One run's view of the cache: what the last runs recorded, what this run
/// hashed up front, and what it saw, to be saved as the next cache.
#[derive(Debug, Default)]
pub(crate) struct FileCache {
    /// None: no cache (kinds' unit tests), nothing is loaded or saved.
    path: Option<PathBuf>,
    /// The last runs' entries not yet looked up, in the order they were
    /// recorded: the walk's. A catalog in the same order takes them one by
    /// one, with no hashing; the first path out of order moves them all to
    /// `old`.
    pending: std::vec::IntoIter<(Box<str>, Recorded)>,
    old: foldhash::HashMap<Box<str>, Recorded>,
    /// When the loader started to lstat the paths of `old`.
    lstat_at: i64,
    /// The bytes loaded, so an unchanged cache is not rewritten.
    loaded: Vec<u8>,
    /// When the last full verification started (ns).
    verified_at: i64,
    started_at: i64,
    full: bool,
    /// What [`FileCache::prepare`] saw, by resource index.
    slots: Vec<Option<Observed>>,
    cursor: usize,
    /// What the pass knew of the file being converged.
    current: Option<Known>,
    seen: Vec<(Box<str>, Entry)>,
    checks: FileChecks,
    buf: Vec<u8>,
}

impl FileCache {
    /// Loads the cache at `path` (missing or corrupt: trust nothing),
    /// decides whether this run is a full verification, and lstats every
    /// path it lists.
    pub(crate) fn open(path: &Path, verify_interval: Duration) -> FileCache {
        let started_at = now_ns();
        let mut cache = FileCache {
            path: Some(path.to_owned()),
            started_at,
            full: true,
            ..FileCache::default()
        };
        let bytes = match fs_err::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return cache,
            Err(e) => {
                crate::output::warning(&format!(
                    "ignoring the file cache: {e}; every managed file is hashed this run"
                ));
                return cache;
            }
        };
        match format::parse(&bytes) {
            Ok((verified_at, old)) => {
                let interval = i64::try_from(verify_interval.as_nanos()).unwrap_or(i64::MAX);
                // A verification "in the future" means the clock went back: verify now.
                let due =
                    started_at < verified_at || started_at.saturating_sub(verified_at) >= interval;
                cache.full = due;
                cache.verified_at = verified_at;
                cache.loaded = bytes;
                cache.lstat_at = now_ns();
                let mut pending: Vec<_> = old
                    .into_iter()
                    .map(|(path, entry)| (path, Recorded { entry, lstat: None }))
                    .collect();
                let count = pending.len();
                lstat_each(&mut pending, count, |(path, old)| {
                    old.lstat = Some(std::fs::symlink_metadata(&**path));
                });
                cache.pending = pending.into_iter();
            }
            Err(e) => crate::output::warning(&format!(
                "ignoring the file cache {}: {e}; every managed file is hashed this run",
                path.display()
            )),
        }
        cache
    }

    /// Stats every present managed file and hashes, on a few threads, those
    /// the cache cannot vouch for, so the ordered walk finds both ready.
    pub(crate) fn prepare(&mut self, catalog: &Catalog) {
        let started = now_ns();
        let files: Vec<_> = catalog
            .resources
            .iter()
            .enumerate()
            .filter_map(|(index, resource)| match &resource.spec {
                Spec::File(spec) => match (spec.ensure, spec.sha256.as_deref()) {
                    (Ensure::Present, Some(want)) => Some((index, spec, want)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let lstats = self.lstats_of(files.iter().map(|(_, spec, _)| spec.path.as_str()), started);
        self.seen.reserve(files.len());
        let mut jobs = Vec::new();
        let mut slots = Vec::new();
        for ((index, spec, want), looked) in files.into_iter().zip(lstats) {
            let Looked {
                old,
                lstat,
                at: observed_at,
                ..
            } = looked;
            let md = match lstat.expect("every path was lstat'ed") {
                Ok(md) => Some(md),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                // The walk stats it again and reports the error.
                Err(_) => {
                    self.restore_entry(old);
                    continue;
                }
            };
            if slots.is_empty() {
                slots.resize_with(catalog.resources.len(), || None);
            }
            // A size mismatch settles it without a hash.
            let candidate = md
                .as_ref()
                .filter(|md| md.is_file() && spec.size.is_none_or(|s| s == md.size()))
                .and_then(Key::of);
            let mut observed = Observed {
                md,
                observed_at,
                known: None,
            };
            let want = decode_sha(want);
            match (candidate, old) {
                (Some(key), Some((name, entry)))
                    if want.is_some_and(|want| self.trusts(&entry, key, &want)) =>
                {
                    observed.known = Some(Known::Trusted(name, entry));
                }
                (candidate, old) => {
                    self.restore_entry(old);
                    if let Some(key) = candidate {
                        jobs.push((index, spec.path.as_str(), key, observed_at));
                    }
                }
            }
            slots[index] = Some(observed);
        }
        let paths: Vec<_> = jobs.iter().map(|&(_, path, key, _)| (path, key)).collect();
        for (job, sha) in hash_all(&paths) {
            let (index, _, key, observed_at) = jobs[job];
            self.checks.hashed += 1;
            let entry = Entry {
                key,
                recorded_at: observed_at,
                sha,
            };
            if let Some(observed) = &mut slots[index] {
                observed.known = Some(Known::Hashed(entry));
            }
        }
        self.slots = slots;
        // What no resource took stays where the walk looks it up.
        self.spill_pending();
    }

    /// For each path, its entry, taken out of the cache (the caller puts
    /// back what it does not use), and its lstat with when it was taken:
    /// the loader's, else one taken now (from `now`), on a few threads when
    /// there are many.
    fn lstats_of<'p>(&mut self, paths: impl Iterator<Item = &'p str>, now: i64) -> Vec<Looked<'p>> {
        // One taken long before (a catalog fetch waited out a busy server)
        // would leave a change made since unseen until the next run.
        let recent = now.saturating_sub(self.lstat_at) < LSTAT_MAX_AGE_NS;
        let mut looked = Vec::with_capacity(paths.size_hint().0);
        let mut missing = 0;
        for path in paths {
            let (old, lstat) = match self.take_recorded(path) {
                Some((name, old)) => (Some((name, old.entry)), old.lstat.filter(|_| recent)),
                None => (None, None),
            };
            missing += usize::from(lstat.is_none());
            let at = self.lstat_at;
            looked.push(Looked {
                path,
                old,
                lstat,
                at,
            });
        }
        lstat_each(&mut looked, missing, |l| {
            if l.lstat.is_none() {
                l.lstat = Some(std::fs::symlink_metadata(l.path));
                l.at = now;
            }
        });
        looked
    }

    /// The cache's entry for `path`, taken out.
    fn take_recorded(&mut self, path: &str) -> Option<(Box<str>, Recorded)> {
        let in_order = self.pending.as_slice().first();
        if in_order.is_some_and(|(next, _)| &**next == path) {
            return self.pending.next();
        }
        self.spill_pending();
        self.old.remove_entry(path)
    }

    fn spill_pending(&mut self) {
        self.old.extend(self.pending.by_ref());
    }

    /// The engine is about to converge resource `index` of the catalog.
    pub(crate) fn visit(&mut self, index: usize) {
        let unused = self.current.take();
        self.restore(unused);
        self.cursor = index;
    }

    /// What [`FileCache::prepare`] saw of the file being converged: its
    /// lstat (`None`: missing) and when that was taken.
    pub(crate) fn take_observed(&mut self) -> Option<(Option<Metadata>, i64)> {
        let observed = self.slots.get_mut(self.cursor)?.take()?;
        self.current = observed.known;
        Some((observed.md, observed.observed_at))
    }

    /// Something else than a file's own content or metadata changed on the
    /// system (a package, an exec, a path created or removed): what was
    /// stat'ed and hashed before the walk may be stale even where the times
    /// look the same, so the walk stats and hashes again.
    pub(crate) fn invalidate_prehashed(&mut self) {
        let known: Vec<_> = self
            .slots
            .drain(..)
            .flatten()
            .filter_map(|o| o.known)
            .chain(self.current.take())
            .collect();
        for k in known {
            self.restore(Some(k));
        }
    }

    /// Puts an unused trusted entry back where the walk looks it up.
    fn restore(&mut self, known: Option<Known>) {
        if let Some(Known::Trusted(name, entry)) = known {
            self.restore_entry(Some((name, entry)));
        }
    }

    fn restore_entry(&mut self, old: Option<(Box<str>, Entry)>) {
        if let Some((name, entry)) = old {
            let lstat = None;
            self.old.insert(name, Recorded { entry, lstat });
        }
    }

    /// The sha256 of `path`'s content when this run already knows it for a
    /// file with metadata `md`: the cache vouches it is `want`, or it was
    /// hashed up front. Either way it goes into the next cache.
    pub(crate) fn known(&mut self, path: &str, md: &Metadata, want: &[u8; 32]) -> Option<[u8; 32]> {
        let key = Key::of(md)?;
        match self.current.take() {
            Some(Known::Trusted(name, entry)) if entry.key == key && &entry.sha == want => {
                self.checks.trusted += 1;
                self.seen.push((name, entry));
                return Some(*want);
            }
            Some(Known::Hashed(entry)) if entry.key == key => {
                self.seen.push((path.into(), entry));
                return Some(entry.sha);
            }
            other => self.restore(other),
        }
        let entry = self.trusted(path, key, want)?;
        let name = match self.old.remove_entry(path) {
            Some((name, _)) => name,
            None => path.into(),
        };
        self.checks.trusted += 1;
        self.seen.push((name, entry));
        Some(*want)
    }

    fn trusted(&self, path: &str, key: Key, want: &[u8; 32]) -> Option<Entry> {
        let entry = self.old.get(path)?.entry;
        self.trusts(&entry, key, want).then_some(entry)
    }

    /// Whether `entry` vouches that a file with metadata `key` has content `want`.
    fn trusts(&self, entry: &Entry, key: Key, want: &[u8; 32]) -> bool {
        !self.full && entry.key == key && &entry.sha == want && entry.settled()
    }

    /// Hashes `path` now (stat'ed as `md` after `observed_at`) and records it.
    /// `read` is where to read it (the managed `path` reached through its
    /// held parent, see [`crate::safepath`]).
    pub(crate) fn hash_now(
        &mut self,
        path: &str,
        read: &Path,
        md: &Metadata,
        observed_at: i64,
    ) -> Result<[u8; 32]> {
        if self.buf.is_empty() {
            self.buf.resize(READ_BUF, 0);
        }
        let sha = hash_path(read, &mut self.buf)?;
        self.checks.hashed += 1;
        self.record(path, md, sha, observed_at);
        Ok(sha)
    }

    /// The content of `path` (stat'ed as `md` after `observed_at`) hashed to `sha`.
    pub(crate) fn record(&mut self, path: &str, md: &Metadata, sha: [u8; 32], observed_at: i64) {
        if let Some(key) = Key::of(md) {
            let entry = Entry {
                key,
                recorded_at: observed_at,
                sha,
            };
            self.seen.push((path.into(), entry));
        }
    }

    /// What this run did so far, for the report.
    pub(crate) fn checks(&self) -> FileChecks {
        FileChecks {
            full_verification: self.full && self.path.is_some(),
            ..self.checks
        }
    }

    /// Writes what this run saw as the next cache (atomically, and only when
    /// it differs). A full verification that `completed` restarts the
    /// interval. Failing to write costs the next run time, never this one.
    pub(crate) fn save(&mut self, completed: bool) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let verified_at = if self.full && completed {
            self.started_at
        } else {
            self.verified_at
        };
        let bytes = format::serialize(verified_at, &self.seen);
        if bytes == self.loaded {
            return;
        }
        if let Err(e) = crate::fsutil::write_unsynced(&path, &bytes) {
            crate::output::warning(&format!(
                "cannot write the file cache: {e:#}; the next run hashes every managed file"
            ));
        }
    }
}

/// A catalog's sha256 as bytes; `None` when it is not 64 hex digits.
pub(crate) fn decode_sha(hex_sha: &str) -> Option<[u8; 32]> {
    drover_catalog::sha::Sha256::parse(hex_sha).map(drover_catalog::sha::Sha256::into_bytes)
}

/// sha256 of a regular file's content, streamed through `buf`. Never
/// follows a symlink nor blocks on a FIFO swapped in since it was stat'ed.
pub(crate) fn hash_path(path: &Path, buf: &mut [u8]) -> Result<[u8; 32]> {
    let mut file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut hasher = Sha256::new();
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

mod format;
mod loading;
mod threads;

pub(crate) use loading::Loading;
use threads::{hash_all, lstat_each};
#[cfg(test)]
mod tests;
