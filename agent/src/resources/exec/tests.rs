//! Real commands on this host, in temp dirs.

use std::collections::BTreeSet;
use std::time::Instant;

use super::*;
use crate::resources::testing::MapSource;

fn exec(command: Command) -> ExecSpec {
    ExecSpec {
        name: "test".into(),
        command,
        cwd: None,
        env: BTreeMap::new(),
        user: None,
        creates: None,
        unless: None,
        onlyif: None,
        refreshonly: false,
        timeout_secs: None,
    }
}

fn sh(script: &str) -> Command {
    Command::Shell(script.to_owned())
}

fn run_with(spec: &ExecSpec, flags: Flags) -> Result<Outcome> {
    let source = MapSource::default();
    let mut env = Env::new(&source, PathBuf::from("/nonexistent"), BTreeSet::new());
    converge(spec, &mut env, flags)
}

fn run(spec: &ExecSpec) -> Result<Outcome> {
    run_with(spec, Flags::default())
}

fn message(out: &Outcome) -> &str {
    out.events[0].message.as_deref().unwrap_or("")
}

/// A killed process dies when it is next scheduled; allow a loaded machine
/// a moment for that.
fn process_gone_soon(pid: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !process_gone(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A process is gone once it is not in /proc or only a zombie waiting for init.
fn process_gone(pid: &str) -> bool {
    match fs_err::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn argv_runs_directly_and_is_reported_like_puppet() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("made by argv");
    let spec = exec(Command::Argv(vec![
        "touch".into(),
        marker.to_string_lossy().into_owned(),
    ]));
    let out = run(&spec).unwrap();
    assert!(marker.exists());
    let e = &out.events[0];
    assert_eq!(
        (
            e.property.as_str(),
            e.previous.as_deref(),
            e.desired.as_deref()
        ),
        ("returns", Some("notrun"), Some("0"))
    );
    assert_eq!(e.message, None, "no output, no message");
}

#[test]
fn shell_output_is_interleaved_through_one_pipe() {
    let out = run(&exec(sh("echo one; echo two >&2; echo three"))).unwrap();
    assert_eq!(message(&out), "one\ntwo\nthree");
}

#[test]
fn nonzero_exit_fails_with_status_and_output() {
    let err = run(&exec(sh("echo broken config; exit 3"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "command exited with status 3\noutput:\nbroken config"
    );
    let mut secret = exec(sh("echo s3cret; exit 1"));
    secret.name = "secret".into();
    let flags = Flags {
        sensitive: true,
        ..Flags::default()
    };
    let err = run_with(&secret, flags).unwrap_err().to_string();
    assert!(
        !err.contains("s3cret") && err.contains("output hidden"),
        "{err}"
    );
    let missing = exec(Command::Argv(vec!["no-such-program-drover".into()]));
    let err = run(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with("cannot run `no-such-program-drover` in /: "),
        "{err}"
    );
}

#[test]
fn creates_skips_when_the_path_exists() {
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made");
    let mut spec = exec(sh(&format!("echo x > '{}'", made.display())));
    spec.creates = Some(made.to_string_lossy().into_owned());
    assert!(run(&spec).unwrap().changed());
    fs_err::write(&made, "by hand").unwrap();
    assert!(!run(&spec).unwrap().changed(), "second run changes nothing");
    assert_eq!(fs_err::read_to_string(&made).unwrap(), "by hand");
}

#[test]
fn unless_skips_when_it_succeeds_and_onlyif_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let command = sh(&format!("echo run >> '{}'", count.display()));
    let runs = || {
        fs_err::read_to_string(&count)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let mut unless = exec(command.clone());
    unless.unless = Some(Command::Argv(vec!["true".into()]));
    assert!(!run(&unless).unwrap().changed());
    unless.unless = Some(sh("exit 1"));
    assert!(run(&unless).unwrap().changed());
    assert_eq!(runs(), 1);

    let mut onlyif = exec(command);
    onlyif.onlyif = Some(Command::Argv(vec!["false".into()]));
    assert!(!run(&onlyif).unwrap().changed());
    onlyif.onlyif = Some(sh("test -e '/'"));
    assert!(run(&onlyif).unwrap().changed());
    assert_eq!(runs(), 2);
}

#[test]
fn refreshonly_runs_only_on_a_real_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("refreshed");
    let mut spec = exec(sh(&format!("touch '{}'", marker.display())));
    spec.refreshonly = true;
    let with = |noop, refresh| Flags {
        noop,
        sensitive: false,
        refresh,
    };
    assert!(!run_with(&spec, with(false, false)).unwrap().changed());
    let simulated = run_with(&spec, with(true, true)).unwrap();
    assert!(
        message(&simulated).starts_with("would run"),
        "{simulated:?}"
    );
    assert!(run_with(&spec, with(true, true)).unwrap().changed());
    assert!(
        !marker.exists(),
        "neither a simulated refresh nor noop runs it"
    );
    assert!(run_with(&spec, with(false, true)).unwrap().changed());
    assert!(marker.exists());
}

#[test]
fn noop_evaluates_guards_but_never_runs_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let (guarded, ran) = (dir.path().join("guard ran"), dir.path().join("ran"));
    let mut spec = exec(sh(&format!("touch '{}'", ran.display())));
    spec.unless = Some(sh(&format!("touch '{}'; false", guarded.display())));
    let noop = Flags {
        noop: true,
        ..Flags::default()
    };
    let out = run_with(&spec, noop).unwrap();
    assert_eq!(out.events[0].desired.as_deref(), Some("0"));
    assert!(guarded.exists() && !ran.exists());
    spec.unless = Some(sh("true"));
    assert!(
        !run_with(&spec, noop).unwrap().changed(),
        "a guard that says done is unchanged in noop too"
    );
}

#[test]
fn environment_is_clean_and_cwd_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = exec(sh("pwd; env | sort"));
    spec.cwd = Some(dir.path().to_string_lossy().into_owned());
    spec.env = [("GREETING".to_owned(), "hello".to_owned())].into();
    let out = run(&spec).unwrap();
    let text = message(&out);
    let real = dir.path().canonicalize().unwrap();
    assert!(text.starts_with(&format!("{}\n", real.display())), "{text}");
    for wanted in [
        format!("PATH={PATH}"),
        "LANG=C".into(),
        "GREETING=hello".into(),
    ] {
        assert!(
            text.lines().any(|l| l == wanted),
            "{wanted} missing in {text}"
        );
    }
    assert!(
        !text.contains("CARGO"),
        "nothing leaks from the agent's environment: {text}"
    );
    spec.cwd = Some(dir.path().join("missing").to_string_lossy().into_owned());
    let err = run(&spec).unwrap_err().to_string();
    assert!(
        err.contains("does not exist or is not a directory"),
        "{err}"
    );
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    let mut spec = exec(sh(&format!(
        "sleep 1000 & echo $! > '{}'; echo waiting; wait",
        pidfile.display()
    )));
    spec.timeout_secs = Some(1);
    let started = Instant::now();
    let err = run(&spec).unwrap_err().to_string();
    assert_eq!(
        err,
        "timed out after 1 s; process group killed\noutput:\nwaiting"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    let grandchild = fs_err::read_to_string(&pidfile).unwrap();
    assert!(
        process_gone_soon(grandchild.trim()),
        "grandchild {grandchild} survived"
    );
}

#[test]
fn timeout_escalates_to_sigkill_for_a_group_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    let mut spec = exec(sh(&format!(
        "trap '' TERM; sleep 1000 & echo $! > '{}'; wait",
        pidfile.display()
    )));
    spec.timeout_secs = Some(1);
    let started = Instant::now();
    let err = run(&spec).unwrap_err().to_string();
    assert!(
        err.starts_with("timed out after 1 s; process group killed"),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "SIGKILL after the grace"
    );
    let grandchild = fs_err::read_to_string(&pidfile).unwrap();
    assert!(
        process_gone_soon(grandchild.trim()),
        "grandchild {grandchild} survived"
    );
}

#[test]
fn output_is_bounded_to_its_tail() {
    let out = run(&exec(sh(
        "head -c 100000 /dev/zero | tr '\\0' x; echo; echo end",
    )))
    .unwrap();
    let text = message(&out);
    let dropped = 100_000 + 5 - process::OUTPUT_LIMIT;
    assert!(
        text.starts_with(&format!("[{dropped} earlier bytes of output dropped]\nxxx")),
        "{}",
        &text[..80]
    );
    assert!(text.ends_with("x\nend"));
}

#[test]
fn a_background_child_holding_the_pipe_does_not_hang_the_run() {
    let started = Instant::now();
    let out = run(&exec(sh("sleep 30 & echo $!"))).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let pid = message(&out).trim().to_owned();
    assert!(
        !process_gone(&pid),
        "a clean exit leaves its background child alone"
    );
    let pid = nix::unistd::Pid::from_raw(pid.parse().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn user_runs_with_its_uid_groups_and_home() {
    let nobody = User::from_name("nobody").unwrap().expect("nobody exists");
    if !Uid::effective().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let mut spec = exec(sh("id -u; id -g; id -G; echo $HOME $USER $LOGNAME"));
    spec.user = Some("nobody".into());
    let out = run(&spec).unwrap();
    let c_name = std::ffi::CString::new("nobody").unwrap();
    let groups: Vec<String> = nix::unistd::getgrouplist(&c_name, nobody.gid)
        .unwrap()
        .iter()
        .map(|g| g.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lines: Vec<&str> = message(&out).lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string());
    assert_eq!(lines[1], nobody.gid.to_string());
    let mut seen: Vec<&str> = lines[2].split(' ').collect();
    seen.sort_unstable();
    seen.dedup();
    let mut want: Vec<&str> = groups.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(seen, want, "supplementary groups are nobody's, not root's");
    assert_eq!(lines[3], format!("{} nobody nobody", nobody.dir.display()));

    spec.user = Some("no-such-user-drover".into());
    let err = run(&spec).unwrap_err().to_string();
    assert!(
        err.starts_with("unknown user `no-such-user-drover`"),
        "{err}"
    );
}
