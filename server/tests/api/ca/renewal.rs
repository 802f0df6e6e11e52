//! Renewal keeps a node at two valid certificates at most (issue 16, item
//! 17): the new one and the one the renewing connection presented; every
//! older one is revoked, so renewing in a loop leaves no trail of valid keys.

use drover_server::tls::CertKind;
use drover_server::tls::listener::Limits;

use super::listener::{identity, listen};
use super::{Ca, csr};

/// `POST /api/v1/nodes/web1/certificate` over `who`'s connection: the new
/// certificate (PEM) and the key it certifies (PEM).
async fn renew(
    ca_pem: &str,
    addr: std::net::SocketAddr,
    who: &(String, String),
) -> (String, String) {
    let (key, pem) = csr("web1");
    let response = super::listener::exchange(
        addr,
        ca_pem,
        Some(who),
        "POST",
        "/api/v1/nodes/web1/certificate",
        &pem,
    )
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    let cert = body["certificate"].as_str().unwrap().to_owned();
    (cert, key.serialize_pem())
}

/// Serials of web1's valid (unrevoked) node certificates.
fn valid_serials(ca: &Ca) -> Vec<String> {
    let listing = ca.state.pki.listing().unwrap();
    let mut serials: Vec<String> = listing
        .certificates
        .into_iter()
        .filter(|(c, revoked)| c.kind == CertKind::Node && c.name == "web1" && revoked.is_none())
        .map(|(c, _)| c.serial)
        .collect();
    serials.sort();
    serials
}

fn serial_of(pem: &str) -> String {
    drover_server::tls::store::IssuedCert::from_pem(CertKind::Node, pem.to_owned())
        .unwrap()
        .serial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_revokes_every_older_certificate_but_the_one_in_use() {
    let ca = Ca::start(|_, _| {}).await;
    let running = listen(&ca, Limits::default()).await;
    let ca_pem = ca.state.pki.ca_pem().to_owned();
    let first = identity(&ca, CertKind::Node, "web1");

    // Renewing twice over the first certificate: the first stays (it is
    // the one in use), the second is revoked by the third.
    let second = renew(&ca_pem, running.addr, &first).await;
    let third = renew(&ca_pem, running.addr, &first).await;
    let mut expected = vec![serial_of(&first.0), serial_of(&third.0)];
    expected.sort();
    assert_eq!(valid_serials(&ca), expected);
    assert!(!valid_serials(&ca).contains(&serial_of(&second.0)));

    // The node switches to the third and renews over it: the first goes.
    let fourth = renew(&ca_pem, running.addr, &third).await;
    let mut expected = vec![serial_of(&third.0), serial_of(&fourth.0)];
    expected.sort();
    assert_eq!(valid_serials(&ca), expected);

    // A revoked certificate completes no handshake.
    let refused =
        super::listener::exchange(running.addr, &ca_pem, Some(&first), "GET", "/healthz", "").await;
    assert!(refused.is_err(), "{refused:?}");
    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();
}
