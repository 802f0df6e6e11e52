//! Apps through the API, with nodes that only ask for catalogs (no agent,
//! no engine): the control loop places a replica into its node's catalog,
//! keeps it there while the app file is broken, and a restarted server
//! serves it from its first catalog on.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{TestContext, site, write};

const SHOP: &str = "replicas = 1\nimage = \"busybox:1\"\nrequests = { memory = \"64MiB\" }\n";

/// A catalog request with the facts the scheduler reads capacity from.
async fn catalog(cx: &TestContext, node: &str) -> (StatusCode, Value) {
    let body = json!({"facts": {
        "hostname": node,
        "processors": {"count": 2},
        "memory": {"total_bytes": 4_u64 << 30},
    }})
    .to_string();
    let req = Request::post(format!("/api/v1/nodes/{node}/catalog"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, _, bytes) = cx.send(req).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn holds(catalog: &Value, container: &str) -> bool {
    let id = format!("container:{container}");
    catalog["resources"]
        .as_array()
        .is_some_and(|all| all.iter().any(|r| r["id"] == id.as_str()))
}

/// The shop app once its replica has a node.
async fn placed(cx: &TestContext) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let apps = cx.get_json("/api/v1/apps/shop").await;
        if apps[0]["replicas"][0]["node"].is_string() {
            return apps[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "not placed within 20 s: {apps:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_replica_survives_a_broken_app_file_and_a_restart() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "welcome\n");
    write(&repo, &[("apps/shop.toml", SHOP)]);
    let cx = TestContext::start(tmp, repo.clone(), repo.display().to_string()).await;
    assert_eq!(catalog(&cx, "web-1").await.0, StatusCode::OK);
    let app = placed(&cx).await;
    assert_eq!(app["replicas"][0]["node"], "web-1");
    let container = app["replicas"][0]["container"].as_str().unwrap().to_owned();
    assert!(container.starts_with("shop-0-"), "{container}");
    // The control loop recompiled the node: its next catalog holds it.
    let (status, served) = catalog(&cx, "web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(holds(&served, &container), "{served:#}");
    let node = cx.get_json("/api/v1/nodes/web-1").await;
    assert_eq!(
        node["replicas"][0]["container"],
        container.as_str(),
        "{node:#}"
    );
    assert_eq!(node["replicas"][0]["state"], "starting");
    assert_eq!(node["cordoned"], false);

    // A typo in the app file: the replica stays where it is, the node
    // keeps the catalog that runs it, and the error is shown.
    write(&repo, &[("apps/shop.toml", &format!("{SHOP}bogus = 1\n"))]);
    cx.hook().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let app = cx.get_json("/api/v1/apps/shop").await;
    assert_eq!(
        app[0]["replicas"][0]["container"],
        container.as_str(),
        "{app:#}"
    );
    assert!(
        app[0]["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("apps/shop.toml:4:1"),
        "{app:#}"
    );
    let (status, served) = catalog(&cx, "web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        holds(&served, &container),
        "the last good catalog: {served:#}"
    );

    // Fixed, then a restart: the very first catalog still holds the
    // replica (a catalog without it would have the agent remove it).
    write(&repo, &[("apps/shop.toml", SHOP)]);
    cx.hook().await;
    let cx = cx.restart().await;
    let (status, served) = catalog(&cx, "web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(holds(&served, &container), "{served:#}");
    cx.stop().await;
}
