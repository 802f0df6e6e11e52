//! Load shedding on the catalog route: beyond the compile slots and their
//! queue a request that needs a compile gets 503 with `Retry-After`; one
//! served from the compile cache does not, and a queued one is served.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use drover_server::credentials::Peer;
use drover_server::shed::{Admission, RETRY_AFTER_SECS};
use drover_server::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn catalog(
    router: &axum::Router,
    node: &str,
    etag: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let body = json!({"facts": {"hostname": node}}).to_string();
    let mut req = Request::post(format!("/api/v1/nodes/{node}/catalog"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(etag) = etag {
        req = req.header(header::IF_NONE_MATCH, etag);
    }
    let mut req = req.body(Body::from(body)).unwrap();
    req.extensions_mut().insert(Peer::Node(node.to_owned()));
    let resp = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn compiles_beyond_capacity_get_503_with_retry_after_and_cache_hits_do_not() {
    let tmp = tempfile::TempDir::new().unwrap();
    let repo = super::site(tmp.path(), "welcome\n");
    let mut config = Config::new(repo.display().to_string(), tmp.path().join("data"));
    config.refresh_interval = Duration::from_secs(3600);
    config.max_concurrent_compiles = 1;
    config.compile_queue = 1;
    let state = AppState::open(config).await.unwrap();
    let router = app(state.clone());

    // A node compiled before the server is busy: its catalog is cached.
    let (status, headers, _) = catalog(&router, "cached-1", None).await;
    assert_eq!(status, StatusCode::OK);
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();

    // Every compile slot busy (as a long compile would hold it).
    let slot = state.shed.admit(Admission::Wait).await.unwrap();
    // The first new node waits in the one queue place...
    let queued = {
        let router = router.clone();
        tokio::spawn(async move { catalog(&router, "new-1", None).await })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while state.shed.waiting() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first request queues for a compile slot");
    // ...the next ones are shed at once, told when to come back.
    for node in ["new-2", "new-3"] {
        let (status, headers, body) = catalog(&router, node, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{node}: {body}");
        assert_eq!(
            headers[header::RETRY_AFTER].to_str().unwrap(),
            RETRY_AFTER_SECS.to_string()
        );
        let message = body["error"].as_str().unwrap();
        assert!(message.contains("compiling at capacity"), "{message}");
    }
    // A cached catalog needs no slot: 304 and 200 while the server is full.
    let (status, _, _) = catalog(&router, "cached-1", Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (status, _, body) = catalog(&router, "cached-1", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !queued.is_finished(),
        "the queued request waits for the slot"
    );

    drop(slot);
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("the queued request is served once the slot is free")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node"], "new-1");
    // A shed node that comes back after Retry-After is served.
    let (status, _, body) = catalog(&router, "new-2", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
