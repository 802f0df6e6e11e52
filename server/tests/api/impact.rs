//! The dashboard's impact page (`/impact?env=BRANCH&against=ENV`) over a
//! git mirror with branches and nodes that asked for catalogs: a changed
//! template changes exactly the nodes that render it, with the file's
//! diff; a broken branch lists the nodes it breaks with the errors'
//! places; an app whose selector changes moves its replicas; an unknown
//! branch is a 404 naming the known ones; the page wants a signed-in
//! operator.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use drover_server::credentials::Peer;
use serde_json::json;
use tempfile::TempDir;

use super::{TestContext, git, write};

const NODES: &str = "[[node]]\nmatch = \"web-*\"\nroles = [\"web\"]\n\n\
                     [[node]]\nmatch = \"db-*\"\nroles = [\"db\"]\n";
const WEB: &str = "[[file]]\npath = \"/etc/motd\"\ntemplate = \"templates/motd.j2\"\n";
const DB: &str = "[[file]]\npath = \"/etc/db.conf\"\ncontent = \"port = 5432\\n\"\n";
/// One replica, on a web node.
const SHOP: &str = "replicas = 1\nimage = \"busybox:1\"\nrequests = { memory = \"64MiB\" }\n\
                    selector = { roles = [\"web\"] }\n";

fn commit_all(repo: &std::path::Path, message: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
}

/// A repository on `main` with the branches `motd` (a new template),
/// `broken` (a typo in the web role) and `to-db` (the app moves to the db
/// nodes); a server mirroring it; three nodes known to it.
async fn fleet() -> TestContext {
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("origin");
    write(
        &repo,
        &[
            ("nodes.toml", NODES),
            ("roles/web.toml", WEB),
            ("roles/db.toml", DB),
            ("templates/motd.j2", "welcome to {{ node }}\n"),
            ("apps/shop.toml", SHOP),
        ],
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    commit_all(&repo, "first");
    git(&repo, &["checkout", "-q", "-b", "motd"]);
    write(
        &repo,
        &[("templates/motd.j2", "welcome to {{ node }}, managed\n")],
    );
    commit_all(&repo, "a new motd");
    git(&repo, &["checkout", "-q", "main"]);
    git(&repo, &["checkout", "-q", "-b", "broken"]);
    write(
        &repo,
        &[("roles/web.toml", "[[file]]\npth = \"/etc/motd\"\n")],
    );
    commit_all(&repo, "a typo");
    git(&repo, &["checkout", "-q", "main"]);
    git(&repo, &["checkout", "-q", "-b", "to-db"]);
    write(
        &repo,
        &[("apps/shop.toml", &SHOP.replace("\"web\"", "\"db\""))],
    );
    commit_all(&repo, "the shop on the db nodes");
    git(&repo, &["checkout", "-q", "main"]);
    let cx = TestContext::start(tmp, repo.clone(), repo.display().to_string()).await;
    for node in ["web-1", "web-2", "db-1"] {
        let body = json!({"facts": {
            "hostname": node,
            "processors": {"count": 2},
            "memory": {"total_bytes": 4_u64 << 30},
        }})
        .to_string();
        let (status, _, _) = cx
            .post(&format!("/api/v1/nodes/{node}/catalog"), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{node}");
    }
    placed(&cx).await;
    cx
}

/// Waits for the control loop to place `main`'s replica (on a web node).
async fn placed(cx: &TestContext) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let apps = cx.get_json("/api/v1/apps/shop?environment=main").await;
        if apps[0]["replicas"][0]["node"].is_string() {
            return;
        }
        assert!(Instant::now() < deadline, "not placed: {apps:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn page(cx: &TestContext, uri: &str) -> (StatusCode, String) {
    let (status, body) = cx.get(uri).await;
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_changed_template_changes_exactly_the_nodes_that_render_it() {
    let cx = fleet().await;
    let before = jiff::Timestamp::now();
    let (status, html) = page(&cx, "/impact?env=motd&against=main").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    // It says when it read the fleet it stands on: during this request.
    let read_at = html
        .split_once("<time id=\"impact-read-at\">")
        .and_then(|(_, rest)| rest.split_once("</time>"))
        .map(|(at, _)| at.replace(" UTC", "Z").replace(' ', "T"))
        .expect("the time the fleet was read");
    let read_at: jiff::Timestamp = read_at.parse().unwrap();
    let whole_seconds = jiff::SignedDuration::from_secs(1);
    assert!(
        before - whole_seconds <= read_at && read_at <= jiff::Timestamp::now(),
        "{read_at}"
    );
    for node in ["web-1", "web-2"] {
        assert!(
            html.contains(&format!("class=\"impact-node\" data-node=\"{node}\"")),
            "{html}"
        );
    }
    assert!(!html.contains("data-node=\"db-1\""), "{html}");
    assert!(html.contains("data-resource=\"file:/etc/motd\""), "{html}");
    assert!(
        html.contains("<span class=\"del\">-welcome to web-1</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"add\">+welcome to web-1, managed</span>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"count\">2</span> nodes change"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"count\">1</span> unchanged"),
        "{html}"
    );
    assert!(html.contains("No replica's placement changes."), "{html}");
    // The form offers every branch, the asked ones chosen.
    assert!(html.contains("<option value=\"motd\" selected>"), "{html}");
    assert!(html.contains("<option value=\"to-db\">"), "{html}");
    // Again: the same answer (from the cache, the fleet as then read).
    let (_, again) = page(&cx, "/impact?env=motd&against=main").await;
    assert_eq!(again, html);
    // Against itself: nothing changes.
    let (_, same) = page(&cx, "/impact?env=main&against=main").await;
    assert!(same.contains("No node's catalog changes."), "{same}");
    cx.stop().await;
}

#[tokio::test]
async fn a_broken_branch_lists_the_nodes_and_errors_and_moved_replicas_show() {
    let cx = fleet().await;
    let (status, html) = page(&cx, "/impact?env=broken&against=main").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for node in ["web-1", "web-2"] {
        assert!(
            html.contains(&format!("class=\"broken-node\" data-node=\"{node}\"")),
            "{html}"
        );
    }
    assert!(!html.contains("data-node=\"db-1\""), "{html}");
    assert!(html.contains("roles/web.toml:2:1"), "{html}");
    assert!(
        html.contains("<span class=\"count\">2</span> do not compile"),
        "{html}"
    );

    // The app's selector moves it to the db nodes: its replica moves there.
    let (status, html) = page(&cx, "/impact?env=to-db&against=main").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("<tr class=\"move\" data-fate=\"moved\">"),
        "{html}"
    );
    assert!(
        html.contains("<td>shop#0</td><td>moved</td><td>web-"),
        "{html}"
    );
    assert!(html.contains("</td><td>db-1</td>"), "{html}");
    assert!(
        html.contains("<span class=\"count\">1</span> placements move"),
        "{html}"
    );
    cx.stop().await;
}

#[tokio::test]
async fn an_unknown_branch_is_a_404_and_the_page_wants_a_sign_in() {
    let cx = fleet().await;
    let (status, html) = page(&cx, "/impact?env=nope&against=main").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    assert!(
        html.contains("no branch `nope`: the server knows broken, main, motd, to-db"),
        "{html}"
    );
    let (status, html) = page(&cx, "/impact?env=motd&against=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    assert!(html.contains("no branch `nope`"), "{html}");
    // The form alone, the default environment as the target.
    let (status, html) = page(&cx, "/impact").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<option value=\"main\" selected>"), "{html}");
    assert!(!html.contains("id=\"counts\""), "{html}");

    let req = Request::get("/impact?env=motd")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = cx.send_as(Peer::Anonymous, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    cx.stop().await;
}
