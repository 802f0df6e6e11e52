//! Pending certificate requests are bounded and can be refused (issue 16,
//! item 10): anonymous clients cannot fill the CA directory, and a name
//! squatted by a stranger's request is freed with `ca reject`.

use axum::http::StatusCode;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::{Ca, csr};
use drover_server::tls::requests::MAX_PENDING;

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
    assert_eq!(ca.poll("late").await.0, StatusCode::NOT_FOUND, "not kept");

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
    let (_, real) = csr("db-1");
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
    assert_eq!(ca.poll("db-1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(ca.submit("db-1", &real, None).await.0, StatusCode::ACCEPTED);

    // Nothing to reject: exit 1 with the reason.
    let again = ca.cli(&["reject", "web-9"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("no pending certificate request for `web-9`")
    );
}
