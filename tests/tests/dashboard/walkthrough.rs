//! One operator's visit: sign in, read each node's state and the counts,
//! follow a failed node to its failed run, and watch a new report arrive
//! without reloading. Also the same overview read as plain HTML.

use std::collections::BTreeMap;

use drover_tests::browser::Browser;
use serde_json::json;

use crate::markup::start_tags;
use crate::{COMMIT_URL, FAILING_EXEC, Fleet, runtime};

/// How long a report may take to reach an open page over `/events`.
const LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Every state a count card shows.
const STATES: [&str; 7] = [
    "unchanged",
    "changed",
    "failed",
    "noop_pending",
    "unresponsive",
    "never_reported",
    "stale",
];

/// The fleet the dashboard shows: web-1 changed (its first run), web-2
/// unchanged (its second), db-1 failed (a file replaced and an exec that
/// exits 3), old-1 unresponsive (one report, two days old).
fn populated() -> (Fleet, BTreeMap<&'static str, &'static str>) {
    let fleet = Fleet::start();
    fleet.agent("web-1").run(&[]).expect_code(2);
    let web2 = fleet.agent("web-2");
    web2.run(&[]).expect_code(2);
    web2.run(&[]).expect_code(0);
    // db-1's file exists with other content, so its report carries a diff.
    fs_err::create_dir_all(fleet.managed("db-1", "")).unwrap();
    fs_err::write(
        fleet.managed("db-1", "app.conf"),
        "listen = 80\nnode = db-1\n",
    )
    .unwrap();
    fleet.agent("db-1").run(&[]).expect_code(6);
    let old = fleet.enroll("old-1");
    fleet.post_old_report("old-1", &old, 2 * 24 * 3600);
    let states = BTreeMap::from([
        ("web-1", "changed"),
        ("web-2", "unchanged"),
        ("db-1", "failed"),
        ("old-1", "unresponsive"),
    ]);
    (fleet, states)
}

#[test]
fn an_operator_reads_the_fleet_follows_a_failure_and_sees_a_report_arrive() {
    let (fleet, states) = populated();

    // Without JavaScript the overview is all there in the HTML.
    let (status, page) = fleet.server.request("GET", "/", None);
    assert_eq!(status, 200, "{page}");
    let html = page.as_str().expect("an HTML page");
    let rows: BTreeMap<String, String> = start_tags(html, "tr")
        .into_iter()
        .filter(|tag| tag.get("class").is_some_and(|c| c == "node"))
        .map(|tag| (tag["data-node"].clone(), tag["data-state"].clone()))
        .collect();
    let expected: BTreeMap<String, String> = states
        .iter()
        .map(|(node, state)| ((*node).to_owned(), (*state).to_owned()))
        .collect();
    assert_eq!(rows, expected, "node rows of GET / as plain HTML");

    runtime().block_on(async {
        let mut browser = Browser::open(&fleet.server, "walkthrough").await;
        sign_in(&browser, &fleet.server.operator_token()).await;
        overview(&mut browser, &states).await;
        failed_run(&mut browser, &fleet).await;
        live_update(&mut browser, &fleet).await;
        browser.close().await;
    });
}

/// The dashboard sends a browser without a credential to the form; a good
/// token gets it to `/` with a cookie that page scripts cannot read.
pub(crate) async fn sign_in(browser: &Browser, token: &str) {
    browser.goto("/").await;
    assert_eq!(browser.path().await, "/login");
    let field = browser.find("input[name=token]").await;
    field.send_keys(token).await.unwrap();
    browser.follow("form button").await;
    browser.find("form#filters").await;
    assert_eq!(browser.path().await, "/");
    let cookies = browser.js("return document.cookie").await;
    assert!(
        !cookies.as_str().unwrap_or_default().contains(token),
        "the session cookie is HttpOnly: {cookies}"
    );
}

/// Each node in its state, the count cards, and a card as a filter.
async fn overview(browser: &mut Browser, states: &BTreeMap<&str, &str>) {
    for (node, state) in states {
        let row = format!("tr.node[data-node=\"{node}\"]");
        let found = browser.find(&row).await;
        assert_eq!(
            found.attr("data-state").await.unwrap().as_deref(),
            Some(*state),
            "{node}\n{}",
            browser.page_text().await
        );
        assert_eq!(browser.text(&format!("{row} a.node-link")).await, *node);
        if *node != "old-1" {
            // It just ran its environment's head commit with a fresh catalog.
            let stale = found.attr("data-stale").await.unwrap();
            assert_eq!(stale.as_deref(), Some("false"), "{node}");
        }
    }
    assert_eq!(browser.find_all("tr.node").await.len(), states.len());
    for state in STATES {
        let want = states.values().filter(|s| **s == state).count();
        let card = format!("#counts a.state-count[data-state=\"{state}\"]");
        let count = browser.text(&format!("{card} .count")).await;
        assert_eq!(count, want.to_string(), "the {state} card");
    }
    // Triage first: the failed node heads the list, the unresponsive one
    // comes before the quiet ones, the unchanged node comes last.
    let mut order = Vec::new();
    for row in browser.find_all("tr.node").await {
        order.push(row.attr("data-node").await.unwrap().unwrap_or_default());
    }
    assert_eq!(order.first().map(String::as_str), Some("db-1"), "{order:?}");
    assert_eq!(order.last().map(String::as_str), Some("web-2"), "{order:?}");
    let at = |node: &str| order.iter().position(|n| n == node).unwrap();
    assert!(
        at("old-1") < at("web-1"),
        "unresponsive before changed: {order:?}"
    );
    browser.find("svg#fleet-chart").await;
    browser.screenshot("overview").await;

    // A heading sorts by its column, a second click the other way; a range
    // link redraws the chart over that range and keeps the order.
    browser
        .follow("#nodes th a.sort[href=\"/?sort=last_run\"]")
        .await;
    browser.find("#nodes th[aria-sort=ascending]").await;
    let first = browser.find("tr.node").await;
    assert_eq!(
        first.attr("data-node").await.unwrap().as_deref(),
        Some("old-1"),
        "the oldest last run first"
    );
    browser
        .follow("#nodes th a.sort[href=\"/?sort=-last_run\"]")
        .await;
    browser.find("#nodes th[aria-sort=descending]").await;
    browser
        .follow("#fleet-chart-range a[href=\"/?sort=-last_run&range=7d\"]")
        .await;
    browser.find("svg#fleet-chart[data-range=\"7d\"]").await;
    assert_eq!(browser.path().await, "/?sort=-last_run&range=7d");
    browser.screenshot("overview-sorted-7d").await;
    browser.goto("/").await;

    // A count card is a link to the nodes in that state.
    browser
        .follow("#counts a.state-count[data-state=\"failed\"]")
        .await;
    browser.find("form#filters").await;
    assert_eq!(browser.path().await, "/?state=failed");
    let rows = browser.find_all("tr.node").await;
    assert_eq!(rows.len(), 1, "{}", browser.page_text().await);
    assert_eq!(
        rows[0].attr("data-node").await.unwrap().as_deref(),
        Some("db-1")
    );
}

/// From db-1's row to its node page, then to its failed run: the exec's
/// error and the file's diff.
async fn failed_run(browser: &mut Browser, fleet: &Fleet) {
    browser
        .follow("tr.node[data-node=\"db-1\"] a.node-link")
        .await;
    assert_eq!(browser.text("#node-name").await, "db-1");
    assert_eq!(browser.path().await, "/nodes/db-1");
    let state = browser.text("#node-info dd[data-field=\"state\"]").await;
    assert!(state.contains("failed"), "node state: {state}");
    let said = browser.text("#node-info dd[data-field=\"commit\"]").await;
    // The id, then the commit's subject, author and time.
    let commit = said.split_whitespace().next().unwrap_or_default();
    assert!(
        fleet.commit.starts_with(commit) && commit.len() >= 7,
        "node commit `{said}`, head {}",
        fleet.commit
    );
    assert!(
        said.contains("(drover tests, "),
        "the commit's author: {said}"
    );
    // The commit links to the forge's page of it.
    let link = browser
        .find("#node-info dd[data-field=\"commit\"] a.commit-link")
        .await;
    assert_eq!(
        link.attr("href").await.unwrap(),
        Some(COMMIT_URL.replace("{commit}", &fleet.commit))
    );
    browser.find("svg#node-chart").await;
    let runs = browser.find_all("#runs tr.run").await;
    assert_eq!(runs.len(), 1, "{}", browser.page_text().await);
    browser.screenshot("node-page").await;

    browser
        .follow("#runs tr.run[data-status=\"failed\"] a.run-link")
        .await;
    let run = browser.find("article#run").await;
    assert_eq!(
        run.attr("data-status").await.unwrap().as_deref(),
        Some("failed")
    );
    let run_id = run.attr("data-run-id").await.unwrap().expect("a run id");
    assert_eq!(browser.path().await, format!("/runs/{run_id}?node=db-1"));

    let exec = format!("section.resource[data-resource-id=\"{FAILING_EXEC}\"]");
    let section = browser.find(&exec).await;
    assert_eq!(
        section.attr("data-status").await.unwrap().as_deref(),
        Some("failed")
    );
    let error = browser.text(&format!("{exec} pre.resource-error")).await;
    assert!(
        error.contains("exited with status 3") && error.contains("boom"),
        "the exec's error: {error}"
    );

    let file_id = format!("file:{}", fleet.managed("db-1", "app.conf").display());
    let file = format!("section.resource[data-resource-id=\"{file_id}\"]");
    let section = browser.find(&file).await;
    assert_eq!(
        section.attr("data-status").await.unwrap().as_deref(),
        Some("changed")
    );
    let diff = browser.text(&format!("{file} pre.diff")).await;
    let lines: Vec<&str> = diff.lines().collect();
    assert!(
        lines.contains(&"-listen = 80") && lines.contains(&"+listen = 8080"),
        "the file's diff: {diff}"
    );
    assert!(
        !browser
            .find_all(&format!("{file} tr.event"))
            .await
            .is_empty(),
        "the file's events"
    );
    browser.screenshot("failed-run").await;
}

/// A report that arrives while the overview is open shows up in place: the
/// marker set on the page survives, so the page was not reloaded.
async fn live_update(browser: &mut Browser, fleet: &Fleet) {
    browser.goto("/").await;
    browser.find("tr.node[data-node=\"web-1\"]").await;
    browser.js("window.__drover_no_reload = 1").await;
    assert!(
        browser
            .find_all("tr.node[data-node=\"web-3\"]")
            .await
            .is_empty()
    );

    let out = tokio::task::block_in_place(|| fleet.agent("web-3").run(&[]));
    out.expect_code(2);

    let row = browser
        .find_within("tr.node[data-node=\"web-3\"]", LIVE_WAIT)
        .await;
    assert_eq!(
        row.attr("data-state").await.unwrap().as_deref(),
        Some("changed")
    );
    let page = browser
        .js("return [window.__drover_no_reload, document.body.dataset.liveUpdates]")
        .await;
    assert_eq!(page[0], json!(1), "the page was reloaded: {page}");
    let swaps: u32 = page[1]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no live swap counted: {page}"));
    assert!(swaps >= 1, "{page}");
    let changed = browser
        .text("#counts a.state-count[data-state=\"changed\"] .count")
        .await;
    assert_eq!(changed, "2", "the counts follow the new report");
    browser.screenshot("live-update").await;
}
