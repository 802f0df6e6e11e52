//! The node API against a scripted server: signed catalogs, refusals, reports.

use std::net::TcpListener;

use drover_catalog::signed::{SIGNATURE_HEADER, SigningKey};

use super::*;
use crate::testutil::{Reply, scripted};

fn server_key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

fn client(url: &str, key: &SigningKey) -> Client {
    let http = Http::new(&[url], Trust::InsecureHttp, Duration::from_secs(5)).unwrap();
    Client::over(http, "n1", key.public_key())
}

fn catalog_body(node: &str) -> Vec<u8> {
    serde_json::to_vec(&Catalog {
        node: node.into(),
        environment: "production".into(),
        commit: "c".into(),
        version: Catalog::compute_version(&[]),
        resources: vec![],
        contents: Default::default(),
    })
    .unwrap()
}

#[test]
fn not_modified_sends_quoted_etag() {
    let (url, seen) = scripted(vec![Reply::new("304 Not Modified", "")]);
    let answer = client(&url, &server_key())
        .catalog(&CatalogRequest::default(), Some("abc"))
        .unwrap();
    assert!(matches!(answer, CatalogAnswer::NotModified { .. }));
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].head.starts_with("POST /api/v1/nodes/n1/catalog "),
        "{}",
        seen[0].head
    );
    assert!(
        seen[0].has_header("if-none-match: \"abc\""),
        "{}",
        seen[0].head
    );
}

#[test]
fn a_signed_catalog_is_verified_over_its_exact_bytes() {
    let key = server_key();
    let body = catalog_body("n1");
    let (url, _) = scripted(vec![
        Reply::new("200 OK", body.clone()).header(SIGNATURE_HEADER, &key.sign(&body)),
    ]);
    let CatalogAnswer::Fresh(signed) = client(&url, &key)
        .catalog(&CatalogRequest::default(), None)
        .unwrap()
    else {
        panic!("not fresh")
    };
    assert_eq!(signed.body, body);
    assert_eq!(signed.catalog.node, "n1");
    key.public_key()
        .verify(&signed.body, &signed.signature)
        .unwrap();
}

#[test]
fn an_unsigned_or_wrongly_signed_catalog_is_refused() {
    let key = server_key();
    let body = catalog_body("n1");
    let mut changed = body.clone();
    changed.push(b' ');
    let (url, _) = scripted(vec![
        Reply::new("200 OK", body.clone()),
        Reply::new("200 OK", body.clone()).header(SIGNATURE_HEADER, &server_key().sign(&body)),
        Reply::new("200 OK", changed).header(SIGNATURE_HEADER, &key.sign(&body)),
    ]);
    let client = client(&url, &key);
    let expected = [
        "carries no signature",
        "it was changed after the server signed it",
        "it was changed after the server signed it",
    ];
    for want in expected {
        let err = client
            .catalog(&CatalogRequest::default(), None)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("refusing the catalog") && text.contains(want),
            "{text}"
        );
    }
}

#[test]
fn the_catalog_of_another_node_is_refused_even_when_signed() {
    let key = server_key();
    let body = catalog_body("n2");
    let (url, _) = scripted(vec![
        Reply::new("200 OK", body.clone()).header(SIGNATURE_HEADER, &key.sign(&body)),
    ]);
    let err = client(&url, &key)
        .catalog(&CatalogRequest::default(), None)
        .unwrap_err();
    assert!(err.to_string().contains("catalog of node `n2`"), "{err}");
}

#[test]
fn a_redirect_is_never_followed() {
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let elsewhere = format!(
        "http://{}/api/v1/nodes/n1/catalog",
        other.local_addr().unwrap()
    );
    let (url, seen) = scripted(vec![
        Reply::new("307 Temporary Redirect", "").header("Location", &elsewhere),
    ]);
    let err = client(&url, &server_key())
        .catalog(&CatalogRequest::default(), None)
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("307") && text.contains(&elsewhere) && text.contains("never follows"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(other.accept().is_err(), "nothing reached the other host");
}

#[test]
fn compile_error_shows_diagnostics() {
    let body = r#"{"error":"does not compile","diagnostics":["roles/a.toml:1:2: bad"]}"#;
    let (url, _) = scripted(vec![
        Reply::new("422 Unprocessable Entity", body).header("Content-Type", "application/json"),
    ]);
    let err = client(&url, &server_key())
        .catalog(&CatalogRequest::default(), None)
        .unwrap_err();
    assert!(
        err.to_string().contains("422") && err.to_string().contains("roles/a.toml:1:2: bad"),
        "{err}"
    );
}

#[test]
fn malformed_report_is_rejected_not_retried() {
    let (url, _) = scripted(vec![Reply::new(
        "400 Bad Request",
        r#"{"error":"bad report"}"#,
    )]);
    assert_eq!(
        client(&url, &server_key()).post_report(b"{}").unwrap(),
        Posted::Rejected("400: bad report".into())
    );
}

#[test]
fn a_report_too_large_for_the_server_is_rejected_not_retried() {
    let (url, _) = scripted(vec![Reply::new(
        "413 Payload Too Large",
        r#"{"error":"the report is larger than max_report_bytes"}"#,
    )]);
    assert_eq!(
        client(&url, &server_key()).post_report(b"{}").unwrap(),
        Posted::Rejected("413: the report is larger than max_report_bytes".into())
    );
}

#[test]
fn unreachable_server_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(&url, &server_key())
        .catalog(&CatalogRequest::default(), None)
        .unwrap_err();
    assert!(err.to_string().contains("cannot reach the server"), "{err}");
}

#[test]
fn a_watch_sends_the_held_version_and_reads_the_answer() {
    let (url, seen) = scripted(vec![
        Reply::new("200 OK", r#"{"version":"v2","changed":true}"#)
            .header("Content-Type", "application/json"),
        Reply::new("200 OK", r#"{"version":null,"changed":false}"#),
        Reply::new("403 Forbidden", r#"{"error":"not yours"}"#),
    ]);
    let client = client(&url, &server_key());
    assert_eq!(
        client.watch(Some("v1"), 55).unwrap(),
        Watched {
            version: Some("v2".into()),
            changed: true,
            run: false,
        }
    );
    assert_eq!(
        client.watch(None, 0).unwrap(),
        Watched {
            version: None,
            changed: false,
            run: false,
        }
    );
    let err = client.watch(Some("v1"), 55).unwrap_err();
    assert!(
        err.to_string().contains("403") && err.to_string().contains("not yours"),
        "{err}"
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen[0]
            .head
            .starts_with("GET /api/v1/nodes/n1/catalog/watch?timeout_secs=55&version=v1 "),
        "{}",
        seen[0].head
    );
    assert!(
        seen[1]
            .head
            .starts_with("GET /api/v1/nodes/n1/catalog/watch?timeout_secs=0 "),
        "{}",
        seen[1].head
    );
}
