//! Drains end to end, on real agent daemons and the real dockerd: a drain
//! moves a replica make-before-break (the app's healthy containers, sampled
//! from the engine all along, never fall below `min_available`) and leaves
//! the node empty and cordoned; a scale-up places nothing there; a drain
//! that cannot move a replica without breaking `min_available` says so and
//! waits, goes on once a node is uncordoned, and a deadline ends one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use drover_tests::docker;
use serde_json::Value;

use super::fleet::Fleet;

/// node name, address.
const NODES: [(&str, &str); 3] = [
    ("drain-1", "127.0.0.5"),
    ("drain-2", "127.0.0.6"),
    ("drain-3", "127.0.0.7"),
];

fn start() -> (Fleet, String) {
    let port = docker::free_port();
    let image = docker::ensure_image();
    let names: Vec<&str> = NODES.iter().map(|n| n.0).collect();
    let fleet = Fleet::start("drain", &names, |repo, docker, _| {
        let mut nodes = String::new();
        for (name, ip) in NODES {
            nodes.push_str(&format!(
                "[[node]]\nmatch = \"{name}\"\nroles = [\"docker-host\"]\nlabels = {{ ip = \"{ip}\" }}\n\n"
            ));
        }
        repo.write("nodes.toml", &nodes);
        repo.write("roles/docker-host.toml", "# replicas only\n");
        repo.write(
            &format!("apps/{}.toml", docker.name("web")),
            &app_file(image, port, 2),
        );
    });
    let app = fleet.docker.name("web");
    (fleet, app)
}

fn app_file(image: &str, port: u16, replicas: u32) -> String {
    format!(
        "replicas = {replicas}\nimage = \"{image}\"\n\
         command = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n\
         ports = [\"{{{{ labels.ip }}}}:{port}:80\"]\n\
         healthcheck = {{ test = [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/\"], interval = 1, timeout = 2, retries = 2 }}\n\
         disruption = {{ min_available = 2 }}\n\
         update = {{ min_healthy_secs = 2 }}\n"
    )
}

/// The app's healthy containers, as the engine says.
fn healthy(app: &str) -> usize {
    docker::docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=drover.app={app}"),
        "--filter",
        "health=healthy",
    ])
    .lines()
    .count()
}

/// The app's containers on `node`, any state.
fn containers_on(app: &str, node: &str) -> usize {
    docker::docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=drover.app={app}"),
        "--filter",
        &format!("label=drover.node={node}"),
    ])
    .lines()
    .count()
}

fn drain_of(fleet: &Fleet, node: &str) -> Value {
    fleet.server.get_json(&format!("/api/v1/nodes/{node}"))["drain"].clone()
}

/// Samples the app's healthy containers until dropped; the fewest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    fewest: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(app: &str) -> Sampler {
        let (stop, fewest) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(usize::MAX)),
        );
        let (s, f, app) = (stop.clone(), fewest.clone(), app.to_owned());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                f.fetch_min(healthy(&app), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Sampler {
            stop,
            fewest,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.fewest.load(Ordering::Relaxed)
    }
}

#[test]
fn drains_move_replicas_make_before_break_wait_for_min_available_and_end_at_a_deadline() {
    let (fleet, app) = start();
    let placed = fleet.wait(90, "both replicas healthy", |f| {
        let up = f.running(&app, 2)?;
        (healthy(&app) == 2).then_some(up)
    });
    let (first, _) = placed[0].clone();

    // A drain moves the replica away without ever going below 2 healthy.
    let sampler = Sampler::start(&app);
    let drained = fleet.operator(&["node", "drain", &first, "--wait"]);
    let fewest = sampler.finish();
    drained.expect_code(0);
    assert!(
        drained.stdout.contains("done: drained"),
        "{}",
        drained.stdout
    );
    assert!(
        fewest >= 2,
        "healthy replicas fell to {fewest} during the drain\n{}",
        fleet.story()
    );
    fleet.wait(30, "the drained node's container removed", |_| {
        (containers_on(&app, &first) == 0).then_some(())
    });
    let node = fleet.server.get_json(&format!("/api/v1/nodes/{first}"));
    assert_eq!(node["cordoned"], true, "{node:#}");
    assert_eq!(node["drain"]["state"], "done", "{node:#}");
    assert!(fleet.running(&app, 2).is_some(), "{}", fleet.story());

    // A scale-up places nothing on the cordoned node.
    let file = format!("apps/{app}.toml");
    let (image, port) = (docker::ensure_image(), port_of(&fleet, &file));
    fleet.repo.write(&file, &app_file(image, port, 3));
    fleet.repo.commit("three replicas");
    fleet.server.refresh();
    let reason = fleet.wait(30, "the third replica pending", |f| {
        let third = f.app(&app)["replicas"][2].clone();
        third["reason"].as_str().map(str::to_owned)
    });
    assert!(reason.contains("cordoned"), "{reason}");
    assert_eq!(containers_on(&app, &first), 0);
    fleet.repo.write(&file, &app_file(image, port, 2));
    fleet.repo.commit("two replicas again");
    fleet.server.refresh();

    // Blocked: the other two nodes each hold one, the first is cordoned.
    let second = placed[1].0.clone();
    let (status, _) = fleet.server.request(
        "POST",
        &format!("/api/v1/nodes/{second}/drain"),
        Some(&serde_json::json!({})),
    );
    assert_eq!(status, 200);
    let said = fleet.wait(30, "the drain says what blocks it", |f| {
        let status = drain_of(f, &second)["status"].as_str()?.to_owned();
        status.contains("min_available 2").then_some(status)
    });
    assert!(said.contains("no node fits"), "{said}");
    assert_eq!(healthy(&app), 2, "nothing stopped while blocked");
    // Uncordoning the first node lets it go on.
    let (status, _) =
        fleet
            .server
            .request("POST", &format!("/api/v1/nodes/{first}/uncordon"), None);
    assert_eq!(status, 200);
    fleet.wait(60, "the blocked drain completes", |f| {
        (drain_of(f, &second)["state"] == "done").then_some(())
    });
    fleet.wait(30, "the second node's container removed", |_| {
        (containers_on(&app, &second) == 0).then_some(())
    });

    // A deadline ends a drain that cannot move its replica.
    let third = NODES
        .iter()
        .map(|n| n.0)
        .find(|n| *n != first && *n != second)
        .unwrap();
    let ended = fleet.operator(&["node", "drain", third, "--deadline", "4", "--wait"]);
    ended.expect_code(1);
    assert!(ended.stdout.contains("min_available 2"), "{}", ended.stdout);
    assert!(
        ended.stdout.contains("stopped: the deadline passed"),
        "{}",
        ended.stdout
    );
    fleet.wait(30, "the third node's container removed", |_| {
        (containers_on(&app, third) == 0).then_some(())
    });
}

/// The host port the app file publishes.
fn port_of(fleet: &Fleet, file: &str) -> u16 {
    let text = fs_err::read_to_string(fleet.repo.path.join(file)).unwrap();
    let after = text.split("}}:").nth(1).unwrap();
    after.split(':').next().unwrap().parse().unwrap()
}
