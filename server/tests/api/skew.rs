//! A report from a clock far ahead does not freeze the node's state: runs
//! are ordered by their finish time clamped to their arrival plus a small
//! skew, and the skew is shown.

use super::*;

#[tokio::test]
async fn a_report_dated_2036_does_not_hide_later_runs() {
    let cx = TestContext::directory().await;
    let future = report("web-1", "r-2036", "failed", "2036-01-01T00:00:00Z");
    let (status, _, _) = cx
        .post("/api/v1/nodes/web-1/reports", future.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let now = jiff::Timestamp::now().to_string();
    let real = report("web-1", "r-real", "changed", &now);
    let (status, _, _) = cx
        .post("/api/v1/nodes/web-1/reports", real.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // The real run is the node's last run and state.
    let node = cx.get_json("/api/v1/nodes/web-1").await;
    assert_eq!(node["last_status"], "changed", "{node}");
    let history = cx.get_json("/api/v1/nodes/web-1/reports").await;
    let runs = history.as_array().unwrap();
    assert_eq!(runs[0]["id"], "r-real", "{history}");
    assert_eq!(runs[0]["clock_skew_secs"], 0.0, "{history}");
    assert_eq!(runs[1]["id"], "r-2036");
    let skew = runs[1]["clock_skew_secs"].as_f64().unwrap();
    assert!(skew > 300.0 * 24.0 * 3600.0, "{history}");
    assert!(runs[1]["received_at"].as_str().unwrap().starts_with("20"));

    // The run page says so.
    let (status, page) = cx.get("/runs/r-2036").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains("id=\"clock-skew\""), "{page}");
    let (_, page) = cx.get("/runs/r-real").await;
    assert!(
        !String::from_utf8(page.to_vec())
            .unwrap()
            .contains("id=\"clock-skew\"")
    );
    cx.stop().await;
}
