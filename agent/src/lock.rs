//! The run lock: one convergence at a time per lock file.
//!
//! `flock(2)` rather than a pid file: the kernel drops the lock when its
//! holder dies, so a killed run never blocks the next one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("another run holds the lock {}", .0.display())]
    Held(PathBuf),
    #[error("another run held the lock {} for all of the {} s waited", .0.display(), .1)]
    HeldAfter(PathBuf, u64),
    #[error("cannot open the lock file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: Errno },
}

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Held for as long as it lives.
#[derive(Debug)]
pub(crate) struct RunLock {
    _lock: Flock<File>,
}

impl RunLock {
    /// Takes the lock, waiting up to `wait` for another run to let it go
    /// (`--wait-for-lock`), polled every [`POLL`].
    pub(crate) fn acquire_within(path: &Path, wait: Duration) -> Result<RunLock, LockError> {
        let deadline = Instant::now() + wait;
        loop {
            match RunLock::acquire(path) {
                Err(LockError::Held(_)) if Instant::now() < deadline => std::thread::sleep(POLL),
                Err(LockError::Held(path)) if !wait.is_zero() => {
                    return Err(LockError::HeldAfter(path, wait.as_secs()));
                }
                other => return other,
            }
        }
    }

    /// Takes the lock without waiting.
    pub(crate) fn acquire(path: &Path) -> Result<RunLock, LockError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent).map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?;
        }
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?
            .into_file();
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(RunLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Held(path.to_owned())),
            Err((_, source)) => Err(LockError::Lock {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/run.lock");
        let first = RunLock::acquire(&path).unwrap();
        let err = RunLock::acquire(&path).unwrap_err();
        assert!(matches!(err, LockError::Held(_)));
        assert!(
            err.to_string().starts_with("another run holds the lock"),
            "{err}"
        );
        drop(first);
        RunLock::acquire(&path).unwrap();
    }

    #[test]
    fn a_waiting_run_gets_the_lock_once_it_is_let_go_or_says_how_long_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        let first = RunLock::acquire(&path).unwrap();
        let err = RunLock::acquire_within(&path, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, LockError::HeldAfter(_, 0)), "{err}");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        RunLock::acquire_within(&path, Duration::from_secs(10)).unwrap();
        releaser.join().unwrap();
    }
}
