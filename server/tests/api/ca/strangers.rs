//! Strangers cannot starve the fleet (issue 16, item 4): connections
//! without a client certificate are held to a share per address and in
//! all, and a request body must arrive whole within a deadline, however
//! often it sends a byte.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use drover_server::tls::CertKind;
use drover_server::tls::admission::AnonymousLimits;
use drover_server::tls::listener::Limits;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::Ca;
use super::listener::{CATALOG_BODY, connector, exchange, identity, listen, status_line};

/// Connections of one stranger that finished a handshake and are not
/// closed yet, per source address.
#[derive(Default)]
struct Held {
    by_address: [AtomicUsize; 8],
}

impl Held {
    fn total(&self) -> usize {
        self.by_address
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .sum()
    }

    fn most_of_one_address(&self) -> usize {
        self.by_address
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }
}

/// A certificate request for `name` whose 4,000-byte body comes one byte
/// every 100 ms (well within the 30 s between chunks, every time); ends
/// only when the server closes the connection.
async fn trickle_request(
    write: &mut (impl tokio::io::AsyncWrite + Unpin),
    name: &str,
) -> std::io::Result<()> {
    let head = format!(
        "POST /api/v1/certificate_requests/{name} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-pem-file\r\nContent-Length: 4000\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await?;
    loop {
        write.write_all(b"A").await?;
        write.flush().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From 127.0.0.`last`: a TLS handshake without a certificate, then a
/// certificate request whose body trickles a byte every 100 ms. Counts
/// itself in `held` from the handshake until the server closes it.
async fn trickle(server: SocketAddr, ca_pem: String, last: u8, held: Arc<Held>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from([127, 0, 0, last]), 0))
        .unwrap();
    let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(3), socket.connect(server)).await
    else {
        return;
    };
    let name = ServerName::try_from("localhost").unwrap();
    let handshake = connector(&ca_pem, None).connect(name, tcp);
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(3), handshake).await else {
        return;
    };
    let slot = &held.by_address[usize::from(last)];
    slot.fetch_add(1, Ordering::SeqCst);
    let (mut read, mut write) = tokio::io::split(tls);
    let send = trickle_request(&mut write, "squat");
    let mut answer = Vec::new();
    tokio::select! {
        _ = send => {}
        _ = read.read_to_end(&mut answer) => {}
    }
    slot.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_nodes_are_served_while_strangers_hold_slow_connections() {
    let ca = Ca::start(|_, _| {}).await;
    let limits = Limits {
        max_connections: 12,
        anonymous: Some(AnonymousLimits {
            max: 6,
            per_address: 3,
        }),
        ..Limits::default()
    };
    let running = listen(&ca, limits).await;
    let ca_pem = ca.state.pki.ca_pem().to_owned();
    let web1 = identity(&ca, CertKind::Node, "web1");

    // Ten slow connections from each of four addresses: before the limits,
    // they took all twelve slots and the node waited in the backlog.
    let held = Arc::new(Held::default());
    let strangers: Vec<_> = (2..6)
        .flat_map(|last| (0..10).map(move |_| last))
        .map(|last| {
            tokio::spawn(trickle(
                running.addr,
                ca_pem.clone(),
                last,
                Arc::clone(&held),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        exchange(
            running.addr,
            &ca_pem,
            Some(&web1),
            "POST",
            "/api/v1/nodes/web1/catalog",
            CATALOG_BODY,
        ),
    )
    .await
    .expect("the node is served while the strangers hold their connections")
    .unwrap();
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "{response}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let (total, most) = (held.total(), held.most_of_one_address());
    assert!(
        total > 0,
        "the strangers got nothing: the test proves nothing"
    );
    assert!(
        total <= 6,
        "strangers hold {total} connections, the share is 6"
    );
    assert!(
        most <= 3,
        "one address holds {most} connections, its share is 3"
    );
    running.shutdown.cancel();
    for stranger in strangers {
        stranger.abort();
    }
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_past_the_deadline_is_cut_off() {
    let ca = Ca::start(|_, _| {}).await;
    let limits = Limits {
        body_deadline: Duration::from_secs(1),
        ..Limits::default()
    };
    let running = listen(&ca, limits).await;
    let ca_pem = ca.state.pki.ca_pem().to_owned();
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector(&ca_pem, None).connect(name, tcp).await.unwrap();
    let (mut read, mut write) = tokio::io::split(tls);
    let started = Instant::now();
    let sender = tokio::spawn(async move { trickle_request(&mut write, "slow").await });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer))
        .await
        .expect("the server ends the request at its deadline")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    sender.abort();
    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();
}
