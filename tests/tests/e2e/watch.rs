//! Push to converged: a daemon's catalog watch turns a git push into a run
//! within seconds, and a daemon that missed the news (not watching, or the
//! server restarted between push and watch) still converges at its next
//! interval run.

use std::time::{Duration, Instant};

use drover_tests::{Credential, Daemon, report_list};

use crate::World;

/// A daemon for node web-1; `name` names its configuration and log; every
/// daemon of a world shares one state directory (one node, enrolled once).
fn start_daemon(w: &World, name: &str, settings: &str) -> Daemon {
    let config = w.tmp.path().join(format!("{name}.toml"));
    let state = w.tmp.path().join("daemon-state");
    fs_err::write(
        &config,
        format!(
            "server = \"{}\"\nnode = \"web-1\"\nstate_dir = \"{}\"\nsplay_secs = 0\n{settings}\n{}",
            w.server.url,
            state.display(),
            w.server.agent_config()
        ),
    )
    .unwrap();
    Daemon::start(&config, &w.tmp.path().join(format!("{name}.log")))
}

/// Waits (up to `limit`) until the managed `rel` holds `content`; how long it took.
#[track_caller]
fn converged(w: &World, daemon: &Daemon, rel: &str, content: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if fs_err::read_to_string(w.managed(rel)).is_ok_and(|c| c == content) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "{rel} did not converge to {content:?} within {limit:?}\n--- agent\n{}\n--- server\n{}",
            daemon.log(),
            w.server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reports(w: &World) -> usize {
    let (status, list) = w
        .server
        .request("GET", "/api/v1/nodes/web-1/reports?limit=100", None);
    if status == 200 {
        report_list(&list).len()
    } else {
        0
    }
}

#[test]
fn a_push_reaches_a_daemon_with_an_hour_long_interval_within_seconds() {
    let w = World::start();
    let daemon = start_daemon(&w, "agent", "interval_secs = 3600");
    converged(
        &w,
        &daemon,
        "etc/logo.txt",
        "drover\n",
        Duration::from_secs(60),
    );

    for round in 1..=2 {
        let text = format!("pushed {round}\n");
        w.repo.write("files/logo.txt", &text);
        w.repo.commit("a push");
        let pushed = Instant::now();
        w.server.refresh();
        let took = converged(&w, &daemon, "etc/logo.txt", &text, Duration::from_secs(10));
        eprintln!(
            "push {round}: converged {:?} after the hook returned, {:?} after it was sent",
            took,
            pushed.elapsed()
        );
    }
    assert!(
        daemon.log().contains("new catalog version"),
        "{}",
        daemon.log()
    );
    // One run at start and one per push: the watch starts no others.
    let t = Instant::now();
    while reports(&w) < 3 {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(reports(&w), 3, "{}", daemon.log());
}

#[test]
fn a_daemon_that_missed_the_news_converges_at_its_next_interval_run() {
    let mut w = World::start();
    // Not watching at all: the push lands, no notification reaches it.
    let daemon = start_daemon(&w, "blind", "interval_secs = 3\nwatch = false");
    converged(
        &w,
        &daemon,
        "etc/logo.txt",
        "drover\n",
        Duration::from_secs(60),
    );
    w.repo.write("files/logo.txt", "while not watching\n");
    w.repo.commit("a push nobody watches");
    w.server.refresh();
    converged(
        &w,
        &daemon,
        "etc/logo.txt",
        "while not watching\n",
        Duration::from_secs(20),
    );
    assert!(
        !daemon.log().contains("new catalog version"),
        "{}",
        daemon.log()
    );
    drop(daemon);

    // Watching, but the server restarts between the push and any watch:
    // it forgot every version, and the hook never ran.
    let daemon = start_daemon(&w, "restarted", "interval_secs = 3");
    converged(
        &w,
        &daemon,
        "etc/logo.txt",
        "while not watching\n",
        Duration::from_secs(60),
    );
    w.server.stop();
    w.repo
        .write("files/logo.txt", "pushed while the server was down\n");
    w.repo.commit("a push while the server is down");
    w.server.restart();
    converged(
        &w,
        &daemon,
        "etc/logo.txt",
        "pushed while the server was down\n",
        Duration::from_secs(30),
    );
}

#[test]
fn a_long_poll_outlives_the_listeners_request_head_timeout() {
    let w = World::start();
    w.agent.run(&[]).expect_code(2);
    let report = w.server.latest_report("web-1");
    let version = report["catalog_version"].as_str().unwrap();
    // The listener cuts off a request head after 10 s; a response that
    // takes longer is not a slow client.
    let t = Instant::now();
    let (status, body) = w
        .server
        .request_as(
            &w.agent.credential(),
            "GET",
            &format!("/api/v1/nodes/web-1/catalog/watch?version={version}&timeout_secs=12"),
            None,
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["changed"], false, "{answer}");
    assert_eq!(answer["version"], version);
    assert!(t.elapsed() >= Duration::from_secs(12));
    // Without a certificate it is refused.
    let (status, _) = w
        .server
        .request_as(
            &Credential::None,
            "GET",
            "/api/v1/nodes/web-1/catalog/watch?timeout_secs=0",
            None,
        )
        .unwrap();
    assert_eq!(status, 401);
}

#[test]
fn node_run_makes_a_watching_daemon_run_within_seconds_without_a_commit() {
    let w = World::start();
    let daemon = start_daemon(&w, "asked", "interval_secs = 3600");
    converged(
        &w,
        &daemon,
        "etc/logo.txt",
        "drover\n",
        Duration::from_secs(60),
    );
    // Drift by hand: nothing in git moves, only a run repairs it.
    fs_err::write(w.managed("etc/logo.txt"), "hand edit\n").unwrap();
    let before = reports(&w);
    let asked = w
        .server
        .admin(&["node", "run", "web-1", "--server", &w.server.url]);
    asked.expect_code(0);
    assert!(
        asked.stdout.contains("runs within seconds"),
        "{}",
        asked.stdout
    );
    let took = converged(
        &w,
        &daemon,
        "etc/logo.txt",
        "drover\n",
        Duration::from_secs(15),
    );
    eprintln!("node run: repaired {took:?} after the command returned");
    assert!(
        daemon.log().contains("an operator asked for a run"),
        "{}",
        daemon.log()
    );
    let t = Instant::now();
    while reports(&w) <= before {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Answered once: no second run follows.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reports(&w), before + 1, "{}", daemon.log());
    let unknown = w
        .server
        .admin(&["node", "run", "no-such-node", "--server", &w.server.url]);
    unknown.expect_code(1);
    assert!(
        unknown.stderr.contains("unknown node `no-such-node`"),
        "{}",
        unknown.stderr
    );
}
