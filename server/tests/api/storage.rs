//! The data directory and the database: modes, the size limits of what a
//! node stores, the collection of unreferenced contents, the check of a
//! corrupt database at start, and `/healthz` when writes fail.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;

/// A server (no refresh loop) over `tmp/data`, its state at hand.
struct Running {
    state: AppState,
    router: Router,
}

impl Running {
    async fn open(tmp: &Path, repo: &Path, tune: impl FnOnce(&mut Config)) -> Running {
        let mut config = Config::new(repo.display().to_string(), tmp.join("data"));
        tune(&mut config);
        let state = AppState::open(config).await.unwrap();
        Running {
            router: app(state.clone()),
            state,
        }
    }

    async fn send(&self, peer: Peer, mut req: Request<Body>) -> (StatusCode, String) {
        req.extensions_mut().insert(peer);
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn post(&self, node: &str, route: &str, body: String) -> (StatusCode, String) {
        let req = Request::post(format!("/api/v1/nodes/{node}/{route}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        self.send(Peer::Node(node.into()), req).await
    }

    async fn catalog(&self, node: &str) -> Value {
        let body = json!({"facts": {"hostname": node}}).to_string();
        let (status, body) = self.post(node, "catalog", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn file(&self, node: &str, sha: &str) -> StatusCode {
        let req = Request::get(format!("/api/v1/nodes/{node}/files/{sha}"))
            .body(Body::empty())
            .unwrap();
        self.send(Peer::Node(node.into()), req).await.0
    }

    async fn stored(&self, sha: &str) -> bool {
        drover_server::db::content(&self.state.db, sha)
            .await
            .unwrap()
            .is_some()
    }

    async fn healthz(&self) -> (StatusCode, String) {
        let req = Request::get("/healthz").body(Body::empty()).unwrap();
        self.send(Peer::Anonymous, req).await
    }
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_fresh_data_dir_is_0700_and_the_database_files_0600() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let server = Running::open(tmp.path(), &repo, |_| {}).await;
    server.catalog("web-1").await;
    let data = tmp.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for file in ["drover.db", "drover.db-wal", "drover.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[tokio::test]
async fn an_existing_open_data_dir_and_database_are_made_private_at_start() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let data = tmp.path().join("data");
    drop(Running::open(tmp.path(), &repo, |_| {}).await);
    // As an older server (or an operator's mkdir) left them.
    fs_err::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["drover.db", "drover.db-wal", "drover.db-shm"] {
        let file = data.join(file);
        if file.exists() {
            fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let server = Running::open(tmp.path(), &repo, |_| {}).await;
    server.catalog("web-1").await;
    assert_eq!(mode(&data), 0o700);
    for file in ["drover.db", "drover.db-wal", "drover.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[tokio::test]
async fn a_report_or_facts_over_the_limits_get_413_naming_the_limit() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let server = Running::open(tmp.path(), &repo, |c| {
        c.max_report_bytes = 4096;
        c.max_facts_bytes = 2048;
    })
    .await;
    let mut big = report("web-1", "r-big", "changed", "2025-01-31T12:00:02Z");
    big["resources"] = json!([{"id": "file:/x", "status": "changed", "corrective": false,
        "events": [{"property": "content", "previous": "a".repeat(5000), "desired": "b"}],
        "duration_ms": 1.0}]);
    let (status, body) = server.post("web-1", "reports", big.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("max_report_bytes (4096)"), "{body}");
    let small = report("web-1", "r-small", "changed", "2025-01-31T12:00:02Z");
    let (status, body) = server.post("web-1", "reports", small.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let facts = json!({"facts": {"hostname": "web-1", "blob": "x".repeat(3000)}});
    let (status, body) = server.post("web-1", "catalog", facts.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("max_facts_bytes (2048)"), "{body}");
    let node = drover_server::db::node(&server.state.db, "web-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node.facts, json!({}), "refused facts are not stored");
    assert_eq!(node.last_seen_at, None);
    server.catalog("web-1").await;
}

#[tokio::test]
async fn unreferenced_contents_are_collected_and_referenced_ones_kept_across_a_restart() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "first\n");
    let (old, new) = (sha(b"first\n"), sha(b"second\n"));
    let server = Running::open(tmp.path(), &repo, |_| {}).await;
    server.catalog("web-1").await;
    write(&repo, &[("files/motd", "second\n")]);
    drover_server::background::refresh(&server.state).await;
    let catalog = server.catalog("web-1").await;
    assert!(catalog.to_string().contains(&new), "{catalog}");
    assert!(server.stored(&old).await && server.stored(&new).await);

    // Within the grace period even the old content stays (a compile in
    // flight may still need what it produced).
    let collector = server.state.collector();
    assert_eq!(
        collector.collect(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert!(server.stored(&old).await);
    let deleted = collector.collect(Duration::ZERO).await.unwrap();
    assert_eq!(deleted, 1);
    assert!(!server.stored(&old).await, "no catalog references it");
    assert!(server.stored(&new).await, "web-1's catalog references it");
    assert_eq!(server.file("web-1", &new).await, StatusCode::OK);
    assert_eq!(server.file("web-1", &old).await, StatusCode::NOT_FOUND);

    // Restarted: nothing in memory, the stored catalog still keeps it.
    drop(collector);
    drop(server);
    let server = Running::open(tmp.path(), &repo, |_| {}).await;
    let deleted = server
        .state
        .collector()
        .collect(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    assert!(server.stored(&new).await);
    assert_eq!(server.file("web-1", &new).await, StatusCode::OK);
}

/// A database file with a few hundred pages, closed.
async fn database_with_pages(path: &Path) {
    let url = format!("sqlite://{}", path.display());
    let db = drover_server::db::open(&url).await.unwrap();
    let contents = (0..400)
        .map(|i| {
            (
                sha(&[i as u8, (i >> 8) as u8]),
                Bytes::from(vec![i as u8; 3000]),
            )
        })
        .collect();
    drover_server::db::store_contents(&db, contents)
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(db.reads())
        .await
        .unwrap();
    drop(db);
    // The writer and the readers close in the background.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Overwrites pages in the middle of the file, as a bad disk would.
fn damage(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = fs_err::metadata(path).unwrap().len();
    assert!(len > 200 * 4096, "{len} bytes");
    let mut file = fs_err::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
    file.write_all(&vec![0xa5; 40 * 4096]).unwrap();
}

#[tokio::test]
async fn the_server_refuses_to_start_on_a_corrupt_database() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let data = tmp.path().join("data");
    fs_err::create_dir_all(&data).unwrap();
    let db_file = data.join("drover.db");
    database_with_pages(&db_file).await;
    damage(&db_file);
    let mut child = bin()
        .args([
            "serve",
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--repo",
        ])
        .arg(&repo)
        .arg("--data-dir")
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A server that does not notice serves on: it is stopped after a
    // while, and the test fails.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started on a corrupt database");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("database {} is corrupt", db_file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: stop the server and restore"),
        "{stderr}"
    );
    assert!(stderr.contains("--skip-db-check"), "{stderr}");
}

#[tokio::test]
async fn healthz_fails_with_the_reason_once_database_writes_fail() {
    let tmp = TempDir::new().unwrap();
    let repo = site(tmp.path(), "hi\n");
    let server = Running::open(tmp.path(), &repo, |_| {}).await;
    assert_eq!(server.healthz().await, (StatusCode::OK, "ok".to_owned()));
    // From now on the writer's connection refuses to change the file, as
    // SQLite does on a read-only or vanished file.
    server
        .state
        .db
        .write(|conn| {
            Box::pin(async move {
                sqlx::query("PRAGMA query_only = ON").execute(conn).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
    // The last answer stands for 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = server.healthz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("database writes fail"), "{body}");
    assert!(body.contains("readonly"), "{body}");
}
