//! Throwaway Debian nodes for end-to-end tests: booted with `systemd-nspawn`
//! so systemd is PID 1, each on its own copy-on-write overlay of the image
//! scripts/node-image builds, with its own hostname, network namespace and
//! address on the lab's bridge.
//!
//! ```no_run
//! use drover_tests::node::{Lab, Node};
//! let lab = Lab::new();
//! let web = Node::boot(&lab, "web");
//! web.sh("apt-get install -y hello").expect_code(0);
//! ```
//!
//! Needs root and systemd-nspawn, iproute2 and debootstrap (scripts/test
//! installs them). Everything is torn down on drop, also when a test panics;
//! what a killed test process left behind is swept by the next `Lab::new`.

mod cgroup;
mod host;
mod image;
mod net;
mod place;

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::Output;
use place::Place;

/// PATH inside a node (commands run with an otherwise empty environment).
const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long `exec` lets a command run before killing it.
const EXEC_TIMEOUT: Duration = Duration::from_secs(600);
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a node gets to power off cleanly before it is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(15);

/// A private network for the nodes of one test: a bridge on the host with
/// its own 10.213.X.0/24, the host on .1. Deleted once the lab and all its
/// nodes are dropped.
pub struct Lab {
    inner: Arc<LabInner>,
}

struct LabInner {
    bridge: net::Bridge,
    next_host: AtomicU8,
}

impl Lab {
    /// Checks the host, sweeps what dead test processes left behind, and
    /// claims a free subnet.
    pub fn new() -> Lab {
        image::check_host();
        if let Err(e) = place::sweep_leftovers() {
            panic!("cannot sweep the leftovers of earlier test nodes: {e:#}");
        }
        let bridge = net::Bridge::claim().unwrap_or_else(|e| panic!("{e:#}"));
        Lab {
            inner: Arc::new(LabInner {
                bridge,
                next_host: AtomicU8::new(2),
            }),
        }
    }

    /// The host's address on the lab network: a listener bound there is
    /// reachable from every node of the lab.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.inner.bridge.host_ip()
    }
}

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

/// A booted Debian node. Powered off and deleted when dropped.
pub struct Node {
    name: String,
    ip: Ipv4Addr,
    strict: bool,
    lab: Arc<LabInner>,
    place: Place,
    running: Option<Running>,
}

struct Running {
    nspawn: Child,
    init: u32,
}

impl Node {
    /// Boots a node with hostname `name` and waits until systemd reports the
    /// system running (or degraded).
    pub fn boot(lab: &Lab, name: &str) -> Node {
        Node::boot_with(lab, name, false)
    }

    /// Like `boot`, but a degraded system (a failed unit) fails the test with
    /// `systemctl --failed` and the error log.
    pub fn boot_strict(lab: &Lab, name: &str) -> Node {
        Node::boot_with(lab, name, true)
    }

    fn boot_with(lab: &Lab, name: &str, strict: bool) -> Node {
        assert!(
            !name.is_empty()
                && name.len() <= 40
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "node name {name:?}: use 1 to 40 of a-z, 0-9 and -"
        );
        let image = image::image();
        let host = lab.inner.next_host.fetch_add(1, Ordering::Relaxed);
        assert!(
            host > 1 && host < 255,
            "lab network full: at most 253 nodes"
        );
        let place = Place::create().unwrap_or_else(|e| panic!("node {name}: {e:#}"));
        let mut node = Node {
            name: name.to_owned(),
            ip: Ipv4Addr::new(10, 213, lab.inner.bridge.subnet, host),
            strict,
            lab: Arc::clone(&lab.inner),
            place,
            running: None,
        };
        // From here on a panic drops `node`, which tears down what exists.
        if let Err(e) = node.prepare(&image) {
            panic!("node {name}: {e:#}");
        }
        node.start();
        node
    }

    fn prepare(&self, image: &std::path::Path) -> Result<()> {
        let merged = self.place.merged();
        host::mount_overlay(image, &self.place.dir, &merged)?;
        fs_err::write(merged.join("etc/hostname"), format!("{}\n", self.name))?;
        let (ns, veth) = (self.place.netns(), self.place.veth());
        net::create_node_link(&self.lab.bridge, &ns, &veth, self.ip)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's address on the lab network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The node's `/` as a host path (the overlay).
    pub fn root(&self) -> PathBuf {
        self.place.merged()
    }

    /// The node's network namespace (`ip netns list` shows it while it exists).
    pub fn netns(&self) -> String {
        self.place.netns()
    }

    /// Runs `argv` in the node (all its namespaces, root, an empty
    /// environment but PATH, HOME and LANG); killed after 10 minutes.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.exec_with(argv, None, EXEC_TIMEOUT)
    }

    /// Runs a bash script in the node.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["bash", "-c", script])
    }

    /// `exec` with bytes on stdin and a timeout (the command and everything it
    /// started in its process group is killed when it runs out).
    pub fn exec_with(&self, argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Output {
        let init = self.init_pid();
        let mut cmd = host::tool("nsenter");
        cmd.args(["-t", &init.to_string(), "-m", "-u", "-i", "-n", "-p", "--"])
            .args(["/usr/bin/env", "-i", &format!("PATH={NODE_PATH}")])
            .args(["HOME=/root", "LANG=C.UTF-8"])
            .args(argv);
        host::run(&mut cmd, stdin, timeout).unwrap_or_else(|e| panic!("node {}: {e:#}", self.name))
    }

    /// Writes a file in the node (parents created), owned by root.
    pub fn write_file(&self, path: &str, content: &[u8], mode: u32) {
        let script = r#"set -e; mkdir -p "$(dirname "$1")"; cat > "$1"; chmod "$2" "$1""#;
        let mode = format!("{mode:o}");
        let argv = ["bash", "-c", script, "write_file", path, &mode];
        let out = self.exec_with(&argv, Some(content), Duration::from_secs(60));
        assert_eq!(
            out.code, 0,
            "node {}: cannot write {path}: {}",
            self.name, out.stderr
        );
    }

    /// Copies the workspace's `drover-agent` binary to /usr/local/bin/drover-agent.
    pub fn install_agent(&self) {
        let agent = crate::bin("drover-agent");
        let bin_dir = self.root().join("usr/local/bin");
        let partial = bin_dir.join(".drover-agent.partial");
        let copied = fs_err::copy(&agent, &partial)
            .and_then(|_| set_mode(&partial, 0o755))
            .and_then(|_| fs_err::rename(&partial, bin_dir.join("drover-agent")));
        if let Err(e) = copied {
            panic!("node {}: cannot install drover-agent: {e}", self.name);
        }
    }

    /// Powers the node off (cleanly, killed after 15 s). Its files stay.
    pub fn stop(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        let nspawn = running.nspawn.id();
        host::signal(nspawn, Signal::SIGTERM);
        let deadline = Instant::now() + POWEROFF_TIMEOUT;
        while matches!(running.nspawn.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(running.nspawn.try_wait(), Ok(None)) {
            eprintln!(
                "drover-tests: node {} did not power off within {POWEROFF_TIMEOUT:?}; killing it",
                self.name
            );
            if host::comm(running.init).as_deref() == Some("systemd") {
                host::signal(running.init, Signal::SIGKILL);
            }
            let _ = running.nspawn.kill();
        }
        let _ = running.nspawn.wait();
        let _ = fs_err::remove_file(self.place.dir.join("processes"));
        cgroup::remove(&self.place.id);
    }

    /// Boots the node again after `stop` (same files, address and hostname).
    pub fn start(&mut self) {
        assert!(
            self.running.is_none(),
            "node {} is already running",
            self.name
        );
        let started = Instant::now();
        let mut nspawn = self.spawn_nspawn();
        let init = self.wait_for_init(&mut nspawn);
        self.place.record_processes(nspawn.id(), init);
        self.running = Some(Running { nspawn, init });
        self.wait_booted();
        eprintln!(
            "drover-tests: node {} up in {:.1?}",
            self.name,
            started.elapsed()
        );
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Takes the node off the lab network (the host end of its link goes down).
    pub fn cut_network(&self) {
        net::set_link_up(&self.place.veth(), false)
            .unwrap_or_else(|e| panic!("node {}: {e:#}", self.name));
    }

    pub fn restore_network(&self) {
        net::set_link_up(&self.place.veth(), true)
            .unwrap_or_else(|e| panic!("node {}: {e:#}", self.name));
    }

    /// The last 200 journal lines of a unit, for diagnostics.
    pub fn journal(&self, unit: &str) -> String {
        let out = self.exec(&[
            "journalctl",
            "--no-pager",
            "-o",
            "short-precise",
            "-n",
            "200",
            "-u",
            unit,
        ]);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// What systemd-nspawn and the node's console printed, for diagnostics.
    pub fn console_log(&self) -> String {
        fs_err::read_to_string(self.place.console_log()).unwrap_or_default()
    }

    fn init_pid(&self) -> u32 {
        match &self.running {
            Some(running) => running.init,
            None => panic!(
                "node {} is stopped\nhint: call node.start() first",
                self.name
            ),
        }
    }

    fn spawn_nspawn(&self) -> Child {
        let log = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.place.console_log())
            .unwrap_or_else(|e| panic!("node {}: {e}", self.name));
        let log_err = log.file().try_clone().expect("console log handle");
        let cgroups =
            cgroup::create(&self.place.id).unwrap_or_else(|e| panic!("node {}: {e:#}", self.name));
        let nspawn = host::find_tool("systemd-nspawn").expect("checked by Lab::new");
        let mut cmd: Command = host::tool("sh");
        cmd.args(["-c", cgroup::ENTER_AND_EXEC, "sh"])
            .args(&cgroups)
            .arg("--")
            .arg(nspawn);
        cmd.args([
            "--register=no",
            "--keep-unit",
            "--link-journal=no",
            "--console=passive",
            "-b",
        ])
        .arg("-D")
        .arg(self.place.merged())
        // Unique: nspawn keeps per-machine state in /run/systemd/nspawn.
        .arg(format!("--machine={}-{}", self.name, self.place.id))
        .arg(format!("--hostname={}", self.name))
        .arg(format!(
            "--network-namespace-path=/run/netns/{}",
            self.place.netns()
        ))
        .stdin(Stdio::null())
        .stdout(log.into_parts().0)
        .stderr(log_err)
        // Its own process group: a Ctrl-C meant for the tests must not
        // reach the node (nspawn would reboot it).
        .process_group(0);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("node {}: cannot start systemd-nspawn: {e}", self.name))
    }

    /// The container's PID 1: the child of nspawn that runs systemd.
    fn wait_for_init(&self, nspawn: &mut Child) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let init = host::children(nspawn.id())
                .into_iter()
                .find(|&pid| host::comm(pid).as_deref() == Some("systemd"));
            if let Some(init) = init {
                return init;
            }
            let exited = nspawn.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = nspawn.kill();
                let _ = nspawn.wait();
                let what = exited
                    .map_or("did not start systemd within 30 s".to_owned(), |status| {
                        format!("exited ({status})")
                    });
                self.fail(&format!("systemd-nspawn {what}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for `systemctl is-system-running --wait` to say running or degraded.
    fn wait_booted(&self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let out = self.exec_with(&["systemctl", "is-system-running", "--wait"], None, left);
            match out.stdout.trim() {
                "running" => return,
                "degraded" if self.strict => {
                    let failed = self.exec(&["systemctl", "--failed", "--no-pager"]).stdout;
                    let errors = self
                        .exec(&["journalctl", "--no-pager", "-b", "-p", "err"])
                        .stdout;
                    self.fail(&format!("booted degraded\n{failed}\n--- errors\n{errors}"));
                }
                "degraded" => return,
                // Too early: systemd has not opened its bus (empty) or not
                // even created /run/systemd/system ("offline") yet.
                "" | "offline" if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                state => self.fail(&format!("did not boot: {state:?} {}", out.stderr.trim())),
            }
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "node {}: {what}\n--- console ({})\n{}",
            self.name,
            self.place.console_log().display(),
            tail(&self.console_log(), 40)
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        self.place.teardown();
    }
}

/// Polls `check` every 100 ms; panics with `what` when it is still false
/// after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_mode(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
