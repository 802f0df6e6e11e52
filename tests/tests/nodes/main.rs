//! Tests on booted Debian nodes (tests/src/node.rs): systemd is PID 1, each
//! node has its own hostname and address on a lab network with the host.

mod agent_service;
mod packages;
mod site;
mod system;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_tests::node::{Lab, Node, wait_until};

/// Sends one line from the node to `host:port` with bash's /dev/tcp, giving up
/// after `seconds`. True when the connection was made.
fn node_can_send(node: &Node, listener: &TcpListener, seconds: u32) -> bool {
    let addr = listener.local_addr().unwrap();
    let script = format!(
        "timeout {seconds} bash -c 'echo from-$(hostname) > /dev/tcp/{}/{}'",
        addr.ip(),
        addr.port()
    );
    node.sh(&script).code == 0
}

/// Accepts the connection a node made and returns the line it sent.
fn received_line(listener: &TcpListener) -> String {
    let (stream, _) = listener.accept().unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.trim().to_owned()
}

fn is_mounted(path: &Path) -> bool {
    let mounts = fs_err::read_to_string("/proc/mounts").unwrap();
    let path = path.to_str().unwrap();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(path))
}

fn netns_exists(name: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    list.lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

#[test]
fn harness_boots_networks_restarts_and_cleans_up_nodes() {
    let lab = Lab::new();
    let (mut alpha, beta) = std::thread::scope(|s| {
        // Strict: the image boots without a failed unit.
        let alpha = s.spawn(|| Node::boot_strict(&lab, "alpha"));
        let beta = s.spawn(|| Node::boot(&lab, "beta"));
        (alpha.join().unwrap(), beta.join().unwrap())
    });

    // Own hostnames, systemd as PID 1.
    for node in [&alpha, &beta] {
        let hostname = node.exec(&["hostname"]);
        assert_eq!(hostname.expect_code(0).stdout.trim(), node.name());
        let init = node.exec(&["cat", "/proc/1/comm"]);
        assert_eq!(init.expect_code(0).stdout.trim(), "systemd");
        assert!(
            node.sh("ip -o -4 addr show eth0")
                .stdout
                .contains(&node.ip().to_string())
        );
    }
    assert_ne!(alpha.ip(), beta.ip());

    // The lab network reaches the host; cutting it isolates the node.
    let listener = TcpListener::bind((lab.host_ip(), 0)).unwrap();
    assert!(
        node_can_send(&alpha, &listener, 5),
        "alpha cannot reach the host"
    );
    assert_eq!(received_line(&listener), "from-alpha");
    assert!(
        node_can_send(&beta, &listener, 5),
        "beta cannot reach the host"
    );
    assert_eq!(received_line(&listener), "from-beta");
    alpha.cut_network();
    assert!(
        !node_can_send(&alpha, &listener, 2),
        "alpha reached the host with its network cut"
    );
    assert!(
        node_can_send(&beta, &listener, 5),
        "cutting alpha's network cut beta's too"
    );
    assert_eq!(received_line(&listener), "from-beta");
    alpha.restore_network();
    wait_until(
        Duration::from_secs(10),
        "alpha reaches the host again",
        || node_can_send(&alpha, &listener, 1),
    );
    assert_eq!(received_line(&listener), "from-alpha");

    // The offline apt repository, with its two versions of drover-probe.
    let install = beta.sh("apt-get install -y -q hello drover-probe=1.0");
    install.expect_code(0);
    assert_eq!(
        beta.exec(&["hello"]).expect_code(0).stdout,
        "Hello, world!\n"
    );
    let probe = beta.exec(&["cat", "/usr/share/drover-probe/version"]);
    assert_eq!(probe.expect_code(0).stdout.trim(), "1.0");

    // The agent binary runs in a node.
    alpha.install_agent();
    alpha.exec(&["drover-agent", "--version"]).expect_code(0);

    // Files survive a restart; the node comes back on the same address.
    alpha.write_file("/root/kept", b"kept across restarts\n", 0o600);
    alpha.restart();
    let kept = alpha.exec(&["stat", "-c", "%a %U", "/root/kept"]);
    assert_eq!(kept.expect_code(0).stdout.trim(), "600 root");
    assert_eq!(
        alpha.exec(&["cat", "/root/kept"]).stdout,
        "kept across restarts\n"
    );
    assert!(
        node_can_send(&alpha, &listener, 5),
        "alpha lost the network after restart"
    );
    assert_eq!(received_line(&listener), "from-alpha");

    // Dropping the nodes removes their mounts, namespaces and directories.
    let roots: Vec<PathBuf> = [&alpha, &beta].map(|node| node.root()).into();
    let namespaces = [alpha.netns(), beta.netns()];
    for (root, ns) in roots.iter().zip(&namespaces) {
        assert!(is_mounted(root), "{} is not mounted", root.display());
        assert!(netns_exists(ns), "netns {ns} does not exist");
    }
    drop(alpha);
    drop(beta);
    for (root, ns) in roots.iter().zip(&namespaces) {
        assert!(!is_mounted(root), "{} is still mounted", root.display());
        assert!(!netns_exists(ns), "netns {ns} still exists");
        assert!(
            !root.parent().unwrap().exists(),
            "{} still exists",
            root.display()
        );
    }
}
