//! Losing a server: the other leads within one lease, a paused leader that
//! wakes up is fenced off, and no acknowledged report is lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_tests::Server;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Cluster, leader, this_server, wait_status};

fn signal(server: &Server, signal: Signal) {
    kill(Pid::from_raw(server.pid() as i32), signal).unwrap();
}

/// Both servers see one leader; (the leader, the follower, the term).
fn elected(c: &Cluster) -> (&Server, &Server, i64) {
    let (status, _) = wait_status(&c.a, Duration::from_secs(15), "a leader", |s| {
        leader(s).is_some()
    });
    let (id, term) = leader(&status).unwrap();
    if id == this_server(&status) {
        (&c.a, &c.b, term)
    } else {
        (&c.b, &c.a, term)
    }
}

#[test]
fn when_the_leader_is_killed_the_other_leads_within_15_s_with_a_larger_term() {
    let c = Cluster::start();
    let (old, other, term) = elected(&c);
    // The follower knows it follows, and whom.
    let seen = crate::status(other);
    assert_eq!(seen["this_server_leads"], false, "{seen:#}");
    assert!(metrics(other).contains("\ndrover_cluster_leader 0\n"));
    assert_eq!(seen["servers"].as_array().unwrap().len(), 2, "{seen:#}");
    let other_id = this_server(&seen);
    signal(old, Signal::SIGKILL);
    let started = Instant::now();
    let (status, _) = wait_status(other, Duration::from_secs(20), "the other leads", |s| {
        leader(s).is_some_and(|(id, t)| id == other_id && t > term)
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}: {status:#}");
    assert_eq!(status["this_server_leads"], true, "{status:#}");
    assert!(metrics(other).contains("\ndrover_cluster_leader 1\n"));
}

/// `GET /metrics` of `server`, as text.
fn metrics(server: &Server) -> String {
    match server.request("GET", "/metrics", None) {
        (200, serde_json::Value::String(text)) => text,
        other => panic!("/metrics: {other:?}"),
    }
}

#[test]
fn a_leader_paused_past_its_lease_is_fenced_off_when_it_wakes() {
    let c = Cluster::start();
    let (paused, other, term) = elected(&c);
    let other_id = this_server(&crate::status(other));
    signal(paused, Signal::SIGSTOP);
    let (status, _) = wait_status(other, Duration::from_secs(20), "the other leads", |s| {
        leader(s).is_some_and(|(id, t)| id == other_id && t > term)
    });
    let new_term = leader(&status).unwrap().1;
    signal(paused, Signal::SIGCONT);
    // Its next write as leader (the renewal of its lease, or whatever
    // leader's work woke first) is refused; it steps down and says why.
    let (seen, _) = wait_status(
        paused,
        Duration::from_secs(10),
        "the old leader steps down",
        |s| s["this_server_leads"] == false,
    );
    assert_eq!(leader(&seen), Some((other_id, new_term)), "{seen:#}");
    let log = paused.log();
    assert!(
        log.contains("no longer leads")
            && log.contains("refused")
            && log.contains(&format!("term {new_term}")),
        "{log}"
    );
}

#[test]
fn every_report_acknowledged_before_a_server_is_killed_is_stored() {
    let c = Cluster::start();
    let agent = c.agent("web-9", &c.a);
    agent.run(&[]).expect_code(2);
    let credential = agent.credential();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0_usize));
    const PER_SERVER: usize = 150;
    std::thread::scope(|scope| {
        for (name, server) in [("a", &c.a), ("b", &c.b)] {
            let (acknowledged, refused, credential) =
                (acknowledged.clone(), refused.clone(), credential.clone());
            scope.spawn(move || {
                for i in 0..PER_SERVER {
                    let run_id = format!("run-{name}-{i}");
                    let body = drover_tests::report_body("web-9", &run_id);
                    match server.request_as(
                        &credential,
                        "POST",
                        "/api/v1/nodes/web-9/reports",
                        Some(&body),
                    ) {
                        Ok((200 | 201, _)) => acknowledged.lock().unwrap().push(run_id),
                        _ => *refused.lock().unwrap() += 1,
                    }
                }
            });
        }
        // Mid-stream: a dies without a word.
        let started = Instant::now();
        while acknowledged.lock().unwrap().len() < PER_SERVER / 2 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "reports too slow"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(&c.a, Signal::SIGKILL);
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    let refused = *refused.lock().unwrap();
    // Some of a's were refused (it was dead), every one of b's went through.
    assert!(refused > 0, "a was killed before its last report");
    assert!(
        acknowledged
            .iter()
            .filter(|r| r.starts_with("run-b-"))
            .count()
            == PER_SERVER
    );
    // Every acknowledged report is in the database, read by the survivor.
    let list = c.b.get_json("/api/v1/nodes/web-9/reports?limit=1000");
    let stored: std::collections::BTreeSet<String> = drover_tests::report_list(&list)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|r| !stored.contains(*r))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.len() >= acknowledged.len());
}
