//! The `drains` table and the cordon flag: what operators ask of a node
//! (written by whichever server they ask), and how each drain goes
//! (written by the control loop, as leader).

use futures_util::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Db, DbError};

/// A drain an operator started, and how it goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Drain {
    pub node: String,
    pub started_at: String,
    /// Microseconds since the epoch; when it passes, what is left stops.
    #[schema(nullable = true)]
    pub deadline_at_us: Option<i64>,
    /// `draining`, `done`, or `stopped` (the deadline passed).
    pub state: String,
    /// What it waits for, or how it ended.
    pub status: String,
    pub updated_at: String,
}

impl FromRow<'_, AnyRow> for Drain {
    fn from_row(row: &AnyRow) -> Result<Drain, sqlx::Error> {
        Ok(Drain {
            node: row.try_get("node")?,
            started_at: row.try_get("started_at")?,
            deadline_at_us: row.try_get("deadline_at_us")?,
            state: row.try_get("state")?,
            status: row.try_get("status")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub const DRAINING: &str = "draining";
pub const DONE: &str = "done";
pub const STOPPED: &str = "stopped";

/// The deadline `secs` from now, in microseconds since the epoch.
pub fn deadline_in(secs: u64) -> i64 {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2_000_000);
    jiff::Timestamp::now()
        .as_microsecond()
        .saturating_add(secs.saturating_mul(1_000_000))
}

/// Every drain, by node.
pub async fn drains(db: &Db) -> Result<Vec<Drain>, DbError> {
    Ok(sqlx::query_as(
        "SELECT node, started_at, deadline_at_us, state, status, updated_at FROM drains
         ORDER BY node",
    )
    .fetch_all(db.reads())
    .await?)
}

/// The drain of `node`, if any.
pub async fn drain(db: &Db, node: &str) -> Result<Option<Drain>, DbError> {
    Ok(sqlx::query_as(
        "SELECT node, started_at, deadline_at_us, state, status, updated_at FROM drains
         WHERE node = $1",
    )
    .bind(node)
    .fetch_optional(db.reads())
    .await?)
}

/// Cordons (or uncordons) a known node; uncordoning ends its drain. Whether
/// the node is known.
pub async fn set_cordon(db: &Db, node: &str, cordoned: bool) -> Result<bool, DbError> {
    let node = node.to_owned();
    db.write(move |conn| {
        Box::pin(async move {
            let found = sqlx::query("UPDATE nodes SET cordoned = $1 WHERE name = $2")
                .bind(i64::from(cordoned))
                .bind(&node)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                == 1;
            if found && !cordoned {
                sqlx::query("DELETE FROM drains WHERE node = $1")
                    .bind(&node)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(found)
        })
    })
    .await
}

/// Cordons a known node and starts (or starts again) its drain. Whether
/// the node is known.
pub async fn start(db: &Db, node: &str, deadline_at_us: Option<i64>) -> Result<bool, DbError> {
    let node = node.to_owned();
    let now = jiff::Timestamp::now().to_string();
    db.write(move |conn| {
        Box::pin(async move {
            let found = sqlx::query("UPDATE nodes SET cordoned = 1 WHERE name = $1")
                .bind(&node)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                == 1;
            if found {
                sqlx::query(
                    "INSERT INTO drains (node, started_at, deadline_at_us, state, status, updated_at)
                     VALUES ($1, $2, $3, $4, 'starting', $2)
                     ON CONFLICT (node) DO UPDATE SET started_at = excluded.started_at,
                       deadline_at_us = excluded.deadline_at_us, state = excluded.state,
                       status = excluded.status, updated_at = excluded.updated_at",
                )
                .bind(&node)
                .bind(&now)
                .bind(deadline_at_us)
                .bind(DRAINING)
                .execute(&mut *conn)
                .await?;
            }
            Ok(found)
        })
    })
    .await
}

/// The control loop's word on drains: (node, state, status) of each that
/// changed, for a leader's write (`crate::cluster`). A drain uncordoned
/// meanwhile (its row gone) stays gone.
pub fn write_progress(
    progress: Vec<(String, &'static str, String)>,
) -> impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<(), DbError>> + Send + 'static
{
    let now = jiff::Timestamp::now().to_string();
    super::job(move |conn| {
        Box::pin(async move {
            for (node, state, status) in &progress {
                sqlx::query(
                    "UPDATE drains SET state = $1, status = $2, updated_at = $3 WHERE node = $4",
                )
                .bind(*state)
                .bind(status)
                .bind(&now)
                .bind(node)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    })
}
