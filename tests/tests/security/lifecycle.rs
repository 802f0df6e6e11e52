//! A node's lifecycle with the real server and agent: `ca list --pending`
//! and `ca clean`; `node deactivate` (out of the lists until it checks in
//! again); `node purge` (its certificate revoked, refused at its next
//! handshake, its data gone).

use drover_tests::{Agent, toml_str};
use serde_json::Value;

use crate::Fleet;

fn listed(fleet: &Fleet) -> Vec<String> {
    let (status, nodes) = fleet.server.request("GET", "/api/v1/nodes", None);
    assert_eq!(status, 200, "{nodes}");
    nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

fn operator(fleet: &Fleet, args: &[&str]) -> drover_tests::Output {
    let mut all = args.to_vec();
    all.extend(["--server", &fleet.server.url]);
    fleet.server.admin(&all)
}

#[test]
fn ca_list_pending_shows_only_requests_and_ca_clean_frees_the_name() {
    let fleet = Fleet::start();
    let agent = fleet.agent("web-1");
    fs_err::write(
        &agent.config,
        format!(
            "ca_file = {}\nwait_for_cert_secs = 0\n",
            toml_str(&fleet.server.ca_file())
        ),
    )
    .unwrap();
    agent.run(&[]).expect_code(1);
    let pending = fleet.server.admin(&["ca", "list", "--pending"]);
    pending.expect_code(0);
    assert!(
        pending.stdout.starts_with("pending requests: 1\n"),
        "{}",
        pending.stdout
    );
    assert!(pending.stdout.contains("web-1"), "{}", pending.stdout);
    assert!(
        !pending.stdout.contains("certificates:"),
        "{}",
        pending.stdout
    );

    let clean = fleet.server.admin(&["ca", "clean", "web-1"]);
    clean.expect_code(0);
    assert!(
        clean
            .stdout
            .contains("dropped the pending request of `web-1`"),
        "{}",
        clean.stdout
    );
    let pending = fleet.server.admin(&["ca", "list", "--pending"]);
    assert!(
        pending.stdout.starts_with("pending requests: 0\n"),
        "{}",
        pending.stdout
    );
    let again = fleet.server.admin(&["ca", "clean", "web-1"]);
    again.expect_code(1);
    assert!(
        again
            .stderr
            .contains("neither a valid certificate nor a pending request"),
        "{}",
        again.stderr
    );

    // A node that holds a certificate: clean revokes it, and the name may
    // enroll again with a new key.
    let enrolled = fleet.enrolled("web-2");
    fleet.server.admin(&["ca", "clean", "web-2"]).expect_code(0);
    let refused = enrolled.run(&[]);
    assert!(
        refused.stderr.to_lowercase().contains("revoked"),
        "{}",
        refused.stderr
    );
    let fresh = Agent::new(
        "web-2",
        &fleet.server,
        &fleet.tmp.path().join("web-2-rebuilt"),
    );
    fresh.run(&[]).expect_code(0);
}

#[test]
fn a_deactivated_node_leaves_the_lists_until_it_checks_in_again() {
    let fleet = Fleet::start();
    let agent = fleet.enrolled("web-1");
    fleet.enrolled("web-2");
    let out = operator(&fleet, &["node", "deactivate", "web-1"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("deactivated until it checks in again"),
        "{}",
        out.stdout
    );
    assert_eq!(listed(&fleet), ["web-2"]);
    let list = operator(&fleet, &["node", "list"]);
    list.expect_code(0);
    assert!(
        !list.stdout.contains("web-1") && list.stdout.contains("1 node(s)"),
        "{}",
        list.stdout
    );
    // Its page still answers, for whoever looks it up by name.
    let (status, _) = fleet.server.request("GET", "/api/v1/nodes/web-1", None);
    assert_eq!(status, 200);
    agent.run(&[]).expect_code(0);
    assert_eq!(listed(&fleet), ["web-1", "web-2"]);
    // Any column either way: newest run first is web-1's second.
    let by_run = operator(&fleet, &["node", "list", "--sort", "-last_run"]);
    by_run.expect_code(0);
    let at = |name: &str| by_run.stdout.find(&format!("{name} ")).unwrap();
    assert!(at("web-1") < at("web-2"), "{}", by_run.stdout);
    let json = operator(&fleet, &["node", "list", "--json", "--state", "unchanged"]);
    json.expect_code(0);
    let nodes: Value = serde_json::from_str(&json.stdout).unwrap();
    // web-2 changed at its only run; web-1's second found nothing to do
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"], "{nodes:#}");
    // The API's other filters, by name and by role.
    let by_name = operator(
        &fleet,
        &["node", "list", "--name", "web-2", "--role", "base"],
    );
    by_name.expect_code(0);
    assert!(
        by_name.stdout.contains("web-2")
            && !by_name.stdout.contains("web-1 ")
            && by_name.stdout.contains("1 node(s)"),
        "{}",
        by_name.stdout
    );
}

#[test]
fn a_purged_node_is_refused_at_its_next_handshake_and_its_data_is_gone() {
    let fleet = Fleet::start();
    let agent = fleet.enrolled("web-1");
    fleet.enrolled("web-2");
    let out = operator(&fleet, &["node", "purge", "web-1"]);
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("1 certificate(s) revoked, its data deleted"),
        "{}",
        out.stdout
    );
    let (status, _) = fleet.server.request("GET", "/api/v1/nodes/web-1", None);
    assert_eq!(status, 404);
    let (status, _) = fleet
        .server
        .request("GET", "/api/v1/nodes/web-1/reports", None);
    assert_eq!(status, 404);
    assert_eq!(listed(&fleet), ["web-2"]);
    let refused = agent.run(&[]);
    refused.expect_code(4);
    assert!(
        refused.stderr.to_lowercase().contains("revoked"),
        "{}",
        refused.stderr
    );
    assert_eq!(listed(&fleet), ["web-2"], "a refused node stores nothing");
    let twice = operator(&fleet, &["node", "purge", "web-1"]);
    twice.expect_code(1);
    assert!(
        twice.stderr.contains("unknown node `web-1`"),
        "{}",
        twice.stderr
    );
}
