//! `/metrics`: values move with requests, compiles, reports and refreshes,
//! and request labels are route templates.

use std::collections::BTreeMap;

use super::*;

/// Every sample of a scrape: `name{labels}` to value.
async fn scrape(cx: &TestContext) -> BTreeMap<String, f64> {
    let (status, headers, body) = cx
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value in `{line}`"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in `{line}`"));
            (series.to_owned(), value)
        })
        .collect()
}

/// The value of `series`, 0 when the scrape does not have it (a labelled
/// series appears at its first event).
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

fn requests(route: &str, method: &str, status: u16) -> String {
    format!(
        "drover_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
    )
}

fn latency_count(route: &str, method: &str) -> String {
    format!("drover_http_request_duration_seconds_count{{route=\"{route}\",method=\"{method}\"}}")
}

#[tokio::test]
async fn requests_are_counted_by_route_template() {
    let cx = TestContext::directory().await;
    let catalog = "/api/v1/nodes/{name}/catalog";
    let node = "/api/v1/nodes/{name}";
    let before = scrape(&cx).await;

    for name in ["web-1", "web-2"] {
        assert_eq!(cx.catalog(name).await.0, StatusCode::OK);
    }
    assert_eq!(
        cx.get("/api/v1/nodes/nobody").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(cx.get("/no/such/page").await.0, StatusCode::NOT_FOUND);
    let delete = Request::delete("/api/v1/nodes/web-1/catalog")
        .body(Body::empty())
        .unwrap();
    assert_eq!(cx.send(delete).await.0, StatusCode::METHOD_NOT_ALLOWED);
    let after = scrape(&cx).await;

    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(moved(&requests(catalog, "POST", 200)), 2.0, "{after:#?}");
    assert_eq!(moved(&latency_count(catalog, "POST")), 2.0);
    assert_eq!(moved(&requests(node, "GET", 404)), 1.0);
    assert_eq!(moved(&requests("unmatched", "GET", 404)), 1.0);
    assert_eq!(moved(&requests(catalog, "DELETE", 405)), 1.0);
    // The first scrape was answered before the second one counted it.
    assert_eq!(value(&after, &requests("/metrics", "GET", 200)), 1.0);
    let buckets = format!(
        "drover_http_request_duration_seconds_bucket{{route=\"{catalog}\",method=\"POST\",le=\"+Inf\"}}"
    );
    assert_eq!(value(&after, &buckets), 2.0, "{after:#?}");

    for series in after.keys().filter(|s| s.starts_with("drover_http_")) {
        for raw in ["web-1", "web-2", "nobody", "/no/such/page"] {
            assert!(!series.contains(raw), "a raw path in a label: {series}");
        }
    }
    cx.stop().await;
}

#[tokio::test]
async fn compiles_and_compile_errors_are_counted_and_timed() {
    let cx = TestContext::directory().await;
    let compiles = "drover_catalog_compiles_total";
    let errors = "drover_catalog_compile_errors_total";
    let timed = "drover_catalog_compile_duration_seconds_count";
    let before = scrape(&cx).await;
    assert_eq!(value(&before, compiles), 0.0);

    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    let once = scrape(&cx).await;
    assert_eq!(value(&once, compiles), 1.0, "the second answer was cached");
    assert_eq!(value(&once, timed), 1.0);
    assert_eq!(value(&once, errors), 0.0);

    // Parses, but does not render: counted once, as a compile that ran.
    write(
        &cx.repo,
        &[(
            "roles/base.toml",
            "[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ vars.nope }}\"\n",
        )],
    );
    cx.hook().await;
    let recompiled = scrape(&cx).await;
    assert_eq!(
        value(&recompiled, errors),
        1.0,
        "the refresh recompiles web-1"
    );
    assert_eq!(value(&recompiled, timed), 2.0);
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK, "last good");
    assert_eq!(value(&scrape(&cx).await, errors), 1.0, "a cached failure");

    // nodes.toml does not parse: no compile runs, yet each request counts.
    write(&cx.repo, &[("nodes.toml", "[[node]\n")]);
    cx.hook().await;
    let unparsed = scrape(&cx).await;
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK, "last good");
    let after = scrape(&cx).await;
    assert_eq!(value(&after, errors) - value(&unparsed, errors), 1.0);
    assert_eq!(value(&after, timed), 2.0, "nothing was compiled");
    assert_eq!(value(&after, compiles), 1.0);
    cx.stop().await;
}

#[tokio::test]
async fn reports_and_node_states_move() {
    let cx = TestContext::directory().await;
    let received = "drover_reports_received_total";
    assert_eq!(value(&scrape(&cx).await, received), 0.0);

    let uri = "/api/v1/nodes/web-1/reports";
    // Recent runs: a report older than `unresponsive_after_secs` says `unresponsive`.
    let now = jiff::Timestamp::now().to_string();
    let first = report("web-1", "run-1", "changed", &now).to_string();
    assert_eq!(cx.post(uri, first.clone()).await.0, StatusCode::CREATED);
    assert_eq!(cx.post(uri, first).await.0, StatusCode::OK, "a duplicate");
    let one = scrape(&cx).await;
    assert_eq!(value(&one, received), 1.0, "duplicates do not count");
    assert_eq!(value(&one, "drover_nodes{state=\"changed\"}"), 1.0);
    let route = "/api/v1/nodes/{name}/reports";
    assert_eq!(value(&one, &requests(route, "POST", 201)), 1.0);
    assert_eq!(value(&one, &requests(route, "POST", 200)), 1.0);

    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1)).to_string();
    let second = report("web-1", "run-2", "failed", &later).to_string();
    assert_eq!(cx.post(uri, second).await.0, StatusCode::CREATED);
    let two = scrape(&cx).await;
    assert_eq!(value(&two, received), 2.0);
    assert_eq!(value(&two, "drover_nodes{state=\"failed\"}"), 1.0);
    assert_eq!(
        value(&two, "drover_nodes{state=\"changed\"}"),
        0.0,
        "no node is in that state any more: {two:#?}"
    );
    cx.stop().await;
}

#[tokio::test]
async fn refreshes_and_their_failures_are_counted() {
    let cx = TestContext::directory().await;
    let refreshes = "drover_git_refreshes_total";
    let failures = "drover_git_refresh_failures_total";
    let before = scrape(&cx).await;
    assert_eq!(value(&before, refreshes), 1.0, "the refresh at start");
    assert_eq!(value(&before, failures), 0.0);
    let age = value(&before, "drover_git_refresh_age_seconds");
    assert!((0.0..60.0).contains(&age), "{age}");

    cx.hook().await;
    let after = scrape(&cx).await;
    assert_eq!(value(&after, refreshes), 2.0);
    assert_eq!(
        value(&after, "drover_git_refresh_duration_seconds_count"),
        2.0
    );

    fs_err::remove_dir_all(&cx.repo).unwrap();
    let (status, _, _) = cx.post("/api/v1/hooks/git", "").await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "the hook says the refresh failed"
    );
    let failed = scrape(&cx).await;
    assert_eq!(value(&failed, refreshes), 3.0);
    assert_eq!(value(&failed, failures), 1.0);
    cx.stop().await;
}
