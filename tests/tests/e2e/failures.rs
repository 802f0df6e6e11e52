//! What goes wrong: a broken commit, a server that is away, a held lock.

use std::os::fd::AsFd;

use drover_tests::report_list;
use nix::fcntl::{Flock, FlockArg};

use crate::World;

#[test]
fn broken_commit_keeps_the_last_good_catalog_and_shows_the_error() {
    let w = World::start();
    w.agent.run(&[]).expect_code(2);
    let good = w.server.get_json("/api/v1/nodes/web-1")["catalog_version"].clone();

    let web = fs_err::read_to_string(w.repo.path.join("roles/web.toml")).unwrap();
    w.repo.write(
        "roles/web.toml",
        &format!("{web}\n[[file]]\npath = \"/tmp/x\"\nrequire = [\"service:nope\"]\n"),
    );
    let bad_commit = w.repo.commit("break the web role");
    w.server.refresh();

    // The node keeps converging to its last good catalog, and its run
    // fails (4) saying why, with file:line:col (issue 18: it was green).
    let out = w.agent.run(&[]);
    out.expect_code(4);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("last good catalog") && said.contains("roles/web.toml:"),
        "{said}"
    );
    assert_eq!(
        w.server.get_json("/api/v1/nodes/web-1")["catalog_version"],
        good
    );
    let report = w.server.latest_report("web-1");
    assert!(
        report["catalog_error"]
            .as_str()
            .is_some_and(|e| e.contains("roles/web.toml:")),
        "{report:#}"
    );

    // The error is visible with file:line.
    let envs = w.server.get_json("/api/v1/environments").to_string();
    assert!(envs.contains(&bad_commit), "{envs}");
    assert!(envs.contains("roles/web.toml:"), "{envs}");
    assert!(envs.contains("service:nope"), "{envs}");
    let node = w.server.get_json("/api/v1/nodes/web-1");
    assert!(
        node["compile_error"]
            .to_string()
            .contains("roles/web.toml:"),
        "{node:#}"
    );

    // Fixing it clears the error and the node moves on.
    w.repo
        .write("roles/web.toml", &web.replace("port = 8080", "port = 9090"));
    w.repo.commit("fix the web role");
    w.server.refresh();
    w.agent.run(&[]).expect_code(2);
    assert_eq!(w.read("etc/app.conf"), "port = 9090\nworkers = 8\n");
    let node = w.server.get_json("/api/v1/nodes/web-1");
    assert!(node["compile_error"].is_null(), "{node:#}");
}

#[test]
fn server_down_converges_from_cache_and_delivers_the_report_later() {
    let mut w = World::start();
    w.agent.run(&[]).expect_code(2);
    w.server.stop();

    fs_err::write(w.managed("etc/app.conf"), "drifted\n").unwrap();
    let out = w.agent.run(&[]);
    // Repaired from the cache (2), and failed (4): no fresh catalog.
    out.expect_code(6);
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 8\n");
    let spool: Vec<_> = fs_err::read_dir(w.agent.state_dir.join("spool"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(spool.len(), 1, "the undelivered report is spooled");

    w.server.restart();
    w.agent.run(&[]).expect_code(0);
    let list = w.server.get_json("/api/v1/nodes/web-1/reports?limit=10");
    let reports = report_list(&list);
    assert_eq!(reports.len(), 3, "{list:#}");
    let cached: Vec<_> = reports
        .iter()
        .map(|r| {
            w.server
                .get_json(&format!("/api/v1/reports/{}", r["id"].as_str().unwrap()))
        })
        .filter(|r| r["cached_catalog"] == "on_failure")
        .collect();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0]["status"], "changed");

    // A wrong path under the server's address: 404, the cache, and a
    // failed run (issue 18: it was green).
    let astray = drover_tests::Agent {
        server: format!("{}/drover", w.server.url),
        node: w.agent.node.clone(),
        state_dir: w.agent.state_dir.clone(),
        config: w.agent.config.clone(),
    };
    let out = astray.run(&[]);
    out.expect_code(4);
    assert!(out.stderr.contains("404"), "{}", out.stderr);
}

#[test]
fn a_server_list_converges_through_the_next_server_when_the_first_is_down() {
    let mut w = World::start();
    let live = w.agent.server.clone();
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", listener.local_addr().unwrap())
    };
    // Puppet's server_list: tried in order, a server that cannot be reached
    // passes the run to the next (enrollment included).
    w.agent.server = format!("{down},{live}");
    w.agent.run(&[]).expect_code(2);
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 8\n");
    let report = w.server.latest_report("web-1");
    assert_eq!(report["server"], live.as_str(), "{report:#}");
}

#[test]
fn a_second_run_while_the_lock_is_held_exits_1() {
    let w = World::start();
    w.agent.run(&[]).expect_code(2);
    let lock_path = w.agent.state_dir.join("run.lock");
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    let held = Flock::lock(file.into_parts().0, FlockArg::LockExclusiveNonblock).unwrap();
    let _ = held.as_fd();

    let out = w.agent.run(&[]);
    out.expect_code(1);
    assert!(out.stderr.contains("lock"), "{}", out.stderr);

    // A lock file left behind by a run that died does not block the next one.
    drop(held);
    assert!(lock_path.exists());
    w.agent.run(&[]).expect_code(0);
}
