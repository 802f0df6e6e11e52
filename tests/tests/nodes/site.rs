//! A catalog repository served to booted nodes: the git repo and the server
//! on the lab's host address, and the agent installed in each node.

use drover_tests::node::{Lab, Node};
use drover_tests::{GitRepo, Output, Server};
use serde_json::Value;
use tempfile::TempDir;

/// agent.toml lines that enroll a node with the files [`Site::provision`] writes.
pub(crate) const ENROLL_CONFIG: &str =
    "ca_file = \"/etc/drover/ca.pem\"\nenrollment_token_file = \"/etc/drover/enrollment-token\"\n";

pub(crate) struct Site {
    pub repo: GitRepo,
    pub server: Server,
    _dir: TempDir,
}

impl Site {
    /// A repository where every node gets `role`, and its server.
    pub(crate) fn start(lab: &Lab, role: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let repo = GitRepo::init(&dir.path().join("site"));
        repo.write(
            "nodes.toml",
            "[[node]]\nmatch = \"*\"\nroles = [\"main\"]\n",
        )
        .write("roles/main.toml", role);
        repo.commit("the site");
        let listen = format!("{}:0", lab.host_ip());
        let server = Server::start_on(&repo.path, &dir.path().join("server"), &listen);
        Site {
            repo,
            server,
            _dir: dir,
        }
    }

    /// Commits a new version of the role and has the server pick it up.
    pub(crate) fn update_role(&self, role: &str) {
        self.repo.write("roles/main.toml", role);
        self.repo.commit("change the role");
        self.server.refresh();
    }

    /// Puts the server's CA and enrollment token in the node, where
    /// [`ENROLL_CONFIG`] names them, as an operator's provisioning would.
    pub(crate) fn provision(&self, node: &Node) {
        let ca = fs_err::read(self.server.ca_file()).unwrap();
        node.write_file("/etc/drover/ca.pem", &ca, 0o644);
        let token = fs_err::read(self.server.enrollment_token_file()).unwrap();
        node.write_file("/etc/drover/enrollment-token", &token, 0o600);
        node.write_file(
            "/etc/drover/test-agent.toml",
            ENROLL_CONFIG.as_bytes(),
            0o644,
        );
    }

    /// One `drover-agent run --once --detailed-exitcodes` in the node.
    pub(crate) fn run(&self, node: &Node, extra: &[&str]) -> Output {
        self.provision(node);
        let mut argv = vec![
            "drover-agent",
            "run",
            "--once",
            "--detailed-exitcodes",
            "--config",
            "/etc/drover/test-agent.toml",
            "--server",
            &self.server.url,
            "--node",
            node.name(),
        ];
        argv.extend_from_slice(extra);
        node.exec(&argv)
    }

    /// The resource entries of the node's newest report, by id.
    pub(crate) fn latest_resources(&self, node: &Node) -> Vec<Value> {
        let report = self.server.latest_report(node.name());
        report["resources"]
            .as_array()
            .unwrap_or_else(|| panic!("report without resources: {report}"))
            .clone()
    }
}

/// The entry of `id` in a report's resources.
#[track_caller]
pub(crate) fn entry<'a>(resources: &'a [Value], id: &str) -> &'a Value {
    resources
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in the report: {resources:#?}"))
}
