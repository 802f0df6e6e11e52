//! `drover-agent disable [REASON]` and `enable` (Puppet's `--disable`): a
//! file in the state directory, written atomically, that turns runs off.
//! While it is there every run (`run --once`, and each run of the daemon,
//! which keeps waiting for the next) stops before it takes the lock,
//! printing the reason and who disabled the agent when; `--once` exits 1.
//! `apply` is not affected: it is an operator's explicit act.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::fsutil::write_state_file;

/// The file's name in the state directory.
pub(crate) const FILE_NAME: &str = "disabled.json";

/// Why runs are off, who turned them off, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Disabled {
    pub reason: String,
    pub by: String,
    pub at: String,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Turns runs off (again: a new reason replaces the old one).
pub(crate) fn disable(state_dir: &Path, reason: Option<&str>) -> Result<Disabled> {
    let disabled = Disabled {
        reason: reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("no reason given")
            .to_owned(),
        by: who(),
        at: jiff::Timestamp::now().to_string(),
    };
    fs_err::create_dir_all(state_dir)?;
    write_state_file(&path(state_dir), &serde_json::to_vec_pretty(&disabled)?)?;
    Ok(disabled)
}

/// Turns runs back on; what had turned them off, if anything.
pub(crate) fn enable(state_dir: &Path) -> Result<Option<Disabled>> {
    let was = disabled(state_dir)?;
    match fs_err::remove_file(path(state_dir)) {
        Ok(()) => Ok(was),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(was),
        Err(e) => Err(e.into()),
    }
}

/// Whether runs are off, and why.
pub(crate) fn disabled(state_dir: &Path) -> Result<Option<Disabled>> {
    let path = path(state_dir);
    match fs_err::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not what `drover-agent disable` writes\nhint: `drover-agent enable` removes it",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Fails when runs are off, saying why, by whom and since when.
pub(crate) fn check(state_dir: &Path) -> Result<()> {
    if let Some(d) = disabled(state_dir)? {
        bail!(
            "runs are disabled: {} (by {} at {})\nhint: `drover-agent enable` turns them back on",
            d.reason,
            d.by,
            d.at
        );
    }
    Ok(())
}

/// The operator: the user sudo ran us for, else the login name, else the uid.
fn who() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_then_enable_round_trips_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        check(dir.path()).unwrap();
        let d = disable(dir.path(), Some("  kernel upgrade, ticket OPS-12 ")).unwrap();
        assert_eq!(d.reason, "kernel upgrade, ticket OPS-12");
        let err = format!("{:#}", check(dir.path()).unwrap_err());
        assert!(
            err.starts_with("runs are disabled: kernel upgrade, ticket OPS-12 (by "),
            "{err}"
        );
        assert!(err.contains(&d.at), "{err}");
        assert_eq!(enable(dir.path()).unwrap(), Some(d));
        check(dir.path()).unwrap();
        assert_eq!(enable(dir.path()).unwrap(), None, "enabling twice is fine");
        let d = disable(dir.path(), None).unwrap();
        assert_eq!(d.reason, "no reason given");
    }

    #[test]
    fn a_file_that_is_not_ours_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join(FILE_NAME), "garbage").unwrap();
        let err = format!("{:#}", check(dir.path()).unwrap_err());
        assert!(err.contains("disabled.json is not what"), "{err}");
    }
}
