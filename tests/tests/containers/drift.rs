//! Drift made by hand: stopped or removed containers are repaired and
//! reported as corrective; containers drover did not make are never touched.

use drover_tests::docker::{self, IMAGE, INDEX_HTML};

use crate::converge::web_and_worker;
use crate::{
    World, container_id, container_report, event, http_get, inspect, is_running, started_at,
};

/// A container an operator started by hand with the test image.
fn run_by_hand(w: &World, short: &str) -> String {
    w.docker.run(
        short,
        &[IMAGE, "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    )
}

#[track_caller]
fn assert_untouched(name: &str, id: &str, started: &str) {
    let c = inspect(name);
    assert_eq!(c["Id"], id, "{name} was replaced");
    assert_eq!(c["State"]["Running"], true, "{name} is not running");
    assert_eq!(c["State"]["StartedAt"], started, "{name} was restarted");
    let labels = c["Config"]["Labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        !labels.keys().any(|k| k.starts_with("drover.")),
        "{name} got drover labels: {labels:?}"
    );
}

#[test]
fn hand_stop_and_removal_are_repaired_as_corrective() {
    let w = World::new("hand_drift");
    let port = docker::free_port();
    w.set_role(&web_and_worker(&w, port, "one"));
    let (web, worker) = (w.name("web"), w.name("worker"));
    let by_hand = w.name("by-hand");
    let by_hand_id = run_by_hand(&w, "by-hand");
    let by_hand_started = started_at(&by_hand);

    w.agent.run(&[]).expect_code(2);
    assert_untouched(&by_hand, &by_hand_id, &by_hand_started);
    let web_id = container_id(&web);

    docker::docker_ok(&["stop", "-t", "1", &web]);
    docker::docker_ok(&["rm", "-f", &worker]);
    w.agent.run(&[]).expect_code(2);
    assert!(is_running(&web) && is_running(&worker));
    assert_eq!(
        container_id(&web),
        web_id,
        "a stopped {web} is started, not recreated"
    );
    assert_eq!(http_get(port), INDEX_HTML);
    let report = w.report();
    let entry = container_report(&report, &web);
    assert_eq!(entry["status"], "changed", "{entry:#}");
    assert_eq!(entry["corrective"], true, "{entry:#}");
    let ensure = event(&entry, "ensure");
    assert_eq!(ensure["previous"], "stopped", "{entry:#}");
    assert_eq!(ensure["desired"], "running", "{entry:#}");
    let entry = container_report(&report, &worker);
    assert_eq!(entry["status"], "changed", "{entry:#}");
    assert_eq!(entry["corrective"], true, "{entry:#}");
    let ensure = event(&entry, "ensure");
    assert_eq!(ensure["previous"], "absent", "{entry:#}");
    assert_eq!(ensure["desired"], "running", "{entry:#}");
    assert_untouched(&by_hand, &by_hand_id, &by_hand_started);

    w.agent.run(&[]).expect_code(0);
    assert_untouched(&by_hand, &by_hand_id, &by_hand_started);
}

#[test]
fn a_same_named_container_drover_did_not_make_fails_its_resource() {
    let w = World::new("name_taken");
    let port = docker::free_port();
    w.set_role(&web_and_worker(&w, port, "one"));
    let (web, worker) = (w.name("web"), w.name("worker"));
    let hand_id = run_by_hand(&w, "web");
    let hand_started = started_at(&web);

    let out = w.agent.run(&[]);
    out.expect_code(6);
    assert_untouched(&web, &hand_id, &hand_started);
    assert!(is_running(&worker));
    let report = w.report();
    let entry = container_report(&report, &web);
    assert_eq!(entry["status"], "failed", "{entry:#}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(error.contains(&web), "{entry:#}");
    assert!(error.contains("not managed by drover"), "{entry:#}");
    assert_eq!(container_report(&report, &worker)["status"], "changed");

    w.agent.run(&[]).expect_code(4);
    assert_untouched(&web, &hand_id, &hand_started);
}
