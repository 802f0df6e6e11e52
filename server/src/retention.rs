//! Report retention: reports older than `report_retention_days` are deleted
//! in the background, in small batches so that report inserts never wait
//! long behind a big delete; their resource events (`report_events`)
//! with them. The leader's work: each batch is a write as
//! leader (see `crate::cluster`).

use std::time::Duration;

use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::db::{DbError, HOUR_US};

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// How often the background task prunes.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Deletes every report that finished before `cutoff_us` (µs since the
/// epoch), its resource events, and the chart's hourly counts before it;
/// returns the reports deleted.
pub async fn prune(cluster: &Cluster, cutoff_us: i64) -> Result<u64, DbError> {
    let mut deleted = 0;
    loop {
        let (events, reports) = cluster
            .write_as_leader(move |conn| Box::pin(prune_batch(conn, cutoff_us)))
            .await?;
        deleted += reports;
        if events < BATCH as u64 && reports < BATCH as u64 {
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

/// Deletes up to [`BATCH`] resource events and [`BATCH`] reports that
/// finished before `cutoff_us` (an event's time is its report's); how many
/// of each.
async fn prune_batch(conn: &mut AnyConnection, cutoff_us: i64) -> Result<(u64, u64), DbError> {
    let mut deleted = [0; 2];
    for (n, table) in ["report_events", "reports"].into_iter().enumerate() {
        deleted[n] = sqlx::query(&format!(
            "DELETE FROM {table} WHERE id IN
               (SELECT id FROM {table} WHERE finished_at_us < $1 LIMIT $2)"
        ))
        .bind(cutoff_us)
        .bind(BATCH)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok((deleted[0], deleted[1]))
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
