//! Report retention: reports older than `report_retention_days` are deleted
//! in the background, in small batches so that report inserts never wait
//! long behind a big delete. The leader's work: each batch is a write as
//! leader (see `crate::cluster`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::db::{DbError, HOUR_US};

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// How often the background task prunes.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Deletes every report that finished before `cutoff_us` (µs since the
/// epoch), and the chart's hourly counts before it; returns the reports deleted.
pub async fn prune(cluster: &Cluster, cutoff_us: i64) -> Result<u64, DbError> {
    let mut deleted = 0;
    loop {
        let n = cluster
            .write_as_leader(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "DELETE FROM reports WHERE id IN
                           (SELECT id FROM reports WHERE finished_at_us < $1 LIMIT $2)",
                    )
                    .bind(cutoff_us)
                    .bind(BATCH)
                    .execute(conn)
                    .await?;
                    Ok(done.rows_affected())
                })
            })
            .await?;
        deleted += n;
        if n < BATCH as u64 {
            break;
        }
        // Each batch is one write: inserts queued meanwhile go in between.
    }
    cluster
        .write_as_leader(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM report_hours WHERE hour < $1")
                    .bind(cutoff_us.div_euclid(HOUR_US))
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await?;
    Ok(deleted)
}

/// Prunes at start and then every [`EVERY`] until `shutdown`.
pub async fn prune_loop(cluster: &Cluster, retention: Duration, shutdown: CancellationToken) {
    loop {
        let retention_us = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        let cutoff = jiff::Timestamp::now()
            .as_microsecond()
            .saturating_sub(retention_us);
        match prune(cluster, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, ?retention, "pruned old reports"),
            Err(e) => tracing::warn!(error = %e, "pruning old reports failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
