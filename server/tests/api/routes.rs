//! The node and operator routes over a plain catalog directory.

use super::*;

#[tokio::test]
async fn catalog_has_an_etag_and_answers_304_when_unchanged() {
    let cx = TestContext::directory().await;
    let (status, headers, catalog) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK, "{catalog}");
    let version = catalog["version"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::ETAG], format!("\"{version}\"").as_str());
    assert_eq!(catalog["node"], "web-1");
    assert_eq!(catalog["environment"], "production");
    assert!(catalog.get("contents").is_none(), "contents travel by hash");
    assert_eq!(catalog["resources"].as_array().unwrap().len(), 2);

    let req = Request::post("/api/v1/nodes/web-1/catalog")
        .header(header::IF_NONE_MATCH, format!("\"{version}\""))
        .body(Body::from(
            json!({"facts": {"hostname": "web-1", "os": {"id": "debian"}}}).to_string(),
        ))
        .unwrap();
    let (status, headers, body) = cx.send(req).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[header::ETAG], format!("\"{version}\"").as_str());

    let (status, _, body) = cx.post("/api/v1/nodes/web-1/catalog", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid catalog request")
    );
    cx.stop().await;
}

#[tokio::test]
async fn file_route_serves_only_referenced_hashes() {
    let cx = TestContext::directory().await;
    let motd = sha(b"welcome\n");
    let uri = format!("/api/v1/nodes/web-1/files/{motd}");
    assert_eq!(
        cx.get(&uri).await.0,
        StatusCode::NOT_FOUND,
        "no catalog served yet"
    );

    let (status, _, _) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = cx.get(&uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"welcome\n");
    let hello = sha(b"hello web-1\n");
    let (status, body) = cx.get(&format!("/api/v1/nodes/web-1/files/{hello}")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello web-1\n"[..]));

    // Another node's catalog references it, but that does not make it web-1's.
    let (status, _, _) = cx.catalog("web-2").await;
    assert_eq!(status, StatusCode::OK);
    let other = sha(b"hello web-2\n");
    let (status, body) = cx.get(&format!("/api/v1/nodes/web-1/files/{other}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].is_string());

    for bad in [
        "abc",
        &motd.to_uppercase(),
        &format!("{motd}0"),
        "../../etc/passwd",
    ] {
        let (status, _) = cx.get(&format!("/api/v1/nodes/web-1/files/{bad}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    cx.stop().await;
}

#[tokio::test]
async fn after_a_restart_the_file_route_answers_from_the_stored_catalog() {
    let cx = TestContext::directory().await;
    let (status, _, _) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    // What web-1 was served is in the database; the server's memory of it
    // (and its cache of content bytes) goes with the restart.
    let cx = cx.restart().await;
    let hello = sha(b"hello web-1\n");
    let (status, body) = cx.get(&format!("/api/v1/nodes/web-1/files/{hello}")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello web-1\n"[..]));
    // The stored catalog still says what web-1 may fetch.
    let other = sha(b"hello web-2\n");
    let (status, _) = cx.get(&format!("/api/v1/nodes/web-1/files/{other}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A node never served anything has nothing to fetch.
    let (status, _) = cx.get(&format!("/api/v1/nodes/web-9/files/{hello}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    cx.stop().await;
}

#[tokio::test]
async fn reports_are_stored_once_and_listed_newest_first() {
    let cx = TestContext::directory().await;
    let first = report("web-1", "run-1", "changed", "2025-01-01T00:01:00Z").to_string();
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", first.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", first.clone()).await;
    assert_eq!(status, StatusCode::OK, "a re-post is idempotent");
    let second = report("web-1", "run-2", "failed", "2025-01-01T00:02:00.5Z").to_string();
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", second).await;
    assert_eq!(status, StatusCode::CREATED);

    let history = cx.get_json("/api/v1/nodes/web-1/reports").await;
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["run-2", "run-1"], "stored once, newest first");
    assert_eq!(history[1]["changed"], 1);
    assert_eq!(history[1]["resources"], 2);
    let paged = cx
        .get_json("/api/v1/nodes/web-1/reports?limit=5&before=2025-01-01T00:02:00Z")
        .await;
    assert_eq!(paged.as_array().unwrap().len(), 1);
    assert_eq!(paged[0]["id"], "run-1");
    let limited = cx.get_json("/api/v1/nodes/web-1/reports?limit=1").await;
    assert_eq!(limited.as_array().unwrap().len(), 1);

    let (status, body) = cx.get("/api/v1/reports/run-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], first.as_bytes(), "kept whole, as posted");
    assert_eq!(
        cx.get("/api/v1/reports/nope").await.0,
        StatusCode::NOT_FOUND
    );

    let node = cx.get_json("/api/v1/nodes/web-1").await;
    assert_eq!(node["last_status"], "failed");
    assert_eq!(node["last_run_at"], "2025-01-01T00:02:00.5Z");

    let metrics = String::from_utf8(cx.get("/metrics").await.1.to_vec()).unwrap();
    assert!(
        metrics.contains("drover_reports_received_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drover_nodes{state=\"unresponsive\"} 1"),
        "{metrics}"
    );
    cx.stop().await;
}

#[tokio::test]
async fn reports_are_validated() {
    let cx = TestContext::directory().await;
    let other = report("db-1", "run-x", "changed", "2025-01-01T00:01:00Z").to_string();
    let (status, _, body) = cx.post("/api/v1/nodes/web-1/reports", other).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("db-1"));

    let (status, _, body) = cx
        .post("/api/v1/nodes/web-1/reports", "{\"run_id\": 1}")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid report"),
        "{body}"
    );

    let huge = vec![b' '; drover_server::BODY_LIMIT + 1];
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        cx.get("/api/v1/nodes/web-1/reports").await.0,
        StatusCode::NOT_FOUND,
        "nothing was stored for web-1"
    );
    cx.stop().await;
}

#[tokio::test]
async fn operator_routes_have_their_shapes() {
    let cx = TestContext::directory().await;
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    let nodes = cx.get_json("/api/v1/nodes").await;
    let node = &nodes[0];
    for key in [
        "name",
        "environment",
        "catalog_version",
        "commit",
        "last_status",
        "last_run_at",
        "facts",
        "roles",
        "compile_error",
    ] {
        assert!(node.get(key).is_some(), "missing {key} in {node}");
    }
    assert_eq!(node["name"], "web-1");
    assert_eq!(node["roles"], json!(["base"]));
    assert_eq!(node["facts"]["os"]["id"], "debian");
    assert_eq!(node["compile_error"], Value::Null);
    assert_eq!(
        cx.get("/api/v1/nodes/nobody").await.0,
        StatusCode::NOT_FOUND
    );

    let envs = cx.get_json("/api/v1/environments").await;
    assert_eq!(envs["source"], "directory");
    assert_eq!(envs["default_environment"], "production");
    assert_eq!(envs["environments"][0]["name"], "production");
    assert!(
        envs["environments"][0]["commit"]
            .as_str()
            .unwrap()
            .starts_with("dir-")
    );

    let (status, body) = cx.get("/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    let metrics = String::from_utf8(cx.get("/metrics").await.1.to_vec()).unwrap();
    for name in [
        "drover_catalog_compiles_total 1",
        "drover_catalog_compile_errors_total 0",
        "drover_reports_received_total 0",
        "drover_nodes{state=\"never_reported\"} 1",
        "drover_git_refresh_age_seconds ",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    let (status, page) = cx.get("/").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains("data-node=\"web-1\""), "{page}");
    assert!(page.contains("production"));
    cx.stop().await;
}
