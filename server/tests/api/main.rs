//! Handler tests: the router called without a socket over a temp data dir,
//! plus one real server process on 127.0.0.1:0 and the offline commands.

mod apps;
mod auth;
mod ca;
mod cli;
mod cluster;
mod dashboard;
mod dashboard_actions;
mod git;
mod hook;
mod impact;
mod lifecycle;
mod metrics;
mod node_list;
mod openapi;
mod pins;
mod reports;
mod rollout;
mod routes;
mod run_scope;
mod runs_pages;
mod session;
mod shed;
mod skew;
mod storage;
mod watch;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use drover_server::credentials::Peer;
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

/// TMP/site: a one-role catalog managing /etc/motd with `motd` as content.
fn site(tmp: &Path, motd: &str) -> PathBuf {
    let repo = tmp.join("site");
    write(
        &repo,
        &[
            ("nodes.toml", NODES),
            ("roles/base.toml", BASE),
            ("files/motd", motd),
            // An app that asks for no replica: its routes have something to show.
            ("apps/web.toml", "replicas = 0\nimage = \"busybox:1\"\n"),
        ],
    );
    repo
}

fn sha(bytes: &[u8]) -> String {
    drover_catalog::model::sha256_hex(bytes)
}

/// Over PostgreSQL (`DROVER_TEST_DATABASE=postgres`, scripts/test's second
/// pass of this suite), the URL of a new database on the cluster at
/// `DROVER_TEST_POSTGRES`; `None` over SQLite. (tests/src/postgres.rs does
/// the same for the end-to-end suites.)
pub(crate) fn postgres_database() -> Option<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    if std::env::var("DROVER_TEST_DATABASE").ok()? != "postgres" {
        return None;
    }
    let admin = std::env::var("DROVER_TEST_POSTGRES")
        .expect("DROVER_TEST_POSTGRES, the cluster scripts/test starts (scripts/postgres)");
    let name = format!(
        "api_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .args(["--no-psqlrc", "--quiet", &admin, "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let server = base.rsplit_once('/').expect("a database in the URL").0;
    Some(format!("{server}/{name}?{query}"))
}

/// A server over a temp data dir, its refresh loop running.
struct TestContext {
    _tmp: TempDir,
    repo: PathBuf,
    /// The `repo` setting the server was started with.
    source: String,
    router: Router,
    db: drover_server::db::Db,
    /// The database the server was started on (SQLite or PostgreSQL).
    database_url: String,
    cluster: std::sync::Arc<drover_server::cluster::Cluster>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl TestContext {
    /// Development mode: `repo` is a plain directory.
    async fn directory() -> TestContext {
        let tmp = TempDir::new().unwrap();
        let repo = site(tmp.path(), "welcome\n");
        TestContext::start(tmp, repo.clone(), repo.display().to_string()).await
    }

    async fn start(tmp: TempDir, repo: PathBuf, source: String) -> TestContext {
        TestContext::start_with(tmp, repo, source, |_| {}).await
    }

    /// [`TestContext::start`] with `tweak` applied to the configuration.
    async fn start_with(
        tmp: TempDir,
        repo: PathBuf,
        source: String,
        tweak: impl FnOnce(&mut Config),
    ) -> TestContext {
        let mut config = Config::new(source.clone(), tmp.path().join("data"));
        // Long enough that only the hook refreshes during a test.
        config.refresh_interval = std::time::Duration::from_secs(3600);
        // Reports with fixed dates in 2025 must outlive the retention pruning.
        config.report_retention = std::time::Duration::from_secs(100 * 365 * 86_400);
        if let Some(url) = postgres_database() {
            config.database_url = url;
        }
        tweak(&mut config);
        let database_url = config.database_url.clone();
        let state = AppState::open(config).await.unwrap();
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        drover_server::background::spawn(&state, &shutdown, &tracker);
        TestContext {
            _tmp: tmp,
            repo,
            source,
            db: state.db.clone(),
            database_url,
            cluster: state.cluster.clone(),
            router: app(state),
            shutdown,
            tracker,
        }
    }

    /// Sends `req` as the caller the route is meant for: node routes as that
    /// node's certificate, every other route as an operator (auth.rs has
    /// the tests of who may call what).
    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let peer = natural_caller(req.method(), req.uri().path());
        self.send_as(peer, req).await
    }

    /// Sends `req` over a connection whose TLS handshake proved `peer`.
    async fn send_as(&self, peer: Peer, mut req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        req.extensions_mut().insert(peer);
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

    /// Stops the server and starts another on the same data directory:
    /// everything it held in memory is gone.
    /// The server's cluster, once the server leads (at once on SQLite,
    /// after its first election on PostgreSQL).
    async fn leader(&self) -> &drover_server::cluster::Cluster {
        let mut leadership = self.cluster.watch_leadership();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            leadership.wait_for(|l| l.is_leader()),
        )
        .await
        .expect("the server leads within 10 s")
        .unwrap();
        &self.cluster
    }

    async fn restart(self) -> TestContext {
        let TestContext {
            _tmp: tmp,
            repo,
            source,
            router,
            db,
            database_url,
            cluster: _,
            shutdown,
            tracker,
        } = self;
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        drop((router, db));
        TestContext::start_with(tmp, repo, source, |c| c.database_url = database_url).await
    }
}

/// The node of a node route (`/api/v1/nodes/NAME/catalog|files|reports`
/// written by the node), else an operator.
fn natural_caller(method: &axum::http::Method, path: &str) -> Peer {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "v1", "nodes", name, "catalog" | "files", ..] => Peer::Node((*name).to_owned()),
        ["api", "v1", "nodes", name, "reports"] if method == axum::http::Method::POST => {
            Peer::Node((*name).to_owned())
        }
        _ => Peer::Operator("tests".to_owned()),
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

/// `git -C REPO ARGS` with a fixed identity and no user configuration.
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

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drover-server"))
}

/// `drover-server compile ARGS --repo REPO`, which must succeed; its catalog.
fn compile_json(args: &[&str], repo: &Path) -> Value {
    let out = bin()
        .arg("compile")
        .args(args)
        .arg("--repo")
        .arg(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
