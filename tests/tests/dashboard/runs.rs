//! The fleet-wide runs and changes pages as an operator uses them (issue
//! 23): the runs filtered by a resource through the form, then narrowed to
//! the last 24 hours with the time range select, showing exactly the runs
//! expected; then every change to one file on the changes page.

use drover_tests::browser::Browser;
use serde_json::json;

use crate::walkthrough::sign_in;
use crate::{Fleet, runtime};

/// (node, run_id, hours ago, the resource it changed).
const RUNS: [(&str, &str, i64, &str); 4] = [
    ("web-1", "web-1-recent", 2, "file:/etc/motd"),
    ("web-2", "web-2-old", 72, "file:/etc/motd"),
    ("db-1", "db-1-recent", 1, "package:postgresql"),
    ("web-2", "web-2-recent", 3, "package:nginx"),
];

/// Posts each of [`RUNS`] as its node, one changed resource each.
fn post_runs(fleet: &Fleet) {
    let mut credentials = std::collections::BTreeMap::new();
    for (node, run_id, hours, resource) in RUNS {
        let credential = credentials
            .entry(node)
            .or_insert_with(|| fleet.enroll(node))
            .clone();
        let finished = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours);
        let report = json!({
            "run_id": run_id, "node": node, "environment": "main", "commit": fleet.commit,
            "catalog_version": "v1", "noop": false,
            "started_at": (finished - jiff::SignedDuration::from_secs(2)).to_string(),
            "finished_at": finished.to_string(),
            "status": "changed", "cached_catalog": "not_used",
            "agent_version": env!("CARGO_PKG_VERSION"),
            "resources": [{"id": resource, "status": "changed", "corrective": hours == 72,
                           "events": [{"property": "content", "previous": "old", "desired": "new"}],
                           "duration_ms": 4.0}],
        });
        let (status, body) = fleet
            .server
            .request_as(
                &credential,
                "POST",
                &format!("/api/v1/nodes/{node}/reports"),
                Some(report.to_string().as_bytes()),
            )
            .unwrap();
        assert!((200..300).contains(&status), "{run_id}: {status} {body}");
    }
}

/// The `data-*` attribute `attr` of every row matching `css`.
async fn rows(browser: &Browser, css: &str, attr: &str) -> Vec<String> {
    let mut values = Vec::new();
    for row in browser.find_all(css).await {
        values.push(row.attr(attr).await.unwrap().unwrap_or_default());
    }
    values
}

#[test]
fn an_operator_finds_the_runs_that_touched_a_file_and_its_changes() {
    let fleet = Fleet::start();
    post_runs(&fleet);
    runtime().block_on(async {
        let mut browser = Browser::open(&fleet.server, "runs").await;
        sign_in(&browser, &fleet.server.operator_token()).await;
        browser.follow("nav.fleet-wide a[href='/runs']").await;
        browser.find("table#runs").await;
        assert_eq!(rows(&browser, "tr.run", "data-node").await.len(), 4);

        // Filtered by the resource, typed into the form.
        let field = browser.find("#filters input[name=resource]").await;
        field.send_keys("file:/etc/motd").await.unwrap();
        browser.follow("#filters button").await;
        browser
            .find("input[name=resource][value='file:/etc/motd']")
            .await;
        let links: Vec<String> = {
            let mut hrefs = Vec::new();
            for a in browser.find_all("tr.run a.run-link").await {
                hrefs.push(a.attr("href").await.unwrap().unwrap_or_default());
            }
            hrefs
        };
        assert_eq!(
            links,
            [
                "/runs/web-1-recent?node=web-1",
                "/runs/web-2-old?node=web-2"
            ]
        );

        // Then the last 24 hours only.
        let range = browser.find("#filters select[name=range]").await;
        range.select_by_value("24h").await.unwrap();
        browser.follow("#filters button").await;
        browser
            .find("select[name=range] option[value='24h'][selected]")
            .await;
        assert_eq!(rows(&browser, "tr.run", "data-node").await, ["web-1"]);
        let path = browser.path().await;
        assert!(
            path.contains("range=24h") && path.contains("resource=file"),
            "{path}"
        );
        browser.screenshot("runs").await;

        // Every change to the file, from the changes page.
        browser.goto("/changes?resource=file%3A%2Fetc%2Fmotd").await;
        browser.find("table#changes").await;
        assert_eq!(
            rows(&browser, "tr.change", "data-node").await,
            ["web-1", "web-2"]
        );
        assert_eq!(
            rows(&browser, "tr.change", "data-resource").await,
            ["file:/etc/motd", "file:/etc/motd"]
        );
        let text = browser.text("table#changes").await;
        assert!(
            text.contains("content: old → new") && text.contains("corrective"),
            "{text}"
        );
        browser.screenshot("changes").await;
        browser
            .follow("tr.change[data-node='web-2'] a.run-link")
            .await;
        browser.find("article#run[data-run-id='web-2-old']").await;
        browser.close().await;
    });
}
