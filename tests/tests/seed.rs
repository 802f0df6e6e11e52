//! The dashboard load seeder (`drover-seed`, `scripts/bench dashboard`)
//! against the server as it is now: a small fleet seeded into a temporary
//! database and read back through the server's own queries, so a schema or
//! report change that breaks the seeder fails here, not in a benchmark run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use drover_catalog::Report;
use drover_server::config::DEFAULT_UNRESPONSIVE_SECS;
use drover_server::db;
use drover_server::fleet::{self, Context, Filter, NodeState};
use serde_json::Value;

const NODES: usize = 50;
const REPORTS: usize = 2_000;

/// Runs `drover-seed ARGS`, failing the test with its stderr.
fn drover_seed(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_drover-seed"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drover-seed {args:?} exited {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seeds NODES nodes and REPORTS reports into `dir/data/drover.db` with
/// `seed`; returns its summary.
fn seed(dir: &Path, seed: u64) -> Value {
    let repo = dir.join("repo");
    let (db, summary) = (dir.join("data/drover.db"), dir.join("summary.json"));
    drover_seed(&["repo", repo.to_str().unwrap()]);
    drover_seed(&[
        "fleet",
        "--db",
        db.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--nodes",
        &NODES.to_string(),
        "--reports",
        &REPORTS.to_string(),
        "--seed",
        &seed.to_string(),
        "--summary",
        summary.to_str().unwrap(),
    ]);
    serde_json::from_slice(&fs_err::read(summary).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_seeded_fleet_reads_back_through_the_servers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let summary = seed(dir.path(), 6);
    let url = format!("sqlite://{}", dir.path().join("data/drover.db").display());
    let db = db::open(&url).await.unwrap();

    let now: jiff::Timestamp = summary["now"].as_str().unwrap().parse().unwrap();
    let ctx = Context {
        unresponsive_before_us: now.as_microsecond() - DEFAULT_UNRESPONSIVE_SECS as i64 * 1_000_000,
        held: Default::default(),
        heads: BTreeMap::from([(
            "production".to_owned(),
            summary["head"].as_str().unwrap().to_owned(),
        )]),
    };

    // The overview's counts: every node, in the states the seeder made.
    let counts = fleet::counts(&db, &ctx).await.unwrap();
    assert_eq!(counts.total, NODES as i64);
    for state in NodeState::ALL {
        let want = summary["node_states"][state.as_str()].as_i64().unwrap_or(0);
        assert_eq!(counts.get(state), want, "{state:?}: {counts:?}");
    }
    assert_eq!(counts.stale, summary["stale"].as_i64().unwrap());
    assert_eq!(counts.get(NodeState::NeverReported), 0);
    assert!(
        counts.get(NodeState::Unchanged) > NODES as i64 / 2,
        "{counts:?}"
    );

    // The node table, in name order, each node in its state.
    let by_name = fleet::Sort::parse("name").unwrap();
    let page = fleet::page(&db, &ctx, &Filter::default(), by_name, None, 100)
        .await
        .unwrap();
    let names: Vec<String> = page.nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names, strings(&summary["names"]));
    let states: Vec<&str> = page.nodes.iter().map(|n| n.state.as_str()).collect();
    assert_eq!(states, strings(&summary["state_of"]));

    // Facts and roles as a node's catalog request stores them: the fact
    // and role filters pick the Debian nodes.
    let debian = strings(&summary["os_ids"])
        .iter()
        .filter(|os| *os == "debian")
        .count() as i64;
    assert!(debian > 0);
    let by_fact = Filter {
        fact: Some(("os.id".to_owned(), "debian".to_owned())),
        ..Filter::default()
    };
    let by_role = Filter {
        role: Some("debian".to_owned()),
        ..Filter::default()
    };
    for filter in [by_fact, by_role] {
        let page = fleet::page(&db, &ctx, &filter, by_name, None, 100)
            .await
            .unwrap();
        assert_eq!(page.total, debian, "{filter:?}");
    }

    // The probe node's history, newest first, and a stored body that
    // decodes as the report the agent posts.
    let probe = summary["probe"].as_str().unwrap();
    let runs = summary["probe_runs"].as_array().unwrap();
    assert_eq!(runs.len(), REPORTS / NODES);
    let history = db::reports(&db, probe, 50, None).await.unwrap();
    let ids: Vec<&str> = history.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, want[..ids.len()]);
    for (row, run) in history.iter().zip(runs) {
        assert_eq!(row.status, run["status"].as_str().unwrap());
        assert_eq!(row.finished_at, run["finished_at"].as_str().unwrap());
        let (node, body) = db::report_body(&db, &row.id, Some(probe))
            .await
            .unwrap()
            .unwrap();
        let report: Report = serde_json::from_str(&body).unwrap();
        assert_eq!((node.as_str(), report.node.as_str()), (probe, probe));
        assert_eq!(report.status.as_str(), row.status);
        assert_eq!(report.resources.len() as i64, row.resources);
    }

    // The node's last good catalog, of the commit its last fresh run applied.
    let catalog = db::last_good(&db, probe).await.unwrap().unwrap();
    assert_eq!(catalog.node, probe);
    assert!(catalog.commit.starts_with("dir-"), "{}", catalog.commit);

    // The chart counts every report.
    let hours = fleet::fleet_history(&db, now.as_microsecond(), 15 * 24)
        .await
        .unwrap();
    assert_eq!(hours.iter().map(|h| h.runs()).sum::<i64>(), REPORTS as i64);
}

#[test]
fn the_same_seed_gives_the_same_fleet() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (seed(a.path(), 11), seed(b.path(), 11));
    for key in ["head", "os_ids", "state_of", "statuses", "stale"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    let ids = |s: &Value| -> Vec<Value> {
        s["probe_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].clone())
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
}
