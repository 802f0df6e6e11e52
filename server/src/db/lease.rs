//! The cluster's tables on PostgreSQL: each server's heartbeat and the
//! leader's lease, on the database's clock. These statements run on the
//! cluster's own connections (`Db::control`) in autocommit, not through the
//! writer nor the readers: a lease renewal must not wait behind a batch of
//! reports or a busy dashboard.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Db, DbError};

/// The database's clock now, in microseconds since the epoch.
const NOW_US: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)";

/// What a leader's write is checked against: the lease it was elected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub term: i64,
}

/// A server as its heartbeat row says.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServerRow {
    pub id: String,
    pub listen: String,
    pub version: String,
    pub started_at_us: i64,
    pub heartbeat_at_us: i64,
    /// How long ago (database clock) it last said it was alive, in ms.
    pub heartbeat_age_ms: i64,
}

impl FromRow<'_, AnyRow> for ServerRow {
    fn from_row(row: &AnyRow) -> Result<ServerRow, sqlx::Error> {
        Ok(ServerRow {
            id: row.try_get("id")?,
            listen: row.try_get("listen")?,
            version: row.try_get("version")?,
            started_at_us: row.try_get("started_at_us")?,
            heartbeat_at_us: row.try_get("heartbeat_at_us")?,
            heartbeat_age_ms: row.try_get("heartbeat_age_ms")?,
        })
    }
}

/// The lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LeaseRow {
    pub holder: String,
    pub term: i64,
    pub acquired_at_us: i64,
    pub expires_at_us: i64,
    /// Whether it has not expired (database clock).
    pub live: bool,
}

/// Records that server `id` is alive now.
pub async fn heartbeat(
    db: &Db,
    id: &str,
    listen: &str,
    version: &str,
    started_at_us: i64,
) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO cluster_servers (id, listen, version, started_at_us, heartbeat_at_us)
         VALUES ($1, $2, $3, $4, {NOW_US})
         ON CONFLICT (id) DO UPDATE SET listen = excluded.listen, version = excluded.version,
           heartbeat_at_us = excluded.heartbeat_at_us"
    ))
    .bind(id)
    .bind(listen)
    .bind(version)
    .bind(started_at_us)
    .execute(db.control())
    .await?;
    Ok(())
}

/// Takes the lease for `id` for `ttl_us` when it is free (expired) or
/// `id`'s already, renewing it then. The term stays while `id` holds a
/// live lease and grows by one at every other election. `Some(term)` when
/// `id` leads now.
pub async fn acquire(db: &Db, id: &str, ttl_us: i64) -> Result<Option<i64>, DbError> {
    Ok(sqlx::query_scalar(&format!(
        "INSERT INTO cluster_lease (id, holder, term, acquired_at_us, expires_at_us)
         VALUES (1, $1, 1, {NOW_US}, {NOW_US} + $2)
         ON CONFLICT (id) DO UPDATE SET
           term = CASE WHEN cluster_lease.holder = excluded.holder
                         AND cluster_lease.expires_at_us > {NOW_US}
                       THEN cluster_lease.term ELSE cluster_lease.term + 1 END,
           acquired_at_us = CASE WHEN cluster_lease.holder = excluded.holder
                         AND cluster_lease.expires_at_us > {NOW_US}
                       THEN cluster_lease.acquired_at_us ELSE excluded.acquired_at_us END,
           holder = excluded.holder,
           expires_at_us = excluded.expires_at_us
         WHERE cluster_lease.holder = excluded.holder OR cluster_lease.expires_at_us <= {NOW_US}
         RETURNING term"
    ))
    .bind(id)
    .bind(ttl_us)
    .fetch_optional(db.control())
    .await?)
}

/// Renews `fence`'s lease for `ttl_us` if it is still live and still
/// `fence`'s: the leader's write that proves it still leads. `false` once
/// the lease has moved on (or expired).
pub async fn renew(db: &Db, fence: &Fence, ttl_us: i64) -> Result<bool, DbError> {
    let done = sqlx::query(&format!(
        "UPDATE cluster_lease SET expires_at_us = {NOW_US} + $3
         WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at_us > {NOW_US}"
    ))
    .bind(&fence.holder)
    .bind(fence.term)
    .bind(ttl_us)
    .execute(db.control())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the lease up (a server that stops), so another leads at once.
pub async fn release(db: &Db, fence: &Fence) -> Result<(), DbError> {
    sqlx::query(&format!(
        "UPDATE cluster_lease SET expires_at_us = {NOW_US} WHERE holder = $1 AND term = $2"
    ))
    .bind(&fence.holder)
    .bind(fence.term)
    .execute(db.control())
    .await?;
    Ok(())
}

/// The lease, if any server ever held it.
pub async fn lease(db: &Db) -> Result<Option<LeaseRow>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT holder, term, acquired_at_us, expires_at_us,
           CASE WHEN expires_at_us > {NOW_US} THEN 1 ELSE 0 END AS live
         FROM cluster_lease WHERE id = 1"
    ))
    .fetch_optional(db.control())
    .await?;
    row.map(|row| {
        Ok(LeaseRow {
            holder: row.try_get("holder")?,
            term: row.try_get("term")?,
            acquired_at_us: row.try_get("acquired_at_us")?,
            expires_at_us: row.try_get("expires_at_us")?,
            live: super::flag(&row, "live")?,
        })
    })
    .transpose()
}

/// The servers heard from within `within_us`, by id.
pub async fn servers(db: &Db, within_us: i64) -> Result<Vec<ServerRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT id, listen, version, started_at_us, heartbeat_at_us,
           ({NOW_US} - heartbeat_at_us) / 1000 AS heartbeat_age_ms
         FROM cluster_servers WHERE heartbeat_at_us > {NOW_US} - $1 ORDER BY id"
    ))
    .bind(within_us)
    .fetch_all(db.control())
    .await?)
}

/// Forgets the servers silent for longer than `silent_us`.
pub async fn forget_silent(db: &Db, silent_us: i64) -> Result<u64, DbError> {
    Ok(sqlx::query(&format!(
        "DELETE FROM cluster_servers WHERE heartbeat_at_us < {NOW_US} - $1"
    ))
    .bind(silent_us)
    .execute(db.control())
    .await?
    .rows_affected())
}

/// In a writer's transaction: holds the lease row (`FOR SHARE`, so no
/// election can commit before this transaction does) and refuses when
/// `fence` no longer holds a live lease.
pub(super) async fn check(conn: &mut AnyConnection, fence: &Fence) -> Result<(), DbError> {
    let current: Option<(String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT holder, term, CASE WHEN expires_at_us > {NOW_US} THEN 1 ELSE 0 END
         FROM cluster_lease WHERE id = 1 FOR SHARE"
    ))
    .fetch_optional(&mut *conn)
    .await?;
    match current {
        Some((holder, term, 1)) if holder == fence.holder && term == fence.term => Ok(()),
        Some((holder, term, live)) => Err(DbError::Fenced {
            term: fence.term,
            now: format!(
                "term {term}, held by {holder}{}",
                if live == 1 { "" } else { ", expired" }
            ),
        }),
        None => Err(DbError::Fenced {
            term: fence.term,
            now: "no lease".into(),
        }),
    }
}

impl Db {
    /// [`Db::write`] as the leader elected with `fence`: in the same
    /// transaction, [`check`] first, and `write` runs only if the lease is
    /// still `fence`'s (else [`DbError::Fenced`], nothing written). On
    /// SQLite, where the one server always leads, a plain write.
    pub async fn write_fenced<T, F>(&self, fence: Option<Fence>, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut AnyConnection,
            ) -> futures_util::future::BoxFuture<'c, Result<T, DbError>>
            + Send
            + 'static,
    {
        self.write(move |conn| {
            Box::pin(async move {
                if let Some(fence) = &fence {
                    check(conn, fence).await?;
                }
                write(conn).await
            })
        })
        .await
    }
}
