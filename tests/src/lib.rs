//! Harness for the end-to-end tests: temporary git repositories, the real
//! `drover-server` on `127.0.0.1:0`, and the real `drover-agent` binary.
//!
//! The binaries are the ones `cargo build --workspace --bins` left next to
//! the test executable (`scripts/test` builds them first).

pub mod docker;
pub mod lockfile;
pub mod node;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Path of a workspace binary, built next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-HASH -> target/debug/NAME
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing\nhint: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing everything the command printed if it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A git repository in a temporary directory, on branch `main`.
pub struct GitRepo {
    pub path: PathBuf,
}

impl GitRepo {
    pub fn init(path: &Path) -> GitRepo {
        fs_err::create_dir_all(path).unwrap();
        let repo = GitRepo {
            path: path.to_owned(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn write(&self, rel: &str, content: &str) -> &GitRepo {
        let path = self.path.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
        self
    }

    /// Commits everything and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=drover tests",
                "-c",
                "user.email=tests@drover.invalid",
            ])
            .args(args)
            .current_dir(&self.path)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A running `drover-server serve`, stopped when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub url: String,
    repo: PathBuf,
    data_dir: PathBuf,
}

impl Server {
    /// Starts a server on a free loopback port.
    pub fn start(repo: &Path, data_dir: &Path) -> Server {
        Server::start_on(repo, data_dir, "127.0.0.1:0")
    }

    pub fn start_on(repo: &Path, data_dir: &Path, listen: &str) -> Server {
        fs_err::create_dir_all(data_dir).unwrap();
        let log = fs_err::File::create(data_dir.join("server.log")).unwrap();
        let mut child = Command::new(bin("drover-server"))
            .args([
                "serve",
                "--listen",
                listen,
                "--refresh-interval-secs",
                "3600",
            ])
            .arg("--repo")
            .arg(repo)
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.into_parts().0))
            .spawn()
            .expect("drover-server starts");
        let addr = read_listen_line(&mut child, data_dir);
        Server {
            child: Some(child),
            addr,
            url: format!("http://{addr}"),
            repo: repo.to_owned(),
            data_dir: data_dir.to_owned(),
        }
    }

    /// Stops the server (SIGTERM, then waits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same address and data dir.
    pub fn restart(&mut self) {
        self.stop();
        let again = Server::start_on(&self.repo, &self.data_dir, &self.addr.to_string());
        *self = again;
    }

    pub fn log(&self) -> String {
        fs_err::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// GET a JSON document; panics unless the answer is 200.
    #[track_caller]
    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        assert_eq!(
            status,
            200,
            "GET {path}: {body}\nserver log:\n{}",
            self.log()
        );
        body
    }

    /// Any request; returns the status and the body as JSON (or a string).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("POST", Some(body)) => agent.post(&url).send_json(body),
            ("POST", None) => agent.post(&url).send_empty(),
            _ => panic!("unsupported method {method}"),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// Asks the server to re-read the repository now (the git hook).
    pub fn refresh(&self) {
        let (status, body) = self.request("POST", "/api/v1/hooks/git", None);
        assert!(status == 200 || status == 202, "hook: {status} {body}");
    }

    /// The newest report of a node, whole.
    pub fn latest_report(&self, node: &str) -> Value {
        let list = self.get_json(&format!("/api/v1/nodes/{node}/reports?limit=1"));
        let id = report_list(&list)[0]["id"]
            .as_str()
            .expect("report id")
            .to_owned();
        self.get_json(&format!("/api/v1/reports/{id}"))
    }
}

/// The array of report summaries, whether the route wraps it or not.
/// The entry of resource `id` in a report.
#[track_caller]
pub fn report_entry<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in report {report:#}"))
}

pub fn report_list(list: &Value) -> &Vec<Value> {
    list.as_array()
        .or_else(|| list["reports"].as_array())
        .unwrap_or_else(|| panic!("not a report list: {list}"))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_listen_line(child: &mut Child, data_dir: &Path) -> SocketAddr {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("drover-server listening on http://") {
                let _ = tx.send(url.trim().to_owned());
                break;
            }
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr.parse().expect("socket address"),
        Err(_) => {
            let _ = child.kill();
            let log = fs_err::read_to_string(data_dir.join("server.log")).unwrap_or_default();
            panic!("drover-server did not print its address\nserver log:\n{log}");
        }
    }
}

/// Runs `drover-agent` for one node with its own state directory.
pub struct Agent {
    pub node: String,
    pub server: String,
    pub state_dir: PathBuf,
}

impl Agent {
    pub fn new(node: &str, server: &str, state_dir: &Path) -> Agent {
        Agent {
            node: node.to_owned(),
            server: server.to_owned(),
            state_dir: state_dir.to_owned(),
        }
    }

    /// `run --once --detailed-exitcodes` plus `extra`.
    pub fn run(&self, extra: &[&str]) -> Output {
        let mut cmd = Command::new(bin("drover-agent"));
        cmd.args(["run", "--once", "--detailed-exitcodes"])
            .args(["--server", &self.server, "--node", &self.node])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(extra);
        Output::from(cmd.output().expect("drover-agent runs"))
    }
}

/// `drover-agent apply` with the given arguments.
pub fn apply(args: &[&str], state_dir: &Path) -> Output {
    let out = Command::new(bin("drover-agent"))
        .arg("apply")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("drover-agent runs");
    Output::from(out)
}
