//! Writing key material: whole files, mode 0600 from the first byte.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `bytes` to `path` atomically (temp file, fsync, rename), readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs_err::create_dir_all(dir)?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    // Unique per call, not only per process: two threads of one server
    // (the shared CA's copy brought up to date twice at once) may write the
    // same file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs_err::rename(&tmp, path)?;
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}
