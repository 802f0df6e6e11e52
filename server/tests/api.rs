//! Handler tests: the router called without a socket over a temp data dir,
//! plus one real server process on 127.0.0.1:0 and the offline commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use drover_server::{AppState, Config, app};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

const NODES: &str = "[[node]]\nmatch = \"*\"\nroles = [\"base\"]\n";
const BASE: &str = "[[file]]\npath = \"/etc/motd\"\nsource = \"files/motd\"\nmode = \"0644\"\n\n\
                    [[file]]\npath = \"/etc/hello\"\ncontent = \"hello {{ node }}\\n\"\n";

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, text).unwrap();
    }
}

fn sha(bytes: &[u8]) -> String {
    drover_catalog::model::sha256_hex(bytes)
}

/// A server over a temp data dir, its refresh loop running.
struct TestContext {
    _tmp: TempDir,
    repo: PathBuf,
    router: Router,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl TestContext {
    /// Development mode: `repo` is a plain directory.
    async fn directory() -> TestContext {
        let tmp = TempDir::new().unwrap();
        let repo = tmp.path().join("site");
        write(
            &repo,
            &[
                ("nodes.toml", NODES),
                ("roles/base.toml", BASE),
                ("files/motd", "welcome\n"),
            ],
        );
        TestContext::start(tmp, repo.clone(), repo.display().to_string()).await
    }

    async fn start(tmp: TempDir, repo: PathBuf, source: String) -> TestContext {
        let mut config = Config::new(source, tmp.path().join("data"));
        // Long enough that only the hook refreshes during a test.
        config.refresh_interval = std::time::Duration::from_secs(3600);
        let state = AppState::open(config).await.unwrap();
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        state.spawn_background(&shutdown, &tracker);
        TestContext {
            _tmp: tmp,
            repo,
            router: app(state),
            shutdown,
            tracker,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, bytes)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Bytes) {
        let (status, _, body) = self
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        (status, body)
    }

    async fn get_json(&self, uri: &str) -> Value {
        let (status, body) = self.get(uri).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    async fn post(&self, uri: &str, body: impl Into<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap();
        self.send(req).await
    }

    async fn catalog(&self, node: &str) -> (StatusCode, HeaderMap, Value) {
        let body = json!({"facts": {"hostname": node, "os": {"id": "debian"}}}).to_string();
        let (status, headers, bytes) = self
            .post(&format!("/api/v1/nodes/{node}/catalog"), body)
            .await;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    async fn hook(&self) {
        let (status, _, body) = self.post("/api/v1/hooks/git", "").await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["refreshed"], true, "the hook waits for its refresh");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn report(node: &str, run_id: &str, status: &str, finished: &str) -> Value {
    json!({
        "run_id": run_id, "node": node, "environment": "production", "commit": "c1",
        "catalog_version": "v1", "noop": false,
        "started_at": "2025-01-01T00:00:00Z", "finished_at": finished,
        "status": status, "cached_catalog": "not_used", "agent_version": "0.1.0",
        "resources": [
            {"id": "file:/etc/motd", "status": "changed", "corrective": false,
             "events": [{"property": "content", "previous": null, "desired": "abc"}],
             "duration_ms": 1.5},
            {"id": "file:/etc/hello", "status": "unchanged", "duration_ms": 0.1}
        ]
    })
}

#[tokio::test]
async fn catalog_has_an_etag_and_answers_304_when_unchanged() {
    let cx = TestContext::directory().await;
    let (status, headers, catalog) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK, "{catalog}");
    let version = catalog["version"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::ETAG], format!("\"{version}\"").as_str());
    assert_eq!(catalog["node"], "web-1");
    assert_eq!(catalog["environment"], "production");
    assert!(catalog.get("contents").is_none(), "contents travel by hash");
    assert_eq!(catalog["resources"].as_array().unwrap().len(), 2);

    let req = Request::post("/api/v1/nodes/web-1/catalog")
        .header(header::IF_NONE_MATCH, format!("\"{version}\""))
        .body(Body::from(
            json!({"facts": {"hostname": "web-1", "os": {"id": "debian"}}}).to_string(),
        ))
        .unwrap();
    let (status, headers, body) = cx.send(req).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[header::ETAG], format!("\"{version}\"").as_str());

    let (status, _, body) = cx.post("/api/v1/nodes/web-1/catalog", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid catalog request")
    );
    cx.stop().await;
}

#[tokio::test]
async fn file_route_serves_only_referenced_hashes() {
    let cx = TestContext::directory().await;
    let motd = sha(b"welcome\n");
    let uri = format!("/api/v1/nodes/web-1/files/{motd}");
    assert_eq!(
        cx.get(&uri).await.0,
        StatusCode::NOT_FOUND,
        "no catalog served yet"
    );

    let (status, _, _) = cx.catalog("web-1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = cx.get(&uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"welcome\n");
    let hello = sha(b"hello web-1\n");
    let (status, body) = cx.get(&format!("/api/v1/nodes/web-1/files/{hello}")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello web-1\n"[..]));

    // Another node's catalog references it, but that does not make it web-1's.
    let (status, _, _) = cx.catalog("web-2").await;
    assert_eq!(status, StatusCode::OK);
    let other = sha(b"hello web-2\n");
    let (status, body) = cx.get(&format!("/api/v1/nodes/web-1/files/{other}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].is_string());

    for bad in [
        "abc",
        &motd.to_uppercase(),
        &format!("{motd}0"),
        "../../etc/passwd",
    ] {
        let (status, _) = cx.get(&format!("/api/v1/nodes/web-1/files/{bad}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    cx.stop().await;
}

#[tokio::test]
async fn reports_are_stored_once_and_listed_newest_first() {
    let cx = TestContext::directory().await;
    let first = report("web-1", "run-1", "changed", "2025-01-01T00:01:00Z").to_string();
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", first.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", first.clone()).await;
    assert_eq!(status, StatusCode::OK, "a re-post is idempotent");
    let second = report("web-1", "run-2", "failed", "2025-01-01T00:02:00.5Z").to_string();
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", second).await;
    assert_eq!(status, StatusCode::CREATED);

    let history = cx.get_json("/api/v1/nodes/web-1/reports").await;
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["run-2", "run-1"], "stored once, newest first");
    assert_eq!(history[1]["changed"], 1);
    assert_eq!(history[1]["resources"], 2);
    let paged = cx
        .get_json("/api/v1/nodes/web-1/reports?limit=5&before=2025-01-01T00:02:00Z")
        .await;
    assert_eq!(paged.as_array().unwrap().len(), 1);
    assert_eq!(paged[0]["id"], "run-1");
    let limited = cx.get_json("/api/v1/nodes/web-1/reports?limit=1").await;
    assert_eq!(limited.as_array().unwrap().len(), 1);

    let (status, body) = cx.get("/api/v1/reports/run-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], first.as_bytes(), "kept whole, as posted");
    assert_eq!(
        cx.get("/api/v1/reports/nope").await.0,
        StatusCode::NOT_FOUND
    );

    let node = cx.get_json("/api/v1/nodes/web-1").await;
    assert_eq!(node["last_status"], "failed");
    assert_eq!(node["last_run_at"], "2025-01-01T00:02:00.5Z");

    let metrics = String::from_utf8(cx.get("/metrics").await.1.to_vec()).unwrap();
    assert!(
        metrics.contains("drover_reports_received_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drover_nodes{status=\"failed\"} 1"),
        "{metrics}"
    );
    cx.stop().await;
}

#[tokio::test]
async fn reports_are_validated() {
    let cx = TestContext::directory().await;
    let other = report("db-1", "run-x", "changed", "2025-01-01T00:01:00Z").to_string();
    let (status, _, body) = cx.post("/api/v1/nodes/web-1/reports", other).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("db-1"));

    let (status, _, body) = cx
        .post("/api/v1/nodes/web-1/reports", "{\"run_id\": 1}")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid report"),
        "{body}"
    );

    let huge = vec![b' '; drover_server::BODY_LIMIT + 1];
    let (status, _, _) = cx.post("/api/v1/nodes/web-1/reports", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        cx.get("/api/v1/nodes/web-1/reports").await.0,
        StatusCode::NOT_FOUND,
        "nothing was stored for web-1"
    );
    cx.stop().await;
}

#[tokio::test]
async fn operator_routes_have_their_shapes() {
    let cx = TestContext::directory().await;
    assert_eq!(cx.catalog("web-1").await.0, StatusCode::OK);
    let nodes = cx.get_json("/api/v1/nodes").await;
    let node = &nodes[0];
    for key in [
        "name",
        "environment",
        "catalog_version",
        "commit",
        "last_status",
        "last_run_at",
        "facts",
        "roles",
        "compile_error",
    ] {
        assert!(node.get(key).is_some(), "missing {key} in {node}");
    }
    assert_eq!(node["name"], "web-1");
    assert_eq!(node["roles"], json!(["base"]));
    assert_eq!(node["facts"]["os"]["id"], "debian");
    assert_eq!(node["compile_error"], Value::Null);
    assert_eq!(
        cx.get("/api/v1/nodes/nobody").await.0,
        StatusCode::NOT_FOUND
    );

    let envs = cx.get_json("/api/v1/environments").await;
    assert_eq!(envs["source"], "directory");
    assert_eq!(envs["default_environment"], "production");
    assert_eq!(envs["environments"][0]["name"], "production");
    assert!(
        envs["environments"][0]["commit"]
            .as_str()
            .unwrap()
            .starts_with("dir-")
    );

    let (status, body) = cx.get("/healthz").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    let metrics = String::from_utf8(cx.get("/metrics").await.1.to_vec()).unwrap();
    for name in [
        "drover_catalog_compiles_total 1",
        "drover_catalog_compile_errors_total 0",
        "drover_reports_received_total 0",
        "drover_nodes{status=\"unknown\"} 1",
        "drover_git_refresh_age_seconds ",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    let (status, page) = cx.get("/").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains("<td>web-1</td>"), "{page}");
    assert!(page.contains("production"));
    cx.stop().await;
}

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

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    // The offline compile reads git objects too: a work tree's .git, or a bare mirror.
    let out = bin()
        .args(["compile", "--node", "web-1", "--no-contents", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["environment"], "main");
    assert_eq!(offline["version"], fixed["version"]);
    let out = bin()
        .args(["compile", "--node", "web-1", "--env", "staging", "--repo"])
        .arg(&mirror)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["environment"], "staging");

    let body = json!({"facts": {}, "environment": "staging"}).to_string();
    let (status, _, bytes) = cx.post("/api/v1/nodes/web-2/catalog", body).await;
    assert_eq!(status, StatusCode::OK);
    let staging: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(staging["environment"], "staging");
    cx.stop().await;
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drover-server"))
}

#[tokio::test]
async fn the_binary_listens_on_a_real_port_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("site");
    write(
        &repo,
        &[
            ("nodes.toml", NODES),
            ("roles/base.toml", BASE),
            ("files/motd", "hi\n"),
        ],
    );
    let config = tmp.path().join("server.toml");
    write(
        tmp.path(),
        &[("server.toml", "refresh_interval_secs = 5\n")],
    );
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
        .arg(&repo)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("drover-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

#[test]
fn compile_and_check_commands_report_errors_with_locations() {
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("site");
    write(
        &repo,
        &[
            ("nodes.toml", NODES),
            ("roles/base.toml", BASE),
            ("files/motd", "hi\n"),
        ],
    );
    let out = bin()
        .args(["compile", "--node", "web-1", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        catalog["contents"][sha(b"hi\n")],
        "aGkK",
        "contents embedded as base64"
    );
    let out = bin()
        .args(["compile", "--no-contents", "--node", "web-1", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(catalog.get("contents").is_none());
    let ok = bin().args(["check", "--repo"]).arg(&repo).status().unwrap();
    assert_eq!(ok.code(), Some(0));

    write(
        &repo,
        &[(
            "roles/base.toml",
            "[[file]]\npath = \"/x\"\nsource = \"files/none\"\n",
        )],
    );
    let out = bin()
        .args(["compile", "--node", "web-1", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("roles/base.toml:"), "{stderr}");
    let facts_dir = tmp.path().join("facts");
    write(&facts_dir, &[("web-1.json", "{\"hostname\": \"web-1\"}")]);
    let out = bin()
        .args(["check", "--repo"])
        .arg(&repo)
        .arg("--facts-dir")
        .arg(&facts_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("roles/base.toml:"));

    let usage = bin().args(["compile", "--bogus"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(64));
    assert_eq!(bin().arg("--help").output().unwrap().status.code(), Some(0));

    write(tmp.path(), &[("bad.toml", "listne = \"x\"\n")]);
    let out = bin()
        .args(["serve", "--config"])
        .arg(tmp.path().join("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listne"));
    let out = bin()
        .args(["serve", "--config"])
        .arg(tmp.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an explicit config file must exist"
    );
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
