//! The node API sees the fleet as the dashboard does (issue 18): each node
//! with its state, filtered and paged; a node whose catalog never compiled
//! is `failed` with the compile error as the reason, in the API, the
//! dashboard and `drover_nodes{state}`.

use axum::http::StatusCode;
use serde_json::Value;

use super::{BASE, TestContext, report, write};

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_node_list_filters_by_state_and_a_never_compiled_node_is_failed() {
    let cx = TestContext::directory().await;
    // web-1 converges and reports.
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    let run = report("web-1", "r1", "changed", "2099-01-01T00:00:00Z");
    let (status, _, _) = cx
        .post("/api/v1/nodes/web-1/reports", run.to_string())
        .await;
    assert!(status.is_success(), "{status}");
    // Then the role breaks, and db-9 asks for its first catalog.
    write(
        &cx.repo,
        &[(
            "roles/base.toml",
            &format!("{BASE}\n[[file]]\npth = \"x\"\n"),
        )],
    );
    cx.hook().await;
    assert_eq!(cx.catalog("db-9").await.0, StatusCode::UNPROCESSABLE_ENTITY);

    let all = cx.get_json("/api/v1/nodes").await;
    assert_eq!(names(&all), ["db-9", "web-1"]);
    let db9 = &all[0];
    assert_eq!(db9["state"], "failed", "{db9:#}");
    assert!(
        db9["compile_error"]
            .to_string()
            .contains("roles/base.toml:"),
        "{db9:#}"
    );
    assert_eq!(all[1]["state"], "changed", "{all:#}");
    assert_eq!(all[1]["noop"], false, "{all:#}");

    let failed = cx.get_json("/api/v1/nodes?state=failed").await;
    assert_eq!(names(&failed), ["db-9"]);
    let changed = cx.get_json("/api/v1/nodes?state=changed&q=WEB").await;
    assert_eq!(names(&changed), ["web-1"]);
    let one = cx.get_json("/api/v1/nodes/db-9").await;
    assert_eq!(one["state"], "failed");

    // Paging: one at a time, the Link header to the next.
    let (status, headers, body) = cx
        .send(
            axum::http::Request::get("/api/v1/nodes?limit=1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let first: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(names(&first), ["db-9"]);
    let link = headers["link"].to_str().unwrap();
    assert_eq!(link, "</api/v1/nodes?limit=1&after=db-9>; rel=\"next\"");
    let next = cx.get_json("/api/v1/nodes?limit=1&after=db-9").await;
    assert_eq!(names(&next), ["web-1"]);

    // A filter that cannot be used is refused, not ignored.
    let (status, body) = cx.get("/api/v1/nodes?state=broken").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("unknown state `broken`"));

    // The dashboard and the metrics say the same.
    let (status, page) = cx.get("/?state=failed").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("db-9") && !page.contains(">web-1<"), "{page}");
    let (_, metrics) = cx.get("/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("drover_nodes{state=\"failed\"} 1\n"),
        "{metrics}"
    );
    cx.stop().await;
}

/// The names of every page from `uri` on, following the `Link` headers.
async fn every_page(cx: &super::TestContext, uri: &str) -> Vec<String> {
    let (mut names_seen, mut next) = (Vec::new(), Some(uri.to_owned()));
    while let Some(uri) = next.take() {
        let req = axum::http::Request::get(&uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, headers, body) = cx.send(req).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let page: Value = serde_json::from_slice(&body).unwrap();
        names_seen.extend(names(&page).into_iter().map(str::to_owned));
        next = headers.get("link").map(|link| {
            let link = link.to_str().unwrap();
            link[1..link.find('>').unwrap()].to_owned()
        });
    }
    names_seen
}

#[tokio::test]
async fn the_node_list_sorts_by_any_column_and_pages_in_that_order() {
    let cx = TestContext::directory().await;
    // Finished 60, 180, 30 and 120 seconds ago.
    for (node, status, ago) in [
        ("a-1", "changed", 60),
        ("b-1", "failed", 180),
        ("c-1", "unchanged", 30),
        ("d-1", "failed", 120),
    ] {
        assert_eq!(cx.catalog(node).await.0, StatusCode::OK);
        let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(ago);
        let run = report(node, &format!("{node}-r"), status, &at.to_string());
        let (status, _, _) = cx
            .post(&format!("/api/v1/nodes/{node}/reports"), run.to_string())
            .await;
        assert!(status.is_success(), "{status}");
    }
    assert_eq!(
        every_page(&cx, "/api/v1/nodes?sort=-last_run&limit=1").await,
        ["c-1", "a-1", "d-1", "b-1"]
    );
    assert_eq!(
        every_page(&cx, "/api/v1/nodes?sort=last_run&limit=3").await,
        ["b-1", "d-1", "a-1", "c-1"]
    );
    // Triage: the failed first, ties by name; filters hold across pages.
    assert_eq!(
        every_page(&cx, "/api/v1/nodes?sort=triage&limit=1").await,
        ["b-1", "d-1", "a-1", "c-1"]
    );
    assert_eq!(
        every_page(&cx, "/api/v1/nodes?sort=-name&state=failed&limit=1").await,
        ["d-1", "b-1"]
    );
    for (query, says) in [("sort=age", "`sort`"), ("sort=triage&after=b-1", "`after`")] {
        let (status, body) = cx.get(&format!("/api/v1/nodes?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(says), "{query}: {body}");
    }
    cx.stop().await;
}
