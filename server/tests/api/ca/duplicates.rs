//! No second certificate for an enrolled name (issue 16, item 1): the shared
//! enrollment token, a policy command or `ca sign` never mint a certificate
//! for a name that holds a valid one, so root on one node cannot become
//! another; an operator's revocation frees the name, and the node itself
//! still renews over its own connection.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use drover_server::credentials::Peer;

use super::{Ca, assert_node_cert, csr, json};

const TOKEN: &str = "enroll-0123456789abcdef";

async fn with_token() -> Ca {
    Ca::start(|config, tmp| {
        let path = tmp.join("enroll-token");
        fs_err::write(&path, format!("{TOKEN}\n")).unwrap();
        config.enrollment_token_file = Some(path);
    })
    .await
}

#[tokio::test]
async fn the_token_never_mints_a_second_certificate_for_an_enrolled_name() {
    let ca = with_token().await;
    let (key, pem) = csr("db-1");
    let (status, first) = ca.submit("db-1", &pem, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{first}");

    // Another key, the right token: refused, with what frees the name.
    let (intruder_key, intruder) = csr("db-1");
    let (status, body) = ca.submit("db-1", &intruder, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("`db-1` already holds a valid certificate"),
        "{error}"
    );
    assert!(error.contains("drover-server ca revoke db-1"), "{error}");
    let valid = ca.cli(&["list"]);
    let listing = String::from_utf8_lossy(&valid.stdout);
    assert_eq!(
        listing.matches("db-1").count(),
        1,
        "one certificate, no pending request:\n{listing}"
    );
    assert!(listing.contains("no duplicate certificates"), "{listing}");

    // The same key asking again (its answer was lost) gets its own
    // certificate back, not a new one.
    let (status, again) = ca.submit("db-1", &pem, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["certificate"], first["certificate"]);

    // Renewal over the node's own connection still works.
    let renew = Request::post("/api/v1/nodes/db-1/certificate")
        .body(Body::from(csr_for(&key)))
        .unwrap();
    let (status, body) = ca.send(Some(Peer::Node("db-1".into())), renew).await;
    assert_eq!(status, StatusCode::OK);
    assert_node_cert(json(&body)["certificate"].as_str().unwrap(), "db-1", &key);

    // Once an operator revokes it, a reinstalled node enrolls again.
    let revoke = ca.cli(&["revoke", "db-1"]);
    assert!(revoke.status.success(), "{revoke:?}");
    let (status, body) = ca.submit("db-1", &intruder, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_node_cert(body["certificate"].as_str().unwrap(), "db-1", &intruder_key);
}

#[tokio::test]
async fn ca_sign_refuses_a_pending_request_for_an_enrolled_name() {
    let ca = with_token().await;
    // A request waits (no token)...
    let (_, waiting) = csr("db-2");
    assert_eq!(
        ca.submit("db-2", &waiting, None).await.0,
        StatusCode::ACCEPTED
    );
    // ...while the name gets a certificate for another key.
    let (_, enrolled) = csr("db-2");
    let checked = drover_server::tls::csr::check_csr("db-2", enrolled.as_bytes()).unwrap();
    ca.state
        .pki
        .sign_csr(drover_server::tls::CertKind::Node, &checked)
        .unwrap();

    let sign = ca.cli(&["sign", "db-2"]);
    assert_eq!(sign.status.code(), Some(1), "{sign:?}");
    let stderr = String::from_utf8_lossy(&sign.stderr);
    assert!(
        stderr.contains("`db-2` already holds a valid certificate"),
        "{stderr}"
    );
    // And a new request for the enrolled name is refused before it waits.
    let (_, third) = csr("db-2");
    assert_eq!(
        ca.submit("db-2", &third, None).await.0,
        StatusCode::CONFLICT
    );
}

/// A fresh CSR for `key`'s own name `db-1`.
fn csr_for(key: &rcgen::KeyPair) -> String {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "db-1");
    params.subject_alt_names = vec![rcgen::SanType::DnsName("db-1".try_into().unwrap())];
    params.serialize_request(key).unwrap().pem().unwrap()
}
