//! The apps pages rendered without a server: a fleet of three nodes, an
//! app with one replica placed and one pending, and the capacity view.

use drover_catalog::schedule::{Predicate, Priority, Refusal};

use super::*;
use crate::apps::view::NodeCapacity;
use crate::db::updates::AppUpdate;

const MIB: u64 = 1024 * 1024;

fn now() -> jiff::Timestamp {
    "2026-12-01T12:00:00Z".parse().unwrap()
}

fn scored(node: &str, least: f64, spread: f64) -> Verdict {
    Verdict {
        node: node.to_owned(),
        refused: None,
        scores: vec![
            (Priority::LeastAllocated, least),
            (Priority::Spread, spread),
        ],
        total: least + spread,
    }
}

fn refused(node: &str, predicate: Predicate, reason: &str) -> Verdict {
    Verdict {
        node: node.to_owned(),
        refused: Some(Refusal {
            predicate,
            reason: reason.to_owned(),
        }),
        scores: Vec::new(),
        total: 0.0,
    }
}

/// web#0 on b (scored lower than c: `stay` or a tie-break chose it), and
/// a refused by `resources`.
fn placed() -> Decision {
    Decision {
        app: "web".into(),
        replica: 0,
        node: Some("b".into()),
        reason: None,
        verdicts: vec![
            refused("a", Predicate::Resources, "insufficient memory"),
            scored("c", 0.9, 2.0),
            scored("b", 0.8, 2.0),
        ],
    }
}

fn pending() -> Decision {
    Decision {
        app: "web".into(),
        replica: 1,
        node: None,
        reason: Some("0/3 nodes are available: 2 insufficient memory, 1 cordoned".into()),
        verdicts: vec![
            refused("a", Predicate::Resources, "insufficient memory"),
            refused("b", Predicate::Schedulable, "cordoned"),
            refused("c", Predicate::Resources, "insufficient memory"),
        ],
    }
}

fn app() -> AppStatus {
    AppStatus {
        name: "web".into(),
        environment: "main".into(),
        desired: 2,
        requests: Quantities {
            cpu: 0.5,
            memory_bytes: 64 * MIB,
            disk_bytes: 0,
        },
        spread: None,
        errors: Vec::new(),
        spec: Some("5e1f00aa77".into()),
        update: None,
        replicas: vec![
            ReplicaStatus {
                index: 0,
                node: Some("b".into()),
                container: Some("web-0-x1".into()),
                address: Some("10.0.0.2".into()),
                state: "healthy".into(),
                reported: Some("healthy".into()),
                since: Some("2026-12-01T11:59:30Z".into()),
                spec: "5e1f00aa77".into(),
                moving_to: None,
                moving_spec: None,
                reason: None,
                decided_at: "2026-12-01T11:59:00Z".into(),
                decision: Some(serde_json::to_value(placed()).unwrap()),
            },
            ReplicaStatus {
                index: 1,
                node: None,
                container: None,
                address: None,
                state: "pending".into(),
                reported: None,
                since: None,
                spec: "5e1f00aa77".into(),
                moving_to: None,
                moving_spec: None,
                reason: pending().reason,
                decided_at: "2026-12-01T11:58:00Z".into(),
                decision: Some(serde_json::to_value(pending()).unwrap()),
            },
        ],
    }
}

fn capacity() -> Capacity {
    let node = |name: &str, replicas: usize, cordoned: bool| NodeCapacity {
        name: name.into(),
        capacity: Quantities {
            cpu: 1.5,
            memory_bytes: 1536 * MIB,
            disk_bytes: 0,
        },
        requested: Quantities {
            cpu: 0.5 * replicas as f64,
            memory_bytes: 64 * MIB * replicas as u64,
            disk_bytes: 0,
        },
        replicas,
        health: "ready".into(),
        cordoned,
    };
    Capacity {
        environment: "main".into(),
        capacity: Quantities {
            cpu: 4.5,
            memory_bytes: 3 * 1536 * MIB,
            disk_bytes: 0,
        },
        requested: Quantities {
            cpu: 1.0,
            memory_bytes: 128 * MIB,
            disk_bytes: 0,
        },
        nodes_used: 2,
        lower_bound: 1,
        nodes: vec![node("a", 1, false), node("b", 1, true), node("c", 0, false)],
    }
}

#[test]
fn the_decision_table_reads_as_explain_prints_it() {
    let table = DecisionTable::new(&placed());
    assert_eq!(table.priorities, ["least_allocated", "spread"]);
    let order: Vec<(&str, &str)> = table
        .rows
        .iter()
        .map(|r| (r.node.as_str(), r.verdict))
        .collect();
    // The chosen node first even when another scored higher, then the
    // scored ones best first, then the refused.
    assert_eq!(order, [("b", "chosen"), ("c", "scored"), ("a", "refused")]);
    assert_eq!(table.rows[0].scores, ["0.80", "2.00"]);
    assert_eq!(table.rows[0].total, "2.80");
    assert_eq!(
        table.rows[2].refused.as_deref(),
        Some("refused by resources: insufficient memory")
    );
    assert_eq!(table.refused_span(), 3);
}

#[test]
fn the_packing_sentence_counts_the_room_to_consolidate() {
    assert_eq!(
        packing(5, 2),
        "the placed replicas need at least 2 nodes; 5 hold replicas now (room to consolidate: 3)"
    );
    assert_eq!(
        packing(1, 1),
        "the placed replicas need at least 1 node; 1 holds replicas now (no room to consolidate)"
    );
    assert_eq!(packing(0, 0), "no replica is placed, so no node holds one");
}

#[test]
fn gauges_say_how_full_the_fleet_is() {
    let g = Gauge::new("memory", 128.0 * MIB as f64, 512.0 * MIB as f64, show_bytes);
    assert_eq!((g.percent.as_str(), g.ratio.as_str()), ("25%", "0.2500"));
    assert_eq!(
        (g.requested.as_str(), g.capacity.as_str()),
        ("128 MiB", "512 MiB")
    );
    assert!(!g.over);
    let tiny = Gauge::new("cpu", 0.01, 16.0, show_cpus);
    assert_eq!(tiny.percent, "<1%");
    let none = Gauge::new("disk", 0.0, 0.0, show_bytes);
    assert_eq!(none.percent, "0%");
    let over = Gauge::new("disk", 10.0, 0.0, show_bytes);
    assert_eq!(
        (over.percent.as_str(), over.ratio.as_str()),
        ("no capacity", "1.0000")
    );
    assert!(over.over);
    assert_eq!(requests(&app().requests), "0.5 CPU, 64 MiB memory");
    assert_eq!(requests(&Quantities::default()), "nothing");
}

#[test]
fn the_apps_page_lists_replicas_reasons_and_capacity() {
    let view = AppsPage {
        filtered: None,
        apps: vec![AppRow::new(&app(), now())],
        environments: Vec::new(),
        capacity: Some(CapacityView::new(&capacity())),
        capacity_error: None,
    };
    let html = view.render().unwrap();
    assert!(
        html.contains(r#"<section class="app" data-app="web" data-environment="main">"#),
        "{html}"
    );
    assert!(html.contains(r#"href="/apps/web?environment=main""#));
    assert!(html.contains("1/2 up"), "the healthy replica is up: {html}");
    assert!(html.contains(r#"<tr class="replica" data-replica="0" data-state="healthy">"#));
    assert!(html.contains(r#"<a class="node-link" href="/nodes/b">b</a>"#));
    assert!(html.contains("30 s ago"), "since the report's time: {html}");
    assert!(html.contains(r#"<tr class="replica" data-replica="1" data-state="pending">"#));
    assert!(html.contains("0/3 nodes are available: 2 insufficient memory, 1 cordoned"));
    assert!(
        html.contains(r#"<meter min="0" max="1" high="0.85" optimum="0" value="0.0278">"#),
        "{html}"
    );
    assert!(html.contains("128 MiB"));
    assert!(html.contains(
        "the placed replicas need at least 1 node; 2 hold replicas now (room to consolidate: 1)."
    ));
    assert!(html.contains(r#"<tr class="node-capacity" data-node="b" data-health="ready">"#));
    assert!(html.contains(r#"<span class="badge cordoned">cordoned</span>"#));
    assert!(html.contains("64 MiB / 1.5 GiB"));
}

#[test]
fn an_update_that_is_not_done_says_its_state_and_why() {
    let mut app = app();
    app.update = Some(AppUpdate {
        environment: "main".into(),
        app: "web".into(),
        spec_hash: "b0a7c0de99".into(),
        stable_spec_hash: Some("5e1f00aa77".into()),
        state: "reverted".into(),
        reason: Some("web-0-x2 on c was not healthy within healthy_deadline_secs (60 s)".into()),
        since: "2026-12-01T11:59:00Z".into(),
    });
    app.replicas[0].moving_to = Some("c".into());
    app.replicas[0].moving_spec = Some("5e1f00aa77".into());
    let render = |app: &AppStatus| {
        AppsPage {
            filtered: None,
            apps: vec![AppRow::new(app, now())],
            environments: Vec::new(),
            capacity: None,
            capacity_error: None,
        }
        .render()
        .unwrap()
    };
    let html = render(&app);
    assert!(
        html.contains(
            r#"<p class="update update-reverted"><span class="badge state-update-reverted">update reverted</span> to spec b0a7c0de: web-0-x2 on c was not healthy"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"<span class="moving">moving to c (spec 5e1f00aa)</span>"#));
    // a done update says nothing
    app.update.as_mut().unwrap().state = "done".into();
    let html = render(&app);
    assert!(!html.contains("update-"), "{html}");
}

#[test]
fn the_app_page_shows_each_replicas_decision() {
    let mut app = app();
    app.errors = vec!["apps/web.toml:1:1: <bad> field".into()];
    let view = AppPage {
        name: "web".into(),
        environments: vec![AppDetail {
            app: AppRow::new(&app, now()),
            decisions: app
                .replicas
                .iter()
                .map(|r| ReplicaDecision::new(r, now()))
                .collect(),
        }],
    };
    let html = view.render().unwrap();
    assert!(
        html.contains(r#"<section class="decision" data-replica="0">"#),
        "{html}"
    );
    assert!(html.contains(r#"<tr class="verdict" data-node="b" data-verdict="chosen">"#));
    assert!(html.contains(r#"<span class="chosen" title="the chosen node">*</span>"#));
    assert!(html.contains(r#"<th class="num">least_allocated</th><th class="num">spread</th>"#));
    assert!(html.contains(r#"<td class="num total">2.80</td>"#));
    assert!(html.contains(
        r#"<td class="refused" colspan="3">refused by resources: insufficient memory</td>"#
    ));
    assert!(html.contains("pending: 0/3 nodes are available"));
    assert!(html.contains("refused by schedulable: cordoned"));
    // What an app file says is escaped like anything else.
    assert!(
        html.contains("bad&#62; field") && !html.contains("<bad>"),
        "{html}"
    );

    let missing = AppPage {
        name: "<nope>".into(),
        environments: Vec::new(),
    };
    let html = missing.render().unwrap();
    assert!(
        html.contains(r#"id="no-app""#) && html.contains("&#60;nope&#62;"),
        "{html}"
    );
}
