//! Loading the cache on a thread of its own, while the run reads its catalog.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{FILE_NAME, FileCache};

/// The file cache of the last runs, loaded on a thread of its own while the
/// run reads its catalog. The thread also lstats every path the cache lists
/// (with the catalog unchanged, every managed file), so the stats of
/// [`FileCache::prepare`] are mostly taken by the time the catalog is parsed.
#[derive(Debug)]
pub(crate) struct Loading {
    path: PathBuf,
    verify_interval: Duration,
    thread: Mutex<Option<JoinHandle<FileCache>>>,
}

impl Loading {
    /// Starts loading `STATE/filecache`.
    pub(crate) fn start(state_dir: &Path, verify_interval: Duration) -> Loading {
        let path = state_dir.join(FILE_NAME);
        let thread = {
            let path = path.clone();
            std::thread::Builder::new()
                .name("filecache".into())
                .spawn(move || FileCache::open(&path, verify_interval))
                .ok()
        };
        Loading {
            path,
            verify_interval,
            thread: Mutex::new(thread),
        }
    }

    /// The loaded cache. When the thread could not start or panicked, or
    /// when asked a second time, the cache is loaded here instead.
    pub(crate) fn wait(&self) -> FileCache {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        match thread.map(JoinHandle::join) {
            Some(Ok(cache)) => cache,
            _ => FileCache::open(&self.path, self.verify_interval),
        }
    }
}
