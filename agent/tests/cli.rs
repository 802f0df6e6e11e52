//! drover-agent driven through its command line: exit codes, apply, run
//! against a small in-process fake server, spooling, locking, signals.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_catalog::Spec;
use support::server::{Fake, serve};
use support::{BIN, Node, agent, catalog, prom_samples, promtool_check, text};

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    assert_eq!(agent(&["run", "--no-such-flag"]).status.code(), Some(64));
    assert_eq!(agent(&[]).status.code(), Some(64));
    assert_eq!(agent(&["--help"]).status.code(), Some(0));
}

#[test]
fn facts_prints_json() {
    let out = agent(&["facts"]);
    assert!(out.status.success(), "{}", text(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["os"]["family"], "linux");
    assert!(facts["hostname"].is_string());
}

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = agent(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in ["run", "apply", "facts", "disable", "enable"] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
    }
    // bash itself accepts the script
    let script = agent(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("drover-agent.bash");
    fs_err::write(&file, script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "{}", text(&syntax));
    let man = agent(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.contains(".TH drover-agent 1"), "{page}");
    assert!(page.contains("disable"), "{page}");
    assert_eq!(agent(&["completions", "tcsh"]).status.code(), Some(64));
}

#[test]
fn bad_config_key_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    fs_err::write(&config, "sever = \"http://x\"\n").unwrap();
    let out = agent(&["run", "--once", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("sever"), "{}", text(&out));
}

/// In `dir`: a compiled catalog managing `dir/motd` (contents embedded),
/// and `apply CATALOG --state-dir dir/state`; the target, the state dir and
/// the arguments.
fn motd_apply(dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    let target = dir.join("motd");
    let state = dir.join("state");
    let (mut cat, contents) = catalog("n1", &[(&target, b"hello\n")]);
    cat.embed_contents(contents.iter().map(|(sha, b)| (sha, &b[..])));
    let json = dir.join("catalog.json");
    fs_err::write(&json, serde_json::to_vec(&cat).unwrap()).unwrap();
    let args = [
        "apply",
        json.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    (target, state, args)
}

/// Plain lines open with their time; `--log-format json` makes every line
/// one JSON object with the message's fields (issue 18).
#[test]
fn plain_lines_carry_timestamps_and_json_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _, args) = motd_apply(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = agent(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stamped = |line: &str| {
        line.split_once(' ')
            .is_some_and(|(time, _)| time.parse::<jiff::Timestamp>().is_ok())
    };
    let change = stdout
        .lines()
        .find(|l| l.contains("changed file:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(stamped(change), "{change}");
    let summary = stdout
        .lines()
        .find(|l| l.contains("1 resources:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(stamped(summary), "{summary}");

    fs_err::write(&target, "drifted\n").unwrap();
    let mut as_json = args.to_vec();
    as_json.extend(["--log-format", "json"]);
    let out = agent(&as_json);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let change = lines
        .iter()
        .find(|l| l["resource"] == format!("file:{}", target.display()))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(change["status"], "changed", "{change}");
    assert_eq!(change["level"], "notice", "{change}");
    assert!(
        change["diff"].as_str().unwrap().contains("-drifted"),
        "{change}"
    );
    assert!(
        change["timestamp"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("1 resources:")),
        "{stdout}"
    );
}

#[test]
fn apply_compiled_catalog_then_noop_then_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (target, state, args) = motd_apply(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let out = agent(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("changed file:{}", target.display())),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("1 resources: 1 changed, 0 failed, 0 skipped in"));
    assert_eq!(fs_err::read(&target).unwrap(), b"hello\n");
    assert!(state.join("last_run.json").exists());

    assert_eq!(
        agent(&args).status.code(),
        Some(0),
        "second apply changes nothing"
    );

    fs_err::write(&target, "drifted\n").unwrap();
    let mut noop = args.to_vec();
    noop.push("--noop");
    let out = agent(&noop);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("would change") && text(&out).contains("-drifted\n+hello\n"),
        "{}",
        text(&out)
    );
    assert_eq!(
        fs_err::read(&target).unwrap(),
        b"drifted\n",
        "noop changes nothing"
    );

    let lock = fs_err::File::create(state.join("run.lock"))
        .unwrap()
        .into_file();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let out = agent(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("another run holds the lock"),
        "{}",
        text(&out)
    );
    drop(held);
    assert_eq!(
        agent(&args).status.code(),
        Some(2),
        "the drift is repaired once the lock is free"
    );
}

#[test]
fn apply_leaves_its_metrics_in_a_textfile_where_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (new, right) = (dir.path().join("new"), dir.path().join("right"));
    fs_err::write(&right, b"right\n").unwrap();
    let (mut cat, contents) = catalog("n1", &[(&new, b"new\n"), (&right, b"right\n")]);
    let version = cat.version.clone();
    cat.embed_contents(contents.iter().map(|(sha, b)| (sha, &b[..])));
    let json = dir.path().join("catalog.json");
    fs_err::write(&json, serde_json::to_vec(&cat).unwrap()).unwrap();
    let state = dir.path().join("state");
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "apply",
            json.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend(extra);
        agent(&args)
    };

    let before = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let out = apply(&[]);
    let after = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let textfile = state.join("drover-agent.prom");
    promtool_check(&textfile);
    let m = prom_samples(&textfile);
    let status = |s: &str| m[&format!("drover_agent_last_run_resources{{status=\"{s}\"}}")];
    assert_eq!(
        ["unchanged", "changed", "failed", "skipped", "noop"].map(status),
        [1.0, 1.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(m["drover_agent_last_run_exit_code"], 2.0);
    assert_eq!(m["drover_agent_last_run_success"], 1.0);
    assert_eq!(m["drover_agent_last_run_noop"], 0.0);
    assert_eq!(m["drover_agent_last_run_cached_catalog"], 0.0);
    assert_eq!(m["drover_agent_last_run_corrective_resources"], 0.0);
    let info = format!(
        "drover_agent_last_run_catalog_info{{version=\"{version}\",environment=\"production\",commit=\"abc\"}}"
    );
    assert_eq!(m.get(&info), Some(&1.0), "{m:?}");
    let at = m["drover_agent_last_run_timestamp_seconds"];
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    let phase =
        |p: &str| m[&format!("drover_agent_last_run_phase_duration_seconds{{phase=\"{p}\"}}")];
    let duration = m["drover_agent_last_run_duration_seconds"];
    assert_eq!(phase("facts"), 0.0, "a compiled catalog needs no facts");
    assert!(phase("catalog") > 0.0 && phase("apply") > 0.0, "{m:?}");
    assert!(phase("catalog") + phase("apply") <= duration, "{m:?}");
    let last: serde_json::Value =
        serde_json::from_slice(&fs_err::read(state.join("last_run.json")).unwrap()).unwrap();
    assert_eq!(last["resources"]["changed"], 1);
    let total_ms = last["durations_ms"]["total"].as_f64().unwrap();
    assert!(
        (total_ms / 1000.0 - duration).abs() < 1e-9,
        "{total_ms} ms, {duration} s"
    );

    // Moved by agent.toml: the noop run lands there, the state dir's file stays.
    let collector = dir.path().join("collector/drover-agent.prom");
    let config = dir.path().join("agent.toml");
    fs_err::write(
        &config,
        format!("metrics_textfile = \"{}\"\n", collector.display()),
    )
    .unwrap();
    let left = fs_err::read(&textfile).unwrap();
    fs_err::write(&new, b"drift\n").unwrap();
    let out = apply(&["--noop", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(fs_err::read(&textfile).unwrap(), left);
    promtool_check(&collector);
    let m = prom_samples(&collector);
    assert_eq!(m["drover_agent_last_run_noop"], 1.0);
    assert_eq!(m["drover_agent_last_run_resources{status=\"noop\"}"], 1.0);

    // A run that cannot happen still says so, with its duration.
    fs_err::write(&json, b"{ not a catalog").unwrap();
    let out = apply(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    promtool_check(&collector);
    let m = prom_samples(&collector);
    assert_eq!(m["drover_agent_last_run_exit_code"], 1.0);
    assert_eq!(m["drover_agent_last_run_success"], 0.0);
    assert!(m["drover_agent_last_run_duration_seconds"] > 0.0);
    assert!(!m.keys().any(|k| k.contains("catalog_info")), "{m:?}");

    // "" turns it off.
    fs_err::remove_file(&collector).unwrap();
    fs_err::write(&config, "metrics_textfile = \"\"\n").unwrap();
    let out = apply(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!collector.exists());
    assert_eq!(fs_err::read(&textfile).unwrap(), left);
}

#[test]
fn apply_repository_directory() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let target = dir.path().join("out.txt");
    fs_err::create_dir_all(repo.join("roles")).unwrap();
    fs_err::write(
        repo.join("nodes.toml"),
        "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n",
    )
    .unwrap();
    let role = format!(
        "[[file]]\npath = \"{}\"\ncontent = \"node {{{{ node }}}}\\n\"\n",
        target.display()
    );
    fs_err::write(repo.join("roles/base.toml"), role).unwrap();
    let facts = dir.path().join("facts.json");
    fs_err::write(&facts, r#"{"os": {"id": "debian"}}"#).unwrap();
    let state = dir.path().join("state");
    let out = agent(&[
        "apply",
        repo.to_str().unwrap(),
        "--node",
        "web-1",
        "--facts",
        facts.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(fs_err::read_to_string(&target).unwrap(), "node web-1\n");
}

#[test]
fn run_once_fetches_caches_falls_back_and_spools_in_order() {
    let node = Node::new();
    let target = node.path("app.conf");
    let state = node.state.clone();
    let (cat, contents) = catalog("n1", &[(&target, b"v1\n")]);
    let version = cat.version.clone();
    let fake = Arc::new(Mutex::new(Fake {
        catalog: Some(cat),
        contents,
        token: Some("s3cret".into()),
        ..Fake::new()
    }));
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret\n");
    let run = |extra: &[&str]| {
        let mut args = vec!["--enrollment-token-file", token.as_str()];
        args.extend(extra);
        node.run(&server.url, &args)
    };

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(fs_err::read(&target).unwrap(), b"v1\n");
    assert!(
        state.join("catalog.signed").exists(),
        "a clean fresh run caches the signed catalog"
    );
    {
        let f = fake.lock().unwrap();
        assert_eq!(f.reports.len(), 1);
        let metrics = &f.reports[0]["metrics"];
        assert_eq!(metrics["resources"]["changed"], 1, "{metrics}");
        assert_eq!(metrics["resources"]["total"], 1, "{metrics}");
        let ms = |phase: &str| metrics[phase].as_f64().unwrap();
        for phase in ["facts_ms", "catalog_ms", "apply_ms"] {
            assert!(ms(phase) > 0.0, "{phase} in {metrics}");
        }
        assert!(
            ms("facts_ms") + ms("catalog_ms") + ms("apply_ms") <= ms("duration_ms"),
            "{metrics}"
        );
    }
    let textfile = state.join("drover-agent.prom");
    promtool_check(&textfile);
    let m = prom_samples(&textfile);
    assert_eq!(m["drover_agent_last_run_exit_code"], 2.0);
    assert_eq!(m["drover_agent_last_run_cached_catalog"], 0.0);

    // Unchanged catalog: 304 and nothing to do.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fake.lock().unwrap().if_none_match.last().unwrap(),
        &Some(format!("\"{version}\""))
    );

    // Server down: the cached catalog is applied, with content from the
    // agent's content store, and the report is spooled.
    fake.lock().unwrap().down = true;
    fs_err::remove_file(&target).unwrap();
    let out = run(&[]);
    // Converged from the cache (2), and failed (4): no fresh catalog.
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains("applied the cached catalog") && text(&out).contains("this run fails"),
        "{}",
        text(&out)
    );
    assert_eq!(fs_err::read(&target).unwrap(), b"v1\n");
    let spooled: Vec<_> = fs_err::read_dir(state.join("spool"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(spooled.len(), 1, "{}", text(&out));
    let spooled: serde_json::Value =
        serde_json::from_slice(&fs_err::read(spooled[0].path()).unwrap()).unwrap();
    assert_eq!(spooled["metrics"]["resources"]["changed"], 1, "{spooled}");
    let m = prom_samples(&textfile);
    assert_eq!(m["drover_agent_last_run_cached_catalog"], 1.0);
    assert_eq!(m["drover_agent_last_run_success"], 0.0);
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));

    // Back up: the two spooled reports go first, oldest first, then this run's.
    fake.lock().unwrap().down = false;
    fs_err::write(&target, b"drift\n").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let f = fake.lock().unwrap();
    assert_eq!(f.reports.len(), 5, "two posted, two spooled, one posted");
    assert_eq!(f.reports[2]["cached_catalog"], "on_failure");
    assert_eq!(f.reports[2]["metrics"]["resources"]["changed"], 1);
    assert_eq!(f.reports[2]["resources"][0]["corrective"], true);
    assert!(f.reports[2]["error"].as_str().unwrap().contains("503"));
    let at = |i: usize| {
        f.reports[i]["started_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    assert!(at(2) < at(3), "spooled reports are delivered oldest first");
    assert_eq!(f.reports[4]["cached_catalog"], "not_used");
    assert_eq!(
        f.reports[4]["resources"][0]["corrective"], true,
        "same spec as cached: drift repair"
    );
    let left: Vec<_> = fs_err::read_dir(state.join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .collect();
    assert!(left.is_empty());
}

#[test]
fn run_once_without_server_or_cache_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let state = dir.path().join("state");
    let out = agent(&[
        "run",
        "--once",
        "--insecure-http",
        "--server",
        &url,
        "--node",
        "n1",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("cannot reach the server at {url}")),
        "{}",
        text(&out)
    );
    let textfile = state.join("drover-agent.prom");
    promtool_check(&textfile);
    let m = prom_samples(&textfile);
    assert_eq!(m["drover_agent_last_run_exit_code"], 1.0);
    assert_eq!(m["drover_agent_last_run_success"], 0.0);
    assert!(m["drover_agent_last_run_duration_seconds"] > 0.0, "{m:?}");
    assert!(!m.keys().any(|k| k.contains("catalog_info")), "{m:?}");
}

#[test]
fn daemon_stops_on_sigterm_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--insecure-http",
            "--server",
            "http://127.0.0.1:9",
            "--node",
            "n1",
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_finishes_the_current_resource_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (mut cat, contents) = catalog("n1", &[(&a, b"a\n"), (&b, b"b\n")]);
    if let Spec::File(f) = &mut cat.resources[0].spec {
        f.validate = Some("sleep 1".into());
    }
    cat.embed_contents(contents.iter().map(|(sha, b)| (sha, &b[..])));
    let json = dir.path().join("catalog.json");
    fs_err::write(&json, serde_json::to_vec(&cat).unwrap()).unwrap();
    let state = dir.path().join("state");
    let child = Command::new(BIN)
        .args([
            "apply",
            json.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert_eq!(
        fs_err::read(&a).unwrap(),
        b"a\n",
        "the current resource finished"
    );
    assert!(!b.exists(), "the rest was skipped");
    assert!(
        text(&out).contains("run interrupted: the agent is stopping"),
        "{}",
        text(&out)
    );
    let last: serde_json::Value =
        serde_json::from_slice(&fs_err::read(state.join("last_run.json")).unwrap()).unwrap();
    assert_eq!(last["error"], "run interrupted: the agent is stopping");
}

/// Issue 16, item 12: a state directory that cannot take the catalog (here a
/// directory squats `catalog.signed`, as a full disk would fail its write)
/// must not lose the run's report, and the exit code says both what the run
/// did (2, changed) and that something failed after it (4).
#[test]
fn a_catalog_that_cannot_be_cached_still_reports_and_fails_honestly() {
    let node = Node::new();
    let target = node.path("app.conf");
    let (cat, contents) = catalog("n1", &[(&target, b"v1\n")]);
    let fake = Arc::new(Mutex::new(Fake {
        catalog: Some(cat),
        contents,
        token: Some("s3cret".into()),
        ..Fake::new()
    }));
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret\n");
    fs_err::create_dir_all(node.state.join("catalog.signed/squat")).unwrap();
    let out = node.run(&server.url, &["--enrollment-token-file", token.as_str()]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains("cannot cache the catalog in"),
        "{}",
        text(&out)
    );
    assert_eq!(fs_err::read(&target).unwrap(), b"v1\n");
    let f = fake.lock().unwrap();
    assert_eq!(f.reports.len(), 1, "the run's report reached the server");
    assert_eq!(f.reports[0]["metrics"]["resources"]["changed"], 1);
}
