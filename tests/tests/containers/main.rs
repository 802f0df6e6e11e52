//! Container tests: the real server and the real agent on the host, against
//! the real dockerd (tests/src/docker.rs). Every test has its own node and
//! its own container names (`drover-t-PID-TEST-...`), removed when it ends.

mod airgap;
mod apps;
mod converge;
mod drain;
mod drift;
mod failures;
mod fleet;
mod harness;
mod probe;
mod refresh;
mod replicas;
mod update;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_tests::docker::{self, Containers};
use drover_tests::{Agent, GitRepo, Server};
use serde_json::Value;
use tempfile::TempDir;

/// One test's world. Fields drop in order: the test's containers go first,
/// while the temp dir their bind mounts point into still exists.
pub struct World {
    pub docker: Containers,
    pub server: Server,
    pub agent: Agent,
    pub repo: GitRepo,
    pub tmp: TempDir,
    pub node: String,
}

impl World {
    /// A catalog repo giving node `ct-TEST` the role `app` (empty until
    /// [`World::set_role`]), a server on it and an agent for that node.
    pub fn new(test: &str) -> World {
        let docker = Containers::new(test);
        docker::ensure_image();
        let tmp = tempfile::Builder::new()
            .prefix("drover-containers-")
            .tempdir()
            .unwrap();
        let node = format!("ct-{}", test.replace('_', "-"));
        let repo = GitRepo::init(&tmp.path().join("repo"));
        repo.write(
            "nodes.toml",
            &format!("[[node]]\nmatch = \"{node}\"\nroles = [\"app\"]\n"),
        );
        repo.write("roles/app.toml", "# written by the test\n");
        repo.commit("empty role");
        let server = Server::start(&repo.path, &tmp.path().join("server"));
        let agent = Agent::new(&node, &server, &tmp.path().join("agent"));
        World {
            docker,
            server,
            agent,
            repo,
            tmp,
            node,
        }
    }

    /// Commits `toml` as the role and has the server read it.
    pub fn set_role(&self, toml: &str) {
        self.repo.write("roles/app.toml", toml);
        self.repo.commit("the test's role");
        self.server.refresh();
    }

    /// The docker name of the test's container `short`.
    pub fn name(&self, short: &str) -> String {
        self.docker.name(short)
    }

    /// A path in the test's temp dir (for bind mounts and managed files).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// The newest report of this world's node.
    pub fn report(&self) -> Value {
        self.server.latest_report(&self.node)
    }
}

/// The report entry of container `name`.
#[track_caller]
pub fn container_report(report: &Value, name: &str) -> Value {
    resource(report, &format!("container:{name}"))
}

/// The report entry of resource `id`.
#[track_caller]
pub fn resource(report: &Value, id: &str) -> Value {
    drover_tests::report_entry(report, id).clone()
}

/// The event of `property` in a resource's report entry.
#[track_caller]
pub fn event(entry: &Value, property: &str) -> Value {
    entry["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {entry:#}"))
        .iter()
        .find(|e| e["property"] == property)
        .unwrap_or_else(|| panic!("no `{property}` event in {entry:#}"))
        .clone()
}

/// `docker inspect` of a container that must exist.
#[track_caller]
pub fn inspect(name: &str) -> Value {
    docker::inspect(name).unwrap_or_else(|| panic!("container {name} does not exist"))
}

#[track_caller]
pub fn container_id(name: &str) -> String {
    inspect(name)["Id"].as_str().expect("Id").to_owned()
}

#[track_caller]
pub fn is_running(name: &str) -> bool {
    inspect(name)["State"]["Running"] == true
}

/// `State.StartedAt`: changes on every start or restart.
#[track_caller]
pub fn started_at(name: &str) -> String {
    inspect(name)["State"]["StartedAt"]
        .as_str()
        .expect("StartedAt")
        .to_owned()
}

/// A command that stops at once on SIGTERM: PID 1 in a container ignores
/// signals it has no handler for, so `sleep 3600` alone takes docker's whole
/// stop grace (10 s) to die.
pub fn sleeper() -> &'static str {
    r#"["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]"#
}

/// The body of `GET /` on 127.0.0.1:`port`, retried for a few seconds while
/// the server comes up.
#[track_caller]
pub fn http_get(port: u16) -> String {
    http_get_at("127.0.0.1", port)
}

/// [`http_get`] on another loopback address (`127.0.0.x`).
#[track_caller]
pub fn http_get_at(ip: &str, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_http_get(ip, port) {
            Ok(body) => return body,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => panic!("GET http://{ip}:{port}/ failed for 10 s: {e}"),
        }
    }
}

fn try_http_get(ip: &str, port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((ip, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other(format!(
            "not a 200 answer: {response:?}"
        ))),
    }
}
