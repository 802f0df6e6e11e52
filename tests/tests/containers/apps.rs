//! Apps end to end: the real server schedules an app's replicas onto real
//! agent daemons sharing the real dockerd, each node publishing on its own
//! 127.0.0.x address (a `labels.ip` of nodes.toml). The replicas spread
//! across zones and serve; one that fits nowhere is pending with its
//! reasons; `explain` shows every node's verdict; a load balancer's file
//! follows the placements; a node whose agent dies is lost and its replica
//! is placed again in the same zone, and when the agent comes back it
//! removes the stale container.

use std::time::{Duration, Instant};

use drover_tests::docker;
use drover_tests::toml_str;

use super::fleet::Fleet;
use super::http_get_at;

/// The scheduler declares a node lost after this much silence.
const LOST_AFTER_SECS: u64 = 6;

/// node name, zone, address.
const NODES: [(&str, &str, &str); 3] = [
    ("apps-a1", "a", "127.0.0.2"),
    ("apps-a2", "a", "127.0.0.3"),
    ("apps-b1", "b", "127.0.0.4"),
];
const LB: &str = "apps-lb";

struct World {
    fleet: Fleet,
    app: String,
    big: String,
    port: u16,
}

impl World {
    fn new() -> World {
        let port = docker::free_port();
        let image = docker::ensure_image();
        let all: Vec<&str> = NODES.iter().map(|n| n.0).chain([LB]).collect();
        let fleet = Fleet::start("apps", &all, |repo, docker, tmp| {
            let (app, big) = (docker.name("web"), docker.name("big"));
            let mut nodes = String::new();
            for (name, zone, ip) in NODES {
                nodes.push_str(&format!(
                    "[[node]]\nmatch = \"{name}\"\nroles = [\"docker-host\"]\nlabels = {{ zone = \"{zone}\", ip = \"{ip}\" }}\n\n"
                ));
            }
            nodes.push_str(&format!("[[node]]\nmatch = \"{LB}\"\nroles = [\"lb\"]\n"));
            repo.write("nodes.toml", &nodes);
            repo.write("roles/docker-host.toml", "# replicas only\n");
            repo.write(
                "roles/lb.toml",
                &format!(
                    "[[file]]\npath = {}\ntemplate = \"templates/upstreams.j2\"\n",
                    toml_str(&tmp.join("upstreams.conf"))
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
        });
        World {
            app: fleet.docker.name("web"),
            big: fleet.docker.name("big"),
            fleet,
            port,
        }
    }

    fn upstreams(&self) -> String {
        fs_err::read_to_string(self.fleet.tmp.path().join("upstreams.conf")).unwrap_or_default()
    }

    /// (node, container) of each replica once both run.
    fn running(&self) -> Option<Vec<(String, String)>> {
        self.fleet.running(&self.app, 2)
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
    let mut w = World::new();
    let placed = w.fleet.wait(90, "both replicas running", |_| w.running());
    let mut zones: Vec<&str> = placed.iter().map(|(node, _)| zone(node)).collect();
    zones.sort_unstable();
    assert_eq!(zones, ["a", "b"], "one replica per zone: {placed:?}");
    for (node, container) in &placed {
        assert_eq!(
            http_get_at(ip(node), w.port),
            docker::INDEX_HTML,
            "{container} serves on {node}'s address"
        );
        let labels =
            &docker::inspect(container).expect("the replica's container")["Config"]["Labels"];
        assert_eq!(labels["drover.app"], w.app.as_str());
        assert_eq!(labels["drover.node"], node.as_str());
    }

    // The one that fits nowhere says why, counting every node.
    let big = w.fleet.app(&w.big);
    let reason = big["replicas"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.starts_with("0/4 nodes are available: ")
            && reason.contains("3 insufficient memory")
            && reason.contains("1 didn't match the app's selector"),
        "{reason}\n{}",
        w.fleet.story()
    );

    // explain: every node with its verdict or scores.
    let explained = w.fleet.operator(&["explain", &w.app]);
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
    w.fleet
        .wait(30, "the load balancer lists both replicas", |_| {
            let text = w.upstreams();
            placed
                .iter()
                .all(|(node, _)| text.contains(&format!("{node} {}:{}", ip(node), w.port)))
                .then_some(())
        });

    // plan: the same commit changes nothing; a third replica would be placed.
    let repo = w.fleet.repo.path.to_str().unwrap().to_owned();
    let same = w.fleet.server.admin(&["plan", "--repo", &repo]);
    same.expect_code(0);
    assert!(
        same.stdout.contains(&format!("{}#0: stays on", w.app)),
        "{}",
        same.stdout
    );
    let file = format!("apps/{}.toml", w.app);
    let spec = fs_err::read_to_string(w.fleet.repo.path.join(&file)).unwrap();
    w.fleet
        .repo
        .write(&file, &spec.replace("replicas = 2", "replicas = 3"));
    let more = w.fleet.server.admin(&["plan", "--repo", &repo]);
    more.expect_code(2);
    assert!(
        more.stdout
            .contains(&format!("{}#2: placed on apps-", w.app)),
        "{}",
        more.stdout
    );
    w.fleet.repo.write(&file, &spec);

    // Kill the agent of the zone-a node holding a replica.
    let (lost, stale) = placed
        .iter()
        .find(|(node, _)| zone(node) == "a")
        .cloned()
        .expect("a replica in zone a");
    w.fleet.kill(&lost);
    let killed_at = Instant::now();
    let moved = w.fleet.wait(
        LOST_AFTER_SECS + 40,
        "the lost node's replica replaced",
        |_| {
            let up = w.running()?;
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
    assert_eq!(http_get_at(ip(&moved.0), w.port), docker::INDEX_HTML);
    w.fleet.wait(30, "the load balancer follows the move", |_| {
        let text = w.upstreams();
        (text.contains(&moved.0) && !text.contains(&lost)).then_some(())
    });
    assert!(
        docker::inspect(&stale).is_some(),
        "the lost node's container stays until its agent is back"
    );

    // The agent comes back: its catalog no longer holds the replica.
    w.fleet.revive(&lost);
    w.fleet.wait(
        60,
        "the returning agent removes the stale container",
        |_| docker::inspect(&stale).is_none().then_some(()),
    );
    // The survivors were not touched.
    assert!(w.running().is_some(), "{}", w.fleet.story());
}
