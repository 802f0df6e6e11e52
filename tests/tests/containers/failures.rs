//! What goes wrong with containers fails that container only, with a
//! message that says what and why, while the rest of the catalog converges.

use std::net::TcpListener;

use drover_tests::docker::{self, IMAGE, INDEX_HTML};
use serde_json::Value;

use crate::{World, container_report, http_get, is_running, sleeper};

/// What the probe of the never-healthy container prints each time it fails.
const PROBE_SAYS: &str = "probe-says-not-ready";

fn catalog(w: &World, web_port: u16, taken_port: u16) -> String {
    format!(
        r#"
[[container]]
name = "{web}"
image = "{IMAGE}"
command = ["httpd", "-f", "-p", "80", "-h", "/www"]
ports = ["127.0.0.1:{web_port}:80"]
healthcheck = {{ test = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"], interval = 1 }}

[[container]]
name = "{missing}"
image = "drover-test/missing:1"
command = {sleeper}

[[container]]
name = "{taken}"
image = "{IMAGE}"
command = {sleeper}
ports = ["127.0.0.1:{taken_port}:80"]

[[container]]
name = "{sick}"
image = "{IMAGE}"
command = {sleeper}
healthcheck = {{ test = ["CMD", "sh", "-c", "echo {PROBE_SAYS}; exit 1"], interval = 1, retries = 2 }}
"#,
        web = w.name("web"),
        missing = w.name("missing"),
        taken = w.name("taken"),
        sick = w.name("sick"),
        sleeper = sleeper(),
    )
}

#[track_caller]
fn failed_with(report: &Value, name: &str, needles: &[&str]) {
    let entry = container_report(report, name);
    assert_eq!(entry["status"], "failed", "{entry:#}");
    let error = entry["error"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            error.to_lowercase().contains(&needle.to_lowercase()),
            "the error of {name} does not mention {needle:?}: {entry:#}"
        );
    }
}

#[test]
fn each_failure_fails_only_its_own_container() {
    let w = World::new("failures");
    assert!(
        !docker::image_exists("drover-test/missing:1"),
        "drover-test/missing:1 must not exist for this test"
    );
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = held.local_addr().unwrap().port();
    let web_port = docker::free_port();
    w.set_role(&catalog(&w, web_port, taken_port));

    w.agent.run(&[]).expect_code(6);
    assert!(is_running(&w.name("web")));
    assert_eq!(http_get(web_port), INDEX_HTML);
    let report = w.report();
    assert_eq!(report["status"], "failed", "{report:#}");
    assert_eq!(
        container_report(&report, &w.name("web"))["status"],
        "changed"
    );
    failed_with(
        &report,
        &w.name("missing"),
        &["drover-test/missing:1", "pull"],
    );
    failed_with(&report, &w.name("taken"), &[&taken_port.to_string()]);
    failed_with(&report, &w.name("sick"), &["unhealthy", PROBE_SAYS]);

    // The next run finds the same failures and nothing else to do.
    w.agent.run(&[]).expect_code(4);
    let report = w.report();
    assert_eq!(
        container_report(&report, &w.name("web"))["status"],
        "unchanged"
    );
    failed_with(&report, &w.name("missing"), &["drover-test/missing:1"]);
    failed_with(&report, &w.name("taken"), &[&taken_port.to_string()]);
    failed_with(&report, &w.name("sick"), &["unhealthy"]);
    drop(held);
}
