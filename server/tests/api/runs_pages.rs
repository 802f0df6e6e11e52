//! The dashboard's `/runs` and `/changes` (issue 23): for operators only,
//! filtered as the API filters, a bad filter explained with a 400, the
//! next page and the downloads keeping the filters, text escaped.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use drover_server::credentials::Peer;
use serde_json::json;

use super::TestContext;

fn run(node: &str, id: &str, finished: &str, resource: &str) -> serde_json::Value {
    json!({
        "run_id": id, "node": node, "environment": "production", "commit": "c1",
        "catalog_version": "v1", "noop": false,
        "started_at": "2025-01-01T00:00:00Z", "finished_at": finished,
        "status": "changed", "cached_catalog": "not_used", "agent_version": "0.1.0",
        "resources": [{"id": resource, "status": "changed", "corrective": true,
                       "error": "<b>bold</b>", "duration_ms": 1.0}],
    })
}

/// The page, its `&` entities (askama writes `&#38;`) read back as `&`.
async fn page(cx: &TestContext, uri: &str) -> (StatusCode, String) {
    let (status, body) = cx.get(uri).await;
    let html = String::from_utf8(body.to_vec()).unwrap();
    (status, html.replace("&#38;", "&").replace("&amp;", "&"))
}

#[tokio::test]
async fn the_runs_and_changes_pages_filter_page_and_export() {
    let cx = TestContext::directory().await;
    for uri in ["/runs", "/changes"] {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let (status, headers, _) = cx.send_as(Peer::Anonymous, req).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(headers[header::LOCATION], "/login");
    }
    for i in 0..3 {
        let node = format!("web-{i}");
        let report = run(
            &node,
            &format!("r{i}"),
            &format!("2025-06-0{}T00:00:00Z", i + 1),
            "file:/etc/motd",
        );
        let (status, _, _) = cx
            .post(&format!("/api/v1/nodes/{node}/reports"), report.to_string())
            .await;
        assert!(status.is_success());
    }
    let other = run("db-1", "d1", "2025-06-09T00:00:00Z", "package:nginx");
    cx.post("/api/v1/nodes/db-1/reports", other.to_string())
        .await;

    let (status, html) = page(&cx, "/runs?resource=file%3A%2Fetc%2Fmotd").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<tr class=\"run\"").count(), 3, "{html}");
    assert!(!html.contains("data-node=\"db-1\""));
    assert!(
        html.contains("href=\"/runs/r2?node=web-2\"") && html.contains("href=\"/nodes/web-2\"")
    );
    assert!(
        html.contains("href=\"/api/v1/reports?resource=file%3A%2Fetc%2Fmotd&format=csv\""),
        "{html}"
    );

    // Two a page: the next page keeps the filter, the range and the size.
    let (_, html) = page(
        &cx,
        "/runs?resource=file:/etc/motd&range=custom&until=2030-01-01T00:00:00Z&limit=2",
    )
    .await;
    assert_eq!(html.matches("<tr class=\"run\"").count(), 2, "{html}");
    let next = html
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next page")
        .to_owned();
    assert!(
        next.starts_with(
            "/runs?resource=file%3A%2Fetc%2Fmotd&until=2030-01-01T00%3A00%3A00Z&range=custom&limit=2&after="
        ),
        "{next}"
    );
    let (_, html) = page(&cx, &next).await;
    assert_eq!(html.matches("<tr class=\"run\"").count(), 1, "{html}");
    assert!(html.contains("data-node=\"web-0\"") && !html.contains("id=\"next-page\""));

    let (status, html) = page(&cx, "/changes?resource=file:/etc/motd&range=7d").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("No change matches."),
        "these changes are older than 7 days"
    );
    let (_, html) = page(&cx, "/changes?resource=file:/etc/motd").await;
    assert_eq!(html.matches("<tr class=\"change\"").count(), 3, "{html}");
    assert!(
        html.contains("bold") && !html.contains("<b>bold"),
        "escaped: {html}"
    );
    assert!(html.contains("corrective</span>"));

    let (status, html) = page(&cx, "/runs?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("invalid `since` `yesterday`"), "{html}");
    cx.stop().await;
}
