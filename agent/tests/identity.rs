//! The agent's identity and trust, through its command line against fake
//! drover-servers over HTTPS: enrollment, pinning, redirects, signed
//! catalogs (fresh and cached), renewal, and plain HTTP only on loopback.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_catalog::signed;
use support::server::{Fake, Signature, serve, serve_plain};
use support::{Node, catalog, text};

/// A fake with a one-file catalog for n1 that autosigns token `s3cret`.
fn fake_for(node: &Node) -> Arc<Mutex<Fake>> {
    let (cat, contents) = catalog("n1", &[(&node.path("motd"), b"hello\n")]);
    Arc::new(Mutex::new(Fake {
        catalog: Some(cat),
        contents,
        token: Some("s3cret".into()),
        ..Fake::new()
    }))
}

fn mode(path: &std::path::Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn enrollment_with_a_token_pins_the_ca_and_the_signing_key() {
    let node = Node::new();
    let fake = fake_for(&node);
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret\n");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(fs_err::read(node.path("motd")).unwrap(), b"hello\n");
    let fingerprint = fake.lock().unwrap().ca.fingerprint();
    assert!(
        text(&out).contains("pinned the CA") && text(&out).contains(&fingerprint),
        "a first-use pin says what it pinned: {}",
        text(&out)
    );

    assert_eq!(mode(&node.state.join("tls")), 0o700);
    assert_eq!(mode(&node.tls("key.pem")), 0o600);
    let f = fake.lock().unwrap();
    assert_eq!(
        fs_err::read_to_string(node.tls("ca.pem")).unwrap(),
        f.ca.pem
    );
    assert_eq!(
        fs_err::read_to_string(node.tls("catalog-signing.pub"))
            .unwrap()
            .trim(),
        f.signing.public_key().to_base64()
    );
    assert_eq!(f.issued_to("n1"), 1);
    let posted: Vec<_> = f
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/certificate_requests/n1")
        .collect();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].authorization.as_deref(), Some("Bearer s3cret"));
    for r in f
        .requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/nodes/"))
    {
        assert_eq!(
            r.client.as_deref(),
            Some("n1"),
            "node routes over mTLS: {r:?}"
        );
    }
    drop(f);

    let before = fake.lock().unwrap().requests.len();
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("pinned"), "{}", text(&out));
    let f = fake.lock().unwrap();
    let paths: Vec<_> = f.requests[before..]
        .iter()
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/api/v1/nodes/n1/catalog", "/api/v1/nodes/n1/reports"],
        "an enrolled node only talks to its node routes"
    );
}

#[test]
fn a_token_left_after_enrollment_is_warned_about_and_never_needed_again() {
    let node = Node::new();
    let server = serve(fake_for(&node));
    let token = node.write("token", "s3cret\n");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the enrollment token") && text(&out).contains("remove the file"),
        "{}",
        text(&out)
    );
    // Gone, though still configured: the enrolled node runs without it.
    fs_err::remove_file(&token).unwrap();
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("enrollment token"), "{}", text(&out));
}

#[test]
fn a_wrong_token_is_refused_with_the_servers_message() {
    let node = Node::new();
    let server = serve(fake_for(&node));
    let token = node.write("token", "guess\n");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("(403): wrong enrollment token") && text(&out).contains(&token),
        "{}",
        text(&out)
    );
}

#[test]
fn a_pending_request_is_waited_for_then_picked_up() {
    let node = Node::new();
    let fake = fake_for(&node);
    fake.lock().unwrap().sign_after_polls = Some(2);
    let server = serve(Arc::clone(&fake));
    let started = Instant::now();
    let out = node.run(&server.url, &["--wait-for-cert-secs", "20"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(15));
    let said = text(&out);
    assert_eq!(
        said.matches("drover-server ca sign n1").count(),
        1,
        "the pending request is announced once: {said}"
    );
    assert!(said.contains("is pending (key sha256 "), "{said}");
}

#[test]
fn the_wait_is_bounded_and_a_later_run_picks_up_the_signed_certificate() {
    let node = Node::new();
    let fake = fake_for(&node);
    let server = serve(Arc::clone(&fake));
    let started = Instant::now();
    let out = node.run(&server.url, &["--wait-for-cert-secs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        text(&out).contains("still pending after 1 s")
            && text(&out).contains("drover-server ca sign n1"),
        "{}",
        text(&out)
    );
    assert!(!node.tls("cert.pem").exists());

    fake.lock().unwrap().sign_pending("n1");
    let posts_before = posts(&fake);
    let out = node.run(&server.url, &["--wait-for-cert-secs", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(posts(&fake), posts_before, "no second request");
    assert!(node.tls("cert.pem").exists());
}

fn posts(fake: &Arc<Mutex<Fake>>) -> usize {
    let f = fake.lock().unwrap();
    f.requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v1/certificate_requests/"))
        .count()
}

#[test]
fn the_ca_fetched_on_first_use_is_checked_against_the_configured_fingerprint() {
    let node = Node::new();
    let fake = fake_for(&node);
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret");
    let wrong = "ab".repeat(32);
    let out = node.run(
        &server.url,
        &[
            "--enrollment-token-file",
            &token,
            "--ca-fingerprint",
            &wrong,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("not the configured ca_fingerprint {wrong}")),
        "{}",
        text(&out)
    );
    assert!(!node.tls("ca.pem").exists(), "nothing pinned");
    assert_eq!(posts(&fake), 0, "no token sent");

    let right = fake.lock().unwrap().ca.fingerprint().to_uppercase();
    let out = node.run(
        &server.url,
        &[
            "--enrollment-token-file",
            &token,
            "--ca-fingerprint",
            &right,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains("without checking"), "{}", text(&out));
}

#[test]
fn a_server_of_another_ca_gets_no_certificate_no_token_and_no_request() {
    let node = Node::new();
    let good = fake_for(&node);
    let good_server = serve(Arc::clone(&good));
    let token = node.write("token", "s3cret");
    let out = node.run(&good_server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let rogue = fake_for(&node);
    let rogue_server = serve(Arc::clone(&rogue));
    // Enrolled: the cached catalog is applied, the rogue server learns nothing.
    let out = node.run(&rogue_server.url, &["--enrollment-token-file", &token]);
    assert!(
        text(&out).contains("is not the one this node enrolled with")
            && text(&out).contains("applied the cached catalog"),
        "{}",
        text(&out)
    );
    // Not enrolled yet, CA given: the rogue server never sees the token.
    let fresh = Node::new();
    let ca = fresh.write("ca.pem", &good.lock().unwrap().ca.pem);
    let out = fresh.run(
        &rogue_server.url,
        &["--enrollment-token-file", &token, "--ca-file", &ca],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not the one this node enrolled with"),
        "{}",
        text(&out)
    );
    let r = rogue.lock().unwrap();
    assert!(r.connections >= 2, "the agent did try");
    assert!(r.client_certs.is_empty(), "no client certificate was sent");
    assert!(
        r.requests.is_empty(),
        "no request reached it: {:?}",
        r.requests
    );
}

#[test]
fn a_redirect_to_another_host_is_not_followed() {
    let node = Node::new();
    let fake = fake_for(&node);
    let server = serve(Arc::clone(&fake));
    // Another address of the same fake (same CA): a followed redirect would
    // succeed there, so only the redirect rule keeps the request home.
    let other = serve(Arc::clone(&fake));
    let elsewhere = format!("{}/elsewhere/catalog", other.url);
    fake.lock().unwrap().redirect_catalog_to = Some(elsewhere.clone());
    let token = node.write("token", "s3cret");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("307 for {}", server.url))
            && text(&out).contains("never follows a redirect")
            && text(&out).contains(&elsewhere),
        "{}",
        text(&out)
    );
    let f = fake.lock().unwrap();
    assert!(
        f.requests.iter().all(|r| r.path != "/elsewhere/catalog"),
        "{:?}",
        f.requests
    );
}

#[test]
fn a_tampered_cached_catalog_is_refused() {
    let node = Node::new();
    let fake = fake_for(&node);
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let cache = node.state.join("catalog.signed");
    let mut bytes = fs_err::read(&cache).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x20;
    fs_err::write(&cache, &bytes).unwrap();
    server.stop();
    let out = node.run(&fake_url_of_stopped(), &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected = format!(
        "the cached catalog {} was changed after the server signed it; refusing to apply it",
        cache.display()
    );
    assert!(text(&out).contains(&expected), "{}", text(&out));

    let server = serve(Arc::clone(&fake));
    fs_err::remove_file(node.path("motd")).unwrap();
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&expected),
        "refused again before the fetch: {}",
        text(&out)
    );
    let key = fake.lock().unwrap().signing.public_key();
    signed::open(&key, &fs_err::read(&cache).unwrap()).expect("a fresh signed catalog replaced it");
    assert_eq!(fs_err::read(node.path("motd")).unwrap(), b"hello\n");
}

/// A server URL nothing listens on.
fn fake_url_of_stopped() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("https://{}", listener.local_addr().unwrap())
}

#[test]
fn an_unsigned_or_wrongly_signed_fresh_catalog_is_refused() {
    for (signature, why) in [
        (Signature::Missing, "the catalog carries no signature"),
        (Signature::Wrong, "the signature does not match the catalog"),
    ] {
        let node = Node::new();
        let fake = fake_for(&node);
        fake.lock().unwrap().signature = signature;
        let server = serve(Arc::clone(&fake));
        let token = node.write("token", "s3cret");
        let out = node.run(&server.url, &["--enrollment-token-file", &token]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("refusing the catalog") && text(&out).contains(why),
            "{}",
            text(&out)
        );
        assert!(!node.path("motd").exists(), "nothing applied");
        assert!(!node.state.join("catalog.signed").exists());
    }
}

#[test]
fn a_certificate_near_expiry_is_renewed_with_a_new_key() {
    let node = Node::new();
    let fake = fake_for(&node);
    fake.lock().unwrap().cert_days = 10;
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let (old_key, old_cert) = (
        fs_err::read(node.tls("key.pem")).unwrap(),
        fs_err::read(node.tls("cert.pem")).unwrap(),
    );

    fake.lock().unwrap().cert_days = 365;
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("renewed the certificate of node `n1`"),
        "{}",
        text(&out)
    );
    assert_ne!(fs_err::read(node.tls("key.pem")).unwrap(), old_key);
    assert_ne!(fs_err::read(node.tls("cert.pem")).unwrap(), old_cert);
    assert_eq!(mode(&node.tls("key.pem")), 0o600);
    let f = fake.lock().unwrap();
    let renewal = f
        .requests
        .iter()
        .find(|r| r.path == "/api/v1/nodes/n1/certificate")
        .expect("a renewal request");
    assert_eq!(
        renewal.client.as_deref(),
        Some("n1"),
        "over mTLS with the old certificate"
    );
    let last = f.requests.last().unwrap();
    assert_eq!(last.path, "/api/v1/nodes/n1/reports");
    assert_eq!(f.issued_to("n1"), 2);
    drop(f);

    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !text(&out).contains("renewed"),
        "a fresh certificate is kept: {}",
        text(&out)
    );
}

#[test]
fn a_failed_renewal_is_a_warning_and_the_run_goes_on() {
    let node = Node::new();
    let fake = fake_for(&node);
    fake.lock().unwrap().cert_days = 10;
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let old_cert = fs_err::read(node.tls("cert.pem")).unwrap();
    fake.lock().unwrap().down = true;
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert!(
        text(&out).contains("cannot renew the certificate of node `n1`")
            && text(&out).contains("goes on with the current one")
            && text(&out).contains("applied the cached catalog"),
        "{}",
        text(&out)
    );
    assert_eq!(fs_err::read(node.tls("cert.pem")).unwrap(), old_cert);
}

#[test]
fn an_expired_certificate_is_replaced_by_a_valid_one_for_the_same_key() {
    let node = Node::new();
    let fake = fake_for(&node);
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let valid = fs_err::read(node.tls("cert.pem")).unwrap();

    let key =
        rcgen::KeyPair::from_pem(&fs_err::read_to_string(node.tls("key.pem")).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["n1".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "n1");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let expired = fake.lock().unwrap().ca.sign(&csr, "n1", -1);
    fs_err::write(node.tls("cert.pem"), &expired).unwrap();

    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("the certificate of node `n1` expired at"),
        "{}",
        text(&out)
    );
    assert_eq!(
        fs_err::read(node.tls("cert.pem")).unwrap(),
        valid,
        "the valid one is back"
    );
}

#[test]
fn plain_http_needs_the_insecure_flag_and_a_loopback_address() {
    let node = Node::new();
    let out = node.run("http://127.0.0.1:8140", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("plain HTTP, which is insecure"),
        "{}",
        text(&out)
    );
    let out = node.run("http://192.0.2.1:8140", &["--insecure-http"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("only with a loopback address") && text(&out).contains("192.0.2.1"),
        "{}",
        text(&out)
    );

    let fake = fake_for(&node);
    let server = serve_plain(Arc::clone(&fake));
    let out = node.run(&server.url, &["--insecure-http"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        !node.tls("cert.pem").exists(),
        "no identity over plain HTTP"
    );
    assert!(
        node.state.join("catalog.signed").exists(),
        "catalogs are still verified"
    );
}

#[test]
fn a_node_name_that_is_not_a_host_name_is_refused_naming_its_source() {
    let node = Node::new();
    let out = support::agent(&[
        "run",
        "--once",
        "--node",
        "../etc",
        "--state-dir",
        node.state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("invalid node name from --node"),
        "{}",
        text(&out)
    );
}
