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
