//! drover-agent driven through its command line: exit codes, apply, run
//! against a small in-process fake server, spooling, locking, signals.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_catalog::Spec;
use support::server::{Fake, serve};
use support::{BIN, Node, agent, catalog, text};

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
fn bad_config_key_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    fs_err::write(&config, "sever = \"http://x\"\n").unwrap();
    let out = agent(&["run", "--once", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("sever"), "{}", text(&out));
}

#[test]
fn apply_compiled_catalog_then_noop_then_lock() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("motd");
    let state = dir.path().join("state");
    let (mut cat, contents) = catalog("n1", &[(&target, b"hello\n")]);
    cat.embed_contents(contents.iter().map(|(sha, b)| (sha, &b[..])));
    let json = dir.path().join("catalog.json");
    fs_err::write(&json, serde_json::to_vec(&cat).unwrap()).unwrap();
    let args = [
        "apply",
        json.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];

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
    assert_eq!(fake.lock().unwrap().reports.len(), 1);

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
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(fs_err::read(&target).unwrap(), b"v1\n");
    let spooled: Vec<_> = fs_err::read_dir(state.join("spool"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(spooled.len(), 1, "{}", text(&out));
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Back up: the two spooled reports go first, oldest first, then this run's.
    fake.lock().unwrap().down = false;
    fs_err::write(&target, b"drift\n").unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let f = fake.lock().unwrap();
    assert_eq!(f.reports.len(), 5, "two posted, two spooled, one posted");
    assert_eq!(f.reports[2]["cached_catalog"], "on_failure");
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
