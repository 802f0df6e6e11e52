//! What one server does, the other knows: enrollment, reports, commits and
//! revocations cross from one server to the other through the database.

use std::process::{Command, Stdio};
use std::time::Duration;

use drover_tests::{Daemon, bin, report_list, toml_str};

use crate::{Cluster, converged};

#[test]
fn an_agent_enrolled_through_one_server_converges_through_the_other() {
    let c = Cluster::start();
    let mut agent = c.agent("web-1", &c.a);
    agent.run(&[]).expect_code(2);
    assert_eq!(fs_err::read_to_string(c.motd("web-1")).unwrap(), "first\n");
    // The same certificate, the other server: it trusts the shared CA, and
    // what it serves is what the first one would.
    fs_err::remove_file(c.motd("web-1")).unwrap();
    agent.server = c.b.url.clone();
    agent.run(&[]).expect_code(2);
    assert_eq!(fs_err::read_to_string(c.motd("web-1")).unwrap(), "first\n");
    // Both reports, whichever server took them, are listed by either.
    for server in [&c.a, &c.b] {
        let list = server.get_json("/api/v1/nodes/web-1/reports");
        let used: Vec<&str> = report_list(&list)
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(used.len(), 2, "{list:#}");
        let latest = server.latest_report("web-1");
        assert_eq!(latest["server"], c.b.url.as_str(), "{latest:#}");
    }
}

/// A daemon agent for `node` watching `server`.
fn start_daemon(c: &Cluster, node: &str, server: &drover_tests::Server) -> Daemon {
    let config = c.tmp.path().join(format!("daemon-{node}.toml"));
    fs_err::write(
        &config,
        format!(
            "server = \"{}\"\nnode = \"{node}\"\nstate_dir = {}\nsplay_secs = 0\ninterval_secs = 3600\n{}",
            server.url,
            toml_str(&c.tmp.path().join(format!("daemon-{node}"))),
            server.agent_config()
        ),
    )
    .unwrap();
    Daemon::start(&config, &c.tmp.path().join(format!("daemon-{node}.log")))
}

#[test]
fn a_commit_announced_to_one_server_converges_a_daemon_watching_the_other() {
    let c = Cluster::start();
    let daemon = start_daemon(&c, "web-2", &c.b);
    let logs = || {
        format!(
            "--- daemon\n{}\n--- server a\n{}\n--- server b\n{}",
            daemon.log(),
            c.a.log(),
            c.b.log()
        )
    };
    converged(&c.motd("web-2"), "first\n", Duration::from_secs(30), logs);
    // The daemon holds its watch on b; the push is announced to a only.
    std::thread::sleep(Duration::from_millis(500));
    c.repo.write("files/motd", "second\n");
    c.repo.commit("a new motd");
    c.a.refresh();
    let took = converged(&c.motd("web-2"), "second\n", Duration::from_secs(20), logs);
    // Within seconds, not at the hourly run: b heard of the commit from a.
    assert!(took < Duration::from_secs(10), "took {took:?}\n{}", logs());
    assert!(
        daemon.log().contains("new catalog version"),
        "woken by its watch:\n{}",
        logs()
    );
}

#[test]
fn a_certificate_revoked_through_one_server_is_refused_by_the_other() {
    let c = Cluster::start();
    let agent = c.agent("web-3", &c.a);
    agent.run(&[]).expect_code(2);
    let credential = agent.credential();
    let (code, _) =
        c.b.request_as(&credential, "GET", "/api/v1/ca", None)
            .expect("b accepts web-3's certificate");
    assert_eq!(code, 200);
    // Revoked on a's host, with a's configuration and the shared database.
    let out = Command::new(bin("drover-server"))
        .args(["ca", "revoke", "web-3", "--data-dir"])
        .arg(c.a.data_dir())
        .args(["--database", &c.database])
        .arg("--config")
        .arg(c.a.data_dir().join("server.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ca revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // b refuses it at its next handshake (the revocation reaches it by the
    // database's notification, in milliseconds; polled for at most 2 s).
    let started = std::time::Instant::now();
    loop {
        match c.b.request_as(&credential, "GET", "/api/v1/ca", None) {
            Err(e) => {
                assert!(
                    e.contains("certificate")
                        || e.contains("revoked")
                        || e.contains("handshake")
                        || e.contains("connection"),
                    "{e}"
                );
                break;
            }
            Ok((code, body)) => assert!(
                started.elapsed() < Duration::from_secs(2),
                "b still accepts the revoked certificate: {code} {body}\nserver b log:\n{}",
                c.b.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        c.b.log().contains("refused a revoked client certificate"),
        "{}",
        c.b.log()
    );
    // And a (whose host ran the command) refuses it too.
    assert!(
        c.a.request_as(&credential, "GET", "/api/v1/ca", None)
            .is_err()
    );
}

/// `drover-server serve` on the cluster's database with `data_dir` and
/// `config` (server.toml text): it must refuse to start; its stderr.
fn refused_start(c: &Cluster, data_dir: &std::path::Path, config: &str) -> String {
    fs_err::create_dir_all(data_dir).unwrap();
    let toml = data_dir.join("server.toml");
    fs_err::write(&toml, config).unwrap();
    let out = Command::new(bin("drover-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
        .arg(&c.repo.path)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(&toml)
        .args(["--database", &c.database])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_server_without_the_cluster_secret_or_with_its_own_ca_is_refused_with_the_reason() {
    let c = Cluster::start();
    // A third server whose cluster secret is missing: it cannot open the
    // shared CA, says which file and where to get it.
    let missing = c.tmp.path().join("nowhere/cluster-secret");
    let stderr = refused_start(
        &c,
        &c.tmp.path().join("server-c"),
        &format!("cluster_secret_file = {}\n", toml_str(&missing)),
    );
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("copy that file"),
        "{stderr}"
    );
    // A wrong secret: the key cannot be unsealed.
    let wrong = c.tmp.path().join("wrong-secret");
    fs_err::write(&wrong, "not the secret the others use, but long enough\n").unwrap();
    let stderr = refused_start(
        &c,
        &c.tmp.path().join("server-d"),
        &format!("cluster_secret_file = {}\n", toml_str(&wrong)),
    );
    assert!(stderr.contains("another cluster secret"), "{stderr}");
    // A data directory with a CA of its own (a server that ran alone before).
    let alone = c.tmp.path().join("server-e");
    let mut own = drover_tests::Server::start(&c.repo.path, &alone);
    own.stop();
    let stderr = refused_start(
        &c,
        &alone,
        &format!(
            "cluster_secret_file = {}\n",
            toml_str(&c.tmp.path().join("cluster-secret"))
        ),
    );
    assert!(
        stderr.contains("belongs to another CA than the one the servers share"),
        "{stderr}"
    );
    // The cluster still has its two servers, unharmed.
    assert_eq!(crate::status(&c.a)["servers"].as_array().unwrap().len(), 2);
}

/// Enrollments through both servers at once: each signing brings its
/// server's copy of the CA up to date while the other's notifications do
/// too (two writers of one file once answered 500).
#[test]
fn nodes_enrolling_through_both_servers_at_once_all_get_their_certificates() {
    let c = Cluster::start();
    let agents: Vec<_> = (0..8)
        .map(|i| {
            let through = if i % 2 == 0 { &c.a } else { &c.b };
            c.agent(&format!("app-{i}"), through)
        })
        .collect();
    std::thread::scope(|scope| {
        for agent in &agents {
            scope.spawn(move || {
                agent.run(&[]).expect_code(2);
            });
        }
    });
    for server in [&c.a, &c.b] {
        for i in 0..8 {
            let node = server.get_json(&format!("/api/v1/nodes/app-{i}"));
            assert_eq!(node["last_status"], "changed", "{node:#}");
        }
    }
    assert!(
        !c.a.log().contains("up to date failed") && !c.b.log().contains("up to date failed"),
        "--- a\n{}\n--- b\n{}",
        c.a.log(),
        c.b.log()
    );
}
