//! Identity and hostile input, against the real server over mutual TLS:
//! who may call which route, enrollment, revocation, signed catalogs, and
//! requests built to cross from one node to another or out of the repository.

mod anonymous;
mod enroll;
mod hostile;
mod lifecycle;
mod logging;
mod table;
mod webhook;

use std::path::{Path, PathBuf};

use drover_tests::{Agent, Credential, GitRepo, Server};
use serde_json::Value;
use tempfile::TempDir;

/// A fleet of nodes on one server. Every node gets a file holding its own
/// secret from `data/nodes/NAME.toml`, so a leak between nodes is visible.
pub struct Fleet {
    pub tmp: TempDir,
    pub repo: GitRepo,
    pub server: Server,
}

impl Fleet {
    pub fn start() -> Fleet {
        let tmp = tempfile::Builder::new()
            .prefix("drover-security-")
            .tempdir()
            .unwrap();
        let repo = GitRepo::init(&tmp.path().join("repo"));
        let root = tmp.path().join("managed");
        fs_err::create_dir_all(&root).unwrap();
        repo.write(
            "nodes.toml",
            "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n",
        )
        .write(
            "roles/base.toml",
            &format!(
                "[[directory]]\npath = \"{root}/{{{{ node }}}}\"\n\n\
                 [[file]]\npath = \"{root}/{{{{ node }}}}/secret\"\n\
                 content = \"{{{{ vars.secret }}}}\\n\"\nmode = \"0600\"\n\n\
                 [[file]]\npath = \"{root}/{{{{ node }}}}/motd\"\n\
                 template = \"templates/motd.j2\"\n",
                root = root.display()
            ),
        )
        .write("data/common.toml", "secret = \"nobody's\"\n")
        .write("templates/motd.j2", "motd of {{ node }}\n");
        for node in ["web-1", "web-2", "web-3"] {
            repo.write(
                &format!("data/nodes/{node}.toml"),
                &format!("secret = \"{}\"\n", secret_of(node)),
            );
        }
        repo.commit("a fleet with one secret per node");
        let server = Server::start(&repo.path, &tmp.path().join("server"));
        Fleet { tmp, repo, server }
    }

    /// An agent for `node`, with its own state dir.
    pub fn agent(&self, node: &str) -> Agent {
        Agent::new(
            node,
            &self.server,
            &self.tmp.path().join(format!("agent-{node}")),
        )
    }

    /// An agent for `node` that has enrolled and converged once.
    pub fn enrolled(&self, node: &str) -> Agent {
        let agent = self.agent(node);
        agent.run(&[]).expect_code(2);
        agent
    }

    pub fn managed(&self, node: &str, file: &str) -> PathBuf {
        self.tmp.path().join("managed").join(node).join(file)
    }

    /// An operator certificate made by `drover-server ca operator`.
    pub fn operator_cert(&self, name: &str) -> Credential {
        let dir = self.tmp.path().join(format!("operator-{name}"));
        self.server
            .admin(&["ca", "operator", name, "--out", dir.to_str().unwrap()])
            .expect_code(0);
        operator_credential(&dir, name)
    }

    pub fn operator_token(&self) -> Credential {
        Credential::Token(self.server.operator_token())
    }
}

/// The certificate and key files `ca operator NAME --out DIR` wrote.
fn operator_credential(dir: &Path, name: &str) -> Credential {
    let find = |suffix: &str| {
        let path = dir.join(format!("{name}.{suffix}"));
        assert!(path.exists(), "{} is missing", path.display());
        path
    };
    Credential::Cert {
        cert: find("crt.pem"),
        key: find("key.pem"),
    }
}

pub fn secret_of(node: &str) -> String {
    format!("secret-of-{node}-7f3a9c")
}

/// The body of a node's catalog as JSON; panics unless 200.
pub fn catalog_json(status_body: (u16, String)) -> Value {
    let (status, body) = status_body;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A process's peak resident set (VmHWM), from /proc.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
