//! Enrollment, pinning and renewal against a scripted server and a test CA.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::certs::tests::TestCa;
use super::certs::to_pem;
use super::enroll::{Enrollment, enroll};
use super::keys::NodeKey;
use crate::http::{Http, Trust};
use crate::testutil::{Reply, scripted};

fn signed(cert_pem: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"status": "signed", "certificate": cert_pem})).unwrap()
}

fn pending(key: &NodeKey) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"status": "pending", "fingerprint": key.fingerprint()}))
        .unwrap()
}

struct Case {
    ca: TestCa,
    key: NodeKey,
    http: Http,
}

fn case(
    replies: impl FnOnce(&TestCa, &NodeKey) -> Vec<Reply>,
) -> (
    Case,
    std::sync::Arc<std::sync::Mutex<Vec<crate::testutil::Seen>>>,
) {
    let ca = TestCa::new("drover test CA");
    let key = NodeKey::generate().unwrap();
    let (url, seen) = scripted(replies(&ca, &key));
    let http = Http::new(&[&url], Trust::InsecureHttp, Duration::from_secs(5)).unwrap();
    (Case { ca, key, http }, seen)
}

fn enrollment<'a>(
    c: &'a Case,
    token: Option<&'a std::path::Path>,
    wait: Duration,
) -> Enrollment<'a> {
    Enrollment {
        http: &c.http,
        node: "n1",
        key: &c.key,
        ca: &c.ca.der,
        token_file: token,
        wait,
    }
}

#[test]
fn enrollment_sends_the_csr_with_the_token_and_checks_the_certificate() {
    let (c, seen) = case(|ca, key| {
        vec![
            Reply::new("404 Not Found", r#"{"error":"no request"}"#),
            Reply::new("200 OK", signed(&to_pem(&ca.issue("n1", key, 365)))),
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    fs_err::write(&token, "s3cret\n").unwrap();
    let cert = enroll(
        &enrollment(&c, Some(&token), Duration::ZERO),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(!cert.validity.expired(jiff::Timestamp::now()));
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].head.starts_with(&format!(
            "GET /api/v1/certificate_requests/n1?key={} ",
            c.key.fingerprint()
        )),
        "{}",
        seen[0].head
    );
    assert!(
        seen[1]
            .head
            .starts_with("POST /api/v1/certificate_requests/n1 "),
        "{}",
        seen[1].head
    );
    assert!(
        seen[1].has_header("authorization: Bearer s3cret\r\n"),
        "{}",
        seen[1].head
    );
    let csr = String::from_utf8(seen[1].body.clone()).unwrap();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
}

#[test]
fn a_certificate_signed_since_an_earlier_run_is_picked_up_without_a_new_request() {
    let (c, seen) = case(|ca, key| {
        vec![Reply::new(
            "200 OK",
            signed(&to_pem(&ca.issue("n1", key, 365))),
        )]
    });
    enroll(
        &enrollment(&c, None, Duration::ZERO),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "no POST");
}

#[test]
fn a_certificate_for_another_key_or_from_another_ca_is_refused() {
    let (c, _) = case(|ca, _| {
        let other = NodeKey::generate().unwrap();
        vec![
            Reply::new("404 Not Found", ""),
            Reply::new("200 OK", signed(&to_pem(&ca.issue("n1", &other, 365)))),
        ]
    });
    let err = enroll(
        &enrollment(&c, None, Duration::ZERO),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("for another key"), "{err}");

    let (c, _) = case(|_, key| {
        let rogue = TestCa::new("drover test CA");
        vec![
            Reply::new("404 Not Found", ""),
            Reply::new("200 OK", signed(&to_pem(&rogue.issue("n1", key, 365)))),
        ]
    });
    let err = enroll(
        &enrollment(&c, None, Duration::ZERO),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not signed by the pinned CA"),
        "{err}"
    );
}

#[test]
fn refusals_carry_the_servers_message() {
    for (status, message, hint) in [
        (
            "403 Forbidden",
            "wrong enrollment token",
            "is not the server's",
        ),
        (
            "409 Conflict",
            "another key has a pending request",
            "drover-server ca list",
        ),
        ("400 Bad Request", "asks for basicConstraints", "(400)"),
    ] {
        let (c, _) = case(|_, _| {
            vec![
                Reply::new("404 Not Found", ""),
                Reply::new(status, format!(r#"{{"error":"{message}"}}"#)),
            ]
        });
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        fs_err::write(&token, "t").unwrap();
        let err = enroll(
            &enrollment(&c, Some(&token), Duration::ZERO),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("refused the certificate request of node `n1`")
                && text.contains(message)
                && text.contains(hint),
            "{text}"
        );
    }
}

#[test]
fn a_pending_request_is_polled_until_signed() {
    let (c, seen) = case(|ca, key| {
        vec![
            Reply::new("404 Not Found", ""),
            Reply::new("202 Accepted", pending(key)),
            Reply::new("202 Accepted", pending(key)),
            Reply::new("200 OK", signed(&to_pem(&ca.issue("n1", key, 365)))),
        ]
    });
    let started = Instant::now();
    enroll(
        &enrollment(&c, None, Duration::from_secs(30)),
        &AtomicBool::new(false),
    )
    .unwrap();
    let took = started.elapsed();
    // Pauses of 1 s then 2 s.
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[test]
fn the_wait_for_a_signature_is_bounded() {
    let (c, _) = case(|_, key| {
        let mut replies = vec![Reply::new("202 Accepted", pending(key))];
        replies.extend((0..5).map(|_| Reply::new("202 Accepted", pending(key))));
        replies
    });
    let started = Instant::now();
    let err = enroll(
        &enrollment(&c, None, Duration::from_secs(2)),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = format!("{err:#}");
    assert!(
        text.contains("still pending after 2 s") && text.contains("drover-server ca sign n1"),
        "{text}"
    );

    let (c, seen) = case(|_, key| vec![Reply::new("202 Accepted", pending(key))]);
    let err = enroll(
        &enrollment(&c, None, Duration::ZERO),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("still pending"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "no wait, no second request");
}

#[test]
fn a_stop_ends_the_wait() {
    let (c, _) = case(|_, key| vec![Reply::new("202 Accepted", pending(key))]);
    let stop = AtomicBool::new(true);
    let err = enroll(&enrollment(&c, None, Duration::from_secs(60)), &stop).unwrap_err();
    assert!(
        format!("{err:#}").contains("the agent is stopping"),
        "{err:#}"
    );
}
