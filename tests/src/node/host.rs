//! Host-side plumbing for the test nodes: running tools with a timeout,
//! telling live processes from dead ones, and mounts.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Output;

/// Where the harness keeps its locks (tmpfs: gone after a reboot, like the nodes).
pub(super) const RUN_DIR: &str = "/run/drover-tests";

const SEARCH_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Full path of a host tool, whatever PATH the test runs with.
pub(super) fn find_tool(name: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&from_env)
        .chain(SEARCH_PATH.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A `Command` for a host tool (panics with the install hint when it is missing).
pub(super) fn tool(name: &str) -> Command {
    let path = find_tool(name).unwrap_or_else(|| panic!("{}", missing_tool(name)));
    Command::new(path)
}

pub(super) fn missing_tool(name: &str) -> String {
    format!(
        "`{name}` is not installed on this host; the test nodes need it\n\
         hint: run the tests through scripts/test as root: it installs debootstrap, \
         systemd-container and iproute2"
    )
}

/// Runs a command in its own process group, feeding `stdin`, and kills the whole
/// group when it outlives `timeout`.
pub(super) fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let group = Pid::from_raw(child.id() as i32);
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || pipe.write_all(&bytes));
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status,
        Err(_) => {
            let _ = kill(Pid::from_raw(-group.as_raw()), Signal::SIGKILL);
            let _ = rx.recv();
            bail!("{shown} did not finish within {timeout:?}; killed it");
        }
    }
    .with_context(|| format!("waiting for {shown}"))?;
    // A background process may hold the pipes; give it a little while at most.
    let grace_end = deadline.min(Instant::now() + Duration::from_secs(5));
    let left = || grace_end.saturating_duration_since(Instant::now());
    let (Ok(stdout), Ok(stderr)) = (stdout.recv_timeout(left()), stderr.recv_timeout(left()))
    else {
        bail!(
            "{shown} exited, but something it started in the background still holds its output \
             5 s later\n\
             hint: start long-running processes with systemd-run or redirect their output"
        );
    };
    Ok(Output::from(std::process::Output {
        status,
        stdout,
        stderr,
    }))
}

/// Reads a pipe to the end in a thread; the bytes arrive on the channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    rx
}

/// Runs a host tool that must succeed within a minute; returns its stdout.
pub(super) fn run_ok(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = run(cmd, None, Duration::from_secs(60))?;
    if out.code != 0 {
        bail!("{shown} exited with {}: {}", out.code, out.stderr.trim());
    }
    Ok(out.stdout)
}

/// A process identified by pid and start time, so a reused pid is not taken
/// for the original owner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Owner {
    pub pid: u32,
    pub started: u64,
}

impl Owner {
    pub(super) fn current() -> Owner {
        let pid = std::process::id();
        let started = start_time(pid).expect("/proc/self/stat is readable");
        Owner { pid, started }
    }

    pub(super) fn parse(text: &str) -> Option<Owner> {
        let (pid, started) = text.trim().split_once(' ')?;
        Some(Owner {
            pid: pid.parse().ok()?,
            started: started.parse().ok()?,
        })
    }

    pub(super) fn render(&self) -> String {
        format!("{} {}\n", self.pid, self.started)
    }

    pub(super) fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.started)
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The executable name of a process (`/proc/PID/comm`), if it is alive and
/// not a zombie (our PID 1 may not reap what a killed test left behind).
pub(super) fn comm(pid: u32) -> Option<String> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let state = stat[close + 1..].split_whitespace().next()?;
    (state != "Z").then(|| stat[open + 1..close].to_owned())
}

/// The children of a process, from every one of its threads.
pub(super) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs_err::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| fs_err::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

pub(super) fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

pub(super) fn is_mounted(path: &Path) -> bool {
    let mounts = fs_err::read_to_string("/proc/mounts").unwrap_or_default();
    let wanted = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .any(|mountpoint| mountpoint.replace("\\040", " ") == wanted)
}

pub(super) fn mount_overlay(lower: &Path, dir: &Path, merged: &Path) -> Result<()> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    run_ok(
        tool("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(merged),
    )
    .with_context(|| format!("cannot mount the node overlay on {}", merged.display()))?;
    Ok(())
}

/// Unmounts, retrying while the last processes of a node let go, then lazily.
pub(super) fn unmount(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_mounted(path) {
        if run_ok(tool("umount").arg(path)).is_ok() {
            continue;
        }
        if Instant::now() > deadline {
            run_ok(tool("umount").arg("--lazy").arg(path))
                .with_context(|| format!("cannot unmount {}", path.display()))?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
