//! The node image (built by scripts/node-image) and the host prerequisites.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use super::host::{find_tool, missing_tool, tool};

/// Host tools the harness runs itself (scripts/node-image checks its own).
const TOOLS: &[&str] = &["systemd-nspawn", "nsenter", "ip", "mount", "umount"];

/// Panics with a hint when the host cannot run test nodes: a skipped test
/// would hide that nothing was tested.
pub(super) fn check_host() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the test nodes need root (mounts, network namespaces, systemd-nspawn)\n\
         hint: run the tests through scripts/test as root"
    );
    for name in TOOLS {
        assert!(find_tool(name).is_some(), "{}", missing_tool(name));
    }
}

/// The root filesystem every node boots from, built on first use.
pub(super) fn image() -> PathBuf {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_or_find().map_err(|e| format!("{e:#}")))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
}

/// Runs scripts/node-image (it only prints the path when the image exists).
fn build_or_find() -> Result<PathBuf> {
    let script = repo_root().join("scripts/node-image");
    let out = tool("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); its messages are above\n\
             hint: run it by hand as root, or run the tests through scripts/test",
            script.display(),
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !path.join("sbin/init").exists() {
        bail!(
            "{} printed {:?}, which is not a bootable root filesystem (no sbin/init)\n\
             hint: delete that directory and run scripts/node-image again",
            script.display(),
            path
        );
    }
    Ok(path)
}
