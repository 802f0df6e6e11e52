//! Environment pins come from the default environment's nodes.toml only: a
//! node pinned to `main` cannot ask for a branch whose nodes.toml gives it
//! another role (and that role's secret).

use super::*;

const MAIN_NODES: &str = "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n\n\
                          [[node]]\nmatch = \"db-1\"\nroles = []\nenvironment = \"main\"\n";
/// The feature branch drops the pin and gives every node `payments`.
const FEATURE_NODES: &str = "[[node]]\nmatch = \"*\"\nroles = [\"base\", \"payments\"]\n";
const PAYMENTS: &str =
    "[[file]]\npath = \"/etc/payments\"\ncontent = \"payments-secret-5d1e\\n\"\nmode = \"0600\"\n";

/// A repository whose `main` pins db-1 to main and whose `feature` does not.
fn two_branches(repo: &Path) {
    write(
        repo,
        &[
            ("nodes.toml", MAIN_NODES),
            ("roles/base.toml", BASE),
            ("files/motd", "welcome\n"),
        ],
    );
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "main pins db-1"]);
    git(repo, &["checkout", "-q", "-b", "feature"]);
    write(
        repo,
        &[
            ("nodes.toml", FEATURE_NODES),
            ("roles/payments.toml", PAYMENTS),
        ],
    );
    git(repo, &["add", "-A"]);
    git(
        repo,
        &["commit", "-q", "-m", "feature gives everyone payments"],
    );
    git(repo, &["checkout", "-q", "main"]);
}

async fn catalog_in(cx: &TestContext, node: &str, env: &str) -> (StatusCode, String) {
    let body = json!({"facts": {}, "environment": env}).to_string();
    let (status, _, bytes) = cx
        .post(&format!("/api/v1/nodes/{node}/catalog"), body)
        .await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_node_pinned_in_the_default_environment_is_refused_another_branch() {
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("origin");
    two_branches(&repo);
    let cx = TestContext::start(tmp, repo.clone(), repo.display().to_string()).await;

    // Unpinned, web-1 may try the feature branch, with that branch's roles.
    let (status, web) = catalog_in(&cx, "web-1", "feature").await;
    assert_eq!(status, StatusCode::OK, "{web}");
    assert!(web.contains("/etc/payments"), "{web}");

    // db-1 has a last good catalog from main...
    let (status, _, good) = cx.catalog("db-1").await;
    assert_eq!(status, StatusCode::OK, "{good}");
    assert_eq!(good["environment"], "main");

    // ...and asking for feature is refused outright, not served feature's
    // payments role nor the last good catalog.
    let (status, body) = catalog_in(&cx, "db-1", "feature").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body.contains("/etc/payments"), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let diagnostic = body["diagnostics"][0].as_str().unwrap();
    assert!(
        diagnostic.contains("pinned to environment `main`")
            && diagnostic.contains("asked for environment `feature`"),
        "{body}"
    );
    // Visible to the operator like any compile error.
    let node = cx.get_json("/api/v1/nodes/db-1").await;
    assert_eq!(node["compile_error"]["environment"], "feature", "{node}");
    assert!(
        node["compile_error"]["diagnostics"][0]
            .as_str()
            .unwrap()
            .contains("pinned to environment `main`"),
        "{node}"
    );

    // Asking for its pin (or nothing) it is served main again.
    let (status, body) = catalog_in(&cx, "db-1", "main").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains("/etc/payments"), "{body}");

    // The offline compile follows the same rule.
    let out = bin()
        .args(["compile", "--node", "db-1", "--env", "feature", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pinned to environment `main`"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("/etc/payments"));
    let web = compile_json(&["--node", "web-1", "--env", "feature"], &repo);
    assert!(web.to_string().contains("/etc/payments"), "{web}");
    cx.stop().await;
}
