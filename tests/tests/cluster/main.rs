//! Several servers on one PostgreSQL database (issue 19), as operators run
//! them: real `drover-server` processes on the throwaway cluster scripts/test
//! starts (`DROVER_TEST_POSTGRES`), real agents, kill -9 and SIGSTOP.

mod failover;
mod rollout;
mod shared;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_tests::{Agent, GitRepo, Server, postgres, toml_str};
use serde_json::Value;
use tempfile::TempDir;

/// A repository, one database and two servers on it, started one after
/// the other (the first makes the CA and stores it; the second takes it).
pub struct Cluster {
    pub tmp: TempDir,
    pub repo: GitRepo,
    pub database: String,
    pub a: Server,
    pub b: Server,
}

impl Cluster {
    pub fn start() -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("drover-cluster-")
            .tempdir()
            .unwrap();
        fs_err::create_dir_all(tmp.path().join("managed")).unwrap();
        let repo = GitRepo::init(&tmp.path().join("repo"));
        repo.write(
            "nodes.toml",
            "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n",
        )
        .write(
            "roles/base.toml",
            &format!(
                "[[directory]]\npath = \"{root}/{{{{ node }}}}\"\n\n\
                 [[file]]\npath = \"{root}/{{{{ node }}}}/motd\"\nsource = \"files/motd\"\n",
                root = tmp.path().join("managed").display()
            ),
        )
        .write("files/motd", "first\n");
        repo.commit("a motd for every node");
        let database = postgres::create_database(&postgres::admin_url());
        let a = server(&tmp, &repo, "a", &database);
        let b = server(&tmp, &repo, "b", &database);
        Cluster {
            tmp,
            repo,
            database,
            a,
            b,
        }
    }

    /// An agent for `node` whose state lives under the cluster's directory,
    /// enrolling with `through`'s token and the (shared) CA.
    pub fn agent(&self, node: &str, through: &Server) -> Agent {
        Agent::new(
            node,
            through,
            &self.tmp.path().join(format!("agent-{node}")),
        )
    }

    /// The motd `node`'s agent manages.
    pub fn motd(&self, node: &str) -> PathBuf {
        self.tmp.path().join("managed").join(node).join("motd")
    }
}

/// A server of the cluster: its own data dir and address, the shared
/// database and cluster secret.
fn server(tmp: &TempDir, repo: &GitRepo, name: &str, database: &str) -> Server {
    let secret = tmp.path().join("cluster-secret");
    Server::start_with(
        &repo.path,
        &tmp.path().join(format!("server-{name}")),
        "127.0.0.1:0",
        &format!("cluster_secret_file = {}\n", toml_str(&secret)),
        &["--database", database],
    )
}

/// `GET /api/v1/cluster` of `server`.
pub fn status(server: &Server) -> Value {
    server.get_json("/api/v1/cluster")
}

/// Polls `server`'s cluster status until `ok` holds, up to `limit`; the
/// status that held and how long it took.
#[track_caller]
pub fn wait_status(
    server: &Server,
    limit: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let (code, status) = server.request("GET", "/api/v1/cluster", None);
        if code == 200 && ok(&status) {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; last: {code} {status:#}\nserver log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The id of the server that answered, and the leader's id and term.
pub fn leader(status: &Value) -> Option<(String, i64)> {
    let leader = status.get("leader").filter(|l| !l.is_null())?;
    Some((leader["id"].as_str()?.to_owned(), leader["term"].as_i64()?))
}

pub fn this_server(status: &Value) -> String {
    status["this_server"].as_str().unwrap().to_owned()
}

/// Waits until `path` holds `content`; how long it took.
#[track_caller]
pub fn converged(
    path: &Path,
    content: &str,
    limit: Duration,
    logs: impl Fn() -> String,
) -> Duration {
    let started = Instant::now();
    loop {
        if fs_err::read_to_string(path).is_ok_and(|c| c == content) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{} did not become {content:?} within {limit:?}\n{}",
            path.display(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
