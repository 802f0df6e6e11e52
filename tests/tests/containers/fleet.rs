//! A fleet for the apps tests: a catalog repository, the real server on
//! it, and one real agent daemon per node, all sharing the real dockerd.
//! Fields drop in order: the daemons stop before the test's containers go.

use std::time::{Duration, Instant};

use drover_tests::docker::Containers;
use drover_tests::{Daemon, GitRepo, Server, postgres, toml_str};
use serde_json::Value;

pub(crate) struct Fleet {
    pub(crate) daemons: Vec<(String, Option<Daemon>)>,
    /// Names the apps (`docker.name("web")`) and removes their containers.
    pub(crate) docker: Containers,
    pub(crate) server: Server,
    /// A second server on the same PostgreSQL database ([`Fleet::start_two`]);
    /// the daemons fail over to it.
    pub(crate) second: Option<Server>,
    pub(crate) repo: GitRepo,
    pub(crate) tmp: tempfile::TempDir,
}

impl Fleet {
    /// `write` fills the repository (given the test's `Containers` for
    /// names and its temp dir); it is committed, the server starts, and a
    /// daemon per node of `nodes`.
    pub(crate) fn start(
        test: &str,
        nodes: &[&str],
        write: impl FnOnce(&GitRepo, &Containers, &std::path::Path),
    ) -> Fleet {
        Fleet::start_with(test, nodes, false, write)
    }

    /// [`Fleet::start`] with two servers on one fresh PostgreSQL database
    /// (scripts/test's cluster, `DROVER_TEST_POSTGRES`), sharing the CA.
    pub(crate) fn start_two(
        test: &str,
        nodes: &[&str],
        write: impl FnOnce(&GitRepo, &Containers, &std::path::Path),
    ) -> Fleet {
        Fleet::start_with(test, nodes, true, write)
    }

    fn start_with(
        test: &str,
        nodes: &[&str],
        two: bool,
        write: impl FnOnce(&GitRepo, &Containers, &std::path::Path),
    ) -> Fleet {
        let docker = Containers::new(test);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("drover-{test}-"))
            .tempdir()
            .unwrap();
        let repo = GitRepo::init(&tmp.path().join("repo"));
        write(&repo, &docker, tmp.path());
        repo.commit("the test's catalog");
        let (server, second) = if two {
            let database = postgres::create_database(&postgres::admin_url());
            let secret = format!(
                "cluster_secret_file = {}\n",
                toml_str(&tmp.path().join("cluster-secret"))
            );
            let start = |name: &str| {
                Server::start_with(
                    &repo.path,
                    &tmp.path().join(name),
                    "127.0.0.1:0",
                    &secret,
                    &["--database", &database],
                )
            };
            let first = start("server");
            (first, Some(start("server-2")))
        } else {
            (Server::start(&repo.path, &tmp.path().join("server")), None)
        };
        let mut fleet = Fleet {
            daemons: Vec::new(),
            docker,
            server,
            second,
            repo,
            tmp,
        };
        for node in nodes {
            let daemon = fleet.start_daemon(node);
            fleet.daemons.push(((*node).to_owned(), Some(daemon)));
        }
        fleet
    }

    fn start_daemon(&self, node: &str) -> Daemon {
        let config = self.tmp.path().join(format!("{node}.toml"));
        fs_err::write(
            &config,
            format!(
                "server = [{}]\nnode = \"{node}\"\nstate_dir = {}\nsplay_secs = 0\ninterval_secs = 3600\n{}",
                self.servers()
                    .map(|s| format!("\"{}\"", s.url))
                    .collect::<Vec<_>>()
                    .join(", "),
                toml_str(&self.tmp.path().join(node)),
                self.server.agent_config()
            ),
        )
        .unwrap();
        Daemon::start(&config, &self.tmp.path().join(format!("{node}.log")))
    }

    /// The servers, the first first.
    pub(crate) fn servers(&self) -> impl Iterator<Item = &Server> {
        std::iter::once(&self.server).chain(self.second.as_ref())
    }

    /// Kills `node`'s daemon (SIGKILL).
    pub(crate) fn kill(&mut self, node: &str) {
        let slot = self.daemons.iter_mut().find(|(n, _)| n == node).unwrap();
        drop(slot.1.take());
    }

    /// Starts `node`'s daemon again.
    pub(crate) fn revive(&mut self, node: &str) {
        let daemon = self.start_daemon(node);
        let slot = self.daemons.iter_mut().find(|(n, _)| n == node).unwrap();
        slot.1 = Some(daemon);
    }

    /// The app `name` of the default environment, with its decisions.
    pub(crate) fn app(&self, name: &str) -> Value {
        let apps = self.server.get_json(&format!("/api/v1/apps/{name}"));
        apps[0].clone()
    }

    /// (node, container) of each replica of `app` that runs, once `count` do.
    pub(crate) fn running(&self, app: &str, count: usize) -> Option<Vec<(String, String)>> {
        let app = self.app(app);
        let up: Vec<(String, String)> = app["replicas"]
            .as_array()?
            .iter()
            .filter(|r| matches!(r["state"].as_str(), Some("running" | "healthy")))
            .map(|r| {
                (
                    r["node"].as_str().unwrap_or_default().to_owned(),
                    r["container"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (up.len() == count).then_some(up)
    }

    /// Runs `drover-server ARGS --server URL --data-dir DATA`.
    pub(crate) fn operator(&self, args: &[&str]) -> drover_tests::Output {
        let mut all = args.to_vec();
        all.extend(["--server", &self.server.url]);
        self.server.admin(&all)
    }

    /// Everything a failed wait needs to be understood.
    pub(crate) fn story(&self) -> String {
        let mut out = String::new();
        for server in self.servers() {
            let (_, apps) = server.request("GET", "/api/v1/apps", None);
            out.push_str(&format!(
                "--- apps ({})\n{apps:#}\n--- server {}\n{}\n",
                server.url,
                server.url,
                server.log()
            ));
        }
        for (node, _) in &self.daemons {
            let log = fs_err::read_to_string(self.tmp.path().join(format!("{node}.log")))
                .unwrap_or_default();
            out.push_str(&format!("\n--- daemon {node}\n{log}"));
        }
        out
    }

    /// Waits up to `secs` for `done` to give a value.
    #[track_caller]
    pub(crate) fn wait<T>(
        &self,
        secs: u64,
        what: &str,
        mut done: impl FnMut(&Fleet) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(value) = done(self) {
                return value;
            }
            if Instant::now() > deadline {
                panic!("{what}: not within {secs} s\n{}", self.story());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}
