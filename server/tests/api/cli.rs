//! The binary: a real port, SIGTERM, and the compile/check commands.

use super::*;

#[tokio::test]
async fn the_binary_listens_on_a_real_port_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let config = tmp.path().join("server.toml");
    write(
        tmp.path(),
        &[("server.toml", "refresh_interval_secs = 5\n")],
    );
    // Plain HTTP keeps this test about the port and the signal (the TLS
    // listener has its own tests in ca/listener.rs).
    let mut child = bin()
        .args([
            "serve",
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--repo",
        ])
        .arg(&repo)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("drover-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

#[test]
fn compile_and_check_commands_report_errors_with_locations() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let out = bin()
        .args(["compile", "--node", "web-1", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        catalog["contents"][sha(b"hi\n")],
        "aGkK",
        "contents embedded as base64"
    );
    let out = bin()
        .args(["compile", "--no-contents", "--node", "web-1", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(catalog.get("contents").is_none());
    let ok = bin().args(["check", "--repo"]).arg(&repo).status().unwrap();
    assert_eq!(ok.code(), Some(0));

    write(
        &repo,
        &[(
            "roles/base.toml",
            "[[file]]\npath = \"/x\"\nsource = \"files/none\"\n",
        )],
    );
    let out = bin()
        .args(["compile", "--node", "web-1", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("roles/base.toml:"), "{stderr}");
    let facts_dir = tmp.path().join("facts");
    write(&facts_dir, &[("web-1.json", "{\"hostname\": \"web-1\"}")]);
    let out = bin()
        .args(["check", "--repo"])
        .arg(&repo)
        .arg("--facts-dir")
        .arg(&facts_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("roles/base.toml:"));

    let usage = bin().args(["compile", "--bogus"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(64));
    assert_eq!(bin().arg("--help").output().unwrap().status.code(), Some(0));

    write(tmp.path(), &[("bad.toml", "listne = \"x\"\n")]);
    let out = bin()
        .args(["serve", "--config"])
        .arg(tmp.path().join("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listne"));
    let out = bin()
        .args(["serve", "--config"])
        .arg(tmp.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an explicit config file must exist"
    );
}

/// `check` lists every error of a file, each at its place, and refuses a
/// package `ensure` that is neither a word it knows nor a version (issue 18).
#[test]
fn check_lists_every_error_of_a_file_and_refuses_a_misspelt_ensure() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let ok = bin().args(["check", "--repo"]).arg(&repo).output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(said.contains("node(s) compiled"), "{said}");
    write(
        &repo,
        &[(
            "roles/base.toml",
            "[[file]]\npath = \"/etc/a\"\nmode = \"999\"\ncontent = \"x\"\n\n\
             [[package]]\nname = \"nginx\"\nensure = \"instaled\"\n\n\
             [[file]]\npath = \"relative\"\ncontent = \"y\"\n",
        )],
    );
    let out = bin().args(["check", "--repo"]).arg(&repo).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for place in [
        "roles/base.toml:3:8:",
        "roles/base.toml:8:10:",
        "roles/base.toml:11:8:",
    ] {
        assert!(stderr.contains(place), "{place} in\n{stderr}");
    }
    assert!(stderr.contains("`instaled`"), "{stderr}");
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

/// `check --fleet` compiles the repository for every node the server knows,
/// with the facts each last sent, read from the server's database: a branch
/// that breaks a real node fails before it is merged (issue 18).
#[tokio::test]
async fn check_fleet_compiles_for_every_known_node_with_its_stored_facts() {
    let cx = super::TestContext::directory().await;
    assert_eq!(cx.catalog("web-1").await.0, axum::http::StatusCode::OK);
    let data = cx.repo.parent().unwrap().join("data");
    let fleet_check = |repo: &std::path::Path| {
        bin()
            .args(["check", "--fleet", "--repo"])
            .arg(repo)
            .arg("--data-dir")
            .arg(&data)
            .arg("--database")
            .arg(&cx.database_url)
            .output()
            .unwrap()
    };
    let out = fleet_check(&cx.repo);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("(1 node(s) compiled, "), "{stderr}");

    // A branch whose template needs a fact the real node never sent.
    let branch = cx.repo.parent().unwrap().join("branch");
    write(
        &branch,
        &[
            (
                "nodes.toml",
                "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n",
            ),
            (
                "roles/base.toml",
                "[[file]]\npath = \"/etc/dc\"\ncontent = \"{{ facts.datacenter.name }}\\n\"\n",
            ),
        ],
    );
    let plain = bin()
        .args(["check", "--repo"])
        .arg(&branch)
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(0), "no node: nothing to find");
    let out = fleet_check(&branch);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("web-1") && stderr.contains("roles/base.toml:"),
        "{stderr}"
    );

    // Without a server database, --fleet says where it looked.
    let out = bin()
        .args(["check", "--fleet", "--repo"])
        .arg(&cx.repo)
        .arg("--data-dir")
        .arg(cx.repo.parent().unwrap().join("nowhere"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no server database at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cx.stop().await;
}
