//! The commands around the main loop: check, compile + masterless apply,
//! the daemon and its shutdown, usage errors.

use std::process::Command;
use std::time::{Duration, Instant};

use drover_tests::{apply, bin, report_list};

use crate::World;

fn run(cmd: &mut Command) -> drover_tests::Output {
    let out = cmd.output().expect("command runs");
    drover_tests::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn check_accepts_the_example_site_and_lists_every_error_of_a_broken_one() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let out = run(Command::new(bin("drover-server")).args([
        "check",
        "--repo",
        &format!("{examples}/site"),
        "--facts-dir",
        &format!("{examples}/facts"),
    ]));
    out.expect_code(0);
    assert!(out.stderr.contains("1 node(s) compiled"), "{}", out.stderr);

    let w = World::start();
    w.repo.write(
        "roles/base.toml",
        "[[file]]\npath = \"relative\"\nmode = \"0999\"\n",
    );
    let out = run(Command::new(bin("drover-server"))
        .args(["check", "--repo"])
        .arg(&w.repo.path));
    out.expect_code(1);
    assert!(out.stderr.contains("roles/base.toml:2:"), "{}", out.stderr);
    assert!(out.stderr.contains("roles/base.toml:3:"), "{}", out.stderr);
}

#[test]
fn compiled_catalog_applies_masterless_and_a_repo_directory_too() {
    let w = World::start();
    let out = run(Command::new(bin("drover-server"))
        .args(["compile", "--node", "web-1", "--repo"])
        .arg(&w.repo.path));
    out.expect_code(0);
    let catalog = w.tmp.path().join("catalog.json");
    fs_err::write(&catalog, &out.stdout).unwrap();

    let state = w.tmp.path().join("apply-state");
    apply(&[catalog.to_str().unwrap()], &state).expect_code(2);
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 8\n");
    apply(&[catalog.to_str().unwrap()], &state).expect_code(0);

    // The repository directory itself, compiled by the agent.
    fs_err::write(w.managed("etc/logo.txt"), "hand edit\n").unwrap();
    let repo = w.repo.path.to_str().unwrap();
    let out = apply(&[repo, "--node", "web-1", "--noop"], &state);
    out.expect_code(2);
    assert!(out.stdout.contains("-hand edit"), "{}", out.stdout);
    apply(&[repo, "--node", "web-1"], &state).expect_code(2);
    assert_eq!(w.read("etc/logo.txt"), "drover\n");
}

#[test]
fn a_catalog_with_contents_beside_it_applies_from_its_contents_dir() {
    let w = World::start();
    let contents = w.tmp.path().join("contents");
    let out = run(Command::new(bin("drover-server"))
        .args(["compile", "--node", "web-1", "--contents-dir"])
        .arg(&contents)
        .arg("--repo")
        .arg(&w.repo.path));
    out.expect_code(0);
    assert!(
        !out.stdout.contains("\"contents\": {\""),
        "nothing is embedded: {}",
        out.stdout
    );
    let catalog = w.tmp.path().join("catalog.json");
    fs_err::write(&catalog, &out.stdout).unwrap();
    let logo = drover_catalog::model::sha256_hex(b"drover\n");
    assert_eq!(fs_err::read(contents.join(&logo)).unwrap(), b"drover\n");

    // Without the directory, a content it needs is an error that says how.
    let state = w.tmp.path().join("apply-state");
    let out = apply(&[catalog.to_str().unwrap()], &state);
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.contains("--contents-dir") || out.stderr.contains("--contents-dir"),
        "{out:?}"
    );

    let dir = contents.to_str().unwrap();
    let args = [catalog.to_str().unwrap(), "--contents-dir", dir];
    apply(&args, &state).expect_code(2);
    assert_eq!(w.read("etc/logo.txt"), "drover\n");
    apply(&args, &state).expect_code(0);

    // A content whose bytes were changed in the directory is refused, not written.
    fs_err::write(contents.join(&logo), "tampered\n").unwrap();
    fs_err::write(w.managed("etc/logo.txt"), "hand edit\n").unwrap();
    let out = apply(&args, &state);
    out.expect_code(4);
    assert_eq!(w.read("etc/logo.txt"), "hand edit\n");
}

#[test]
fn daemon_runs_on_its_interval_and_stops_cleanly_on_sigterm() {
    let w = World::start();
    let config = w.tmp.path().join("agent.toml");
    let state = w.tmp.path().join("daemon-state");
    fs_err::write(
        &config,
        format!(
            "server = \"{}\"\nnode = \"web-1\"\nstate_dir = \"{}\"\ninterval_secs = 1\nsplay_secs = 0\n{}",
            w.server.url,
            state.display(),
            w.server.agent_config()
        ),
    )
    .unwrap();
    let mut daemon = KillOnDrop(
        Command::new(bin("drover-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, list) = w
            .server
            .request("GET", "/api/v1/nodes/web-1/reports?limit=10", None);
        if status == 200 && report_list(&list).len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not report twice: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(w.read("etc/app.conf"), "port = 8080\nworkers = 8\n");

    let pid = nix::unistd::Pid::from_raw(daemon.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// A child killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_server_on_the_same_sqlite_database_is_refused() {
    let w = World::start();
    let out = run(Command::new(bin("drover-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
        .arg(&w.repo.path)
        .arg("--data-dir")
        .arg(w.tmp.path().join("server")));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("in use by another drover-server (pid ")
            && out.stderr.contains("SQLite belongs to one server"),
        "{}",
        out.stderr
    );
    // The first server goes on serving.
    w.server.get_json("/api/v1/nodes");
}

#[test]
fn usage_errors_exit_64() {
    for binary in ["drover-agent", "drover-server"] {
        let out = run(Command::new(bin(binary)).arg("--no-such-flag"));
        out.expect_code(64);
        let out = run(Command::new(bin(binary)).arg("--help"));
        out.expect_code(0);
    }
    let out = run(Command::new(bin("drover-agent")).args([
        "run",
        "--once",
        "--config",
        "/nonexistent/agent.toml",
    ]));
    out.expect_code(1);
    assert!(
        out.stderr.contains("/nonexistent/agent.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn lookup_explains_every_level_tried_and_which_was_used() {
    let w = World::start();
    let facts = w.tmp.path().join("facts.json");
    fs_err::write(&facts, r#"{"os": {"id": "debian"}}"#).unwrap();
    let lookup = |key: &str| {
        run(Command::new(bin("drover-server"))
            .args(["lookup", key, "--node", "web-1", "--explain", "--repo"])
            .arg(&w.repo.path)
            .arg("--facts")
            .arg(&facts))
    };
    let out = lookup("workers");
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "8", "{}", out.stdout);
    assert_eq!(lines[1], "Searching for `workers`");
    assert_eq!(
        lines[2],
        "  data/nodes/web-1.toml (level \"nodes/{{ node }}\"): found 8  <= used"
    );
    assert!(
        out.stdout.contains(
            "  data/os/debian.toml (level \"os/{{ facts.os.id }}\"): not found: the file does not exist\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  data/common.toml (level \"common\"): found 2\n"),
        "{}",
        out.stdout
    );
    let missing = lookup("nothing");
    missing.expect_code(1);
    assert!(
        missing
            .stderr
            .contains("no level of the hierarchy has `nothing` for node `web-1`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_servers_completions_and_man_page_name_its_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(Command::new(bin("drover-server")).args(["completions", shell]));
        out.expect_code(0);
        for sub in ["serve", "check", "lookup", "node", "completions"] {
            assert!(out.stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
    let man = run(Command::new(bin("drover-server")).arg("man"));
    man.expect_code(0);
    assert!(man.stdout.contains(".TH drover-server 1"), "{}", man.stdout);
    assert!(man.stdout.contains("lookup"), "{}", man.stdout);
}
