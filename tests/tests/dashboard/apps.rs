//! The apps pages as an operator reads them: an app placed by the server's
//! control loop on nodes that asked for catalogs (with the facts capacity
//! comes from), an app too large for any node, the capacity of the fleet,
//! and one replica's decision node by node; then a node of the app taken
//! into maintenance and back with the node page's buttons.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use drover_tests::browser::Browser;
use serde_json::{Value, json};

use crate::markup::start_tags;
use crate::walkthrough::sign_in;
use crate::{Fleet, runtime};

/// Two replicas of 64 MiB: they fit, one a node (`distinct_hosts`).
const WEB: &str = "replicas = 2\nimage = \"busybox\"\n\
                   command = [\"sleep\", \"3600\"]\n\
                   requests = { memory = \"64MiB\" }\n";
/// More memory than any node has: pending, with a reason.
const HUGE: &str = "replicas = 1\nimage = \"busybox\"\n\
                    requests = { memory = \"100000GiB\" }\n";

const NODES: [&str; 3] = ["app-1", "app-2", "app-3"];

/// How long the control loop (a round every 2 s) may take to place them.
const PLACED_WITHIN: Duration = Duration::from_secs(30);

/// Two CPUs and 2 GiB: after `[scheduler] reserved` (0.5 CPU, 512 MiB)
/// each node holds 1.5 CPU and 1.5 GiB.
fn facts(node: &str, ip: &str) -> Value {
    json!({
        "hostname": node,
        "processors": {"count": 2},
        "memory": {"total_bytes": 2u64 << 30},
        "networking": {"ip": ip},
    })
}

/// `GET /api/v1/apps` until web has both replicas on nodes and huge its
/// pending reason; the apps as the API gives them.
fn wait_for_placements(fleet: &Fleet) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let apps = fleet.server.get_json("/api/v1/apps");
        let apps = apps.as_array().cloned().unwrap_or_default();
        let app = |name: &str| apps.iter().find(|a| a["name"] == name).cloned();
        let placed = app("web").is_some_and(|web| {
            let replicas = web["replicas"].as_array().cloned().unwrap_or_default();
            replicas.len() == 2 && replicas.iter().all(|r| r["node"].is_string())
        });
        let pending = app("huge").is_some_and(|huge| {
            huge["replicas"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("nodes are available"))
        });
        if placed && pending {
            return apps;
        }
        assert!(
            start.elapsed() < PLACED_WITHIN,
            "not placed within {PLACED_WITHIN:?}: {apps:#?}\nserver log:\n{}",
            fleet.server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn an_operator_sees_where_replicas_run_why_one_waits_and_how_full_the_fleet_is() {
    let fleet = Fleet::start_with(&[("apps/web.toml", WEB), ("apps/huge.toml", HUGE)]);
    for (i, node) in NODES.iter().enumerate() {
        let credential = fleet.enroll(node);
        fleet.ask_for_catalog(
            node,
            &credential,
            &facts(node, &format!("10.0.0.{}", i + 1)),
        );
    }
    let apps = wait_for_placements(&fleet);
    let web = apps.iter().find(|a| a["name"] == "web").unwrap();
    let web_nodes: BTreeSet<String> = web["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(web_nodes.len(), 2, "one replica a node: {web:#}");

    // Without JavaScript the page is all there in the HTML.
    let (status, page) = fleet.server.request("GET", "/apps", None);
    assert_eq!(status, 200, "{page}");
    let html = page.as_str().expect("an HTML page");
    let replicas: Vec<String> = start_tags(html, "tr")
        .into_iter()
        .filter(|tag| tag.get("class").is_some_and(|c| c == "replica"))
        .map(|tag| tag["data-state"].clone())
        .collect();
    assert_eq!(
        replicas.len(),
        3,
        "web's two replicas and huge's one: {html}"
    );
    assert_eq!(
        replicas.iter().filter(|s| *s == "pending").count(),
        1,
        "{replicas:?}"
    );
    let (status, _) = fleet.server.request("GET", "/apps/nope", None);
    assert_eq!(status, 404, "an app no environment has");

    runtime().block_on(async {
        let mut browser = Browser::open(&fleet.server, "apps").await;
        sign_in(&browser, &fleet.server.operator_token()).await;
        browser.follow("header.top nav a[href=\"/apps\"]").await;
        assert_eq!(browser.path().await, "/apps");
        apps_page(&mut browser, &web_nodes).await;
        decision_page(&mut browser, &web_nodes).await;
        let node = web_nodes.first().unwrap();
        maintenance(&mut browser, &fleet, node).await;
        browser.close().await;
    });
}

/// The apps, their replicas and the pending reason, then the capacity.
async fn apps_page(browser: &mut Browser, web_nodes: &BTreeSet<String>) {
    let web = "section.app[data-app=\"web\"]";
    browser.find(web).await;
    let on: BTreeSet<String> = {
        let mut nodes = BTreeSet::new();
        for link in browser
            .find_all(&format!("{web} tr.replica a.node-link"))
            .await
        {
            nodes.insert(link.text().await.unwrap());
        }
        nodes
    };
    assert_eq!(&on, web_nodes, "{}", browser.page_text().await);
    let huge = "section.app[data-app=\"huge\"]";
    let pending = format!("{huge} tr.replica[data-state=\"pending\"]");
    browser.find(&pending).await;
    let reason = browser.text(&format!("{pending} .reason")).await;
    assert!(
        reason.contains("nodes are available") && reason.contains("insufficient memory"),
        "the pending reason: {reason}"
    );
    assert!(
        browser
            .text(&format!("{huge} .up-count"))
            .await
            .contains("0/1 up")
    );

    let packing = browser.find("#packing").await;
    assert_eq!(
        packing.attr("data-nodes-used").await.unwrap().as_deref(),
        Some("2")
    );
    let sentence = packing.text().await.unwrap();
    assert!(
        sentence.contains("the placed replicas need at least 1 node; 2 hold replicas now"),
        "{sentence}"
    );
    let memory = browser
        .text("#fleet-capacity tr.gauge[data-resource=\"memory\"]")
        .await;
    assert!(
        memory.contains("128 MiB") && memory.contains("4.5 GiB"),
        "two replicas of 64 MiB on three nodes of 1.5 GiB: {memory}"
    );
    let rows = browser.find_all("#node-capacity tr.node-capacity").await;
    assert_eq!(rows.len(), 3, "{}", browser.page_text().await);
    for row in rows {
        assert_eq!(
            row.attr("data-health").await.unwrap().as_deref(),
            Some("ready")
        );
    }
    browser.screenshot("apps").await;
}

/// From the app's link to its page: each replica's decision, the chosen
/// node first and marked, every node of the fleet in the table.
async fn decision_page(browser: &mut Browser, web_nodes: &BTreeSet<String>) {
    browser
        .follow("section.app[data-app=\"web\"] a.app-link")
        .await;
    assert_eq!(browser.text("#app-name").await, "web");
    assert_eq!(browser.path().await, "/apps/web?environment=main");
    let mut chosen = BTreeSet::new();
    for replica in 0..2 {
        let table = format!("section.decision[data-replica=\"{replica}\"] table.decision-table");
        browser.find(&table).await;
        let mut nodes = BTreeSet::new();
        for row in browser.find_all(&format!("{table} tr.verdict")).await {
            let node = row.attr("data-node").await.unwrap().unwrap();
            if row.attr("data-verdict").await.unwrap().as_deref() == Some("chosen") {
                chosen.insert(node.clone());
            }
            nodes.insert(node);
        }
        let all: BTreeSet<String> = NODES.map(str::to_owned).into();
        assert_eq!(
            nodes,
            all,
            "replica {replica}: {}",
            browser.page_text().await
        );
        let first = browser
            .find(&format!("{table} tbody tr.verdict"))
            .await
            .attr("data-verdict")
            .await
            .unwrap();
        assert_eq!(first.as_deref(), Some("chosen"), "the chosen node first");
    }
    assert_eq!(&chosen, web_nodes, "each replica's chosen node is its node");
    let header = browser
        .text("section.decision[data-replica=\"0\"] table.decision-table thead")
        .await;
    assert!(
        header.contains("least_allocated") && header.contains("total"),
        "{header}"
    );
    browser.screenshot("app-decisions").await;
}

/// On the page of `node` (which runs a web replica): Cordon shows the
/// badge, Drain with a deadline shows the drain and what it waits for,
/// Uncordon ends both; the API agrees at each step.
async fn maintenance(browser: &mut Browser, fleet: &Fleet, node: &str) {
    browser.goto(&format!("/nodes/{node}")).await;
    browser
        .find("#node-replicas tr.replica[data-app=\"web\"]")
        .await;
    browser.find("#maintenance[data-cordoned=\"false\"]").await;
    assert!(browser.find_all("#maintenance-badge").await.is_empty());

    browser.follow("#maintenance button#cordon").await;
    let badge = browser.text("h1 #maintenance-badge").await;
    assert_eq!(badge, "in maintenance");
    assert_eq!(browser.path().await, format!("/nodes/{node}"));
    browser.find("#maintenance[data-cordoned=\"true\"]").await;
    let api = node_api(fleet, node);
    assert_eq!(api["cordoned"], true, "{api:#}");
    browser.screenshot("node-cordoned").await;

    let deadline = browser
        .find("#maintenance input[name=\"deadline_secs\"]")
        .await;
    deadline.send_keys("900").await.unwrap();
    browser.follow("#maintenance button#drain").await;
    browser
        .find("#maintenance[data-drain-state=\"draining\"]")
        .await;
    let status = browser
        .text("#maintenance [data-field=\"drain-status\"]")
        .await;
    assert!(!status.is_empty(), "the drain says what it waits for");
    assert!(
        browser
            .find_all("#maintenance button#drain")
            .await
            .is_empty()
    );
    let api = node_api(fleet, node);
    assert_eq!(api["drain"]["state"], "draining", "{api:#}");
    assert!(api["drain"]["deadline_at_us"].is_i64(), "{api:#}");
    browser.screenshot("node-draining").await;

    browser.follow("#maintenance button#uncordon").await;
    browser.find("#maintenance[data-cordoned=\"false\"]").await;
    assert!(browser.find_all("#maintenance-badge").await.is_empty());
    let api = node_api(fleet, node);
    assert_eq!(api["cordoned"], false, "{api:#}");
    assert!(api["drain"].is_null(), "{api:#}");
}

/// `GET /api/v1/nodes/{node}`: the server's blocking client, off the
/// browser's runtime threads.
fn node_api(fleet: &Fleet, node: &str) -> Value {
    tokio::task::block_in_place(|| fleet.server.get_json(&format!("/api/v1/nodes/{node}")))
}
