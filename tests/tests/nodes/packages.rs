//! The Debian packages installed on booted nodes as an operator installs
//! them: `apt-get install ./drover-server_*.deb` (git, its dependency, from
//! the node's local repository), `systemctl start drover-server` serves as
//! the confined `drover` user, an agent installed from its package on
//! another node enrolls and converges, and `apt-get remove` leaves each
//! configuration while `purge` removes it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use drover_tests::node::{Lab, Node, wait_until};

const MANAGED: &str = "/etc/managed-by-drover";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The packages of this build's binaries, in a temporary directory.
fn packages() -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let bins = drover_tests::bin("drover-server");
    let out = Command::new(repo_root().join("scripts/package"))
        .arg("--from")
        .arg(bins.parent().unwrap())
        .env("DROVER_PACKAGE_OUT", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/package: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    let read =
        |name: &str| fs_err::read(dir.path().join(format!("{name}_{version}_amd64.deb"))).unwrap();
    let (server, agent) = (read("drover-server"), read("drover-agent"));
    (dir, server, agent)
}

fn show(node: &Node, unit: &str, property: &str) -> String {
    let out = node.exec(&["systemctl", "show", unit, "-p", property, "--value"]);
    out.expect_code(0).stdout.trim().to_owned()
}

fn exists(node: &Node, path: &str) -> bool {
    node.exec(&["test", "-e", path]).code == 0
}

#[test]
fn the_packages_install_serve_enroll_converge_and_remove_cleanly() {
    let (_dir, server_deb, agent_deb) = packages();
    let lab = Lab::new();
    let (server, agent) = std::thread::scope(|s| {
        let server = s.spawn(|| Node::boot(&lab, "pkg-server"));
        let agent = s.spawn(|| Node::boot(&lab, "pkg-agent"));
        (server.join().unwrap(), agent.join().unwrap())
    });

    // The server, from its package, on a catalog directory of its node.
    server.write_file("/root/drover-server.deb", &server_deb, 0o644);
    server
        .sh("apt-get install -y -q /root/drover-server.deb")
        .expect_code(0);
    assert!(exists(&server, "/usr/bin/git"), "git came with it");
    assert!(exists(&server, "/usr/share/man/man1/drover-server.1.gz"));
    server.write_file(
        "/srv/site/nodes.toml",
        b"[[node]]\nmatch = \"*\"\nroles = [\"main\"]\n",
        0o644,
    );
    server.write_file(
        "/srv/site/roles/main.toml",
        format!("[[file]]\npath = \"{MANAGED}\"\ncontent = \"converged by {{{{ node }}}}\\n\"\n")
            .as_bytes(),
        0o644,
    );
    server.write_file(
        "/etc/drover/enrollment-token",
        b"packaged-enrollment-token-0123456789\n",
        0o640,
    );
    server
        .exec(&["chgrp", "drover", "/etc/drover/enrollment-token"])
        .expect_code(0);
    let ip = server.ip();
    server.write_file(
        "/etc/drover/server.toml",
        format!(
            "repo = \"/srv/site\"\nlisten = \"0.0.0.0:8140\"\ndata_dir = \"/var/lib/drover-server\"\n\
             server_names = [\"{ip}\"]\nenrollment_token_file = \"/etc/drover/enrollment-token\"\n"
        )
        .as_bytes(),
        0o644,
    );
    // Type=notify: `start` returns once it serves.
    let started = server.exec(&["systemctl", "start", "drover-server"]);
    assert_eq!(
        started.code,
        0,
        "{}\n{}",
        started.stderr,
        server.journal("drover-server")
    );
    assert_eq!(show(&server, "drover-server", "ActiveState"), "active");
    assert_eq!(show(&server, "drover-server", "User"), "drover");
    let owner = server.exec(&["stat", "-L", "-c", "%U %a", "/var/lib/drover-server"]);
    assert_eq!(owner.expect_code(0).stdout.trim(), "drover 700");
    let security = server.exec(&["systemd-analyze", "security", "--no-pager", "drover-server"]);
    let overall = security
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{}\n{}", security.stdout, security.stderr))
        .to_owned();
    let score: f64 = overall
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(score <= 3.0, "{overall}");

    // An agent, from its package, on the other node.
    let ca = server.exec(&["cat", "/var/lib/drover-server/ca/ca.crt.pem"]);
    agent.write_file(
        "/etc/drover/ca.pem",
        ca.expect_code(0).stdout.as_bytes(),
        0o644,
    );
    agent.write_file(
        "/etc/drover/enrollment-token",
        b"packaged-enrollment-token-0123456789\n",
        0o600,
    );
    agent.write_file("/root/drover-agent.deb", &agent_deb, 0o644);
    agent
        .sh("apt-get install -y -q /root/drover-agent.deb")
        .expect_code(0);
    assert!(exists(
        &agent,
        "/usr/share/bash-completion/completions/drover-agent"
    ));
    agent.write_file(
        "/etc/drover/agent.toml",
        format!(
            "server = \"https://{ip}:8140\"\nca_file = \"/etc/drover/ca.pem\"\n\
             enrollment_token_file = \"/etc/drover/enrollment-token\"\n"
        )
        .as_bytes(),
        0o644,
    );
    let run = agent.exec(&["drover-agent", "run", "--once", "--detailed-exitcodes"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let managed = agent.exec(&["cat", MANAGED]);
    assert_eq!(managed.expect_code(0).stdout, "converged by pkg-agent\n");
    // The operator's view, on the server's node.
    wait_until(Duration::from_secs(30), "the server lists the node", || {
        server
            .exec(&["drover-server", "node", "list"])
            .stdout
            .contains("pkg-agent")
    });
    // Reload re-reads without a restart.
    let pid = show(&server, "drover-server", "MainPID");
    server
        .exec(&["systemctl", "reload", "drover-server"])
        .expect_code(0);
    assert_eq!(show(&server, "drover-server", "MainPID"), pid);

    // remove keeps the configuration; purge takes it.
    agent.sh("apt-get remove -y -q drover-agent").expect_code(0);
    assert!(!exists(&agent, "/usr/bin/drover-agent"));
    assert!(exists(&agent, "/etc/drover/agent.toml"));
    agent.sh("apt-get purge -y -q drover-agent").expect_code(0);
    assert!(!exists(&agent, "/etc/drover/agent.toml"));
    server
        .sh("apt-get remove -y -q drover-server")
        .expect_code(0);
    assert_eq!(show(&server, "drover-server", "ActiveState"), "inactive");
    assert!(exists(&server, "/etc/drover/server.toml"));
    server
        .sh("apt-get purge -y -q drover-server")
        .expect_code(0);
    assert!(!exists(&server, "/etc/drover/server.toml"));
}
