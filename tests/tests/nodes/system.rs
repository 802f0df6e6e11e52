//! The system kinds on a booted node: package, service, user, group, exec.

use drover_tests::node::{Lab, Node};

use crate::site::{Site, entry};

/// A package from the node's apt repository, its config file, a service with
/// its own unit, a user and group owning a directory, and a guarded exec.
fn demo_role(greeting: &str, version: &str, shell: &str) -> String {
    format!(
        r#"
[vars]
greeting = "{greeting}"

[[package]]
name = "hello"
ensure = "installed"

[[package]]
name = "drover-probe"
ensure = "{version}"

[[group]]
name = "demo"

[[user]]
name = "demo"
group = "demo"
groups = ["audio"]
home = "/srv/demo"
shell = "{shell}"

[[user]]
name = "leaver"
ensure = "absent"

[[directory]]
path = "/srv/demo"
owner = "demo"
group = "demo"
mode = "0750"

[[file]]
path = "/etc/demo.conf"
content = "greeting = {{{{ vars.greeting }}}}\n"
notify = ["service:demo"]

[[service]]
name = "demo"
ensure = "running"
enabled = true
unit = """
[Unit]
Description=drover demo service

[Service]
ExecStartPre=/bin/sh -c 'echo start >> /var/log/demo-starts'
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""

[[exec]]
name = "seed"
command = "id -un > /srv/demo/seed"
creates = "/srv/demo/seed"
user = "demo"
require = ["directory:/srv/demo"]
"#
    )
}

/// apt transactions so far, from apt's own history.
fn apt_transactions(node: &Node) -> usize {
    let out = node.sh("cat /var/log/apt/history.log 2>/dev/null || true");
    out.stdout
        .lines()
        .filter(|l| l.starts_with("Start-Date:"))
        .count()
}

fn starts(node: &Node) -> usize {
    let out = node.exec(&["cat", "/var/log/demo-starts"]);
    out.expect_code(0).stdout.lines().count()
}

#[test]
fn system_kinds_converge_once_restart_on_change_and_repair_drift() {
    let lab = Lab::new();
    let site = Site::start(&lab, &demo_role("hello", "1.0", "/bin/sh"));
    let node = Node::boot(&lab, "sys-1");
    node.install_agent();
    node.exec(&["useradd", "leaver"]).expect_code(0);

    // Noop first: it says what it would do, apt's plan included, and does nothing.
    let noop = site.run(&node, &["--noop"]);
    noop.expect_code(2);
    for line in [
        "would change package:hello: ensure absent -> 2.10-3\n  ensure: apt would: Inst hello (2.10-3",
        "would change user:demo: ensure absent -> present",
        "would change user:leaver: ensure present -> absent",
        "would change service:demo: ",
        "would change exec:seed: returns notrun -> 0",
    ] {
        assert!(
            noop.stdout.contains(line),
            "no `{line}` in\n{}",
            noop.stdout
        );
    }
    let resources = site.latest_resources(&node);
    let hello = entry(&resources, "package:hello");
    assert!(
        hello["events"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("apt would: Inst hello"),
        "{hello}"
    );
    node.exec(&["hello"]).expect_code(127);
    node.exec(&["id", "demo"]).expect_code(1);
    node.exec(&["id", "leaver"]).expect_code(0);
    node.exec(&["systemctl", "cat", "demo"]).expect_code(1);
    assert_eq!(apt_transactions(&node), 0);

    // First run converges everything, both packages in one apt transaction;
    // the second run changes nothing.
    let first = site.run(&node, &[]);
    first.expect_code(2);
    assert_eq!(
        apt_transactions(&node),
        1,
        "one apt transaction for all packages"
    );
    node.exec(&["id", "leaver"]).expect_code(1);
    assert_eq!(
        node.exec(&["hello"]).expect_code(0).stdout,
        "Hello, world!\n"
    );
    let probe = node.exec(&["cat", "/usr/share/drover-probe/version"]);
    assert_eq!(probe.expect_code(0).stdout.trim(), "1.0");
    let id = node.exec(&["id", "demo"]);
    let id = id.expect_code(0).stdout.trim().to_owned();
    assert!(
        id.contains("gid=") && id.contains("(demo)") && id.contains("(audio)"),
        "{id}"
    );
    let owner = node.exec(&["stat", "-c", "%U:%G %a", "/srv/demo"]);
    assert_eq!(owner.expect_code(0).stdout.trim(), "demo:demo 750");
    assert_eq!(
        node.exec(&["cat", "/srv/demo/seed"]).expect_code(0).stdout,
        "demo\n"
    );
    node.exec(&["systemctl", "is-active", "demo"])
        .expect_code(0);
    node.exec(&["systemctl", "is-enabled", "demo"])
        .expect_code(0);
    assert_eq!(
        starts(&node),
        1,
        "started once, not restarted by its own config file"
    );

    let second = site.run(&node, &[]);
    second.expect_code(0);
    assert_eq!(starts(&node), 1);

    // A config change in git: noop reports the restart it would make...
    site.update_role(&demo_role("bonjour", "2.0", "/bin/bash"));
    let noop = site.run(&node, &["--noop"]);
    noop.expect_code(2);
    assert!(
        noop.stdout.contains("would change file:/etc/demo.conf"),
        "{}",
        noop.stdout
    );
    assert!(
        noop.stdout.contains("+greeting = bonjour"),
        "{}",
        noop.stdout
    );
    assert!(
        noop.stdout.contains("service:demo"),
        "noop names the restart: {}",
        noop.stdout
    );
    assert_eq!(starts(&node), 1, "noop restarted the service");
    let resources = site.latest_resources(&node);
    let service = entry(&resources, "service:demo");
    assert_eq!(service["status"], "noop", "{service}");
    assert_eq!(service["refreshed"], true, "{service}");

    // ...and the real run makes it exactly once.
    site.run(&node, &[]).expect_code(2);
    assert_eq!(starts(&node), 2, "one restart for one changed config file");
    let conf = node.exec(&["cat", "/etc/demo.conf"]);
    assert_eq!(conf.expect_code(0).stdout, "greeting = bonjour\n");
    let probe = node.exec(&["cat", "/usr/share/drover-probe/version"]);
    assert_eq!(
        probe.expect_code(0).stdout.trim(),
        "2.0",
        "the exact version moved"
    );
    let shell = node.exec(&["getent", "passwd", "demo"]);
    assert!(
        shell.expect_code(0).stdout.trim().ends_with(":/bin/bash"),
        "{}",
        shell.stdout
    );
    site.run(&node, &[]).expect_code(0);
    assert_eq!(starts(&node), 2);

    // Hand-made drift is repaired and reported as corrective.
    node.exec(&["systemctl", "stop", "demo"]).expect_code(0);
    node.exec(&["userdel", "demo"]).expect_code(0);
    node.sh("apt-get remove -y -q hello").expect_code(0);
    site.run(&node, &[]).expect_code(2);
    node.exec(&["systemctl", "is-active", "demo"])
        .expect_code(0);
    node.exec(&["id", "demo"]).expect_code(0);
    node.exec(&["hello"]).expect_code(0);
    let resources = site.latest_resources(&node);
    for id in ["service:demo", "user:demo", "package:hello"] {
        let r = entry(&resources, id);
        assert_eq!(r["status"], "changed", "{r}");
        assert_eq!(r["corrective"], true, "{r}");
    }
    assert_eq!(
        entry(&resources, "file:/etc/demo.conf")["status"],
        "unchanged"
    );
    site.run(&node, &[]).expect_code(0);
}

#[test]
fn failures_fail_their_own_resource_and_skip_only_dependents() {
    let role = r#"
[[service]]
name = "broken"
ensure = "running"
unit = """
[Service]
ExecStartPre=/bin/sh -c 'echo config check failed: no such port >&2; exit 3'
ExecStart=/bin/sleep infinity
"""

[[file]]
path = "/etc/after-broken"
content = "x\n"
require = ["service:broken"]

[[package]]
name = "no-such-package-drover"
ensure = "installed"

[[file]]
path = "/etc/after-missing-package"
content = "x\n"
require = ["package:no-such-package-drover"]

[[package]]
name = "hello"
ensure = "installed"

[[exec]]
name = "slow"
command = "sleep 60 & sleep 60"
timeout = 2

[[file]]
path = "/etc/after-slow"
content = "x\n"
require = ["exec:slow"]

[[file]]
path = "/etc/unrelated"
content = "converged\n"
"#;
    let lab = Lab::new();
    let site = Site::start(&lab, role);
    let node = Node::boot(&lab, "fail-1");
    node.install_agent();

    let first = site.run(&node, &[]);
    first.expect_code(6);
    assert!(
        first.stderr.contains("failed service:broken")
            && first.stderr.contains("config check failed: no such port"),
        "the unit's own words: {}",
        first.stderr
    );
    let resources = site.latest_resources(&node);
    let error = |id: &str| {
        entry(&resources, id)["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let status = |id: &str| entry(&resources, id)["status"].as_str().unwrap().to_owned();
    assert_eq!(status("service:broken"), "failed");
    assert!(
        error("service:broken").contains("config check failed: no such port"),
        "{}",
        error("service:broken")
    );
    assert_eq!(status("package:no-such-package-drover"), "failed");
    assert!(
        error("package:no-such-package-drover")
            .contains("Unable to locate package no-such-package-drover"),
        "{}",
        error("package:no-such-package-drover")
    );
    assert_eq!(
        status("package:hello"),
        "changed",
        "one bad package does not stop the others"
    );
    assert_eq!(status("exec:slow"), "failed");
    assert!(
        error("exec:slow").contains("timed out after 2 s"),
        "{}",
        error("exec:slow")
    );
    for id in [
        "file:/etc/after-broken",
        "file:/etc/after-missing-package",
        "file:/etc/after-slow",
    ] {
        assert_eq!(status(id), "skipped", "{id}");
        assert!(error(id).contains("dependency"), "{id}: {}", error(id));
    }
    assert_eq!(status("file:/etc/unrelated"), "changed");
    assert_eq!(node.exec(&["cat", "/etc/unrelated"]).stdout, "converged\n");
    // The timed-out exec's whole process group is gone, the background sleep too.
    let sleeps = node.sh("pgrep -x sleep -a | grep -v infinity || true");
    assert_eq!(sleeps.stdout.trim(), "", "left behind: {}", sleeps.stdout);

    // Nothing else changes; the failures stay: exit 4.
    site.run(&node, &[]).expect_code(4);
    let report = site.server.latest_report(node.name());
    assert_eq!(report["status"], "failed", "{report}");
}
