//! Staged rollouts with a real server and three real agent daemons
//! (`canary-1`, `web-1`, `web-2`) managing files only: a staged commit
//! reaches the canary first and the others once its gate passes; a commit
//! that fails on the canary pauses the rollout, which `abort` undoes; and
//! a server restart mid-rollout resumes it from the database.

use std::path::Path;
use std::time::{Duration, Instant};

use drover_tests::{Daemon, GitRepo, Server, toml_str};
use serde_json::Value;

const NODES: [&str; 3] = ["canary-1", "web-1", "web-2"];

struct Rollout {
    tmp: tempfile::TempDir,
    repo: GitRepo,
    server: Server,
    _daemons: Vec<Daemon>,
}

/// The catalog at `version`: every node writes `ROOT/NODE/version`;
/// `rollout` adds a `[rollout]` (canaries, then everyone) waiting
/// `min_wait` seconds; `broken` adds a file whose parent is a file.
fn write_catalog(repo: &GitRepo, root: &Path, version: &str, min_wait: Option<u64>, broken: bool) {
    let root = root.display();
    repo.write(
        "nodes.toml",
        "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n",
    );
    let mut role = format!(
        "[[directory]]\npath = \"{root}/{{{{ node }}}}\"\n\n[[file]]\npath = \"{root}/{{{{ node }}}}/version\"\ncontent = \"{version}\"\n"
    );
    if broken {
        role.push_str(&format!(
            "\n[[file]]\npath = \"{root}/{{{{ node }}}}/version/not-a-directory\"\ncontent = \"x\"\n"
        ));
    }
    repo.write("roles/base.toml", &role);
    let settings = match min_wait {
        Some(secs) => format!(
            "[rollout]\nstages = [{{ nodes = \"canary-*\" }}, {{ percent = 100 }}]\ngate = {{ max_failed_nodes = 0, min_wait_secs = {secs}, healthy_apps = true }}\n"
        ),
        None => String::new(),
    };
    repo.write("drover.toml", &settings);
}

impl Rollout {
    fn start() -> Rollout {
        let tmp = tempfile::Builder::new()
            .prefix("drover-rollout-")
            .tempdir()
            .unwrap();
        let repo = GitRepo::init(&tmp.path().join("repo"));
        fs_err::create_dir(tmp.path().join("managed")).unwrap();
        write_catalog(&repo, &tmp.path().join("managed"), "v1", None, false);
        repo.commit("v1");
        let server = Server::start(&repo.path, &tmp.path().join("server"));
        let daemons = NODES
            .iter()
            .map(|node| {
                let config = tmp.path().join(format!("{node}.toml"));
                fs_err::write(
                    &config,
                    format!(
                        "server = [\"{}\"]\nnode = \"{node}\"\nstate_dir = {}\nsplay_secs = 0\ninterval_secs = 3600\n{}",
                        server.url,
                        toml_str(&tmp.path().join(node)),
                        server.agent_config()
                    ),
                )
                .unwrap();
                Daemon::start(&config, &tmp.path().join(format!("{node}.log")))
            })
            .collect();
        Rollout {
            tmp,
            repo,
            server,
            _daemons: daemons,
        }
    }

    fn commit(&self, version: &str, min_wait: Option<u64>, broken: bool) -> String {
        write_catalog(
            &self.repo,
            &self.tmp.path().join("managed"),
            version,
            min_wait,
            broken,
        );
        let commit = self.repo.commit(version);
        self.server.refresh();
        commit
    }

    /// What `node`'s managed file holds now.
    fn version(&self, node: &str) -> String {
        fs_err::read_to_string(self.tmp.path().join("managed").join(node).join("version"))
            .unwrap_or_default()
    }

    /// The commit of `node`'s newest report.
    fn reported(&self, node: &str) -> String {
        let (status, list) = self.server.request(
            "GET",
            &format!("/api/v1/nodes/{node}/reports?limit=1"),
            None,
        );
        if status != 200 {
            return String::new();
        }
        drover_tests::report_list(&list)
            .first()
            .and_then(|r| r["id"].as_str())
            .map(|id| {
                self.server.get_json(&format!("/api/v1/reports/{id}"))["commit"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    }

    fn status(&self) -> Value {
        self.server.get_json("/api/v1/environments/main/rollout")
    }

    fn story(&self) -> String {
        let mut out = format!(
            "--- rollout\n{:#}\n--- server\n{}\n",
            self.status(),
            self.server.log()
        );
        for node in NODES {
            let log = fs_err::read_to_string(self.tmp.path().join(format!("{node}.log")))
                .unwrap_or_default();
            out.push_str(&format!("--- {node}: {}\n{log}\n", self.version(node)));
        }
        out
    }

    #[track_caller]
    fn wait(&self, secs: u64, what: &str, mut done: impl FnMut(&Rollout) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs} s\n{}",
                self.story()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `drover-server rollout ARGS main` against the running server.
    fn cli(&self, args: &[&str]) -> drover_tests::Output {
        let mut all = vec!["rollout"];
        all.extend(args);
        all.extend(["main", "--server", &self.server.url]);
        self.server.admin(&all)
    }
}

#[test]
fn a_staged_commit_reaches_the_canary_first_pauses_on_failure_and_survives_a_restart() {
    let mut r = Rollout::start();
    let env_default = r.server.get_json("/api/v1/environments");
    assert!(env_default.to_string().contains("main"), "{env_default}");
    r.wait(30, "every node converges on v1", |r| {
        NODES.iter().all(|n| r.version(n) == "v1")
    });
    let v1 = r.repo.git(&["rev-parse", "HEAD"]).trim().to_owned();

    // (1) The canary first; the others keep v1 until its gate passes.
    let v2 = r.commit("v2", Some(5), false);
    r.wait(20, "the canary gets v2", |r| r.version("canary-1") == "v2");
    let status = r.status();
    assert_eq!(status["rollout"]["state"], "rolling", "{status:#}");
    assert_eq!(status["rollout"]["stage"], 0, "{status:#}");
    assert_eq!(
        status["rollout"]["stages"][0]["nodes"],
        serde_json::json!(["canary-1"])
    );
    for web in ["web-1", "web-2"] {
        assert_eq!(
            r.version(web),
            "v1",
            "{web} outran its stage\n{}",
            r.story()
        );
        // Held back by the rollout is not stale.
        let node = r.server.get_json(&format!("/api/v1/nodes/{web}"));
        assert_eq!(node["stale"], false, "v2 {v2}: {node:#}\n{status:#}");
    }
    r.wait(30, "the canary's gate passes and every node gets v2", |r| {
        NODES.iter().all(|n| r.version(n) == "v2")
    });
    r.wait(10, "the rollout is done", |r| {
        r.status()["rollout"]["state"] == "done"
    });
    let passed = r.status()["rollout"]["stages"][0]["passed_at"].clone();
    assert!(passed.is_string(), "{:#}", r.status());

    // (2) A commit that fails on the canary holds the others and pauses.
    let v3 = r.commit("v3", Some(1), true);
    r.wait(30, "the rollout pauses on the canary's failure", |r| {
        r.status()["rollout"]["state"] == "paused"
    });
    assert_eq!(r.reported("canary-1"), v3);
    let out = r.cli(&["status"]);
    assert!(out.stdout.contains("paused"), "{}", out.stdout);
    assert!(
        out.stdout.contains("canary-1 reported") && out.stdout.contains("failed resource"),
        "status says why: {}",
        out.stdout
    );
    for web in ["web-1", "web-2"] {
        assert_eq!(r.version(web), "v2");
        assert_eq!(r.reported(web), v2, "{web} was served the failing commit");
    }
    // Resume is for a paused rollout only; abort of a done one is refused.
    let out = r.cli(&["abort"]);
    out.expect_code(0);
    r.wait(20, "abort sends the canary back to v2's catalog", |r| {
        r.reported("canary-1") == v2
    });
    assert_eq!(r.status()["rollout"]["state"], "aborted");
    r.cli(&["abort"]).expect_code(1);
    for web in ["web-1", "web-2"] {
        assert_eq!(r.reported(web), v2);
    }

    // (3) A restart mid-rollout resumes it from the database.
    let v4 = r.commit("v4", Some(8), false);
    r.wait(20, "the canary gets v4", |r| r.version("canary-1") == "v4");
    let before = r.status();
    assert_eq!(before["rollout"]["from_commit"], v2.as_str(), "{before:#}");
    r.server.restart();
    let after = r.status();
    assert_eq!(after["rollout"]["state"], "rolling", "{after:#}");
    assert_eq!(
        after["rollout"]["stages"][0]["started_at"], before["rollout"]["stages"][0]["started_at"],
        "the stage began once, not again at the restart"
    );
    for web in ["web-1", "web-2"] {
        assert_eq!(
            r.version(web),
            "v2",
            "{web} outran its stage across the restart"
        );
    }
    r.wait(40, "every node gets v4 after the restart", |r| {
        NODES.iter().all(|n| r.version(n) == "v4")
    });
    r.wait(10, "the rollout is done", |r| {
        r.status()["rollout"]["state"] == "done"
    });
    for node in NODES {
        assert_eq!(r.reported(node), v4);
    }
    assert_ne!(v1, v4);
}
