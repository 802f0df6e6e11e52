//! The real listener on 127.0.0.1:0 with rustls clients: identities from
//! client certificates, revocation by another process's handle seen at the
//! next handshake, slow clients cut off, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_server::tls::listener::{Limits, serve};
use drover_server::tls::{CertKind, Pki, csr::check_csr};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::{Ca, csr};

pub(super) struct Running {
    pub(super) addr: SocketAddr,
    pub(super) shutdown: CancellationToken,
    pub(super) task: JoinHandle<anyhow::Result<()>>,
}

pub(super) async fn listen(ca: &Ca, limits: Limits) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = drover_server::tls::verifier::server_config(&ca.state.pki).unwrap();
    let shutdown = CancellationToken::new();
    let app = drover_server::app(ca.state.clone());
    let task = tokio::spawn(serve(listener, Some(tls), app, limits, shutdown.clone()));
    Running {
        addr,
        shutdown,
        task,
    }
}

/// A client certificate (PEM) and key for `name` of `kind`, issued by the server's CA.
pub(super) fn identity(ca: &Ca, kind: CertKind, name: &str) -> (String, String) {
    let (key, pem) = csr(name);
    let checked = check_csr(name, pem.as_bytes()).unwrap();
    let cert = ca.state.pki.sign_csr(kind, &checked).unwrap();
    (cert.pem, key.serialize_pem())
}

pub(super) fn connector(ca_pem: &str, identity: Option<&(String, String)>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// One request on a new TLS connection; the raw response, or why it failed.
pub(super) async fn exchange(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&(String, String)>,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let server = ServerName::try_from("localhost").unwrap();
    let mut tls = connector(ca_pem, identity).connect(server, tcp).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

pub(super) fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

pub(super) const CATALOG_BODY: &str = r#"{"facts": {"os": {"id": "debian"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_name_the_caller_and_revocation_is_seen_at_the_next_handshake() {
    let ca = Ca::start(|_, _| {}).await;
    let running = listen(&ca, Limits::default()).await;
    let ca_pem = ca.state.pki.ca_pem().to_owned();
    let web1 = identity(&ca, CertKind::Node, "web1");
    let alice = identity(&ca, CertKind::Operator, "alice");
    let catalog = |who| {
        exchange(
            running.addr,
            &ca_pem,
            who,
            "POST",
            "/api/v1/nodes/web1/catalog",
            CATALOG_BODY,
        )
    };

    let response = catalog(Some(&web1)).await.unwrap();
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "{response}");
    assert!(response.contains("/etc/motd"), "{response}");
    let anonymous = catalog(None).await.unwrap();
    assert_eq!(
        status_line(&anonymous),
        "HTTP/1.1 401 Unauthorized",
        "{anonymous}"
    );
    let operator = exchange(
        running.addr,
        &ca_pem,
        Some(&alice),
        "GET",
        "/api/v1/nodes",
        "",
    )
    .await
    .unwrap();
    assert_eq!(status_line(&operator), "HTTP/1.1 200 OK", "{operator}");
    let open = exchange(running.addr, &ca_pem, None, "GET", "/healthz", "")
        .await
        .unwrap();
    assert_eq!(status_line(&open), "HTTP/1.1 200 OK", "{open}");

    // `drover-server ca revoke web1` in another process: its own handle on DATA/ca.
    let cli = Pki::open_ca(&ca.data(), ca.state.config.cert_lifetime, None).unwrap();
    let revoked = cli.revoke("web1").unwrap();
    assert_eq!(revoked.len(), 1);
    let refused = catalog(Some(&web1)).await;
    let err = refused.expect_err("a revoked certificate completes no request");
    assert!(err.to_string().contains("CertificateRevoked"), "{err}");
    // Others are unaffected, and a new certificate for the node works again.
    let operator = exchange(
        running.addr,
        &ca_pem,
        Some(&alice),
        "GET",
        "/api/v1/nodes",
        "",
    )
    .await
    .unwrap();
    assert_eq!(status_line(&operator), "HTTP/1.1 200 OK", "{operator}");
    let renewed = identity(&ca, CertKind::Node, "web1");
    let response = catalog(Some(&renewed)).await.unwrap();
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "{response}");

    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let ca = Ca::start(|_, _| {}).await;
    let other = Ca::start(|_, _| {}).await;
    let running = listen(&ca, Limits::default()).await;
    let stranger = identity(&other, CertKind::Node, "web1");
    let result = exchange(
        running.addr,
        ca.state.pki.ca_pem(),
        Some(&stranger),
        "GET",
        "/healthz",
        "",
    )
    .await;
    let err = result.expect_err("a stranger's certificate completes no request");
    assert!(err.to_string().contains("UnknownCA"), "{err}");
    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let ca = Ca::start(|_, _| {}).await;
    let limits = Limits {
        handshake: Duration::from_secs(1),
        header_read: Duration::from_secs(1),
        ..Limits::default()
    };
    let running = listen(&ca, limits).await;
    let ca_pem = ca.state.pki.ca_pem().to_owned();

    // Half a request head over TLS, then nothing.
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let server = ServerName::try_from("localhost").unwrap();
    let mut slow = connector(&ca_pem, None).connect(server, tcp).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    // A TCP client that never starts its handshake.
    let mut silent = TcpStream::connect(running.addr).await.unwrap();

    let started = Instant::now();
    let other = exchange(running.addr, &ca_pem, None, "GET", "/healthz", "")
        .await
        .unwrap();
    assert_eq!(status_line(&other), "HTTP/1.1 200 OK");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let mut rest = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(cut.is_ok(), "the slow client was not cut off");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    let cut = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(cut.is_ok(), "the silent client was not cut off");

    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_returns() {
    let ca = Ca::start(|_, _| {}).await;
    let running = listen(&ca, Limits::default()).await;
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let server = ServerName::try_from("localhost").unwrap();
    let mut idle = connector(ca.state.pki.ca_pem(), None)
        .connect(server, tcp)
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 15];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200 OK");
    let started = Instant::now();
    running.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(3), running.task)
        .await
        .expect("serve returns soon after shutdown")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
}
