//! One cgroup per node. `systemd-nspawn --keep-unit` puts its supervisor and
//! the container in `supervisor/` and `payload/` under its own cgroup; on a
//! host without systemd that is the root cgroup, shared by every container,
//! and the nodes' systemds then delete each other's unit cgroups ("Failed at
//! step CGROUP"). So nspawn starts in drover-nodes/<id> of every cgroup
//! hierarchy systemd uses (the named v1 `systemd` one and cgroup2).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const GROUP: &str = "drover-nodes";

/// Mount points of the hierarchies systemd uses.
fn hierarchies() -> Vec<PathBuf> {
    let mounts = fs_err::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (mountpoint, fstype, options) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
            let systemd_v1 = *fstype == "cgroup" && options.split(',').any(|o| o == "name=systemd");
            (*fstype == "cgroup2" || systemd_v1).then(|| PathBuf::from(mountpoint))
        })
        .collect()
}

/// Creates the node's cgroups; returns their directories.
pub(super) fn create(id: &str) -> Result<Vec<PathBuf>> {
    let dirs: Vec<PathBuf> = hierarchies()
        .iter()
        .map(|h| h.join(GROUP).join(id))
        .collect();
    for dir in &dirs {
        fs_err::create_dir_all(dir).context("cannot create the node's cgroup")?;
    }
    Ok(dirs)
}

/// `sh -c` script that moves itself into the cgroups given before `--`, then
/// execs the command after it.
pub(super) const ENTER_AND_EXEC: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done; shift; exec "$@""#;

/// Removes the node's cgroups, innermost first (its processes must be gone).
pub(super) fn remove(id: &str) {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(GROUP).join(id);
        if dir.exists() {
            remove_tree(&dir);
        }
    }
}

/// Ids that have a cgroup (to sweep those of vanished nodes).
pub(super) fn ids() -> Vec<String> {
    let mut ids: Vec<String> = hierarchies()
        .iter()
        .filter_map(|hierarchy| fs_err::read_dir(hierarchy.join(GROUP)).ok())
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// cgroup directories cannot be emptied, only removed bottom-up with rmdir.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs_err::read_dir(dir) {
        for entry in entries.filter_map(|entry| entry.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    if let Err(e) = fs_err::remove_dir(dir) {
        eprintln!("drover-tests: warning: cannot remove the cgroup: {e}");
    }
}
