//! A node's lifecycle through the API: deactivation out of the lists,
//! counts and metrics until the node checks in again; `node_ttl_days`
//! deactivation of silent nodes; run requests answered to the node's watch
//! once; purge of an unknown node refused.

use axum::http::StatusCode;
use serde_json::Value;

use super::TestContext;

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn deactivated_and_silent_nodes_leave_the_lists_until_they_check_in() {
    let cx = TestContext::directory().await;
    for node in ["web-1", "web-2", "db-1"] {
        assert_eq!(cx.catalog(node).await.0, StatusCode::OK);
    }
    let (status, _, body) = cx.post("/api/v1/nodes/web-1/deactivate", "").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        names(&cx.get_json("/api/v1/nodes").await),
        ["db-1", "web-2"]
    );
    let metrics = String::from_utf8(cx.get("/metrics").await.1.to_vec()).unwrap();
    assert!(
        metrics.contains("drover_nodes{state=\"never_reported\"} 2"),
        "{metrics}"
    );
    // Checking in again brings it back.
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    assert_eq!(
        names(&cx.get_json("/api/v1/nodes").await),
        ["db-1", "web-1", "web-2"]
    );
    assert!(cx.get_json("/api/v1/nodes/web-1").await["deactivated_at"].is_null());

    // node_ttl_days: what the leader's hourly job does, on nodes silent
    // for two days (their last signal set back by hand).
    let two_days_ago = jiff::Timestamp::now().as_microsecond() - 2 * 86_400_000_000;
    cx.db
        .write(move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE nodes SET last_seen_at_us = $1 WHERE name <> 'db-1'")
                    .bind(two_days_ago)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
        .unwrap();
    let one_day_ago = jiff::Timestamp::now().as_microsecond() - 86_400_000_000;
    let silent = drover_server::db::lifecycle::deactivate_silent(&cx.db, one_day_ago)
        .await
        .unwrap();
    assert_eq!(silent, ["web-1", "web-2"]);
    assert_eq!(names(&cx.get_json("/api/v1/nodes").await), ["db-1"]);

    for (method, uri) in [
        ("POST", "/api/v1/nodes/ghost/deactivate"),
        ("POST", "/api/v1/nodes/ghost/run"),
    ] {
        let (status, _, body) = cx.post(uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert!(String::from_utf8_lossy(&body).contains("unknown node `ghost`"));
    }
}
