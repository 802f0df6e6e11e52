//! App updates end to end, on real agent daemons and the real dockerd: a
//! changed spec replaces the replicas one at a time beside the old ones
//! (the app's healthy containers, sampled from the engine all along, never
//! fall below `min_available` nor rise above one surge), and an update to
//! an image that cannot be pulled fails at `healthy_deadline_secs` and
//! reverts to the last spec that was healthy, the old replicas serving
//! throughout. A server restart mid-update loses and doubles nothing.

use drover_tests::docker;
use serde_json::Value;

use super::drain::{Sampler, healthy, write_nodes};
use super::fleet::Fleet;
use super::http_get_at;

/// node name, address (their own: tests run at once).
const NODES: [(&str, &str); 3] = [
    ("update-1", "127.0.0.20"),
    ("update-2", "127.0.0.21"),
    ("update-3", "127.0.0.22"),
];

/// An image no registry serves: its pull is refused at once.
const MISSING_IMAGE: &str = "127.0.0.1:9/drover-missing:1";

fn app_file(image: &str, port: u16, version: &str) -> String {
    format!(
        "replicas = 2\nimage = \"{image}\"\n\
         command = [\"sh\", \"-c\", \"mkdir -p /www && echo $VERSION > /www/index.html && exec httpd -f -p 80 -h /www\"]\n\
         env = {{ VERSION = \"{version}\" }}\n\
         ports = [\"{{{{ labels.ip }}}}:{port}:80\"]\n\
         healthcheck = {{ test = [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/\"], interval = 1, timeout = 2, retries = 2 }}\n\
         disruption = {{ min_available = 2 }}\n\
         update = {{ max_parallel = 1, min_healthy_secs = 2, healthy_deadline_secs = 25, auto_revert = true }}\n"
    )
}

/// The app's update, as the API says it.
fn update_of(fleet: &Fleet, app: &str) -> Value {
    fleet.app(app)["update"].clone()
}

/// What each replica serves, by the address of its node.
fn served(fleet: &Fleet, app: &str, port: u16) -> Vec<String> {
    let app = fleet.app(app);
    let mut out: Vec<String> = app["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            http_get_at(r["address"].as_str().unwrap(), port)
                .trim()
                .to_owned()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_update_replaces_replicas_one_at_a_time_and_a_broken_one_reverts() {
    let port = docker::free_port();
    let names: Vec<&str> = NODES.iter().map(|n| n.0).collect();
    let image = docker::ensure_image();
    let mut fleet = Fleet::start("update", &names, |repo, docker, _| {
        write_nodes(repo, &NODES);
        repo.write(
            &format!("apps/{}.toml", docker.name("web")),
            &app_file(image, port, "v1"),
        );
    });
    let app = fleet.docker.name("web");
    let file = format!("apps/{app}.toml");
    fleet.wait(90, "both replicas healthy, the update done", |f| {
        f.running(&app, 2)?;
        (healthy(&app) == 2 && update_of(f, &app)["state"] == "done").then_some(())
    });
    assert_eq!(served(&fleet, &app, port), ["v1", "v1"]);

    // A good update: each replica replaced beside the old one.
    let sampler = Sampler::start(&app);
    fleet.repo.write(&file, &app_file(image, port, "v2"));
    fleet.repo.commit("web v2");
    fleet.server.refresh();
    let v2 = fleet.app(&app)["spec"].as_str().unwrap().to_owned();
    // A server restart mid-update: it goes on from the database.
    fleet.wait(60, "the first replacement placed", |f| {
        let u = update_of(f, &app);
        u["reason"].as_str()?.contains("waiting for").then_some(())
    });
    fleet.server.restart();
    fleet.wait(150, "the update to v2 done", |f| {
        let u = update_of(f, &app);
        (u["state"] == "done" && u["spec_hash"] == v2.as_str()).then_some(())
    });
    let (fewest, most) = sampler.finish();
    assert!(
        fewest >= 2,
        "healthy replicas fell to {fewest} during the update\n{}",
        fleet.story()
    );
    assert!(
        most <= 3,
        "{most} healthy at once: more than max_parallel 1 surge"
    );
    let replicas = fleet.app(&app)["replicas"].clone();
    for r in replicas.as_array().unwrap() {
        assert_eq!(r["spec"], v2.as_str(), "{replicas:#}");
    }
    fleet.wait(30, "both serve v2", |f| {
        (served(f, &app, port) == ["v2", "v2"]).then_some(())
    });
    fleet.wait(30, "the old containers removed", |_| {
        (docker::docker_ok(&["ps", "-aq", "--filter", &format!("label=drover.app={app}")])
            .lines()
            .count()
            == 2)
            .then_some(())
    });

    // A broken update: its replacement never runs; at the deadline the app
    // goes back to v2, which served all along.
    let sampler = Sampler::start(&app);
    fleet
        .repo
        .write(&file, &app_file(MISSING_IMAGE, port, "v3"));
    fleet.repo.commit("web v3, an image nobody has");
    fleet.server.refresh();
    let rolling = fleet.wait(30, "the v3 replacement placed", |f| {
        let u = update_of(f, &app);
        let said = u["reason"].as_str()?.to_owned();
        (u["state"] == "rolling" && said.contains("to become healthy")).then_some(said)
    });
    assert!(rolling.contains("waiting for"), "{rolling}");
    let update = fleet.wait(90, "the update reverted", |f| {
        let u = update_of(f, &app);
        (u["state"] == "reverted").then_some(u)
    });
    let reason = update["reason"].as_str().unwrap();
    assert!(
        reason.contains("was not healthy within healthy_deadline_secs (25 s)"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("reverted to spec {}", &v2[..8])),
        "{reason}"
    );
    assert_eq!(update["stable_spec_hash"], v2.as_str());
    fleet.wait(60, "the failed replacement gone", |_| {
        (docker::docker_ok(&["ps", "-aq", "--filter", &format!("label=drover.app={app}")])
            .lines()
            .count()
            == 2)
            .then_some(())
    });
    let (fewest, _) = sampler.finish();
    assert!(
        fewest >= 2,
        "healthy replicas fell to {fewest} during the broken update\n{}",
        fleet.story()
    );
    assert_eq!(served(&fleet, &app, port), ["v2", "v2"]);
    let replicas = fleet.app(&app)["replicas"].clone();
    for r in replicas.as_array().unwrap() {
        assert_eq!(r["spec"], v2.as_str(), "{replicas:#}");
        assert!(r["moving_to"].is_null(), "{replicas:#}");
    }

    // The CLI says so too.
    let listed = fleet.operator(&["apps"]);
    listed.expect_code(0);
    assert!(
        listed.stdout.contains("update reverted to spec"),
        "{}",
        listed.stdout
    );
}
