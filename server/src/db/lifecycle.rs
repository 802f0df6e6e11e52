//! A node's lifecycle as operators drive it: deactivated (out of the
//! fleet's lists, counts and placements until it checks in again), asked
//! to run now, purged (every row of it deleted). Written by whichever
//! server the operator asks; `node_ttl_days` deactivation by the leader.

use super::{Db, DbError};

/// Marks `node` deactivated now (one already deactivated keeps its
/// time); whether the server knows it.
pub async fn deactivate(db: &Db, node: &str) -> Result<bool, DbError> {
    let node = node.to_owned();
    let now = jiff::Timestamp::now().to_string();
    db.write(move |conn| {
        Box::pin(async move {
            Ok(sqlx::query(
                "UPDATE nodes SET deactivated_at = COALESCE(deactivated_at, $1) WHERE name = $2",
            )
            .bind(&now)
            .bind(&node)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                > 0)
        })
    })
    .await
}

/// Deactivates the nodes not heard from since `before_us` (microseconds
/// since the epoch), in one statement; the names deactivated.
pub async fn deactivate_silent(db: &Db, before_us: i64) -> Result<Vec<String>, DbError> {
    let now = jiff::Timestamp::now().to_string();
    db.write(move |conn| {
        Box::pin(async move {
            let mut names: Vec<String> = sqlx::query_scalar(
                "UPDATE nodes SET deactivated_at = $1 WHERE deactivated_at IS NULL
                   AND COALESCE(last_run_at_us, last_seen_at_us, 0) < $2 RETURNING name",
            )
            .bind(&now)
            .bind(before_us)
            .fetch_all(&mut *conn)
            .await?;
            names.sort();
            Ok(names)
        })
    })
    .await
}

/// Records that an operator asked `node` to run now; whether it is known.
pub async fn request_run(db: &Db, node: &str) -> Result<bool, DbError> {
    let node = node.to_owned();
    let now = jiff::Timestamp::now().to_string();
    db.write(move |conn| {
        Box::pin(async move {
            Ok(
                sqlx::query("UPDATE nodes SET run_requested_at = $1 WHERE name = $2")
                    .bind(&now)
                    .bind(&node)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    > 0,
            )
        })
    })
    .await
}

/// The run asked of `node` was answered to its watch.
pub async fn run_answered(db: &Db, node: &str) -> Result<(), DbError> {
    let node = node.to_owned();
    db.write(move |conn| {
        Box::pin(async move {
            sqlx::query("UPDATE nodes SET run_requested_at = NULL WHERE name = $1")
                .bind(&node)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    })
    .await
}

/// The nodes asked to run that no watch has answered yet.
pub async fn runs_requested(db: &Db) -> Result<Vec<String>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM nodes WHERE run_requested_at IS NOT NULL")
            .fetch_all(db.reads())
            .await?,
    )
}

/// Deletes every row of `node`: the node, its last catalog, its reports
/// and their resource events,
/// replica states, heartbeat and drain. Whether the server knew it.
pub async fn purge(db: &Db, node: &str) -> Result<bool, DbError> {
    let node = node.to_owned();
    db.write(move |conn| {
        Box::pin(async move {
            for table in [
                "DELETE FROM catalogs WHERE node = $1",
                "DELETE FROM report_events WHERE report_id IN
                   (SELECT id FROM reports WHERE node = $1)",
                "DELETE FROM reports WHERE node = $1",
                "DELETE FROM replica_states WHERE node = $1",
                "DELETE FROM node_liveness WHERE node = $1",
                "DELETE FROM drains WHERE node = $1",
            ] {
                sqlx::query(table).bind(&node).execute(&mut *conn).await?;
            }
            Ok(sqlx::query("DELETE FROM nodes WHERE name = $1")
                .bind(&node)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                > 0)
        })
    })
    .await
}
