//! The daemon under a stand-in for systemd: a datagram socket as
//! `$NOTIFY_SOCKET` (an abstract address, the harder of the two forms)
//! receives READY, STATUS, WATCHDOG and STOPPING; SIGHUP asks for a run.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_drover-agent");

struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn bind(name: &str) -> Manager {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Manager {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads notifications until one has a line for which `want` holds.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(message.clone());
            if let Some(line) = message.lines().find(|l| want(l)) {
                return line.to_owned();
            }
        }
        panic!("no {what} within 20 s; seen: {:#?}", self.seen);
    }
}

fn spawn_daemon(dir: &std::path::Path, notify_socket: &str) -> Child {
    let config = dir.join("agent.toml");
    // Nothing listens on port 1: every run fails at once, which is all the
    // daemon loop needs to go round.
    fs_err::write(
        &config,
        "server = \"http://127.0.0.1:1\"\ninsecure_http = true\nnode = \"n1\"\ninterval_secs = 3600\nsplay_secs = 0\n\
         http_timeout_secs = 2\n",
    )
    .unwrap();
    Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("NOTIFY_SOCKET", notify_socket)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        // Set, but naming another stream than stderr: output must stay plain.
        .env("JOURNAL_STREAM", "1:1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn daemon_notifies_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("drover-agent-test-{}", std::process::id());
    let mut manager = Manager::bind(&name);
    let child = spawn_daemon(dir.path(), &format!("@{name}"));
    let pid = Pid::from_raw(child.id() as i32);

    let ready = manager.until("READY=1", |l| l == "READY=1");
    assert_eq!(ready, "READY=1");
    let first = manager.seen.last().unwrap().clone();
    assert!(
        first.contains("STATUS=idle, next run in 0 s"),
        "ready before the first run: {first:?}"
    );
    manager.until("a run", |l| l == "STATUS=run in progress");
    let after = manager.until("the run's outcome", |l| l.contains("last run"));
    assert!(
        after.starts_with("STATUS=idle, next run in 3") && after.contains("could not happen"),
        "{after}"
    );
    manager.until("a watchdog ping", |l| l == "WATCHDOG=1");

    kill(pid, Signal::SIGHUP).unwrap();
    manager.until("a run on SIGHUP", |l| l == "STATUS=run in progress");
    manager.until("the SIGHUP run's outcome", |l| l.contains("last run"));

    kill(pid, Signal::SIGTERM).unwrap();
    manager.until("STOPPING=1", |l| l == "STOPPING=1");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("drover-agent: node `n1`") && stderr.contains("drover-agent: stopping"),
        "plain lines when stderr is not the journal: {stderr}"
    );
    assert!(
        stderr.contains("drover-agent: run requested (SIGHUP)"),
        "{stderr}"
    );
}

#[test]
fn daemon_that_cannot_start_never_says_ready() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("drover-agent-test-bad-{}", std::process::id());
    let manager = Manager::bind(&name);
    // A file where the state directory should be.
    fs_err::write(dir.path().join("state"), "").unwrap();
    let out = spawn_daemon(dir.path(), &format!("@{name}"))
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot create the state directory"),
        "{stderr}"
    );
    let mut buf = [0u8; 4096];
    while let Ok(n) = manager.socket.recv(&mut buf) {
        let message = String::from_utf8_lossy(&buf[..n]);
        assert!(!message.contains("READY=1"), "{message}");
    }
}
