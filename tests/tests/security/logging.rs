//! A server whose stderr cannot be written keeps serving: the log lines it
//! cannot write are dropped and counted in `drover_log_lines_dropped_total`.
//! Before, the first failed write panicked in tracing-subscriber's
//! `eprintln!` fallback and `panic = "abort"` killed the server.

use std::process::Stdio;

use drover_tests::{Agent, GitRepo, Server};

/// The server's dropped-line counter, read over its `/metrics` route.
fn dropped(server: &Server) -> u64 {
    let (status, body) = server.request("GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    let text = body.as_str().expect("metrics are text");
    text.lines()
        .find_map(|l| l.strip_prefix("drover_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no drover_log_lines_dropped_total in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Starts a server with `stderr`, enrolls and converges two nodes (each
/// enrollment logs a line), and checks it served them all and counted drops.
fn serves_with_unwritable_log(stderr: Stdio, tag: &str) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("drover-log-{tag}-"))
        .tempdir()
        .unwrap();
    let repo = GitRepo::init(&tmp.path().join("repo"));
    let root = tmp.path().join("managed");
    repo.write(
        "nodes.toml",
        "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n",
    )
    .write(
        "roles/base.toml",
        &format!(
            "[[file]]\npath = \"{}/{{{{ node }}}}\"\ncontent = \"hello\\n\"\n",
            root.display()
        ),
    );
    repo.commit("one file per node");
    fs_err::create_dir_all(&root).unwrap();
    // Startup logs (the CA, the certificate, the limits) already fail here.
    let server = Server::start_with_stderr(
        &repo.path,
        &tmp.path().join("server"),
        "127.0.0.1:0",
        "",
        &[],
        stderr,
    );
    let before = dropped(&server);
    assert!(before > 0, "startup logged nothing that was dropped");
    for node in ["web-1", "web-2"] {
        let agent = Agent::new(node, &server, &tmp.path().join(format!("agent-{node}")));
        let out = agent.run(&[]);
        out.expect_code(2);
        assert_eq!(
            fs_err::read_to_string(root.join(node)).unwrap(),
            "hello\n",
            "{node} was not converged"
        );
    }
    // Each enrollment logged "certificate request signed", and was dropped.
    let after = dropped(&server);
    assert!(after >= before + 2, "dropped {before}, then {after}");
}

#[test]
fn a_server_with_stderr_on_a_full_disk_keeps_serving() {
    let full = fs_err::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    serves_with_unwritable_log(Stdio::from(full.into_parts().0), "full");
}

#[test]
fn a_server_whose_log_reader_exited_keeps_serving() {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    serves_with_unwritable_log(Stdio::from(write), "pipe");
}

/// A server of an empty repository whose server.toml also holds `extra`,
/// logging to DATA/server.log.
fn logging_server(extra: &str) -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(&tmp.path().join("repo"));
    repo.write("nodes.toml", "[[node]]\nmatch = \"*\"\nroles = []\n");
    repo.commit("empty");
    let server = Server::start_with(
        &repo.path,
        &tmp.path().join("server"),
        "127.0.0.1:0",
        extra,
        &[],
    );
    (tmp, server)
}

/// A log file holds plain text: colour codes are for a terminal (issue 18).
#[test]
fn a_log_file_holds_no_colour_codes() {
    let (_tmp, server) = logging_server("");
    let (status, _) = server.request("GET", "/api/v1/nodes", None);
    assert_eq!(status, 200);
    let log = server.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in the log file:\n{log}"
    );
}

/// `log_format = "json"`: every log line is one JSON object (issue 18).
#[test]
fn json_logs_parse_line_by_line() {
    let (_tmp, server) = logging_server("log_format = \"json\"\n");
    let (status, _) = server.request("GET", "/api/v1/nodes", None);
    assert_eq!(status, 200);
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(log.contains("\"message\":\"listening\""), "{log}");
}
