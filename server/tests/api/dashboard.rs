//! The dashboard's pages, live feed and retention, through the router: node
//! states from real reports, filters, paging, a run's diff and error, the
//! escaping of what nodes send, and the sign-in redirect.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use drover_server::credentials::Peer;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::TestContext;

/// `secs_ago` seconds before now, RFC 3339.
fn ago(secs_ago: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs_ago);
    t.to_string()
}

fn run(node: &str, run_id: &str, finished_secs_ago: i64, resources: Value) -> Value {
    json!({
        "run_id": run_id, "node": node, "environment": "production", "commit": "c1",
        "catalog_version": "v1", "noop": false,
        "started_at": ago(finished_secs_ago + 2), "finished_at": ago(finished_secs_ago),
        "status": status_of(&resources), "cached_catalog": "not_used", "agent_version": "0.1.0",
        "resources": resources,
    })
}

fn status_of(resources: &Value) -> &'static str {
    let statuses: Vec<&str> = resources
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    if statuses.iter().any(|s| *s == "failed" || *s == "skipped") {
        "failed"
    } else if statuses.iter().any(|s| *s == "changed" || *s == "noop") {
        "changed"
    } else {
        "unchanged"
    }
}

fn changed_file() -> Value {
    json!([{"id": "file:/etc/app.conf", "status": "changed", "corrective": true,
            "events": [{"property": "content", "previous": "sha256:aaa", "desired": "sha256:bbb"}],
            "diff": "--- /etc/app.conf\n+++ /etc/app.conf\n@@ -1 +1 @@\n-port = 80\n+port = 8080\n",
            "duration_ms": 3.0}])
}

fn failed_exec() -> Value {
    json!([
        {"id": "file:/etc/app.conf", "status": "changed",
         "events": [{"property": "content", "previous": "sha256:aaa", "desired": "sha256:bbb"}],
         "diff": "@@ -1 +1 @@\n-old line\n+new line\n", "duration_ms": 2.0},
        {"id": "exec:migrate", "status": "failed", "error": "exit status 3: boom <b>", "duration_ms": 9.0},
        {"id": "file:/etc/unchanged", "status": "unchanged", "duration_ms": 0.1}
    ])
}

impl TestContext {
    async fn report(&self, report: &Value) {
        let node = report["node"].as_str().unwrap();
        let (status, _, body) = self
            .post(&format!("/api/v1/nodes/{node}/reports"), report.to_string())
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }

    pub(crate) async fn page(&self, uri: &str) -> String {
        let (status, headers, body) = self
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, StatusCode::OK, "{uri}: {text}");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{uri} has a CSP"
        );
        text
    }
}

/// The `data-state` of the node row for `node` in an overview page.
fn row_state<'a>(html: &'a str, node: &str) -> Option<&'a str> {
    let start = html.find(&format!("data-node=\"{node}\" data-state=\""))?;
    let rest = &html[start..];
    let value = &rest[rest.find("data-state=\"")? + 12..];
    value.split('"').next()
}

/// The node rows of an overview page, in order.
fn node_names(html: &str) -> Vec<String> {
    html.split("<tr class=\"node\" data-node=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The next-page link of an overview page, unescaped.
fn next_page(html: &str) -> Option<String> {
    let start = html.find("id=\"next-page\" href=\"")? + 21;
    let href = html[start..].split('"').next()?;
    Some(href.replace("&#38;", "&").replace("&amp;", "&"))
}

fn card_count(html: &str, state: &str) -> Option<i64> {
    let start = html.find(&format!("data-state=\"{state}\" href="))?;
    let rest = &html[start..];
    let count = &rest[rest.find("<span class=\"count\">")? + 20..];
    count.split('<').next()?.parse().ok()
}

#[tokio::test]
async fn the_overview_shows_each_node_in_its_state() {
    let cx = TestContext::directory().await;
    // web-1 asks for its catalog (so it has facts and a served commit) and reports.
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    cx.report(&run("web-1", "r-web-1", 10, changed_file()))
        .await;
    cx.report(&run("db-1", "r-db-1", 20, failed_exec())).await;
    cx.report(&run("old-1", "r-old-1", 3 * 3600, changed_file()))
        .await;
    let mut noop = run("dry-1", "r-dry-1", 5, changed_file());
    noop["noop"] = json!(true);
    noop["resources"][0]["status"] = json!("noop");
    cx.report(&noop).await;
    cx.report(&run("ok-1", "r-ok-1", 5, json!([]))).await;
    let mut cached = run("cache-1", "r-cache-1", 5, json!([]));
    cached["cached_catalog"] = json!("on_failure");
    cx.report(&cached).await;
    // fresh-1 applied the commit its environment serves: not stale.
    let envs = cx.get_json("/api/v1/environments").await;
    let head = envs["environments"][0]["commit"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut fresh = run("fresh-1", "r-fresh-1", 5, json!([]));
    fresh["commit"] = json!(head);
    cx.report(&fresh).await;

    let html = cx.page("/").await;
    assert_eq!(row_state(&html, "web-1"), Some("changed"), "{html}");
    assert_eq!(row_state(&html, "db-1"), Some("failed"));
    assert_eq!(row_state(&html, "old-1"), Some("unresponsive"));
    assert_eq!(row_state(&html, "dry-1"), Some("noop_pending"));
    assert_eq!(row_state(&html, "ok-1"), Some("unchanged"));
    assert!(html.contains("data-node=\"fresh-1\" data-state=\"unchanged\" data-stale=\"false\""));
    assert!(html.contains("data-node=\"ok-1\" data-state=\"unchanged\" data-stale=\"true\""));
    for (state, n) in [
        ("changed", 1),
        ("failed", 1),
        ("unresponsive", 1),
        ("noop_pending", 1),
        ("unchanged", 3),
        ("never_reported", 0),
        // cache-1 used its cached catalog; c1 is not the directory's head.
        ("stale", 6),
    ] {
        assert_eq!(card_count(&html, state), Some(n), "{state}");
    }
    assert!(html.contains("<svg id=\"fleet-chart\""));
    assert!(html.contains("data-environment=\"production\""));

    // Filters: by state, name, stale, fact, role; a bad fact filter is explained.
    let failed = cx.page("/?state=failed").await;
    assert!(row_state(&failed, "db-1").is_some() && row_state(&failed, "web-1").is_none());
    let named = cx.page("/?q=WEB").await;
    assert!(row_state(&named, "web-1").is_some() && row_state(&named, "db-1").is_none());
    let by_fact = cx.page("/?fact=os.id%3Ddebian").await;
    assert!(row_state(&by_fact, "web-1").is_some() && row_state(&by_fact, "ok-1").is_none());
    let by_role = cx.page("/?role=base").await;
    assert!(row_state(&by_role, "web-1").is_some() && row_state(&by_role, "db-1").is_none());
    let by_env = cx.page("/?environment=production").await;
    assert!(row_state(&by_env, "web-1").is_some());
    let bad = cx.page("/?fact=os.id").await;
    assert!(bad.contains("needs KEY=VALUE"), "{bad}");
    cx.stop().await;
}

#[tokio::test]
async fn a_failed_run_shows_its_error_and_diff_escaped() {
    let cx = TestContext::directory().await;
    cx.report(&run("db-1", "r-db-1", 20, failed_exec())).await;
    let node = cx.page("/nodes/db-1").await;
    assert!(
        node.contains("data-run-id=\"r-db-1\" data-status=\"failed\""),
        "{node}"
    );
    assert!(node.contains("<svg id=\"node-chart\""));
    let page = cx.page("/runs/r-db-1").await;
    assert!(page.contains("data-resource-id=\"exec:migrate\" data-status=\"failed\""));
    assert!(page.contains("exit status 3: boom"), "{page}");
    assert!(!page.contains("boom <b>"), "the error is escaped");
    assert!(
        page.contains("<span class=\"del\">-old line</span>"),
        "{page}"
    );
    assert!(page.contains("<span class=\"add\">+new line</span>"));
    // Unchanged resources fold away until asked for.
    assert!(!page.contains("file:/etc/unchanged\""));
    assert!(page.contains("1 unchanged hidden"));
    let all = cx.page("/runs/r-db-1?all=1").await;
    assert!(all.contains("data-resource-id=\"file:/etc/unchanged\""));

    cx.report(&run("web-1", "r-web-1", 10, changed_file()))
        .await;
    let corrective = cx.page("/runs/r-web-1").await;
    assert!(corrective.contains("class=\"corrective badge\""));

    let (status, body) = cx.get("/runs/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let html = String::from_utf8_lossy(&body);
    assert!(
        html.contains("<h1>Not found</h1>") && html.contains("run id `nope`"),
        "{html}"
    );
    let (status, body) = cx.get("/nodes/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("No node is named `nope`"));
    // Any other path: the styled page (under /api/, the API's empty 404:
    // openapi's tests).
    let (status, body) = cx.get("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("There is no page at /no/such/page."));
    cx.stop().await;
}

#[tokio::test]
async fn pages_redirect_a_browser_without_a_credential_to_login() {
    let cx = TestContext::directory().await;
    for uri in ["/", "/nodes/web-1", "/runs/x", "/apps", "/apps/web"] {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let (status, headers, _) = cx.send_as(Peer::Anonymous, req).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(headers[header::LOCATION], "/login");
    }
    let req = Request::get("/events").body(Body::empty()).unwrap();
    let (status, _, _) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let req = Request::get("/login").body(Body::empty()).unwrap();
    let (status, _, body) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("name=\"token\""));
    cx.stop().await;
}

#[tokio::test]
async fn node_names_pages_and_facts_are_paged_and_escaped() {
    let cx = TestContext::directory().await;
    for i in 0..105 {
        cx.report(&run(&format!("n-{i:03}"), &format!("r-{i}"), 5, json!([])))
            .await;
    }
    let first = cx.page("/").await;
    assert!(row_state(&first, "n-099").is_some() && row_state(&first, "n-100").is_none());
    // All alike (stale): triage order is name order within it.
    let next = next_page(&first).expect("a next-page link");
    assert_eq!(next, "/?after=%5B5%2C%22n-099%22%5D");
    let second = cx.page(&next).await;
    assert!(row_state(&second, "n-100").is_some() && row_state(&second, "n-099").is_none());
    assert!(second.contains("5 of 105 matching"), "{second}");
    // Newest run first, paged by (time, name): every node once.
    let mut seen = node_names(&cx.page("/?sort=-last_run").await);
    assert_eq!(seen.len(), 100);
    assert_eq!(seen[0], "n-104", "the newest report first");
    let newest = cx.page("/?sort=-last_run").await;
    let next = next_page(&newest).expect("a next page in this order");
    let more = node_names(&cx.page(&next).await);
    assert_eq!(more.len(), 5, "{next}: {more:?}");
    seen.extend(more);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 105);

    // A fact with markup in it, sent by the node itself.
    let body = json!({"facts": {"hostname": "x", "motd": "<script>alert(1)</script>"}}).to_string();
    let (status, _, _) = cx.post("/api/v1/nodes/n-000/catalog", body).await;
    assert_eq!(status, StatusCode::OK);
    let node = cx.page("/nodes/n-000").await;
    assert!(
        node.contains("alert(1)") && !node.contains("<script>alert"),
        "{node}"
    );
    let body = json!({"facts": {"hostname": "y", "virtual": true, "cores": 8}}).to_string();
    assert_eq!(
        cx.post("/api/v1/nodes/n-001/catalog", body).await.0,
        StatusCode::OK
    );
    for filter in ["virtual%3Dtrue", "cores%3D8"] {
        let page = cx.page(&format!("/?fact={filter}")).await;
        assert!(row_state(&page, "n-001").is_some(), "{filter}");
        assert!(row_state(&page, "n-000").is_none(), "{filter}");
    }
    cx.stop().await;
}

#[tokio::test]
async fn the_live_feed_announces_each_stored_report() {
    let cx = TestContext::directory().await;
    let req = Request::get("/events").body(Body::empty()).unwrap();
    let mut req = req;
    req.extensions_mut().insert(Peer::Operator("tests".into()));
    let resp = tower::ServiceExt::oneshot(cx.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    cx.report(&run("web-1", "r-live", 1, changed_file())).await;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: report"), "{text}");
    assert!(text.contains("\"run_id\":\"r-live\""), "{text}");
    // Shutdown ends the stream, so open pages never hold the server.
    cx.shutdown.cancel();
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while body.next().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the stream ends at shutdown");
    cx.tracker.close();
    cx.tracker.wait().await;
}

#[tokio::test]
async fn retention_deletes_old_reports_and_their_chart_hours() {
    let cx = TestContext::directory().await;
    cx.report(&run("web-1", "r-old", 20 * 86400, json!([])))
        .await;
    cx.report(&run("web-1", "r-new", 60, json!([]))).await;
    let cutoff = jiff::Timestamp::now().as_microsecond() - 14 * 86_400_000_000;
    let deleted = drover_server::retention::prune(cx.leader().await, cutoff)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let history = cx.get_json("/api/v1/nodes/web-1/reports").await;
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r-new"]);
    let hours: i64 =
        sqlx::query_scalar("SELECT CAST(COALESCE(SUM(runs), 0) AS BIGINT) FROM report_hours")
            .fetch_one(cx.db.reads())
            .await
            .unwrap();
    assert_eq!(hours, 1, "the old run's hour is gone from the chart");
    cx.stop().await;
}

#[tokio::test]
async fn the_overview_lists_what_needs_an_operator_first_and_sorts_by_any_column() {
    let cx = TestContext::directory().await;
    let unchanged = json!([{"id": "file:/etc/x", "status": "unchanged", "duration_ms": 1.0}]);
    // g-broken converged, then its catalog stopped compiling.
    assert_eq!(cx.catalog("g-broken").await.0, StatusCode::OK);
    cx.report(&run("g-broken", "r1", 11, unchanged.clone()))
        .await;
    super::write(
        &cx.repo,
        &[(
            "roles/base.toml",
            &format!("{}\n[[file]]\npth = \"x\"\n", super::BASE),
        )],
    );
    cx.hook().await;
    // It keeps its last good catalog, with the error beside it.
    cx.catalog("g-broken").await;
    let broken = cx.get_json("/api/v1/nodes/g-broken").await;
    assert!(broken["compile_error"].is_object(), "{broken:#}");

    // Every other node applied the commit its environment serves now.
    let envs = cx.get_json("/api/v1/environments").await;
    let head = envs["environments"][0]["commit"]
        .as_str()
        .unwrap()
        .to_owned();
    let at_head = |node: &str, secs_ago: i64, resources: Value| {
        let mut r = run(node, "r1", secs_ago, resources);
        r["commit"] = json!(head);
        r
    };
    let changed = json!([{"id": "file:/etc/x", "status": "changed", "duration_ms": 1.0}]);
    cx.report(&at_head("a-quiet", 5, unchanged.clone())).await;
    cx.report(&at_head("b-changed", 6, changed.clone())).await;
    let mut noop = at_head("c-noop", 7, changed);
    noop["noop"] = json!(true);
    cx.report(&noop).await;
    // changed_file() repaired drift (`corrective`).
    cx.report(&at_head("d-repaired", 8, changed_file())).await;
    cx.report(&at_head("e-failed", 9, failed_exec())).await;
    cx.report(&at_head("f-silent", 3 * 86_400, unchanged.clone()))
        .await;
    cx.report(&run("h-stale", "r1", 10, unchanged)).await;
    let html = cx.page("/").await;
    assert_eq!(
        node_names(&html),
        [
            "e-failed",
            "g-broken",
            "d-repaired",
            "c-noop",
            "f-silent",
            "h-stale",
            "b-changed",
            "a-quiet"
        ],
        "failures first, then repaired drift, noop pending, unresponsive, then the quiet ones"
    );
    assert!(html.contains("what needs you first"));
    assert!(html.contains("repaired 1</span>"), "d-repaired's badge");
    // Cards in the same order, each opening its list.
    let cards: Vec<&str> = html
        .split("class=\"state-count state-")
        .skip(1)
        .filter_map(|rest| rest.split(['"', ' ']).next())
        .collect();
    assert_eq!(
        cards,
        [
            "failed",
            "compile_error",
            "corrective",
            "noop_pending",
            "unresponsive",
            "stale",
            "changed",
            "never_reported",
            "unchanged"
        ]
    );
    assert_eq!(card_count(&html, "compile_error"), Some(1));
    assert_eq!(card_count(&html, "corrective"), Some(1));
    for (state, nodes) in [
        ("compile_error", vec!["g-broken"]),
        ("corrective", vec!["d-repaired"]),
    ] {
        assert_eq!(
            node_names(&cx.page(&format!("/?state={state}")).await),
            nodes
        );
        let api = cx.get_json(&format!("/api/v1/nodes?state={state}")).await;
        assert_eq!(api.as_array().unwrap().len(), 1, "{state}: {api:#}");
    }

    // Any column, either way; the headings link to the other way.
    let by_name = cx.page("/?sort=name").await;
    let mut names = node_names(&html);
    names.sort();
    assert_eq!(node_names(&by_name), names);
    assert!(
        by_name.contains(
            "<th aria-sort=\"ascending\"><a class=\"sort\" href=\"/?sort=-name\">node</a>"
        )
    );
    let newest = node_names(&cx.page("/?sort=-last_run").await);
    assert_eq!(newest.first().map(String::as_str), Some("a-quiet"));
    assert_eq!(newest.last().map(String::as_str), Some("f-silent"));
    let oldest = node_names(&cx.page("/?sort=last_run").await);
    assert_eq!(oldest.first().map(String::as_str), Some("f-silent"));
    let by_state = node_names(&cx.page("/?sort=state").await);
    assert_eq!(by_state[0], "e-failed");
    // Every match as a download, in the page's order.
    let (status, headers, body) = cx
        .send(
            Request::get("/?sort=-last_run&format=csv")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"nodes.csv\""
    );
    let csv = String::from_utf8_lossy(&body);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("name,state,stale,compile_error,corrective")
    );
    let names: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(names, newest, "{csv}");
    let (status, _, body) = cx
        .send(
            Request::get("/?state=corrective&format=json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let rows: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows[0]["name"], "d-repaired", "{rows:#}");
    assert_eq!(rows[0]["corrective"], 1);
    assert_eq!(rows.as_array().unwrap().len(), 1);
    // A filter or order that cannot be used refuses the download, rather
    // than giving the whole fleet.
    for uri in [
        "/?format=xml",
        "/?sort=size&format=csv",
        "/?state=bogus&format=json",
    ] {
        let (status, _, _) = cx
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
    }
    // From `after` on, as the pages go.
    let after = &newest[1];
    let (status, _, body) = cx
        .send(
            Request::get(format!("/?sort=name&format=json&after={after}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let rows: Value = serde_json::from_slice(&body).unwrap();
    let mut by_name = newest.clone();
    by_name.sort();
    let rest: Vec<&str> = by_name
        .iter()
        .filter(|n| *n > after)
        .map(String::as_str)
        .collect();
    let got: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, rest);
    // A sort that does not exist is said, and triage is kept.
    let bad = cx.page("/?sort=size").await;
    assert!(bad.contains("unknown sort `size`"), "{bad}");
    assert_eq!(node_names(&bad), node_names(&html));
    cx.stop().await;
}

#[tokio::test]
async fn charts_cover_the_range_asked_for_with_runs_at_their_times() {
    let cx = TestContext::directory().await;
    cx.report(&run("web-1", "r1", 30 * 60, changed_file()))
        .await;
    cx.report(&run("web-1", "r2", 3 * 86_400, failed_exec()))
        .await;
    for (range, label, runs) in [("6h", "6 hours", 1), ("7d", "7 days", 2)] {
        for uri in [
            format!("/?range={range}"),
            format!("/nodes/web-1?range={range}"),
        ] {
            let html = cx.page(&uri).await;
            assert!(html.contains(&format!("data-range=\"{range}\"")), "{uri}");
            assert!(html.contains(&format!("last {label}")), "{uri}");
            assert_eq!(html.matches("<g class=\"slot\">").count(), runs, "{uri}");
            assert!(html.contains("class=\"time-tick\""), "{uri}: a dated axis");
            assert!(html.contains("(right axis)"), "{uri}: a legend");
        }
    }
    // The node's chart has one duration point per run, at its time.
    let node = cx.page("/nodes/web-1?range=14d").await;
    assert_eq!(node.matches("<circle class=\"duration-point\"").count(), 2);
    let (status, _, body) = cx
        .send(
            Request::get("/nodes/web-1?range=1y")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("6h, 24h, 7d, 14d"));
    cx.stop().await;
}
