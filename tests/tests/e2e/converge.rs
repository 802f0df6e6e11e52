//! The main loop: create, idempotence, drift repair, noop.

use drover_tests::{report_entry as resource, report_list};

use crate::World;

#[test]
fn first_run_creates_second_changes_nothing() {
    let w = World::start();
    w.agent.run(&[]).expect_code(2);

    assert_eq!(w.read("motd"), "welcome to web-1\nline two\nline three\n");
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 8\n");
    assert_eq!(w.read("etc/logo.txt"), "drover\n");
    assert_eq!(
        fs_err::read_link(w.managed("current")).unwrap(),
        w.managed("etc")
    );
    let mode = fs_err::metadata(w.managed("etc/app.conf")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o7777,
        0o640
    );

    let first = w.server.latest_report("web-1");
    assert_eq!(first["status"], "changed");
    assert_eq!(first["cached_catalog"], "not_used");
    assert_eq!(
        resource(&first, &format!("file:{}", w.managed("motd").display()))["status"],
        "changed"
    );

    w.agent.run(&[]).expect_code(0);
    let second = w.server.latest_report("web-1");
    assert_eq!(second["status"], "unchanged");
    assert_ne!(first["run_id"], second["run_id"]);
    let node = w.server.get_json("/api/v1/nodes/web-1");
    assert_eq!(node["catalog_version"], second["catalog_version"]);
}

#[test]
fn hand_edit_is_repaired_and_reported_as_corrective() {
    let w = World::start();
    w.agent.run(&[]).expect_code(2);
    fs_err::write(w.managed("etc/app.conf"), "port = 1\n").unwrap();

    w.agent.run(&[]).expect_code(2);
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 8\n");
    let report = w.server.latest_report("web-1");
    let app = resource(
        &report,
        &format!("file:{}", w.managed("etc/app.conf").display()),
    );
    assert_eq!(app["status"], "changed");
    assert_eq!(app["corrective"], true, "{app:#}");
    let motd = resource(&report, &format!("file:{}", w.managed("motd").display()));
    assert_eq!(motd["status"], "unchanged");
}

#[test]
fn noop_prints_the_diff_and_changes_nothing() {
    let w = World::start();
    w.agent.run(&[]).expect_code(2);
    fs_err::write(
        w.managed("motd"),
        "welcome to web-1\nHAND EDIT\nline three\n",
    )
    .unwrap();
    let cached = fs_err::read(w.agent.state_dir.join("catalog.signed")).unwrap();
    // A new desired state waits on the server: noop must not take it as cached.
    w.repo.write("data/common.toml", "workers = 3\n");
    w.repo.write("data/nodes/web-1.toml", "workers = 9\n");
    w.repo.commit("more workers");
    w.server.refresh();

    let out = w.agent.run(&["--noop"]);
    out.expect_code(2);
    assert!(out.stdout.contains("-HAND EDIT"), "{}", out.stdout);
    assert!(out.stdout.contains("+line two"), "{}", out.stdout);
    assert!(out.stdout.contains("+workers = 9"), "{}", out.stdout);
    assert_eq!(w.read("motd"), "welcome to web-1\nHAND EDIT\nline three\n");
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 8\n");
    assert_eq!(
        fs_err::read(w.agent.state_dir.join("catalog.signed")).unwrap(),
        cached
    );
    let report = w.server.latest_report("web-1");
    assert_eq!(report["noop"], true);
    let motd = resource(&report, &format!("file:{}", w.managed("motd").display()));
    assert_eq!(motd["status"], "noop");
    assert!(motd["diff"].as_str().unwrap().contains("-HAND EDIT"));

    w.agent.run(&[]).expect_code(2);
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 9\n");
    w.agent.run(&[]).expect_code(0);
    let reports = w.server.get_json("/api/v1/nodes/web-1/reports?limit=10");
    assert_eq!(report_list(&reports).len(), 4);
}
