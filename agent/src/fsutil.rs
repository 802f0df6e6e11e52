//! Crash-safe file system primitives: atomic replacement and directory fsync.
//!
//! A replacement is written to a temp file in the target's own directory
//! (same file system, so `rename` is atomic), made durable, then renamed over
//! the target. A run killed at any instant leaves the old or the new file,
//! never a partial one; only a stale `.drover-*` temp file may remain, and
//! [`remove_stale_temps`] sweeps those on the next run.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Prefix of every temp file the agent creates next to a managed path.
pub const TEMP_PREFIX: &str = ".drover-";

/// What a new file should look like once in place.
#[derive(Debug, Clone, Copy)]
pub struct NewFile<'a> {
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

/// A unique temp path next to `target`.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let dir = target.parent().unwrap_or(Path::new("."));
    let unique = uuid::Uuid::new_v4().simple().to_string();
    dir.join(format!("{TEMP_PREFIX}{}", &unique[..12]))
}

/// Replaces (or creates) `target` atomically with `file`'s content and metadata.
pub fn write_atomic(target: &Path, file: NewFile<'_>) -> Result<()> {
    let temp = temp_path_for(target);
    let result = write_temp_then_rename(&temp, target, file);
    if result.is_err() {
        // The temp never replaced anything; removing it is all the cleanup there is.
        let _ = fs_err::remove_file(&temp);
    }
    result
}

fn write_temp_then_rename(temp: &Path, target: &Path, file: NewFile<'_>) -> Result<()> {
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
    out.sync_all()?;
    drop(out);
    if let Some(command) = file.validate {
        validate(command, temp, file.quiet)?;
    }
    fs_err::rename(temp, target)?;
    sync_parent(target)
}

/// Runs a `validate` command against the candidate file; its output is
/// the error, unless `quiet`.
pub fn validate(command: &str, candidate: &Path, quiet: bool) -> Result<()> {
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
pub fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Writes an agent-owned state file atomically (mode 0600).
pub fn write_state_file(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    write_atomic(
        path,
        NewFile {
            content,
            mode: 0o600,
            uid: None,
            gid: None,
            validate: None,
            quiet: false,
        },
    )
}

/// Removes `.drover-*` temp files a killed run left in `dir`; returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
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
