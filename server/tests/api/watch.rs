//! `GET nodes/{name}/catalog/watch`: at once on a version the node does not
//! hold, when a git refresh recompiles the node, never on a commit that
//! does not compile, unchanged at the timeout or at shutdown.

use std::time::{Duration, Instant};

use super::*;

/// Not the version of any catalog of these tests.
const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn watch_uri(node: &str, version: &str, timeout_secs: u64) -> String {
    format!("/api/v1/nodes/{node}/catalog/watch?version={version}&timeout_secs={timeout_secs}")
}

async fn watch(cx: &TestContext, version: &str, timeout_secs: u64) -> Value {
    cx.get_json(&watch_uri("web-1", version, timeout_secs))
        .await
}

async fn version_served(cx: &TestContext) -> String {
    let (status, _, catalog) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK, "{catalog}");
    catalog["version"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_known_different_version_answers_at_once_and_the_same_one_waits_out_the_timeout() {
    let cx = TestContext::directory().await;
    let v1 = version_served(&cx).await;

    let t = Instant::now();
    let answer = watch(&cx, OTHER, 30).await;
    assert_eq!(
        answer,
        json!({"version": v1, "changed": true, "run": false})
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "at once, not at the timeout"
    );
    // A node that holds nothing learns of any version.
    let answer = cx
        .get_json("/api/v1/nodes/web-1/catalog/watch?timeout_secs=30")
        .await;
    assert_eq!(
        answer,
        json!({"version": v1, "changed": true, "run": false})
    );

    let t = Instant::now();
    let answer = watch(&cx, &v1, 1).await;
    assert_eq!(
        answer,
        json!({"version": v1, "changed": false, "run": false})
    );
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited for the timeout"
    );
    cx.stop().await;
}

#[tokio::test]
async fn a_hook_that_moves_the_version_answers_the_waiting_watch() {
    let cx = TestContext::directory().await;
    let v1 = version_served(&cx).await;

    let waiting = watch(&cx, &v1, 60);
    let push = async {
        // The watch is registered before the change lands.
        tokio::time::sleep(Duration::from_millis(200)).await;
        write(&cx.repo, &[("files/motd", "pushed\n")]);
        let t = Instant::now();
        cx.hook().await;
        t
    };
    let (answer, pushed) = tokio::join!(waiting, push);
    assert_eq!(answer["changed"], true, "{answer}");
    let v2 = answer["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, v1);
    assert!(pushed.elapsed() < Duration::from_secs(5));
    // What the watch announced is what the node gets when it asks.
    assert_eq!(version_served(&cx).await, v2);

    // A commit that does not compile leaves the last good version.
    write(
        &cx.repo,
        &[("roles/base.toml", "[[file]]\npath = \"relative\"\n")],
    );
    let (answer, ()) = tokio::join!(watch(&cx, &v2, 2), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cx.hook().await;
    });
    assert_eq!(
        answer,
        json!({"version": v2, "changed": false, "run": false})
    );
    cx.stop().await;
}

#[tokio::test]
async fn a_watch_for_a_node_the_server_has_no_version_for_waits_for_its_first_compile() {
    let cx = TestContext::directory().await;
    let first = async {
        let uri = "/api/v1/nodes/web-2/catalog/watch?timeout_secs=60";
        let req = Request::get(uri).body(Body::empty()).unwrap();
        cx.send_as(Peer::Node("web-2".into()), req).await
    };
    let compile = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, _, catalog) = cx.catalog("web-2").await;
        assert_eq!(status, StatusCode::OK);
        catalog["version"].as_str().unwrap().to_owned()
    };
    let ((status, _, body), version) = tokio::join!(first, compile);
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer,
        json!({"version": version, "changed": true, "run": false})
    );
    cx.stop().await;
}

#[tokio::test]
async fn only_the_node_itself_may_watch_and_bad_parameters_are_named() {
    let cx = TestContext::directory().await;
    let v1 = version_served(&cx).await;
    let uri = watch_uri("web-1", &v1, 60);
    for (peer, expected) in [
        (Peer::Node("web-2".into()), StatusCode::FORBIDDEN),
        (Peer::Operator("tests".into()), StatusCode::FORBIDDEN),
        (Peer::Anonymous, StatusCode::UNAUTHORIZED),
    ] {
        let t = Instant::now();
        let req = Request::get(&uri).body(Body::empty()).unwrap();
        let (status, _, _) = cx.send_as(peer.clone(), req).await;
        assert_eq!(status, expected, "{peer:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{peer:?} refused at once"
        );
    }
    for (query, named) in [
        (format!("version={v1}&timeout_secs=301"), "timeout_secs"),
        (format!("version={v1}&timeout_secs=soon"), "timeout_secs"),
        (format!("version={v1}&timeout_secs=-1"), "timeout_secs"),
        ("version=not-a-version".to_owned(), "version"),
        (format!("version={}", v1.to_uppercase()), "version"),
    ] {
        let (status, body) = cx
            .get(&format!("/api/v1/nodes/web-1/catalog/watch?{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(named), "{query}: {error}");
    }
    cx.stop().await;
}

#[tokio::test]
async fn shutdown_ends_a_waiting_watch() {
    let cx = TestContext::directory().await;
    let v1 = version_served(&cx).await;
    let t = Instant::now();
    let (answer, ()) = tokio::join!(watch(&cx, &v1, 300), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cx.shutdown.cancel();
    });
    assert_eq!(
        answer,
        json!({"version": v1, "changed": false, "run": false})
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "it did not hold shutdown"
    );
    cx.tracker.close();
    cx.tracker.wait().await;
}

#[tokio::test]
async fn an_operators_run_request_answers_the_nodes_watch_once() {
    let cx = TestContext::directory().await;
    let v1 = version_served(&cx).await;
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/run", "").await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let t = Instant::now();
    let answer = watch(&cx, &v1, 30).await;
    assert_eq!(
        answer,
        json!({"version": v1, "changed": false, "run": true})
    );
    assert!(t.elapsed() < Duration::from_secs(5), "at once");
    let answer = watch(&cx, &v1, 1).await;
    assert_eq!(
        answer,
        json!({"version": v1, "changed": false, "run": false})
    );
}
