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

/// For the restart test: its own names and addresses (tests run at once).
const RESTART_NODES: [(&str, &str); 3] = [
    ("restart-1", "127.0.0.8"),
    ("restart-2", "127.0.0.9"),
    ("restart-3", "127.0.0.10"),
];

fn start(test: &str, all: &[(&str, &str)], min_healthy_secs: u64) -> (Fleet, String) {
    let port = docker::free_port();
    let names: Vec<&str> = all.iter().map(|n| n.0).collect();
    let fleet = Fleet::start(test, &names, |repo, docker, _| {
        write_catalog(repo, docker, all, port, min_healthy_secs);
    });
    let app = fleet.docker.name("web");
    (fleet, app)
}

/// nodes.toml for `all` (each node's `ip` label) and the app `web`.
fn write_catalog(
    repo: &drover_tests::GitRepo,
    docker: &docker::Containers,
    all: &[(&str, &str)],
    port: u16,
    min_healthy_secs: u64,
) {
    write_nodes(repo, all);
    repo.write(
        &format!("apps/{}.toml", docker.name("web")),
        &app_file(docker::ensure_image(), port, 2, min_healthy_secs),
    );
}

/// nodes.toml giving each of `all` the role `docker-host` (empty: the
/// nodes run replicas only) and its address as the `ip` label.
pub(crate) fn write_nodes(repo: &drover_tests::GitRepo, all: &[(&str, &str)]) {
    let mut nodes = String::new();
    for (name, ip) in all {
        nodes.push_str(&format!(
            "[[node]]\nmatch = \"{name}\"\nroles = [\"docker-host\"]\nlabels = {{ ip = \"{ip}\" }}\n\n"
        ));
    }
    repo.write("nodes.toml", &nodes);
    repo.write("roles/docker-host.toml", "# replicas only\n");
}

fn app_file(image: &str, port: u16, replicas: u32, min_healthy_secs: u64) -> String {
    format!(
        "replicas = {replicas}\nimage = \"{image}\"\n\
         command = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n\
         ports = [\"{{{{ labels.ip }}}}:{port}:80\"]\n\
         healthcheck = {{ test = [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/\"], interval = 1, timeout = 2, retries = 2 }}\n\
         disruption = {{ min_available = 2 }}\n\
         update = {{ min_healthy_secs = {min_healthy_secs} }}\n"
    )
}

/// The app's healthy containers, as the engine says.
pub(crate) fn healthy(app: &str) -> usize {
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

/// Samples the app's healthy containers until finished; the fewest and
/// the most seen.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    fewest: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub(crate) fn start(app: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let fewest = Arc::new(AtomicUsize::new(usize::MAX));
        let most = Arc::new(AtomicUsize::new(0));
        let (s, f, m, app) = (stop.clone(), fewest.clone(), most.clone(), app.to_owned());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = healthy(&app);
                f.fetch_min(now, Ordering::Relaxed);
                m.fetch_max(now, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Sampler {
            stop,
            fewest,
            most,
            thread: Some(thread),
        }
    }

    /// The fewest and the most healthy containers seen.
    pub(crate) fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        (
            self.fewest.load(Ordering::Relaxed),
            self.most.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn drains_move_replicas_make_before_break_wait_for_min_available_and_end_at_a_deadline() {
    let (fleet, app) = start("drain", &NODES, 2);
    let placed = fleet.wait(90, "both replicas healthy", |f| {
        let up = f.running(&app, 2)?;
        (healthy(&app) == 2).then_some(up)
    });
    let (first, _) = placed[0].clone();

    // A drain moves the replica away without ever going below 2 healthy.
    let sampler = Sampler::start(&app);
    let drained = fleet.operator(&["node", "drain", &first, "--wait"]);
    let (fewest, _) = sampler.finish();
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
    fleet.repo.write(&file, &app_file(image, port, 3, 2));
    fleet.repo.commit("three replicas");
    fleet.server.refresh();
    let reason = fleet.wait(30, "the third replica pending", |f| {
        let third = f.app(&app)["replicas"][2].clone();
        third["reason"].as_str().map(str::to_owned)
    });
    assert!(reason.contains("cordoned"), "{reason}");
    assert_eq!(containers_on(&app, &first), 0);
    fleet.repo.write(&file, &app_file(image, port, 2, 2));
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

#[test]
fn a_drain_survives_a_server_restart_without_losing_or_doubling_a_replica() {
    // Long enough to restart the server while the replacement proves healthy.
    let (mut fleet, app) = start("restart", &RESTART_NODES, 8);
    let placed = fleet.wait(90, "both replicas healthy", |f| {
        let up = f.running(&app, 2)?;
        (healthy(&app) == 2).then_some(up)
    });
    let node = placed[0].0.clone();
    let sampler = Sampler::start(&app);
    drain_until_replacing(&fleet, &node);
    fleet.server.restart();
    drained_without_a_gap(&fleet, &app, &node, sampler, "after the restart");
}

/// Drains `node` through the API and waits until its replica's
/// replacement runs beside it.
#[track_caller]
fn drain_until_replacing(fleet: &Fleet, node: &str) {
    let (status, _) = fleet.server.request(
        "POST",
        &format!("/api/v1/nodes/{node}/drain"),
        Some(&serde_json::json!({})),
    );
    assert_eq!(status, 200);
    fleet.wait(60, "the replacement placed", |f| {
        let status = drain_of(f, node)["status"].as_str()?.to_owned();
        status.contains("waiting for").then_some(())
    });
}

/// Waits for the drain of `node` to finish (`when`: after what) and its
/// container to go; the app never had fewer than 2 healthy replicas nor
/// more than the one surge, and ends with 2.
#[track_caller]
fn drained_without_a_gap(fleet: &Fleet, app: &str, node: &str, sampler: Sampler, when: &str) {
    fleet.wait(120, &format!("the drain completes {when}"), |f| {
        (drain_of(f, node)["state"] == "done").then_some(())
    });
    fleet.wait(30, "the drained node's container removed", |_| {
        (containers_on(app, node) == 0).then_some(())
    });
    let (fewest, most) = sampler.finish();
    assert!(
        fewest >= 2,
        "healthy replicas fell to {fewest}\n{}",
        fleet.story()
    );
    assert!(
        most <= 3,
        "{most} healthy at once: more than the one replacement"
    );
    assert!(fleet.running(app, 2).is_some(), "{}", fleet.story());
    assert_eq!(healthy(app), 2);
}

/// For the failover test.
const FAILOVER_NODES: [(&str, &str); 3] = [
    ("failover-1", "127.0.0.11"),
    ("failover-2", "127.0.0.12"),
    ("failover-3", "127.0.0.13"),
];

/// Which of the fleet's servers leads, once one does.
fn leader_of(fleet: &Fleet) -> Option<usize> {
    let (code, status) = fleet.server.request("GET", "/api/v1/cluster", None);
    if code != 200 {
        return None;
    }
    let id = status["leader"]["id"].as_str()?;
    let mine = status["this_server"].as_str()?;
    Some(if id == mine { 0 } else { 1 })
}

#[test]
fn a_drain_survives_the_loss_of_its_leader_on_postgresql() {
    let names: Vec<&str> = FAILOVER_NODES.iter().map(|n| n.0).collect();
    let port = docker::free_port();
    let mut fleet = Fleet::start_two("failover", &names, |repo, docker, _| {
        write_catalog(repo, docker, &FAILOVER_NODES, port, 8);
    });
    let app = fleet.docker.name("web");
    let placed = fleet.wait(90, "both replicas healthy", |f| {
        let up = f.running(&app, 2)?;
        (healthy(&app) == 2).then_some(up)
    });
    let leads = fleet.wait(20, "a leader", leader_of);
    let node = placed[0].0.clone();
    let sampler = Sampler::start(&app);
    drain_until_replacing(&fleet, &node);
    // kill -9 the leader mid-drain; the other server takes over.
    let killed = if leads == 0 {
        &fleet.server
    } else {
        fleet.second.as_ref().unwrap()
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Ask the survivor from now on.
    let mut dead = fleet.second.take().unwrap();
    if leads == 0 {
        std::mem::swap(&mut fleet.server, &mut dead);
    }
    dead.stop();
    drained_without_a_gap(&fleet, &app, &node, sampler, "under the new leader");
}
