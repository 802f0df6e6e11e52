//! Fleet-wide runs and resource events (issue 23): `GET /api/v1/reports`
//! and `/api/v1/reports/events` filter by every part, page by keyset
//! without duplicates or gaps among equal times, refuse a bad part naming
//! it, export CSV and JSON; retention and node purge delete the events.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::TestContext;

/// A run of `node` finished at `finished`, with `resources` as
/// `(id, status, corrective)`.
fn run(node: &str, id: &str, finished: &str, resources: &[(&str, &str, bool)]) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|(rid, status, corrective)| {
            json!({"id": rid, "status": status, "corrective": corrective,
                   "events": [{"property": "content", "previous": "a", "desired": "b, \"c\""}],
                   "duration_ms": 1.0})
        })
        .collect();
    let status = if resources.iter().any(|r| r["status"] == "failed") {
        "failed"
    } else if resources.iter().any(|r| r["status"] != "unchanged") {
        "changed"
    } else {
        "unchanged"
    };
    json!({
        "run_id": id, "node": node, "environment": "production", "commit": "c1",
        "catalog_version": "v1", "noop": false,
        "started_at": "2025-01-01T00:00:00Z", "finished_at": finished,
        "status": status, "cached_catalog": "not_used", "agent_version": "0.1.0",
        "resources": resources,
    })
}

impl TestContext {
    async fn post_run(&self, report: &Value) {
        let node = report["node"].as_str().unwrap();
        let (status, _, body) = self
            .post(&format!("/api/v1/nodes/{node}/reports"), report.to_string())
            .await;
        assert!(
            status.is_success(),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// The `run_id`s of `GET uri`'s runs (or events), in order.
    async fn ids(&self, uri: &str) -> Vec<String> {
        let page = self.get_json(uri).await;
        let list = page["runs"]
            .as_array()
            .or(page["events"].as_array())
            .unwrap();
        list.iter()
            .map(|r| {
                r["id"]
                    .as_str()
                    .or(r["run_id"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    async fn event_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM report_events")
            .fetch_one(self.db.reads())
            .await
            .unwrap()
    }
}

/// Five runs on three nodes in two environments.
async fn fleet(cx: &TestContext) {
    let motd = "file:/etc/motd";
    let runs = [
        run(
            "web-1",
            "w1-a",
            "2025-03-01T10:00:00Z",
            &[(motd, "changed", false)],
        ),
        run(
            "web-1",
            "w1-b",
            "2025-03-02T10:00:00Z",
            &[
                (motd, "changed", true),
                ("package:nginx", "unchanged", false),
            ],
        ),
        run(
            "web-2",
            "w2-a",
            "2025-03-03T10:00:00Z",
            &[("package:nginx", "failed", false)],
        ),
        run(
            "db-1",
            "d1-a",
            "2025-03-04T10:00:00Z",
            &[("package:postgresql", "unchanged", false)],
        ),
        {
            let mut r = run(
                "db-1",
                "d1-b",
                "2025-03-05T10:00:00Z",
                &[(motd, "noop", false)],
            );
            r["noop"] = json!(true);
            r["environment"] = json!("staging");
            r
        },
    ];
    for r in &runs {
        cx.post_run(r).await;
    }
}

#[tokio::test]
async fn runs_filter_by_status_node_environment_resource_corrective_and_time() {
    let cx = TestContext::directory().await;
    fleet(&cx).await;
    let cases: [(&str, &[&str]); 14] = [
        ("", &["d1-b", "d1-a", "w2-a", "w1-b", "w1-a"]),
        ("status=failed", &["w2-a"]),
        ("status=changed", &["w1-b", "w1-a"]),
        ("status=noop", &["d1-b"]),
        ("status=unchanged", &["d1-a"]),
        ("node=web-1", &["w1-b", "w1-a"]),
        ("node=web-*", &["w2-a", "w1-b", "w1-a"]),
        ("node=web", &[]),
        ("environment=staging", &["d1-b"]),
        ("resource=file:/etc/motd", &["d1-b", "w1-b", "w1-a"]),
        // Unchanged is no event: w1-b left nginx alone.
        ("resource=package:nginx", &["w2-a"]),
        ("corrective=true", &["w1-b"]),
        (
            "since=2025-03-02T10:00:00Z&until=2025-03-04T10:00:00Z",
            &["w2-a", "w1-b"],
        ),
        (
            "resource=file:/etc/motd&node=web-*&since=2025-03-02T00:00:00Z",
            &["w1-b"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            cx.ids(&format!("/api/v1/reports?{query}")).await,
            expected,
            "{query}"
        );
    }
    // A relative time counts back from now: these runs are all older.
    assert!(cx.ids("/api/v1/reports?since=24h").await.is_empty());
    assert_eq!(cx.ids("/api/v1/reports?until=24h&limit=1").await, ["d1-b"]);
    let one = cx.get_json("/api/v1/reports?status=failed").await;
    assert_eq!(one["runs"][0]["node"], "web-2");
    assert_eq!(one["runs"][0]["failed"], 1);
    assert!(one["next_after"].is_null());
    cx.stop().await;
}

#[tokio::test]
async fn events_list_each_resource_that_did_not_stay_unchanged() {
    let cx = TestContext::directory().await;
    fleet(&cx).await;
    let all = cx.get_json("/api/v1/reports/events").await;
    let events = all["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{all:#}");
    assert_eq!(
        events[0],
        json!({"node": "db-1", "run_id": "d1-b", "environment": "staging",
               "resource": "file:/etc/motd", "status": "noop", "corrective": false,
               "finished_at": "2025-03-05T10:00:00Z",
               "summary": "content: a → b, \"c\""})
    );
    let cases: [(&str, &[&str]); 7] = [
        ("resource=file:/etc/motd", &["d1-b", "w1-b", "w1-a"]),
        ("resource=file:/etc/motd&status=changed", &["w1-b", "w1-a"]),
        ("status=failed", &["w2-a"]),
        ("corrective=1", &["w1-b"]),
        ("node=db-1", &["d1-b"]),
        (
            "environment=production&resource=file:/etc/motd",
            &["w1-b", "w1-a"],
        ),
        (
            "resource=file:/etc/motd&until=2025-03-02T00:00:00Z",
            &["w1-a"],
        ),
    ];
    for (query, expected) in cases {
        let uri = format!("/api/v1/reports/events?{query}");
        assert_eq!(cx.ids(&uri).await, expected, "{query}");
    }
    cx.stop().await;
}

/// Follows `next_after` from `uri` (which has a `limit`) to the end.
async fn every_page(cx: &TestContext, uri: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        let page_uri = match &after {
            Some(a) => format!("{uri}&after={a}"),
            None => uri.to_owned(),
        };
        let page = cx.get_json(&page_uri).await;
        pages += 1;
        let list = page["runs"]
            .as_array()
            .or(page["events"].as_array())
            .unwrap();
        ids.extend(list.iter().map(|r| {
            r["id"]
                .as_str()
                .or(r["run_id"].as_str())
                .unwrap()
                .to_owned()
        }));
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return (ids, pages),
        }
    }
}

/// Nine runs, each changing /etc/motd: seven finished at the same
/// microsecond, two later; their ids, oldest first.
async fn nine_runs(cx: &TestContext) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..9 {
        let at = if i < 7 {
            "2025-05-01T00:00:00Z"
        } else {
            "2025-05-02T00:00:00Z"
        };
        let id = format!("r{i}");
        cx.post_run(&run(
            &format!("n{i}"),
            &id,
            at,
            &[("file:/etc/motd", "changed", false)],
        ))
        .await;
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn keyset_pages_have_no_duplicates_or_gaps_among_equal_times() {
    let cx = TestContext::directory().await;
    let expected = nine_runs(&cx).await;
    let (runs, pages) = every_page(&cx, "/api/v1/reports?limit=2").await;
    let (by_resource, _) = every_page(&cx, "/api/v1/reports?resource=file:/etc/motd&limit=3").await;
    let (events, _) = every_page(&cx, "/api/v1/reports/events?limit=4").await;
    assert_eq!(pages, 5);
    for ids in [runs, by_resource, events] {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "each run once: {ids:?}");
        assert_eq!(&ids[..2], ["r8", "r7"], "newest first");
    }
    cx.stop().await;
}

#[tokio::test]
async fn a_bad_filter_is_refused_naming_its_parameter() {
    let cx = TestContext::directory().await;
    for (query, name) in [
        ("status=broken", "`status`"),
        ("status=skipped", "`status`"),
        ("resource=nginx", "`resource`"),
        ("corrective=maybe", "`corrective`"),
        ("since=yesterday", "`since`"),
        ("until=3w", "`until`"),
        ("after=nope", "`after`"),
        ("limit=0", "`limit`"),
        ("limit=5000", "`limit`"),
        ("format=xml", "`format`"),
    ] {
        let (status, body) = cx.get(&format!("/api/v1/reports?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(name),
            "{query}: {error}"
        );
    }
    // Events take a resource's statuses, skipped among them.
    assert_eq!(
        cx.get("/api/v1/reports/events?status=skipped").await.0,
        StatusCode::OK
    );
    let (status, _) = cx.get("/api/v1/reports/events?status=unchanged").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    cx.stop().await;
}

#[tokio::test]
async fn lists_download_as_quoted_csv_and_as_json() {
    let cx = TestContext::directory().await;
    fleet(&cx).await;
    let get = |uri: &'static str| {
        let cx = &cx;
        async move {
            let req = axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            cx.send(req).await
        }
    };
    let (status, headers, body) =
        get("/api/v1/reports/events?resource=file:/etc/motd&format=csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"changes.csv\""
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(
        lines,
        [
            "finished_at,node,run_id,environment,resource,status,corrective,summary",
            "2025-03-05T10:00:00Z,db-1,d1-b,staging,file:/etc/motd,noop,false,\"content: a → b, \"\"c\"\"\"",
            "2025-03-02T10:00:00Z,web-1,w1-b,production,file:/etc/motd,changed,true,\"content: a → b, \"\"c\"\"\"",
            "2025-03-01T10:00:00Z,web-1,w1-a,production,file:/etc/motd,changed,false,\"content: a → b, \"\"c\"\"\"",
        ]
    );
    let (status, headers, body) = get("/api/v1/reports?status=failed&format=csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"runs.csv\""
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("run_id,node,environment,status,noop,finished_at,"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("w2-a,web-2,production,failed,false,2025-03-03T10:00:00Z,"),
        "{text}"
    );
    let (status, headers, body) = get("/api/v1/reports?node=db-1&format=json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"runs.json\""
    );
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["runs"].as_array().unwrap().len(), 2);
    cx.stop().await;
}

/// The CSV's run ids (its first column) and its `Drover-Next-After`.
async fn csv_ids(cx: &TestContext, uri: &str) -> (Vec<String>, Option<String>) {
    let req = axum::http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, headers, body) = cx.send(req).await;
    assert_eq!(status, StatusCode::OK, "{uri}");
    let mut reader = csv::Reader::from_reader(&body[..]);
    let ids = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    let next = headers
        .get("drover-next-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (ids, next)
}

#[tokio::test]
async fn a_download_holds_every_match_and_says_where_a_cut_one_goes_on() {
    let cx = TestContext::directory().await;
    let mut expected = nine_runs(&cx).await;
    expected.sort();
    // No limit: every match, not one page (a page would be 100 here, but
    // the same holds past the 1,000 a page can hold: see runs::query).
    let (all, next) = csv_ids(&cx, "/api/v1/reports?format=csv").await;
    assert_eq!(next, None, "nothing cut");
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    // A limit cuts it; the header says where the rest begins.
    let (first, next) = csv_ids(&cx, "/api/v1/reports?format=csv&limit=4").await;
    assert_eq!(first, all[..4]);
    let next = next.expect("a cut download names where it goes on");
    let (rest, last) = csv_ids(&cx, &format!("/api/v1/reports?format=csv&after={next}")).await;
    assert_eq!((rest.as_slice(), last), (&all[4..], None));
    // Events and JSON files alike; a download may ask for more than a page.
    let page = cx
        .get_json("/api/v1/reports/events?format=json&limit=5000")
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 9);
    assert!(page["next_after"].is_null());
    let page = cx
        .get_json("/api/v1/reports/events?format=json&limit=2")
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert!(page["next_after"].is_string());
    let (status, _) = cx.get("/api/v1/reports?format=csv&limit=100001").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    cx.stop().await;
}

#[tokio::test]
async fn retention_and_purge_delete_the_events_with_their_reports() {
    let cx = TestContext::directory().await;
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(20 * 24)).to_string();
    let new = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let motd = ("file:/etc/motd", "changed", false);
    let nginx = ("package:nginx", "failed", false);
    cx.post_run(&run("web-1", "old", &old, &[motd, nginx]))
        .await;
    cx.post_run(&run("web-1", "new", &new, &[motd])).await;
    cx.post_run(&run("db-1", "db", &new, &[motd, nginx])).await;
    assert_eq!(cx.event_rows().await, 5);
    // The relative range sees only the recent ones.
    assert_eq!(cx.ids("/api/v1/reports?since=2d&node=web-1").await, ["new"]);

    let cutoff = jiff::Timestamp::now().as_microsecond() - 14 * 86_400_000_000;
    let deleted = drover_server::retention::prune(cx.leader().await, cutoff)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(cx.event_rows().await, 3);
    assert_eq!(cx.ids("/api/v1/reports/events?node=web-1").await, ["new"]);

    assert!(
        drover_server::db::lifecycle::purge(&cx.db, "db-1")
            .await
            .unwrap()
    );
    assert_eq!(cx.event_rows().await, 1);
    assert_eq!(cx.ids("/api/v1/reports/events").await, ["new"]);
    cx.stop().await;
}

/// The rows of `report_events`, but their summaries, in a stable order.
async fn event_keys(cx: &TestContext) -> Vec<(String, String, String, i64, i64)> {
    sqlx::query_as(
        "SELECT run_id, resource, status, corrective, finished_at_us FROM report_events
         ORDER BY run_id, resource",
    )
    .fetch_all(cx.db.reads())
    .await
    .unwrap()
}

#[tokio::test]
async fn the_migration_fills_the_events_of_reports_stored_before_it_as_inserts_do() {
    let cx = TestContext::directory().await;
    fleet(&cx).await;
    let written = event_keys(&cx).await;
    assert_eq!(written.len(), 4);
    // The migration's INSERT ... SELECT over the stored bodies, run again
    // on an emptied table, gives the rows the report inserts wrote.
    let migration = match cx.db.backend() {
        drover_server::db::Backend::Sqlite => {
            include_str!("../../migrations/sqlite/0013_report_events.sql")
        }
        drover_server::db::Backend::Postgres => {
            include_str!("../../migrations/postgres/0009_report_events.sql")
        }
    };
    let backfill = &migration[migration.find("INSERT").unwrap()..];
    let backfill = backfill.to_owned();
    cx.db
        .write(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM report_events")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(&backfill).execute(&mut *conn).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
    assert_eq!(event_keys(&cx).await, written);
    cx.stop().await;
}
