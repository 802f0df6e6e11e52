//! Pending certificate requests are bounded and can be refused (issue 16,
//! item 10): anonymous clients cannot fill the CA directory, and a name
//! squatted by a stranger's request is freed with `ca reject`.

use axum::http::StatusCode;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::{Ca, csr};
use drover_server::tls::requests::{MAX_PENDING, MAX_PENDING_PER_ADDRESS};

/// A CSR for `name` signed with `key` (one key for many names is cheaper).
fn csr_with(key: &KeyPair, name: &str) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
    params.serialize_request(key).unwrap().pem().unwrap()
}

#[tokio::test]
async fn requests_beyond_the_cap_are_not_kept() {
    let ca = Ca::start(|_, _| {}).await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    for i in 0..MAX_PENDING {
        let name = format!("squat-{i}");
        let (status, body) = ca.submit(&name, &csr_with(&key, &name), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
    }
    let (status, body) = ca.submit("late", &csr_with(&key, "late"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("ca reject NAME"),
        "{body}"
    );
    assert_eq!(
        ca.poll("late", &key).await.0,
        StatusCode::NOT_FOUND,
        "not kept"
    );

    // Rejecting one makes room again.
    let reject = ca.cli(&["reject", "squat-0"]);
    assert!(reject.status.success(), "{reject:?}");
    assert_eq!(
        ca.submit("late", &csr_with(&key, "late"), None).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn ca_reject_frees_a_squatted_name_for_the_real_node() {
    let ca = Ca::start(|_, _| {}).await;
    let (_, squatter) = csr("db-1");
    assert_eq!(
        ca.submit("db-1", &squatter, None).await.0,
        StatusCode::ACCEPTED
    );
    let (real_key, real) = csr("db-1");
    let (status, body) = ca.submit("db-1", &real, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("ca reject db-1"),
        "{body}"
    );

    let reject = ca.cli(&["reject", "db-1"]);
    assert!(reject.status.success(), "{reject:?}");
    let stdout = String::from_utf8_lossy(&reject.stdout);
    assert!(
        stdout.contains("rejected the pending request of `db-1`"),
        "{stdout}"
    );
    assert_eq!(ca.poll("db-1", &real_key).await.0, StatusCode::NOT_FOUND);
    assert_eq!(ca.submit("db-1", &real, None).await.0, StatusCode::ACCEPTED);

    // Nothing to reject: exit 1 with the reason.
    let again = ca.cli(&["reject", "web-9"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("no pending certificate request for `web-9`")
    );
}

#[tokio::test]
async fn one_address_keeps_at_most_its_share_of_pending_requests() {
    let ca = Ca::start(|_, _| {}).await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let squatter = [203, 0, 113, 9];
    for i in 0..MAX_PENDING_PER_ADDRESS {
        let name = format!("squat-{i}");
        let (status, body) = ca
            .submit_from(&name, &csr_with(&key, &name), squatter)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
    }
    let (status, body) = ca
        .submit_from("db-1", &csr_with(&key, "db-1"), squatter)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "{MAX_PENDING_PER_ADDRESS} certificate requests from this address"
        )),
        "{error}"
    );
    // The real node, from its own address, still gets its request kept.
    let (real_key, real) = csr("db-1");
    let (status, body) = ca.submit_from("db-1", &real, [198, 51, 100, 20]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(ca.poll("db-1", &real_key).await.0, StatusCode::ACCEPTED);
    // `ca list` shows where each request came from.
    let listed = String::from_utf8(ca.cli(&["list"]).stdout).unwrap();
    let row = listed
        .lines()
        .find(|l| l.trim_start().starts_with("db-1 "))
        .unwrap_or_else(|| panic!("no row for db-1 in:\n{listed}"));
    assert!(row.ends_with("198.51.100.20"), "{listed}");
}

#[tokio::test]
async fn a_status_request_tells_a_stranger_nothing_about_which_names_exist() {
    let ca = Ca::start(|_, _| {}).await;
    let (key, pem) = csr("db-1");
    let (stranger, _) = csr("db-1");
    assert_eq!(ca.submit("db-1", &pem, None).await.0, StatusCode::ACCEPTED);
    // Pending: the requesting key sees it; another key sees what a name
    // nobody asked for shows.
    assert_eq!(ca.poll("db-1", &key).await.0, StatusCode::ACCEPTED);
    let (pending, _) = ca.poll("db-1", &stranger).await;
    let (never, _) = ca.poll("nobody-9", &stranger).await;
    assert_eq!(
        (pending, never),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    // Signed: the same.
    assert!(ca.cli(&["sign", "db-1"]).status.success());
    assert_eq!(ca.poll("db-1", &key).await.0, StatusCode::OK);
    assert_eq!(ca.poll("db-1", &stranger).await.0, StatusCode::NOT_FOUND);
    // Without a key, the request is refused whatever the name.
    let (status, body) = ca.poll_raw("db-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("?key="), "{body}");
    assert_eq!(ca.poll_raw("nobody-9").await.0, StatusCode::BAD_REQUEST);
}
