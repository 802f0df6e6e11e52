//! `/healthz`'s question to the database: does it still take writes?
//!
//! One probe row written through the writer (at most every 2 s), and a
//! failure for 60 s after any write the storage refused, since a one-row
//! probe can still fit in WAL pages already on disk when a real report does
//! not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Db;

/// When the last probe ran and what it found.
pub(super) type LastProbe = Arc<tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>>;

impl Db {
    /// Whether the database takes writes: a one-row write through the
    /// writer, at most once per [`PROBE_EVERY`] (callers meanwhile get the
    /// last answer), given up after [`PROBE_TIMEOUT`]. `Err` says why.
    pub async fn health(&self) -> Result<(), String> {
        let mut last = self.probe.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < PROBE_EVERY
        {
            return result.clone();
        }
        let now = jiff::Timestamp::now().as_microsecond();
        let write = self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO health_probe (id, at_us) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET at_us = excluded.at_us",
                )
                .bind(now)
                .execute(conn)
                .await?;
                Ok(())
            })
        });
        let result = match tokio::time::timeout(PROBE_TIMEOUT, write).await {
            // A small write may fit where a report does not (a full disk
            // leaves the WAL's pages to reuse): a storage failure of any
            // write lately counts too.
            Ok(Ok(())) => match self.writer.last_failure() {
                Some((at, why)) if at.elapsed() < FAILURE_WINDOW => Err(format!(
                    "a database write failed {} s ago: {why}",
                    at.elapsed().as_secs()
                )),
                _ => Ok(()),
            },
            Ok(Err(e)) => Err(format!("database writes fail: {e}")),
            Err(_) => Err(format!(
                "database writes did not complete within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// How long a write probe's answer stands (an anonymous `/healthz` flood
/// costs one write per this).
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a failed write keeps `/healthz` failing after the storage
/// took writes again.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// A write probe slower than this is a failure (a hung disk).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::super::{DbError, open};

    async fn pragma(db: &super::Db, sql: &'static str) -> Result<(), DbError> {
        db.write(move |conn| {
            Box::pin(async move {
                sqlx::query(sql).execute(conn).await?;
                Ok(())
            })
        })
        .await
    }

    #[tokio::test]
    async fn a_write_the_storage_failed_keeps_health_failing_though_the_probe_passes() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&format!("sqlite://{}", dir.path().join("d.db").display()))
            .await
            .unwrap();
        // A write refused for what it writes is not the storage's failure.
        let bad = pragma(&db, "INSERT INTO health_probe (id, at_us) VALUES (2, 0)").await;
        assert!(bad.unwrap_err().to_string().contains("CHECK"));
        assert_eq!(db.health().await, Ok(()));
        // The disk fills up: the database may not grow by a page more.
        let pages = db
            .write(|conn| {
                Box::pin(async move {
                    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                        .fetch_one(&mut *conn)
                        .await?;
                    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
                        .execute(conn)
                        .await?;
                    Ok(pages)
                })
            })
            .await
            .unwrap();
        assert!(pages > 0);
        // A content refused by the storage...
        let big = vec![("ab".repeat(32), axum::body::Bytes::from(vec![1u8; 100_000]))];
        let failed = super::super::store_contents(&db, big).await.unwrap_err();
        assert!(failed.to_string().contains("full"), "{failed}");
        // ...while small writes still fit (the probe's row is rewritten in
        // place): unhealthy all the same, with the reason.
        *db.probe.lock().await = None;
        let why = db.health().await.unwrap_err();
        assert!(why.starts_with("a database write failed 0 s ago"), "{why}");
        assert!(why.contains("database or disk is full"), "{why}");
    }
}
