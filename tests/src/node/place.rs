//! Where a node lives on the host, and the sweep of what dead test processes
//! left behind.
//!
//! Node `<pid>-<n>` of test process `<pid>` has the directory
//! /var/tmp/drover-nodes/<pid>-<n>/ (owner, upper, work, merged, console.log,
//! processes), the network namespace `drover-<pid>-<n>` and the host-side veth
//! `dv<pid>-<n>`. The directory is created first and removed last, so a
//! namespace or veth without its directory is a leftover.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::Signal;

use super::host::{self, Owner, RUN_DIR};
use super::{cgroup, net};

const NODES_DIR: &str = "/var/tmp/drover-nodes";
const NETNS_PREFIX: &str = "drover-";
const VETH_PREFIX: &str = "dv";

pub(super) struct Place {
    /// `<pid>-<n>`
    pub id: String,
    pub dir: PathBuf,
}

impl Place {
    /// A new, empty node directory owned by this process.
    pub(super) fn create() -> Result<Place> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let owner = Owner::current();
        let id = format!("{}-{}", owner.pid, NEXT.fetch_add(1, Ordering::Relaxed));
        let place = Place::at(&id);
        fs_err::create_dir_all(NODES_DIR)?;
        fs_err::create_dir(&place.dir)?;
        fs_err::write(place.dir.join("owner"), owner.render())?;
        for sub in ["upper", "work", "merged"] {
            fs_err::create_dir(place.dir.join(sub))?;
        }
        Ok(place)
    }

    fn at(id: &str) -> Place {
        Place {
            id: id.to_owned(),
            dir: Path::new(NODES_DIR).join(id),
        }
    }

    pub(super) fn netns(&self) -> String {
        format!("{NETNS_PREFIX}{}", self.id)
    }

    /// At most 15 characters: "dv" + pid (<= 7 digits) + "-" + n.
    pub(super) fn veth(&self) -> String {
        format!("{VETH_PREFIX}{}", self.id)
    }

    pub(super) fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }

    pub(super) fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Notes the running nspawn and init so a sweep can kill them if we die.
    pub(super) fn record_processes(&self, nspawn: u32, init: u32) {
        let _ = fs_err::write(self.dir.join("processes"), format!("{nspawn} {init}\n"));
    }

    fn is_owned_by_live_process(&self) -> bool {
        match fs_err::read_to_string(self.dir.join("owner")) {
            Ok(text) => Owner::parse(&text).is_some_and(|owner| owner.is_alive()),
            // Created a moment ago and the owner not written yet, or garbage.
            Err(_) => self
                .id
                .split('-')
                .next()
                .is_some_and(|pid| Path::new("/proc").join(pid).exists()),
        }
    }

    /// Kills what the sweep finds still running of a dead process's node.
    fn kill_recorded_processes(&self) {
        let recorded = fs_err::read_to_string(self.dir.join("processes")).unwrap_or_default();
        let mut pids = recorded
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok());
        let (Some(nspawn), Some(init)) = (pids.next(), pids.next()) else {
            return;
        };
        let expected = [(init, "systemd"), (nspawn, "systemd-nspawn")];
        let alive = |&(pid, name): &(u32, &str)| host::comm(pid).as_deref() == Some(name);
        for (pid, _) in expected.iter().filter(|p| alive(p)) {
            host::signal(*pid, Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while expected.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Unmounts the overlay, deletes the network and the directory. The
    /// directory stays when the overlay cannot be unmounted.
    pub(super) fn teardown(&self) {
        cgroup::remove(&self.id);
        let merged = self.merged();
        if let Err(e) = host::unmount(&merged) {
            eprintln!(
                "drover-tests: warning: {e:#}; leaving {}",
                self.dir.display()
            );
            return;
        }
        net::delete_node_link(&self.netns(), &self.veth());
        if let Err(e) = fs_err::remove_dir_all(&self.dir) {
            eprintln!("drover-tests: warning: cannot remove the node directory: {e}");
        }
    }
}

/// Removes the nodes, namespaces, veths and bridges of test processes that are
/// gone (killed, or crashed before their destructors ran).
pub(super) fn sweep_leftovers() -> Result<()> {
    let _lock = crate::lockfile::lock(&Path::new(RUN_DIR).join("sweep.lock"))?;

    if let Ok(entries) = fs_err::read_dir(NODES_DIR) {
        for entry in entries.filter_map(|entry| entry.ok()) {
            let place = Place::at(&entry.file_name().to_string_lossy());
            if !place.is_owned_by_live_process() {
                eprintln!(
                    "drover-tests: removing the stale node {}",
                    place.dir.display()
                );
                place.kill_recorded_processes();
                place.teardown();
            }
        }
    }
    let has_no_dir = |id: &str| !Path::new(NODES_DIR).join(id).exists();
    for ns in net::namespaces() {
        if ns.strip_prefix(NETNS_PREFIX).is_some_and(has_no_dir) {
            eprintln!("drover-tests: deleting the stale network namespace {ns}");
            net::delete_node_link(&ns, "");
        }
    }
    for veth in net::links("veth") {
        if veth.strip_prefix(VETH_PREFIX).is_some_and(has_no_dir) {
            eprintln!("drover-tests: deleting the stale veth {veth}");
            net::delete_node_link("", &veth);
        }
    }
    for id in cgroup::ids().into_iter().filter(|id| has_no_dir(id)) {
        eprintln!("drover-tests: removing the stale cgroup of node {id}");
        cgroup::remove(&id);
    }
    net::sweep_bridges();
    Ok(())
}
