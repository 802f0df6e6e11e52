//! End-to-end tests: a temporary git repo, the real server, the real agent.

mod cli;
mod converge;
mod diff;
mod failures;
mod habits;
mod kill;
mod metrics;
mod package;
mod rollout;
mod watch;

use std::path::{Path, PathBuf};

use drover_tests::{Agent, GitRepo, Server};
use tempfile::TempDir;

/// One test's world: a temp dir holding the catalog repo, the server's data
/// dir, the agent's state dir and the managed tree the catalog points at.
pub struct World {
    pub tmp: TempDir,
    pub repo: GitRepo,
    pub server: Server,
    pub agent: Agent,
}

impl World {
    /// A repo holding [`site`] for this world's managed root, a server on it,
    /// and an agent for node `web-1`.
    pub fn start() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("drover-e2e-")
            .tempdir()
            .unwrap();
        let repo = GitRepo::init(&tmp.path().join("repo"));
        for (path, content) in site(&tmp.path().join("managed")) {
            repo.write(path, &content);
        }
        repo.commit("initial catalog");
        let server = Server::start(&repo.path, &tmp.path().join("server"));
        let agent = Agent::new("web-1", &server, &tmp.path().join("agent"));
        World {
            tmp,
            repo,
            server,
            agent,
        }
    }

    /// A path in the managed tree.
    pub fn managed(&self, rel: &str) -> PathBuf {
        self.tmp.path().join("managed").join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs_err::read_to_string(self.managed(rel)).unwrap()
    }
}

/// A small real catalog: roles with an include, data by node and common, a
/// template, a static file, a directory, a symlink.
pub fn site(root: &Path) -> Vec<(&'static str, String)> {
    let root = root.display();
    vec![
        (
            "nodes.toml",
            r#"
[[node]]
match = "*"
roles = ["base"]

[[node]]
match = "web-*"
roles = ["web"]
"#
            .to_owned(),
        ),
        (
            "roles/base.toml",
            format!(
                r#"
[[directory]]
path = "{root}"
mode = "0755"

[[file]]
path = "{root}/motd"
template = "templates/motd.j2"
mode = "0644"
"#
            ),
        ),
        (
            "roles/web.toml",
            format!(
                r#"
include = ["base"]

[vars]
port = 8080

[[directory]]
path = "{root}/etc"

[[file]]
path = "{root}/etc/app.conf"
content = "port = {{{{ vars.port }}}}\nworkers = {{{{ vars.workers }}}}\n"
mode = "0640"

[[file]]
path = "{root}/etc/logo.txt"
source = "files/logo.txt"

[[symlink]]
path = "{root}/current"
target = "{root}/etc"
"#
            ),
        ),
        ("data/common.toml", "workers = 2\n".to_owned()),
        ("data/nodes/web-1.toml", "workers = 8\n".to_owned()),
        ("files/logo.txt", "drover\n".to_owned()),
        (
            "templates/motd.j2",
            "welcome to {{ node }}\nline two\nline three\n".to_owned(),
        ),
    ]
}
