//! The agent against a server shedding load: a 503 with `Retry-After` on
//! the catalog route is waited out and asked again; when the server stays
//! busy the run falls back to its cached catalog, as when it is away.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::server::{Fake, serve};
use support::{Node, catalog, text};

fn fake_for(node: &Node) -> Arc<Mutex<Fake>> {
    let (cat, contents) = catalog("n1", &[(&node.path("motd"), b"hello\n")]);
    Arc::new(Mutex::new(Fake {
        catalog: Some(cat),
        contents,
        token: Some("s3cret".into()),
        ..Fake::new()
    }))
}

fn catalog_requests(fake: &Arc<Mutex<Fake>>) -> usize {
    fake.lock().unwrap().if_none_match.len()
}

#[test]
fn a_503_with_retry_after_is_waited_out_and_asked_again() {
    let node = Node::new();
    let fake = fake_for(&node);
    {
        let mut f = fake.lock().unwrap();
        f.busy_catalog = 2;
        f.busy_retry_after = 1;
    }
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret");
    let started = Instant::now();
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(catalog_requests(&fake), 3, "two 503s, then the catalog");
    // Each wait is at least the server's Retry-After (1 s), jitter on top.
    assert!(took >= Duration::from_secs(2), "waited {took:?}");
    assert!(
        text(&out).contains("the server is busy (503): compiling at capacity; asking again in"),
        "{}",
        text(&out)
    );
    assert_eq!(fs_err::read(node.path("motd")).unwrap(), b"hello\n");
    let reports = &fake.lock().unwrap().reports;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["cached_catalog"], "not_used");
}

#[test]
fn a_server_that_stays_busy_leaves_the_run_on_its_cached_catalog() {
    let node = Node::new();
    let fake = fake_for(&node);
    let server = serve(Arc::clone(&fake));
    let token = node.write("token", "s3cret");
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Drift the file, then keep the server busy beyond the agent's retries.
    fs_err::write(node.path("motd"), "drifted\n").unwrap();
    {
        let mut f = fake.lock().unwrap();
        f.busy_catalog = 100;
        f.busy_retry_after = 0;
    }
    let before = catalog_requests(&fake);
    let out = node.run(&server.url, &["--enrollment-token-file", &token]);
    // Changed (2), and failed (4): the run could not use a fresh catalog.
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert_eq!(
        catalog_requests(&fake) - before,
        4,
        "the first ask and three retries: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("applied the cached catalog"),
        "{}",
        text(&out)
    );
    assert_eq!(
        fs_err::read(node.path("motd")).unwrap(),
        b"hello\n",
        "the cached catalog repaired the drift"
    );
    let f = fake.lock().unwrap();
    let last = f.reports.last().unwrap();
    assert_eq!(last["cached_catalog"], "on_failure");
    assert!(
        last["error"].as_str().unwrap().contains("503"),
        "{}",
        last["error"]
    );
}
