//! Apps end to end: the real server schedules an app's replicas onto real
//! agent daemons sharing the real dockerd, each node publishing on its own
//! 127.0.0.x address (a `labels.ip` of nodes.toml). The replicas spread
//! across zones and serve; one that fits nowhere is pending with its
//! reasons; `explain` shows every node's verdict; a load balancer's file
//! follows the placements; a node whose agent dies is lost and its replica
//! is placed again in the same zone, and when the agent comes back it
//! removes the stale container.

use std::time::{Duration, Instant};

use drover_tests::docker::{self, Containers};
use drover_tests::{Daemon, GitRepo, Server, toml_str};
use serde_json::Value;

use super::http_get_at;

/// The scheduler declares a node lost after this much silence.
const LOST_AFTER_SECS: u64 = 6;

/// Fields drop in order: the daemons stop before the test's containers go.
struct Fleet {
    daemons: Vec<(String, Option<Daemon>)>,
    /// Removes the replicas' containers (named after the app) when dropped.
    _docker: Containers,
    server: Server,
    repo: GitRepo,
    tmp: tempfile::TempDir,
    app: String,
    big: String,
    port: u16,
}

/// node name, zone, address.
const NODES: [(&str, &str, &str); 3] = [
    ("apps-a1", "a", "127.0.0.2"),
    ("apps-a2", "a", "127.0.0.3"),
    ("apps-b1", "b", "127.0.0.4"),
];
const LB: &str = "apps-lb";

impl Fleet {
    fn new() -> Fleet {
        let docker = Containers::new("apps");
        let image = docker::ensure_image();
        let tmp = tempfile::Builder::new()
            .prefix("drover-apps-")
            .tempdir()
            .unwrap();
        let repo = GitRepo::init(&tmp.path().join("repo"));
        let app = docker.name("web");
        let big = docker.name("big");
        let port = docker::free_port();
        let mut nodes = String::new();
        for (name, zone, ip) in NODES {
            nodes.push_str(&format!(
                "[[node]]\nmatch = \"{name}\"\nroles = [\"docker-host\"]\nlabels = {{ zone = \"{zone}\", ip = \"{ip}\" }}\n\n"
            ));
        }
        nodes.push_str(&format!("[[node]]\nmatch = \"{LB}\"\nroles = [\"lb\"]\n"));
        repo.write("nodes.toml", &nodes);
        repo.write("roles/docker-host.toml", "# replicas only\n");
        let upstreams = tmp.path().join("upstreams.conf");
        repo.write(
            "roles/lb.toml",
            &format!(
                "[[file]]\npath = {}\ntemplate = \"templates/upstreams.j2\"\n",
                toml_str(&upstreams)
            ),
        );
        repo.write(
            "templates/upstreams.j2",
            &format!(
                "{{% for r in apps[\"{app}\"].replicas %}}{{{{ r.node }}}} {{{{ r.address }}}}:{{{{ r.ports[0] }}}}\n{{% endfor %}}"
            ),
        );
        repo.write(
            "drover.toml",
            &format!("[scheduler]\nlost_after_secs = {LOST_AFTER_SECS}\n"),
        );
        repo.write(
            &format!("apps/{app}.toml"),
            &format!(
                "replicas = 2\nimage = \"{image}\"\n\
                 command = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n\
                 ports = [\"{{{{ labels.ip }}}}:{port}:80\"]\n\
                 requests = {{ cpu = 0.1, memory = \"16MiB\" }}\n\
                 selector = {{ roles = [\"docker-host\"] }}\n\
                 spread = \"zone\"\n"
            ),
        );
        repo.write(
            &format!("apps/{big}.toml"),
            &format!(
                "image = \"{image}\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\"]\n\
                 requests = {{ memory = \"100000GiB\" }}\nselector = {{ roles = [\"docker-host\"] }}\n"
            ),
        );
        repo.commit("an app spread over two zones, one too big, a load balancer");
        let server = Server::start(&repo.path, &tmp.path().join("server"));
        let mut fleet = Fleet {
            _docker: docker,
            server,
            repo,
            tmp,
            app,
            big,
            port,
            daemons: Vec::new(),
        };
        for name in NODES.iter().map(|n| n.0).chain([LB]) {
            let daemon = fleet.start_daemon(name);
            fleet.daemons.push((name.to_owned(), Some(daemon)));
        }
        fleet
    }

    fn start_daemon(&self, node: &str) -> Daemon {
        let config = self.tmp.path().join(format!("{node}.toml"));
        fs_err::write(
            &config,
            format!(
                "server = \"{}\"\nnode = \"{node}\"\nstate_dir = {}\nsplay_secs = 0\ninterval_secs = 3600\n{}",
                self.server.url,
                toml_str(&self.tmp.path().join(node)),
                self.server.agent_config()
            ),
        )
        .unwrap();
        Daemon::start(&config, &self.tmp.path().join(format!("{node}.log")))
    }

    fn upstreams(&self) -> String {
        fs_err::read_to_string(self.tmp.path().join("upstreams.conf")).unwrap_or_default()
    }

    fn app(&self, name: &str) -> Value {
        let apps = self.server.get_json(&format!("/api/v1/apps/{name}"));
        apps[0].clone()
    }

    /// Everything a failed wait needs to be understood.
    fn story(&self) -> String {
        let mut out = format!(
            "--- apps\n{:#}\n--- upstreams\n{}\n--- server\n{}",
            self.server.get_json("/api/v1/apps"),
            self.upstreams(),
            self.server.log()
        );
        for (node, _) in &self.daemons {
            let log = fs_err::read_to_string(self.tmp.path().join(format!("{node}.log")))
                .unwrap_or_default();
            out.push_str(&format!("\n--- daemon {node}\n{log}"));
        }
        out
    }

    /// Waits up to `secs` for `done` to give a value.
    #[track_caller]
    fn wait<T>(&self, secs: u64, what: &str, mut done: impl FnMut(&Fleet) -> Option<T>) -> T {
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

    /// (node, container) of each replica once all are running.
    fn running(&self) -> Option<Vec<(String, String)>> {
        let app = self.app(&self.app);
        let replicas = app["replicas"].as_array()?;
        let up: Vec<(String, String)> = replicas
            .iter()
            .filter(|r| matches!(r["state"].as_str(), Some("running" | "healthy")))
            .map(|r| {
                (
                    r["node"].as_str().unwrap_or_default().to_owned(),
                    r["container"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (up.len() == 2).then_some(up)
    }
}

fn zone(node: &str) -> &'static str {
    NODES.iter().find(|n| n.0 == node).map_or("?", |n| n.1)
}

fn ip(node: &str) -> &'static str {
    NODES.iter().find(|n| n.0 == node).map_or("?", |n| n.2)
}

#[test]
fn replicas_spread_serve_are_explained_discovered_and_replaced_when_a_node_is_lost() {
    let mut fleet = Fleet::new();
    let placed = fleet.wait(90, "both replicas running", Fleet::running);
    let mut zones: Vec<&str> = placed.iter().map(|(node, _)| zone(node)).collect();
    zones.sort_unstable();
    assert_eq!(zones, ["a", "b"], "one replica per zone: {placed:?}");
    for (node, container) in &placed {
        assert_eq!(
            http_get_at(ip(node), fleet.port),
            docker::INDEX_HTML,
            "{container} serves on {node}'s address"
        );
        let labels =
            &docker::inspect(container).expect("the replica's container")["Config"]["Labels"];
        assert_eq!(labels["drover.app"], fleet.app.as_str());
        assert_eq!(labels["drover.node"], node.as_str());
    }

    // The one that fits nowhere says why, counting every node.
    let big = fleet.app(&fleet.big);
    let reason = big["replicas"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.starts_with("0/4 nodes are available: ")
            && reason.contains("3 insufficient memory")
            && reason.contains("1 didn't match the app's selector"),
        "{reason}\n{}",
        fleet.story()
    );

    // explain: every node with its verdict or scores.
    let explained = fleet
        .server
        .admin(&["explain", &fleet.app, "--server", &fleet.server.url]);
    explained.expect_code(0);
    for node in NODES.iter().map(|n| n.0).chain([LB]) {
        assert!(
            explained.stdout.contains(node),
            "{node} in\n{}",
            explained.stdout
        );
    }
    assert!(
        explained.stdout.contains("refused by selector"),
        "{}",
        explained.stdout
    );
    assert!(
        explained.stdout.contains("* "),
        "the chosen node is marked\n{}",
        explained.stdout
    );

    // The load balancer's file lists both.
    fleet.wait(30, "the load balancer lists both replicas", |f| {
        let text = f.upstreams();
        placed
            .iter()
            .all(|(node, _)| text.contains(&format!("{node} {}:{}", ip(node), f.port)))
            .then_some(())
    });

    // plan: the same commit changes nothing; a third replica would be placed.
    let repo = fleet.repo.path.to_str().unwrap().to_owned();
    let same = fleet.server.admin(&["plan", "--repo", &repo]);
    same.expect_code(0);
    assert!(
        same.stdout.contains(&format!("{}#0: stays on", fleet.app)),
        "{}",
        same.stdout
    );
    let file = format!("apps/{}.toml", fleet.app);
    let spec = fs_err::read_to_string(fleet.repo.path.join(&file)).unwrap();
    fleet
        .repo
        .write(&file, &spec.replace("replicas = 2", "replicas = 3"));
    let more = fleet.server.admin(&["plan", "--repo", &repo]);
    more.expect_code(2);
    assert!(
        more.stdout
            .contains(&format!("{}#2: placed on apps-", fleet.app)),
        "{}",
        more.stdout
    );
    fleet.repo.write(&file, &spec);

    // Kill the agent of the zone-a node holding a replica.
    let (lost, stale) = placed
        .iter()
        .find(|(node, _)| zone(node) == "a")
        .cloned()
        .expect("a replica in zone a");
    let slot = fleet.daemons.iter().position(|(n, _)| *n == lost).unwrap();
    drop(fleet.daemons[slot].1.take());
    let killed_at = Instant::now();
    let moved = fleet.wait(
        LOST_AFTER_SECS + 40,
        "the lost node's replica replaced",
        |f| {
            let up = f.running()?;
            up.iter()
                .find(|(node, _)| zone(node) == "a" && *node != lost)
                .cloned()
        },
    );
    let took = killed_at.elapsed();
    assert_eq!(zone(&moved.0), "a", "replaced in the same zone");
    assert!(
        took < Duration::from_secs(LOST_AFTER_SECS + 25),
        "replaced {took:?} after the agent died (lost after {LOST_AFTER_SECS} s)"
    );
    assert_eq!(http_get_at(ip(&moved.0), fleet.port), docker::INDEX_HTML);
    fleet.wait(30, "the load balancer follows the move", |f| {
        let text = f.upstreams();
        (text.contains(&moved.0) && !text.contains(&lost)).then_some(())
    });
    assert!(
        docker::inspect(&stale).is_some(),
        "the lost node's container stays until its agent is back"
    );

    // The agent comes back: its catalog no longer holds the replica.
    let daemon = fleet.start_daemon(&lost);
    fleet.daemons[slot].1 = Some(daemon);
    fleet.wait(
        60,
        "the returning agent removes the stale container",
        |_| docker::inspect(&stale).is_none().then_some(()),
    );
    // The survivors were not touched.
    assert!(fleet.running().is_some(), "{}", fleet.story());
}
