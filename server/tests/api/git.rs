//! Git mirrors, broken commits and environment pins.

use super::*;

#[tokio::test]
async fn a_broken_directory_keeps_serving_the_last_good_catalog() {
    let cx = TestContext::directory().await;
    let (_, _, good) = cx.catalog("web-1").await;
    write(
        &cx.repo,
        &[("nodes.toml", "[[node]\nmatch = \"<x>\"\nroles = [\n")],
    );
    cx.hook().await;

    let (status, _, served) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served["version"], good["version"], "the last good catalog");
    let node = cx.get_json("/api/v1/nodes/web-1").await;
    let diagnostics = node["compile_error"]["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics[0].as_str().unwrap().starts_with("nodes.toml:"),
        "{node}"
    );
    let envs = cx.get_json("/api/v1/environments").await;
    assert!(
        !envs["environments"][0]["parse_errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A node with no last good catalog gets 422 with the diagnostics.
    let (status, _, body) = cx.catalog("web-9").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["diagnostics"][0]
            .as_str()
            .unwrap()
            .starts_with("nodes.toml:"),
        "{body}"
    );
    let (_, page) = cx.get("/").await;
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains("nodes.toml:"), "{page}");
    assert!(!page.contains("<x>"), "diagnostics are escaped");

    write(&cx.repo, &[("nodes.toml", NODES)]);
    cx.hook().await;
    let node = cx.get_json("/api/v1/nodes/web-1").await;
    assert_eq!(
        node["compile_error"],
        Value::Null,
        "a good compile clears the error"
    );
    cx.stop().await;
}

fn commit_all(repo: &Path, message: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
}

#[tokio::test]
async fn git_mirror_serves_last_good_and_shows_errors_after_a_push() {
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("origin");
    write(
        &repo,
        &[
            ("nodes.toml", NODES),
            ("roles/base.toml", BASE),
            ("files/motd", "welcome\n"),
        ],
    );
    std::os::unix::fs::symlink("/etc/passwd", repo.join("files/passwd")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit_all(&repo, "first");
    let mirror = tmp.path().join("data/mirror.git");
    let cx = TestContext::start(tmp, repo.clone(), repo.display().to_string()).await;

    let (status, _, good) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK, "{good}");
    assert_eq!(good["environment"], "main", "HEAD's branch is the default");
    let envs = cx.get_json("/api/v1/environments").await;
    assert_eq!(envs["source"], "git");
    let main = &envs["environments"][0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["commit"], good["commit"]);
    assert!(
        main["notes"][0].as_str().unwrap().contains("files/passwd"),
        "{main}"
    );

    // A commit whose catalog does not compile for web-1.
    write(
        &repo,
        &[(
            "roles/base.toml",
            &format!("{BASE}\n[[file]]\npath = \"/etc/passwd\"\nsource = \"files/passwd\"\n"),
        )],
    );
    commit_all(&repo, "broken");
    cx.hook().await;
    let envs = cx.get_json("/api/v1/environments").await;
    let main = &envs["environments"][0];
    assert_ne!(main["commit"], good["commit"]);
    let error = &main["compile_errors"][0];
    assert_eq!(error["node"], "web-1", "known nodes are recompiled: {envs}");
    assert!(
        error["diagnostics"][0]
            .as_str()
            .unwrap()
            .starts_with("roles/base.toml:")
    );
    let (status, _, served) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        served["commit"], good["commit"],
        "the broken commit never reaches the node"
    );

    // A fix, and a second branch as a second environment.
    write(
        &repo,
        &[("roles/base.toml", BASE), ("files/motd", "changed\n")],
    );
    commit_all(&repo, "fixed");
    git(&repo, &["branch", "staging"]);
    cx.hook().await;
    let (status, _, fixed) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(fixed["version"], good["version"]);
    let node = cx.get_json("/api/v1/nodes/web-1").await;
    assert_eq!(node["compile_error"], Value::Null);
    let motd = sha(b"changed\n");
    assert_eq!(
        cx.get(&format!("/api/v1/nodes/web-1/files/{motd}")).await.0,
        StatusCode::OK
    );
    // The offline compile reads a checkout as its work tree, and a branch of a bare mirror from git objects.
    let offline = compile_json(&["--node", "web-1", "--no-contents"], &repo);
    assert_eq!(offline["environment"], "main");
    assert_eq!(offline["version"], fixed["version"]);
    let offline = compile_json(&["--node", "web-1", "--env", "staging"], &mirror);
    assert_eq!(offline["environment"], "staging");

    let body = json!({"facts": {}, "environment": "staging"}).to_string();
    let (status, _, bytes) = cx.post("/api/v1/nodes/web-2/catalog", body).await;
    assert_eq!(status, StatusCode::OK);
    let staging: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(staging["environment"], "staging");
    cx.stop().await;
}

#[tokio::test]
async fn a_pin_in_nodes_toml_wins_over_the_requested_environment() {
    let cx = TestContext::directory().await;
    let pinned =
        format!("{NODES}\n[[node]]\nmatch = \"db-*\"\nroles = []\nenvironment = \"staging\"\n");
    write(&cx.repo, &[("nodes.toml", &pinned)]);
    cx.hook().await;
    let (status, _, web) = cx.catalog("web-1").await;
    assert_eq!(
        (status, &web["environment"]),
        (StatusCode::OK, &json!("production"))
    );
    // Development mode has one environment, so the pinned one does not exist.
    let (status, _, body) = cx.catalog("db-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let diagnostic = body["diagnostics"][0].as_str().unwrap();
    assert!(
        diagnostic.contains("environment `staging` does not exist"),
        "{body}"
    );
    let node = cx.get_json("/api/v1/nodes/db-1").await;
    assert_eq!(node["compile_error"]["environment"], "staging");
    cx.stop().await;
}

#[tokio::test]
async fn a_commit_shows_its_subject_author_time_and_forge_link() {
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("origin");
    write(
        &repo,
        &[
            ("nodes.toml", NODES),
            ("roles/base.toml", BASE),
            ("files/motd", "welcome\n"),
        ],
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    commit_all(&repo, "Make the motd friendlier");
    let cx = TestContext::start_with(tmp, repo.clone(), repo.display().to_string(), |c| {
        c.commit_url = Some("https://git.example.com/ops/site/commit/{commit}".into());
    })
    .await;
    let envs = cx.get_json("/api/v1/environments").await;
    let main = &envs["environments"][0];
    let commit = main["commit"].as_str().unwrap().to_owned();
    assert_eq!(
        main["commit_subject"], "Make the motd friendlier",
        "{main:#}"
    );
    assert_eq!(main["commit_author"], "t", "{main:#}");
    assert!(
        main["commit_time"].as_str().unwrap().contains('T'),
        "{main:#}"
    );
    let link = format!("https://git.example.com/ops/site/commit/{commit}");
    assert_eq!(main["commit_url"], link.as_str());

    // The node that ran it shows it in the list, linked, with its subject.
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    let mut run = super::report("web-1", "r1", "changed", "2099-01-01T00:00:00Z");
    run["commit"] = commit.clone().into();
    let (status, _, _) = cx
        .post("/api/v1/nodes/web-1/reports", run.to_string())
        .await;
    assert!(status.is_success(), "{status}");
    let (status, body) = cx.get("/").await;
    assert_eq!(status, StatusCode::OK);
    let html = String::from_utf8_lossy(&body);
    assert!(
        html.contains(&format!(
            r#"<a class="commit-link" href="{link}"><code class="commit">{commit}</code></a>"#
        )),
        "{html}"
    );
    assert!(html.contains("Make the motd friendlier (t, "), "{html}");
    assert!(
        html.contains(&format!(
            r#"<a class="commit-link" href="{link}"><code>{}</code></a>"#,
            &commit[..12]
        )),
        "the node list links the node's commit: {html}"
    );

    // A newer commit lands: web-1 still ran the older one, which is no
    // environment's head, and every page still says what it was.
    write(&repo, &[("files/motd", "welcome back\n")]);
    commit_all(&repo, "Say welcome back");
    cx.hook().await;
    let envs = cx.get_json("/api/v1/environments").await;
    assert_eq!(
        envs["environments"][0]["commit_subject"],
        "Say welcome back"
    );
    for page in ["/", "/nodes/web-1", "/runs/r1", "/runs"] {
        let (status, body) = cx.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let html = String::from_utf8_lossy(&body);
        assert!(
            html.contains("Make the motd friendlier (t, "),
            "{page}: {html}"
        );
        assert!(html.contains(&link), "{page} links the commit");
    }
}
