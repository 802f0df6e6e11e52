//! Crash-safe file system primitives: atomic replacement and directory fsync.
//!
//! A replacement is written to a temp file in the target's own directory
//! (same file system, so `rename` is atomic), made durable, then renamed over
//! the target. A run killed at any instant leaves the old or the new file,
//! never a partial one; only a stale `.drover-*` temp file may remain, and
//! [`remove_stale_temps`] sweeps those on the next run. Reading a large
//! directory to look for them costs a no-change run more than anything else
//! it does per file, so a run looks only when one may be there
//! ([`TempMarker`]).
//!
//! A run that writes many files stages them instead ([`stage`]): every temp
//! is written first, then [`sync_staged`] makes them all durable at once
//! (fsyncs on several threads at once), then they are renamed in order and
//! each directory is fsynced once ([`sync_dirs`]). The guarantee is the same:
//! nothing is renamed over a managed path before its content is durable.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Prefix of every temp file the agent creates next to a managed path.
pub(crate) const TEMP_PREFIX: &str = ".drover-";

/// What a new file should look like once in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewFile<'a> {
    pub content: &'a [u8],
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Run on the temp file before the rename; `%` is its path.
    pub validate: Option<&'a str>,
    /// A failed `validate` names neither its command nor its output (the
    /// file is sensitive: the command may print the content it checked).
    pub quiet: bool,
}

impl<'a> NewFile<'a> {
    /// A file of the agent's own (state, backups): mode 0600, owned by the
    /// agent, nothing to validate.
    pub(crate) fn private(content: &'a [u8]) -> NewFile<'a> {
        NewFile {
            content,
            mode: 0o600,
            uid: None,
            gid: None,
            validate: None,
            quiet: false,
        }
    }
}

/// A unique temp path next to `target`.
pub(crate) fn temp_path_for(target: &Path) -> PathBuf {
    let dir = target.parent().unwrap_or(Path::new("."));
    let unique = uuid::Uuid::new_v4().simple().to_string();
    dir.join(format!("{TEMP_PREFIX}{}", &unique[..12]))
}

/// Whether this run must sweep the managed directories for temp files, and
/// the marker that tells the next run: `STATE/temps.pending`, made durable
/// before this run's first temp file and removed when the run has ended
/// with none left. A run sweeps when it finds the marker (a run was killed
/// while writing), and on every full verification (a marker lost some other
/// way: an older agent, a write that failed, a hand-made temp).
#[derive(Debug)]
pub(crate) struct TempMarker {
    /// `None`: no marker; every directory is swept (the kinds' unit tests).
    path: Option<PathBuf>,
    sweep: bool,
    /// The marker is on disk: found there, or made by this run.
    marked: bool,
}

impl Default for TempMarker {
    fn default() -> Self {
        TempMarker {
            path: None,
            sweep: true,
            marked: false,
        }
    }
}

impl TempMarker {
    pub(crate) const FILE_NAME: &str = "temps.pending";

    pub(crate) fn open(path: PathBuf, full_verification: bool) -> TempMarker {
        let found = fs_err::symlink_metadata(&path).is_ok();
        TempMarker {
            path: Some(path),
            sweep: found || full_verification,
            marked: found,
        }
    }

    /// Whether this run looks for stale temp files.
    pub(crate) fn sweeps(&self) -> bool {
        self.sweep
    }

    /// Called before every temp file the run creates; the first call makes
    /// the marker durable. Failing to only costs the sweep of a later run
    /// that follows a kill, so it warns once and lets the write go ahead.
    pub(crate) fn before_temp(&mut self) {
        let Some(path) = self.path.as_deref().filter(|_| !self.marked) else {
            return;
        };
        self.marked = true;
        let made = create_private_dir_all(parent_of(path))
            .and_then(|()| Ok(fs_err::File::create(path)?.sync_all()?))
            .and_then(|()| sync_parent(path));
        if let Err(e) = made {
            crate::output::warning(&format!(
                "cannot mark the run's temp files in {}: {e:#}; a run killed now leaves them until the next full verification",
                path.display()
            ));
        }
    }

    /// The run ended: a run that `completed` leaves no temp file of its
    /// own, and swept where the marker said to. Not fsynced: a removal
    /// lost in a crash only costs a sweep.
    pub(crate) fn finish(&mut self, completed: bool) {
        if let (true, true, Some(path)) = (completed, self.marked, &self.path) {
            let _ = fs_err::remove_file(path);
            self.marked = false;
        }
    }
}

/// fsyncs in flight at once: they wait on the device, not the CPU.
pub(crate) const SYNC_THREADS: usize = 16;
/// Fewer files than this per thread are not worth starting one.
const SYNC_PER_THREAD: usize = 4;

/// Replaces (or creates) `target` atomically with `file`'s content and metadata.
pub(crate) fn write_atomic(target: &Path, file: NewFile<'_>) -> Result<()> {
    let temp = temp_path_for(target);
    let result = write_temp(&temp, file, true)
        .and_then(|_| Ok(fs_err::rename(&temp, target)?))
        .and_then(|()| sync_parent(target));
    if result.is_err() {
        // The temp never replaced anything; removing it is all the cleanup there is.
        let _ = fs_err::remove_file(&temp);
    }
    result
}

/// A file written (and validated) under its temp path next to `target`:
/// not durable yet, and `target` untouched.
#[derive(Debug)]
pub(crate) struct Staged {
    pub temp: PathBuf,
    pub target: PathBuf,
    /// The directory `temp` and `target` are reached through, held open
    /// until the rename (see [`crate::safepath`]).
    pub anchor: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

impl Staged {
    /// Drops the candidate: it never replaced anything.
    pub(crate) fn discard(&self) {
        let _ = fs_err::remove_file(&self.temp);
    }

    /// Renames the (durable) temp over the target; the rename itself is
    /// durable once [`sync_dirs`] ran on the target's directory.
    pub(crate) fn rename(&self) -> Result<()> {
        Ok(fs_err::rename(&self.temp, &self.target)?)
    }
}

/// Writes `file` to a new temp path next to `target`, with its owner and
/// mode, and runs its `validate` command; no fsync and no rename: see
/// [`sync_staged`].
pub(crate) fn stage(target: &Path, file: NewFile<'_>) -> Result<Staged> {
    let temp = temp_path_for(target);
    match write_temp(&temp, file, false) {
        Ok(()) => Ok(Staged {
            temp,
            target: target.to_owned(),
            anchor: None,
        }),
        Err(e) => {
            let _ = fs_err::remove_file(&temp);
            Err(e)
        }
    }
}

/// Writes the temp file (fsynced when `sync`).
fn write_temp(temp: &Path, file: NewFile<'_>, sync: bool) -> Result<()> {
    let mut out = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)?;
    out.write_all(file.content)?;
    if file.uid.is_some() || file.gid.is_some() {
        std::os::unix::fs::fchown(out.file(), file.uid, file.gid)
            .with_context(|| format!("cannot set the owner of {}", temp.display()))?;
    }
    // After fchown: changing the owner clears setuid/setgid bits.
    out.set_permissions(std::fs::Permissions::from_mode(file.mode))?;
    if sync {
        out.sync_all()?;
    }
    drop(out);
    if let Some(command) = file.validate {
        validate(command, temp, file.quiet)?;
    }
    Ok(())
}

/// Makes the content of every staged temp durable: fsyncs on up to
/// [`SYNC_THREADS`] threads at once, so the device and the journal see them
/// together (one flush serves many). Not `syncfs(2)`: that would also wait
/// for every other process's dirty data on the file system (measured: about
/// a second beside a compiler, for 100 files).
pub(crate) fn sync_staged(staged: &[&Staged]) -> Result<()> {
    let threads = staged
        .len()
        .div_ceil(SYNC_PER_THREAD)
        .clamp(1, SYNC_THREADS);
    let next = AtomicUsize::new(0);
    let work = || -> Result<()> {
        loop {
            let Some(s) = staged.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            fs_err::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&s.temp)?
                .sync_all()?;
        }
    };
    if threads == 1 {
        return work();
    }
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut result = work();
        for helper in helpers {
            let done = helper
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an fsync thread panicked")));
            result = result.and(done);
        }
        result
    })
}

/// fsyncs each distinct directory of `paths` once, so the renames and
/// unlinks in them are durable; returns the directories that failed.
pub(crate) fn sync_dirs<'p>(
    paths: impl IntoIterator<Item = &'p Path>,
) -> Vec<(PathBuf, anyhow::Error)> {
    let mut done = std::collections::HashSet::new();
    let mut failed = Vec::new();
    for path in paths {
        let dir = parent_of(path);
        if done.insert(dir)
            && let Err(e) = sync_dir(dir)
        {
            failed.push((dir.to_owned(), e));
        }
    }
    failed
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Runs a `validate` command against the candidate file; its output is
/// the error, unless `quiet`.
pub(crate) fn validate(command: &str, candidate: &Path, quiet: bool) -> Result<()> {
    let command = command.replace('%', &candidate.to_string_lossy());
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .output()
        .with_context(|| format!("cannot run validate command `{command}`"))?;
    if output.status.success() {
        return Ok(());
    }
    if quiet {
        bail!(
            "validate command failed ({}); its command and output are hidden: the resource is sensitive",
            output.status
        );
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    bail!(
        "validate command `{command}` failed ({}): {}",
        output.status,
        text.trim()
    )
}

/// fsync of the directory holding `path`, so a rename or unlink in it is durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    sync_dir(parent_of(path))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Creates an agent-owned directory and its missing parents, mode 0700:
/// the state directory holds the node's key, cached secrets and backups of
/// replaced (possibly secret) files.
pub(crate) fn create_private_dir_all(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create directory {}", path.display()))
}

/// Writes an agent-owned state file atomically (mode 0600).
pub(crate) fn write_state_file(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent)?;
    }
    write_atomic(path, NewFile::private(content))
}

/// An agent-owned file that checks itself when read (the file cache, by
/// its checksum; the content store, by its name's sha256): temp file (mode
/// 0600) then rename, so a killed run leaves the old file or the new one,
/// but no fsync: what a power loss tears is only read as missing.
pub(crate) fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent)?;
    }
    let temp = temp_path_for(path);
    let written = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs_err::rename(&temp, path));
    if written.is_err() {
        let _ = fs_err::remove_file(&temp);
    }
    Ok(written?)
}

/// Removes `.drover-*` temp files a killed run left in `dir`; returns how many.
pub(crate) fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_temp = name.to_str().is_some_and(|n| {
            n.len() == TEMP_PREFIX.len() + 12
                && n.starts_with(TEMP_PREFIX)
                && n[TEMP_PREFIX.len()..]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit())
        });
        let is_file_or_link = entry.file_type().is_ok_and(|t| !t.is_dir());
        if is_temp && is_file_or_link && fs_err::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn plain(content: &[u8]) -> NewFile<'_> {
        NewFile {
            content,
            mode: 0o640,
            uid: None,
            gid: None,
            validate: None,
            quiet: false,
        }
    }

    #[test]
    fn atomic_write_replaces_content_and_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        fs_err::write(&target, b"old").unwrap();
        write_atomic(&target, plain(b"new")).unwrap();
        assert_eq!(fs_err::read(&target).unwrap(), b"new");
        assert_eq!(fs_err::metadata(&target).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_validate_keeps_old_file_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        fs_err::write(&target, b"old").unwrap();
        let file = NewFile {
            validate: Some("grep -q good % || { echo bad content; exit 3; }"),
            ..plain(b"evil")
        };
        let err = write_atomic(&target, file).unwrap_err();
        assert!(format!("{err:#}").contains("bad content"), "{err:#}");
        assert_eq!(fs_err::read(&target).unwrap(), b"old");
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
        let ok = NewFile {
            validate: Some("grep -q good %"),
            ..plain(b"good")
        };
        write_atomic(&target, ok).unwrap();
        assert_eq!(fs_err::read(&target).unwrap(), b"good");
        let quiet = NewFile {
            validate: Some("echo s3cret; exit 1"),
            quiet: true,
            ..plain(b"s3cret")
        };
        let err = format!("{:#}", write_atomic(&target, quiet).unwrap_err());
        assert!(!err.contains("s3cret") && err.contains("hidden"), "{err}");
    }

    #[test]
    fn interrupted_write_leaves_old_or_new_then_stale_temp_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        fs_err::write(&target, b"old").unwrap();
        // A run killed between writing the temp and the rename leaves exactly this.
        let temp = temp_path_for(&target);
        fs_err::write(&temp, b"partial").unwrap();
        assert_eq!(fs_err::read(&target).unwrap(), b"old");
        fs_err::write(dir.path().join(".drover-notours"), b"x").unwrap();
        assert_eq!(remove_stale_temps(dir.path()), 1);
        assert!(!temp.exists());
        assert!(
            dir.path().join(".drover-notours").exists(),
            "only our exact pattern is swept"
        );
    }
}
