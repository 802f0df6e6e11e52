//! Enrollment, pinning, revocation, renewal and signed catalogs, with the
//! real server, the real agent and the `ca` commands.

use std::time::Duration;

use drover_tests::{Agent, Server, report_list, toml_str};

use crate::Fleet;

/// An agent for `node` whose agent.toml is `config` (no token unless it says so).
fn agent_with(fleet: &Fleet, node: &str, config: &str) -> Agent {
    let agent = fleet.agent(node);
    fs_err::write(&agent.config, config).unwrap();
    agent
}

fn report_count(server: &Server, node: &str) -> usize {
    let (status, list) = server.request("GET", &format!("/api/v1/nodes/{node}/reports"), None);
    if status == 404 {
        return 0;
    }
    report_list(&list).len()
}

#[test]
fn without_a_token_the_node_waits_for_an_operator_to_sign() {
    let fleet = Fleet::start();
    let ca = toml_str(&fleet.server.ca_file());
    let agent = agent_with(
        &fleet,
        "web-1",
        &format!("ca_file = {ca}\nwait_for_cert_secs = 0\n"),
    );

    let out = agent.run(&[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("drover-server ca sign web-1"),
        "the agent says what the operator must do: {}",
        out.stderr
    );
    let list = fleet.server.admin(&["ca", "list"]);
    list.expect_code(0);
    assert!(list.stdout.contains("web-1"), "{}", list.stdout);
    assert!(!fleet.managed("web-1", "secret").exists());

    // Signed while the agent polls: the same run goes on and converges.
    let waiting = agent_with(
        &fleet,
        "web-1",
        &format!("ca_file = {ca}\nwait_for_cert_secs = 60\n"),
    );
    let signer = {
        let data_dir = fleet.server.data_dir().to_owned();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            std::process::Command::new(drover_tests::bin("drover-server"))
                .args(["ca", "sign", "web-1", "--data-dir"])
                .arg(data_dir)
                .output()
                .unwrap()
        })
    };
    waiting.run(&[]).expect_code(2);
    let signed = signer.join().unwrap();
    assert!(signed.status.success(), "{signed:?}");
    assert_eq!(
        fs_err::read_to_string(fleet.managed("web-1", "secret")).unwrap(),
        format!("{}\n", crate::secret_of("web-1"))
    );
}

#[test]
fn a_wrong_enrollment_token_is_refused() {
    let fleet = Fleet::start();
    let token = fleet.tmp.path().join("wrong-token");
    fs_err::write(&token, "not-the-token-0123456789\n").unwrap();
    let agent = agent_with(
        &fleet,
        "web-1",
        &format!(
            "ca_file = {}\nenrollment_token_file = {}\n",
            toml_str(&fleet.server.ca_file()),
            toml_str(&token)
        ),
    );
    let out = agent.run(&[]);
    out.expect_code(1);
    assert!(out.stderr.contains("403"), "{}", out.stderr);
    assert!(!agent.state_dir.join("tls/cert.pem").exists());
}

#[test]
fn a_revoked_node_is_refused_at_its_next_run_without_a_server_restart() {
    let fleet = Fleet::start();
    let agent = fleet.enrolled("web-1");
    agent.run(&[]).expect_code(0);
    let before = report_count(&fleet.server, "web-1");
    let pid = fleet.server.pid();

    let out = fleet.server.admin(&["ca", "revoke", "web-1"]);
    out.expect_code(0);
    let out = agent.run(&[]);
    // It converges from its cache, and the run fails (issue 18: it was 0).
    out.expect_code(4);
    assert!(
        out.stderr.to_lowercase().contains("revoked"),
        "the agent is told its certificate is revoked: {}",
        out.stderr
    );
    assert_eq!(fleet.server.pid(), pid, "the server was not restarted");
    assert_eq!(
        report_count(&fleet.server, "web-1"),
        before,
        "the revoked node stored nothing"
    );
    let spool = agent.state_dir.join("spool");
    assert!(
        fs_err::read_dir(&spool).map(|d| d.count()).unwrap_or(0) > 0,
        "its report waits in the spool"
    );
}

#[test]
fn a_tampered_cached_catalog_is_refused() {
    let fleet = Fleet::start();
    let mut fleet = fleet;
    let agent = fleet.enrolled("web-1");
    let cache = agent.state_dir.join("catalog.signed");
    let original = fs_err::read(&cache).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    assert!(text.contains("/secret"), "{text}");
    // Still valid JSON, still a catalog, pointing the secret somewhere else.
    fs_err::write(&cache, text.replacen("/secret", "/secreT", 1)).unwrap();

    fleet.server.stop();
    let out = agent.run(&[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("changed after the server signed it"),
        "{}",
        out.stderr
    );
    assert!(!fleet.managed("web-1", "secreT").exists());

    fleet.server.restart();
    agent.run(&[]).expect_code(0);
    assert_eq!(
        fs_err::read(&cache).unwrap(),
        original,
        "a fresh signed copy replaced it"
    );
}

#[test]
fn certificates_are_renewed_before_they_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = Fleet::start();
    let server = Server::start_with(
        &fleet.repo.path,
        &tmp.path().join("server"),
        "127.0.0.1:0",
        "cert_lifetime_days = 1\n",
        &[],
    );
    let agent = Agent::new("web-1", &server, &tmp.path().join("agent"));
    let mut config = server.agent_config();
    config.push_str("renew_before_days = 2\n");
    fs_err::write(&agent.config, config).unwrap();

    agent.run(&[]).expect_code(2);
    let first = fs_err::read(agent.state_dir.join("tls/cert.pem")).unwrap();
    let out = agent.run(&[]);
    out.expect_code(0);
    let second = fs_err::read(agent.state_dir.join("tls/cert.pem")).unwrap();
    assert_ne!(
        first, second,
        "renewed within a day of expiry: {}",
        out.stderr
    );
    // The renewed certificate is the one that works now.
    agent.run(&[]).expect_code(0);
    assert_eq!(report_count(&server, "web-1"), 3);
}

#[test]
fn the_ca_is_pinned_on_first_use_and_checked_against_its_fingerprint() {
    let fleet = Fleet::start();
    let mut fleet = fleet;
    let token = toml_str(&fleet.server.enrollment_token_file());
    let wrong = agent_with(
        &fleet,
        "web-1",
        &format!(
            "enrollment_token_file = {token}\nca_fingerprint = \"{}\"\n",
            "ab".repeat(32)
        ),
    );
    let out = wrong.run(&[]);
    out.expect_code(1);
    assert!(out.stderr.contains("fingerprint"), "{}", out.stderr);
    assert!(!wrong.state_dir.join("tls/cert.pem").exists());

    let right = agent_with(
        &fleet,
        "web-1",
        &format!(
            "enrollment_token_file = {token}\nca_fingerprint = \"{}\"\n",
            ca_fingerprint(&fleet.server)
        ),
    );
    right.run(&[]).expect_code(2);
    assert_eq!(
        fs_err::read(right.state_dir.join("tls/ca.pem")).unwrap(),
        fs_err::read(fleet.server.ca_file()).unwrap()
    );

    // Another server (another CA) at the same address gets nothing from it.
    let addr = fleet.server.addr.to_string();
    fleet.server.stop();
    let impostor_dir = fleet.tmp.path().join("impostor");
    let impostor = Server::start_on(&fleet.repo.path, &impostor_dir, &addr);
    let out = right.run(&[]);
    assert!(
        out.stderr.contains("enrolled with") || out.stderr.contains("not the one"),
        "{}",
        out.stderr
    );
    let list = impostor.admin(&["ca", "list"]);
    assert!(!list.stdout.contains("web-1"), "{}", list.stdout);
    assert!(!impostor.log().contains("web-1"), "{}", impostor.log());
}

/// sha256 of the server CA's DER, as hex.
fn ca_fingerprint(server: &Server) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let pem = fs_err::read_to_string(server.ca_file()).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    hex::encode(sha2::Sha256::digest(&der))
}

#[test]
fn plain_http_needs_the_insecure_flag_on_both_sides_and_loopback() {
    let fleet = Fleet::start();
    let out = std::process::Command::new(drover_tests::bin("drover-server"))
        .args([
            "serve",
            "--insecure-http",
            "--listen",
            "0.0.0.0:0",
            "--repo",
        ])
        .arg(&fleet.repo.path)
        .arg("--data-dir")
        .arg(fleet.tmp.path().join("insecure-public"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only on a loopback"),
        "{out:?}"
    );

    let server = Server::start_with(
        &fleet.repo.path,
        &fleet.tmp.path().join("insecure"),
        "127.0.0.1:0",
        "",
        &["--insecure-http"],
    );
    assert!(server.url.starts_with("http://"), "{}", server.url);
    let agent = Agent::new("web-1", &server, &fleet.tmp.path().join("agent-insecure"));
    let out = agent.run(&[]);
    out.expect_code(1);
    assert!(out.stderr.contains("insecure"), "{}", out.stderr);
    agent.run(&["--insecure-http"]).expect_code(2);
}
