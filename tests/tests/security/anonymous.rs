//! Anonymous clients are refused before their bodies are read (issue 16,
//! item 3): a guarded route answers 401 to a caller without a credential
//! without buffering what it sends, so a hundred 15 MiB uploads from
//! nobody cost the server next to nothing, and a certified node is served.

use std::sync::Arc;
use std::thread;

use drover_tests::Credential;

use crate::{Fleet, catalog_json, peak_rss_kib};

const CLIENTS: usize = 100;
const BODY: usize = 15 * 1024 * 1024;

#[test]
fn a_hundred_anonymous_large_bodies_are_refused_without_being_buffered() {
    let fleet = Fleet::start();
    let web1 = fleet.enrolled("web-1").credential();
    let server = &fleet.server;
    let before = peak_rss_kib(server.pid());

    let body: Arc<[u8]> = vec![b' '; BODY].into();
    let answers: Vec<Result<(u16, String), String>> = thread::scope(|scope| {
        let sending: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let body = Arc::clone(&body);
                let route = if i % 2 == 0 {
                    "/api/v1/nodes/web-1/catalog"
                } else {
                    "/api/v1/nodes/web-1/reports"
                };
                scope
                    .spawn(move || server.request_as(&Credential::None, "POST", route, Some(&body)))
            })
            .collect();
        sending.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for answer in &answers {
        match answer {
            // Refused at once; or the server closed while the client still wrote.
            Ok((status, body)) => {
                assert_eq!(*status, 401, "{body}");
                assert!(body.contains("client certificate"), "{body}");
            }
            Err(e) => assert!(
                e.contains("roken pipe") || e.contains("reset") || e.contains("closed"),
                "{e}"
            ),
        }
    }

    let grown_mib = (peak_rss_kib(server.pid()) - before) / 1024;
    assert!(
        grown_mib < 150,
        "the server's peak memory grew by {grown_mib} MiB for {CLIENTS} anonymous bodies of {} MiB",
        BODY >> 20
    );
    // The node itself is still served.
    let catalog = catalog_json(
        server
            .request_as(&web1, "POST", "/api/v1/nodes/web-1/catalog", Some(b"{}"))
            .unwrap(),
    );
    assert_eq!(catalog["node"], "web-1");
}

/// The server's `max_anonymous_per_address` (issue 16, item 4): one address
/// holds that many connections before a handshake proves a certificate,
/// and the next is closed at once instead of taking a slot.
#[test]
fn one_address_holds_at_most_max_anonymous_per_address_connections() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().unwrap();
    let repo = drover_tests::GitRepo::init(&tmp.path().join("repo"));
    repo.write("nodes.toml", "[[node]]\nmatch = \"*\"\nroles = []\n");
    repo.commit("empty");
    let server = drover_tests::Server::start_with(
        &repo.path,
        &tmp.path().join("server"),
        "127.0.0.1:0",
        "max_anonymous_per_address = 2\n",
        &[],
    );
    // Two connections that never start their handshake are held...
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for mut stream in &held {
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let err = stream.read(&mut [0u8; 1]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "a held connection was closed: {err}"
        );
    }
    // ...the third is closed at once.
    let mut third = TcpStream::connect(server.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let closed = matches!(third.read(&mut [0u8; 1]), Ok(0) | Err(_));
    assert!(
        closed && started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Once they go, the address is served again.
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = server
        .request_as(&drover_tests::Credential::None, "GET", "/healthz", None)
        .unwrap();
    assert_eq!(status, 200, "{body}");
}
