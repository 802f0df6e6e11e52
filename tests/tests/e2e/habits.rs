//! The agent's everyday habits, end to end against the real server:
//! external facts from `facts_dir` (a file and an executable) reach the
//! server's compiler; `disable` stops runs with the reason, who and when,
//! `enable` turns them back on; `--tags` converges only the tagged part
//! and says so in its report; `--wait-for-lock` waits for another run;
//! `--verbose` lists unchanged resources, `--debug` each step of a run.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_tests::{Output, bin};

use super::World;

/// `drover-agent ARGS --config CONFIG --state-dir STATE` (the agent's own
/// commands other than `run`).
fn agent(world: &World, args: &[&str]) -> Output {
    let out = Command::new(bin("drover-agent"))
        .args(args)
        .arg("--config")
        .arg(&world.agent.config)
        .arg("--state-dir")
        .arg(&world.agent.state_dir)
        .env("SUDO_USER", "alice")
        .output()
        .expect("drover-agent runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn external_facts_from_a_file_and_an_executable_reach_the_compiler() {
    let world = World::start();
    let facts_d = world.tmp.path().join("facts.d");
    fs_err::create_dir_all(&facts_d).unwrap();
    fs_err::write(facts_d.join("site.json"), r#"{"site": "paris"}"#).unwrap();
    let rack = facts_d.join("rack");
    fs_err::write(&rack, "#!/bin/sh\necho '{\"rack\": 7}'\n").unwrap();
    fs_err::set_permissions(&rack, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = fs_err::read_to_string(&world.agent.config).unwrap();
    config.push_str(&format!(
        "facts_dir = {}\n",
        drover_tests::toml_str(&facts_d)
    ));
    fs_err::write(&world.agent.config, config).unwrap();

    let printed = agent(&world, &["facts"]);
    printed.expect_code(0);
    let facts: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(
        (&facts["site"], &facts["rack"]),
        (&"paris".into(), &7.into())
    );

    let managed = world.managed("where");
    world.repo.write(
        "roles/web.toml",
        &format!(
            "{}\n[[file]]\npath = \"{}\"\ncontent = \"{{{{ facts.site }}}} rack {{{{ facts.rack }}}}\\n\"\n",
            fs_err::read_to_string(world.repo.path.join("roles/web.toml")).unwrap(),
            managed.display()
        ),
    );
    world.repo.commit("a file from external facts");
    world.server.refresh();
    world.agent.run(&[]).expect_code(2);
    assert_eq!(world.read("where"), "paris rack 7\n");
}

#[test]
fn a_disabled_agent_refuses_to_run_saying_why_until_enabled() {
    let world = World::start();
    let disabled = agent(&world, &["disable", "kernel upgrade, OPS-12"]);
    disabled.expect_code(0);
    assert!(
        disabled
            .stdout
            .starts_with("runs are disabled: kernel upgrade, OPS-12 (by alice at "),
        "{}",
        disabled.stdout
    );
    let refused = world.agent.run(&[]);
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("runs are disabled: kernel upgrade, OPS-12 (by alice at "),
        "{}",
        refused.stderr
    );
    assert!(!world.managed("motd").exists(), "nothing converged");
    let enabled = agent(&world, &["enable"]);
    enabled.expect_code(0);
    assert!(
        enabled.stdout.contains("disabled by alice"),
        "{}",
        enabled.stdout
    );
    world.agent.run(&[]).expect_code(2);
    assert!(world.managed("motd").exists());
}

#[test]
fn tags_converge_only_the_tagged_resources_and_what_they_require() {
    let world = World::start();
    let web = fs_err::read_to_string(world.repo.path.join("roles/web.toml")).unwrap();
    let tagged = web.replace("mode = \"0640\"", "mode = \"0640\"\ntags = [\"app\"]");
    assert_ne!(tagged, web);
    world.repo.write("roles/web.toml", &tagged);
    world.repo.commit("tag the app's config");
    world.server.refresh();

    let run = world.agent.run(&["--tags", "app"]);
    run.expect_code(2);
    assert!(world.managed("etc/app.conf").exists());
    assert!(!world.managed("motd").exists(), "untagged: left alone");
    let report = world.server.latest_report("web-1");
    assert_eq!(report["tags"], serde_json::json!(["app"]), "{report:#}");

    let none = world.agent.run(&["--tags", "db"]);
    none.expect_code(1);
    assert!(
        none.stderr
            .contains("no resource of the catalog has the tag db")
            && none.stderr.contains("the catalog's tags are app"),
        "{}",
        none.stderr
    );
    world.agent.run(&[]).expect_code(2);
    assert!(world.managed("motd").exists());
}

#[test]
fn wait_for_lock_waits_for_the_run_that_holds_it() {
    let world = World::start();
    let lock = world.agent.state_dir.join("run.lock");
    fs_err::create_dir_all(&world.agent.state_dir).unwrap();
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "3"])
        .spawn()
        .expect("flock runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let refused = world.agent.run(&[]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("another run holds the lock"),
        "{}",
        refused.stderr
    );
    let started = Instant::now();
    world.agent.run(&["--wait-for-lock", "30"]).expect_code(2);
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited");
    holder.wait().unwrap();
}

#[test]
fn verbose_lists_unchanged_resources_and_debug_the_runs_steps() {
    let world = World::start();
    world.agent.run(&[]).expect_code(2);
    let quiet = world.agent.run(&[]);
    quiet.expect_code(0);
    assert!(
        !quiet.stdout.contains("unchanged file:"),
        "{}",
        quiet.stdout
    );
    let verbose = world.agent.run(&["--verbose"]);
    verbose.expect_code(0);
    assert!(
        verbose.stdout.contains("unchanged file:"),
        "{}",
        verbose.stdout
    );
    assert!(!verbose.stderr.contains("debug:"), "{}", verbose.stderr);
    let debug = world.agent.run(&["--debug"]);
    debug.expect_code(0);
    assert!(debug.stdout.contains("unchanged file:"), "{}", debug.stdout);
    for step in [
        "debug: took the run lock",
        "debug: gathered",
        "answered 304",
        "debug: report",
    ] {
        assert!(debug.stderr.contains(step), "{step}: {}", debug.stderr);
    }
}
