//! The agent installed as a systemd service in a booted node, exactly as the
//! README tells operators to: the test runs the README's own install steps.

use std::path::Path;
use std::time::Duration;

use drover_tests::node::{Lab, Node, wait_until};
use drover_tests::report_list;
use serde_json::Value;

use crate::site::Site;

const ROLE: &str = r#"
[[file]]
path = "/etc/managed-by-drover"
content = "converged by {{ node }}\n"
"#;

const MANAGED: &str = "/etc/managed-by-drover";

/// The first ```sh block of the README section on installing the service.
fn readme_install_steps() -> String {
    let readme = fs_err::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Installing the agent as a systemd service")
        .nth(1)
        .expect("README has the install section");
    let block = section.split("```sh\n").nth(1).expect("an sh block");
    block.split("```").next().unwrap().to_owned()
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn show(node: &Node, unit: &str, property: &str) -> String {
    let out = node.exec(&["systemctl", "show", unit, "-p", property, "--value"]);
    out.expect_code(0).stdout.trim().to_owned()
}

/// The node's reports; none while the server does not know the node yet
/// (enrolled, its first catalog request still on the way).
fn reports(site: &Site, node: &Node) -> Vec<Value> {
    let path = format!("/api/v1/nodes/{}/reports", node.name());
    match site.server.request("GET", &path, None) {
        (404, _) => Vec::new(),
        (200, list) => report_list(&list).clone(),
        (status, body) => panic!("GET {path}: {status} {body}"),
    }
}

fn wait_for_reports(site: &Site, node: &Node, count: usize, what: &str) {
    wait_until(Duration::from_secs(60), what, || {
        reports(site, node).len() >= count
    });
}

#[test]
fn agent_service_reaches_ready_converges_reports_and_survives_restarts() {
    let lab = Lab::new();
    let mut site = Site::start(&lab, ROLE);
    let node = Node::boot(&lab, "svc-1");

    // The README's steps, in a directory holding the binary and unit files,
    // with this test's server and a short first-run splay.
    let agent = fs_err::read(drover_tests::bin("drover-agent")).unwrap();
    node.write_file("/root/install/drover-agent", &agent, 0o755);
    for unit in [
        "drover-agent.service",
        "drover-agent-once.service",
        "drover-agent-once.timer",
    ] {
        let text = fs_err::read(repo_root().join("agent/systemd").join(unit)).unwrap();
        node.write_file(&format!("/root/install/{unit}"), &text, 0o644);
    }
    let steps = readme_install_steps().replace(
        "server = \"https://drover.example.net:8140\"",
        &format!(
            "server = \"{}\"\nsplay_secs = 2\nenrollment_token_file = \"/etc/drover/enrollment-token\"",
            site.server.url,
        ),
    );
    let ca = fs_err::read(site.server.ca_file()).unwrap();
    node.write_file("/root/install/ca.pem", &ca, 0o644);
    site.provision(&node);
    assert!(
        steps.contains(&site.server.url),
        "the README's agent.toml names a server"
    );
    let install = node.sh(&format!("set -e; cd /root/install\n{steps}"));
    install.expect_code(0);

    // `enable --now` returned after READY: the unit runs, its watchdog is armed.
    assert_eq!(show(&node, "drover-agent", "ActiveState"), "active");
    assert_eq!(show(&node, "drover-agent", "SubState"), "running");
    assert_eq!(show(&node, "drover-agent", "WatchdogUSec"), "1min");
    assert_eq!(show(&node, "drover-agent", "UnitFileState"), "enabled");

    // It converges and reports.
    wait_for_reports(&site, &node, 1, "the first report of the service");
    let content = node.exec(&["cat", MANAGED]);
    assert_eq!(content.expect_code(0).stdout, "converged by svc-1\n");
    let status = show(&node, "drover-agent", "StatusText");
    assert!(status.contains("last run: 1 changed, 0 failed"), "{status}");

    // The journal holds one structured entry per change, with the report's run id.
    let run_id = site.server.latest_report(node.name())["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let journal = node.exec(&[
        "journalctl",
        "-o",
        "json",
        "--no-pager",
        &format!("DROVER_RESOURCE=file:{MANAGED}"),
    ]);
    let entry: Value = serde_json::from_str(journal.expect_code(0).stdout.lines().next().unwrap())
        .unwrap_or_else(|e| panic!("journal entry: {e}\n{}", journal.stdout));
    assert_eq!(entry["DROVER_RUN_ID"], run_id.as_str(), "{entry}");
    assert_eq!(entry["DROVER_STATUS"], "changed", "{entry}");
    assert_eq!(entry["PRIORITY"], "5", "{entry}");
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "drover-agent", "{entry}");

    // `systemctl restart`: a new process, ready again; reload runs now.
    let pid = show(&node, "drover-agent", "MainPID");
    node.exec(&["systemctl", "restart", "drover-agent"])
        .expect_code(0);
    assert_ne!(show(&node, "drover-agent", "MainPID"), pid);
    assert_eq!(show(&node, "drover-agent", "ActiveState"), "active");
    let before = reports(&site, &node).len();
    node.exec(&["systemctl", "reload", "drover-agent"])
        .expect_code(0);
    wait_for_reports(&site, &node, before + 1, "a report after systemctl reload");

    // The server goes away: the node converges from its cached catalog and
    // spools the report; once the server is back, the spool is delivered.
    site.server.stop();
    node.exec(&["rm", MANAGED]).expect_code(0);
    node.exec(&["systemctl", "reload", "drover-agent"])
        .expect_code(0);
    wait_until(Duration::from_secs(60), "the offline repair", || {
        node.exec(&["test", "-f", MANAGED]).code == 0
    });
    site.server.restart();
    let before = reports(&site, &node).len();
    node.exec(&["systemctl", "reload", "drover-agent"])
        .expect_code(0);
    wait_for_reports(&site, &node, before + 2, "the spooled report and a new one");
    assert_eq!(show(&node, "drover-agent", "ActiveState"), "active");
    assert_eq!(
        show(&node, "drover-agent", "NRestarts"),
        "0",
        "it never crashed"
    );

    // The timer variant: one run per activation, no resident process.
    node.exec(&["systemctl", "disable", "--now", "drover-agent"])
        .expect_code(0);
    let steps = "install -m 0644 drover-agent-once.service /etc/systemd/system/\n\
                 install -m 0644 drover-agent-once.timer /etc/systemd/system/\n\
                 systemctl daemon-reload\n\
                 systemctl enable --now drover-agent-once.timer\n";
    node.sh(&format!("set -e; cd /root/install\n{steps}"))
        .expect_code(0);
    assert_eq!(
        show(&node, "drover-agent-once.timer", "ActiveState"),
        "active"
    );
    let before = reports(&site, &node).len();
    node.exec(&["systemctl", "start", "drover-agent-once.service"])
        .expect_code(0);
    assert_eq!(
        reports(&site, &node).len(),
        before + 1,
        "a oneshot run reports before it exits"
    );
}
