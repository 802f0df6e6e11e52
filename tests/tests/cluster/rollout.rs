//! A staged rollout across a leader failover: the rollout loop runs on the
//! leader only and keeps its state in the database, so after the leader is
//! killed mid-stage the new leader continues the same rollout (the stage
//! began once) and passes the gate the canary's report satisfies; the
//! follower serves each node its stage's commit all along.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{Cluster, leader, this_server, wait_status};

fn rollout(server: &drover_tests::Server) -> Value {
    server.get_json("/api/v1/environments/main/rollout")
}

#[track_caller]
fn until(server: &drover_tests::Server, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rollout(server);
        if ok(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s: {now:#}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_rollout_continues_on_the_new_leader_after_the_old_one_is_killed() {
    let mut c = Cluster::start();
    let (status, _) = wait_status(&c.a, Duration::from_secs(15), "a leader", |s| {
        leader(s).is_some()
    });
    let (leader_id, _) = leader(&status).unwrap();
    let a_leads = this_server(&status) == leader_id;
    let (lead, follow) = if a_leads { (&c.a, &c.b) } else { (&c.b, &c.a) };
    let canary = c.agent("canary-1", follow);
    let web = c.agent("web-1", follow);
    canary.run(&[]);
    web.run(&[]);
    assert_eq!(fs_err::read_to_string(c.motd("web-1")).unwrap(), "first\n");
    until(lead, "the first commit is recorded", |r| {
        !r["rollout"].is_null()
    });

    c.repo
        .write(
            "drover.toml",
            "[rollout]\nstages = [{ nodes = \"canary-*\" }, { percent = 100 }]\n\
             gate = { min_wait_secs = 6 }\n",
        )
        .write("files/motd", "second\n");
    c.repo.commit("a staged motd");
    lead.refresh();
    follow.refresh();
    let started = until(follow, "the rollout starts", |r| {
        r["rollout"]["state"] == "rolling"
    });
    // The follower serves the canary the new commit and web-1 the old one.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        canary.run(&[]);
        if fs_err::read_to_string(c.motd("canary-1")).unwrap() == "second\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the canary never got the staged commit"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    web.run(&[]);
    assert_eq!(fs_err::read_to_string(c.motd("web-1")).unwrap(), "first\n");

    // The leader dies mid-stage; the other leads and finishes the rollout.
    let pid = Pid::from_raw(lead.pid() as i32);
    kill(pid, Signal::SIGKILL).unwrap();
    let survivor = if a_leads { &c.b } else { &c.a };
    wait_status(
        survivor,
        Duration::from_secs(30),
        "the survivor leads",
        |s| leader(s).is_some_and(|(id, _)| id != leader_id),
    );
    let passed = until(survivor, "the new leader passes the canary's gate", |r| {
        r["rollout"]["stage"] == 1
    });
    assert_eq!(
        passed["rollout"]["stages"][0]["started_at"], started["rollout"]["stages"][0]["started_at"],
        "the stage began once: {passed:#}"
    );
    // web-1's stage began: it is served the new commit (by the survivor,
    // its only server now), and its report completes the rollout.
    let web = c.agent("web-1", survivor);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        web.run(&[]);
        if fs_err::read_to_string(c.motd("web-1")).unwrap() == "second\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web-1 never got the staged commit"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    until(survivor, "the rollout is done", |r| {
        r["rollout"]["state"] == "done"
    });
    // Reaped when the cluster drops.
    let _ = &mut c;
}
