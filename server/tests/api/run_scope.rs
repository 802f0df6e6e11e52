//! Run ids are unique per node: what a node is told when it posts a run_id
//! does not depend on whether another node has a run of that id.

use super::*;

async fn post_as(cx: &TestContext, node: &str, run_id: &str) -> (StatusCode, Value) {
    let body = report(node, run_id, "changed", "2025-01-01T00:00:02Z").to_string();
    let req = Request::post(format!("/api/v1/nodes/{node}/reports"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, _, bytes) = cx.send_as(Peer::Node(node.to_owned()), req).await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn another_nodes_run_id_gets_the_answer_of_a_fresh_one() {
    let cx = TestContext::directory().await;
    assert_eq!(
        post_as(&cx, "db-1", "run-db-1").await.0,
        StatusCode::CREATED
    );

    // web-1 probes: a run id db-1 has, and one nobody has.
    let taken = post_as(&cx, "web-1", "run-db-1").await;
    let fresh = post_as(&cx, "web-1", "run-nobody").await;
    assert_eq!(taken.0, StatusCode::CREATED, "{}", taken.1);
    assert_eq!(taken.0, fresh.0);
    assert_eq!(taken.1["stored"], fresh.1["stored"]);
    // Its own re-post is still recognised (spools re-post safely).
    let again = post_as(&cx, "web-1", "run-db-1").await;
    assert_eq!(
        (again.0, &again.1["stored"]),
        (StatusCode::OK, &json!(false))
    );

    // Each node reads its own run of that id; db-1's stays db-1's.
    for node in ["db-1", "web-1"] {
        let req = Request::get("/api/v1/reports/run-db-1")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = cx.send_as(Peer::Node(node.to_owned()), req).await;
        assert_eq!(status, StatusCode::OK);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["node"], node);
    }
    let db1 = cx.get_json("/api/v1/nodes/db-1/reports").await;
    assert_eq!(db1.as_array().unwrap().len(), 1);
    let web1 = cx.get_json("/api/v1/nodes/web-1/reports").await;
    assert_eq!(web1.as_array().unwrap().len(), 2);

    // The dashboard links each run with its node, and shows that node's.
    let node_page = String::from_utf8(cx.get("/nodes/web-1").await.1.to_vec()).unwrap();
    assert!(
        node_page.contains("href=\"/runs/run-db-1?node=web-1\""),
        "{node_page}"
    );
    for node in ["db-1", "web-1"] {
        let (status, page) = cx.get(&format!("/runs/run-db-1?node={node}")).await;
        assert_eq!(status, StatusCode::OK);
        let page = String::from_utf8(page.to_vec()).unwrap();
        assert!(
            page.contains(&format!("href=\"/nodes/{node}\"")),
            "{node}: {page}"
        );
        assert!(
            page.contains(&format!("href=\"/runs/run-db-1?node={node}&#38;all=1\"")),
            "{node}: {page}"
        );
    }
    let (status, page) = cx.get("/runs/run-db-1?node=nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&page).contains("of node `nobody`"));
    cx.stop().await;
}
