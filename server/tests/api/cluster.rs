//! `GET /api/v1/cluster` over each database: on SQLite the one server,
//! which leads; on PostgreSQL (the suite's second pass) the server after
//! its first election, with its heartbeat and the lease's term.

use super::TestContext;

#[tokio::test]
async fn the_cluster_lists_this_server_as_its_leader() {
    let cx = TestContext::directory().await;
    cx.leader().await;
    let postgres = cx.database_url.starts_with("postgres");
    // On PostgreSQL the heartbeat row is written beside the election.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let status = cx.get_json("/api/v1/cluster").await;
        if !status["servers"].as_array().unwrap().is_empty() || std::time::Instant::now() > deadline
        {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let me = status["this_server"].as_str().unwrap();
    assert_eq!(
        status["database"],
        if postgres { "postgres" } else { "sqlite" },
        "{status:#}"
    );
    assert_eq!(status["leader"]["id"], me, "{status:#}");
    assert!(
        status["leader"]["term"].as_i64().unwrap() >= 1,
        "{status:#}"
    );
    let servers = status["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{status:#}");
    assert_eq!(servers[0]["id"], me);
    assert_eq!(servers[0]["leader"], true);
    assert_eq!(servers[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(servers[0]["last_heartbeat"].is_string(), "{status:#}");
    if postgres {
        assert!(status["leader"]["expires_at"].is_string(), "{status:#}");
    }
    // The overview lists the servers too, this one as the leader.
    let html = cx.page("/").await;
    let section = &html[html
        .find("<section id=\"cluster\">")
        .expect("a servers section")..];
    assert!(
        section.contains(&format!("data-server=\"{me}\"")) && section.contains("leader, term"),
        "{section}"
    );
    assert!(
        section.contains(if postgres {
            "database: postgres"
        } else {
            "database: sqlite"
        }),
        "{section}"
    );
    cx.stop().await;
}

/// The lease and its fence on a real PostgreSQL (the suite's second pass;
/// SQLite has one server and no lease): a leader whose lease expired and
/// was taken cannot renew it, and its writes are refused in the same
/// transaction that would have made them, while the new leader's pass.
#[tokio::test]
async fn a_leader_whose_lease_moved_on_is_fenced_off() {
    use drover_server::db::{self, DbError, lease};
    let Some(url) = super::postgres_database() else {
        eprintln!("over SQLite: no lease to test (the PostgreSQL pass tests it)");
        return;
    };
    let (a, b) = (db::open(&url).await.unwrap(), db::open(&url).await.unwrap());
    let ttl_us = 500_000;
    assert_eq!(lease::acquire(&a, "a", ttl_us).await.unwrap(), Some(1));
    // Held and live: b cannot take it, a renews it under the same term.
    assert_eq!(lease::acquire(&b, "b", ttl_us).await.unwrap(), None);
    let fence_a = lease::Fence {
        holder: "a".into(),
        term: 1,
    };
    assert!(lease::renew(&a, &fence_a, ttl_us).await.unwrap());
    // a is paused past its lease; b is elected with a larger term.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(lease::acquire(&b, "b", ttl_us).await.unwrap(), Some(2));
    let fence_b = lease::Fence {
        holder: "b".into(),
        term: 2,
    };
    let insert = |what: &'static str| {
        db::job(move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO health_probe (id, at_us) VALUES (1, $1)")
                    .bind(if what == "a" { 1_i64 } else { 2 })
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
    };
    // a wakes up: its renewal and its write are refused, nothing written.
    assert!(!lease::renew(&a, &fence_a, ttl_us).await.unwrap());
    let refused = a.write_fenced(Some(fence_a), insert("a")).await;
    match refused {
        Err(DbError::Fenced { term: 1, now }) => {
            assert!(now.contains("term 2, held by b"), "{now}")
        }
        other => panic!("not fenced: {other:?}"),
    }
    b.write_fenced(Some(fence_b), insert("b")).await.unwrap();
    let written: Vec<i64> = sqlx::query_scalar("SELECT at_us FROM health_probe")
        .fetch_all(b.reads())
        .await
        .unwrap();
    assert_eq!(written, [2]);
    let status = lease::lease(&b).await.unwrap().unwrap();
    assert_eq!(
        (status.holder.as_str(), status.term, status.live),
        ("b", 2, true)
    );
}
