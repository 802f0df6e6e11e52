//! Replicas of apps (containers labelled `drover.app`): one of this node
//! that the catalog no longer holds is removed after the walk, one of
//! another node sharing the engine is never touched, and the state of each
//! replica the catalog holds is in the report.

use drover_tests::docker::{self, IMAGE};
use serde_json::Value;

use crate::{World, container_report, event, inspect, is_running, sleeper};

/// A replica container started as an agent of `node` once made it, for an
/// app placement the catalog no longer has.
fn leftover_replica(w: &World, short: &str, node: &str) -> String {
    let node_label = format!("drover.node={node}");
    let resource = format!("drover.resource=container:{}", w.name(short));
    w.docker.run(
        short,
        &[
            "--label",
            "drover.app=web",
            "--label",
            "drover.replica=1",
            "--label",
            "drover.placement=old",
            "--label",
            &node_label,
            "--label",
            &resource,
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 3600 & wait",
        ],
    )
}

fn replicas(report: &Value) -> Vec<Value> {
    report["replicas"].as_array().cloned().unwrap_or_default()
}

#[test]
fn stale_replicas_of_this_node_go_and_placed_ones_report_their_state() {
    let w = World::new("replicas");
    let stale = w.name("web-1-old");
    let elsewhere = w.name("web-2-old");
    let placed = w.name("web-0-p1");
    leftover_replica(&w, "web-1-old", &w.node);
    let elsewhere_id = leftover_replica(&w, "web-2-old", "another-node");
    w.set_role(&format!(
        r#"
[[container]]
name = "{placed}"
image = "{IMAGE}"
command = {sleeper}
labels = {{ "drover.app" = "web", "drover.replica" = "0", "drover.placement" = "p1" }}
stop_timeout = 1
"#,
        sleeper = sleeper(),
    ));

    // Noop: the removal is only reported, the replica not made yet is missing.
    w.agent.run(&["--noop"]).expect_code(2);
    assert!(is_running(&stale), "noop removed {stale}");
    let report = w.report();
    let entry = container_report(&report, &stale);
    assert_eq!(entry["status"], "noop", "{entry:#}");
    let ensure = event(&entry, "ensure");
    assert_eq!(ensure["desired"], "absent", "{entry:#}");
    assert_eq!(
        ensure["message"],
        "would remove: replica 1 of app web is no longer placed on this node"
    );
    let states = replicas(&report);
    assert_eq!(states.len(), 1, "{report:#}");
    assert_eq!(states[0]["state"], "missing", "{report:#}");
    assert_eq!(states[0]["since"], Value::Null, "{report:#}");

    w.agent.run(&[]).expect_code(2);
    assert!(docker::inspect(&stale).is_none(), "{stale} is still there");
    assert_eq!(
        inspect(&elsewhere)["Id"],
        elsewhere_id.as_str(),
        "another node's replica was touched"
    );
    assert!(is_running(&elsewhere));
    assert!(is_running(&placed));
    let report = w.report();
    let entry = container_report(&report, &stale);
    assert_eq!(entry["status"], "changed", "{entry:#}");
    let ensure = event(&entry, "ensure");
    assert_eq!(ensure["previous"], "running", "{entry:#}");
    assert_eq!(
        ensure["message"],
        "removed: replica 1 of app web is no longer placed on this node"
    );
    assert!(
        report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != format!("container:{elsewhere}")),
        "{report:#}"
    );
    let states = replicas(&report);
    assert_eq!(states.len(), 1, "{report:#}");
    let state = &states[0];
    assert_eq!(state["container"], placed.as_str());
    assert_eq!(state["app"], "web");
    assert_eq!(state["replica"], 0);
    assert_eq!(state["placement"], "p1");
    assert_eq!(state["state"], "running", "{state:#}");
    let started = inspect(&placed)["State"]["StartedAt"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let since: jiff::Timestamp = state["since"].as_str().unwrap().parse().unwrap();
    assert_eq!(since, started, "{state:#}");

    // Nothing left to remove: the next run changes nothing.
    w.agent.run(&[]).expect_code(0);
    assert!(is_running(&elsewhere) && is_running(&placed));
}
