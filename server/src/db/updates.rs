//! The tables of app updates: `app_specs` (every app file body the control
//! loop placed a replica from, by spec hash) and `app_updates` (each app's
//! update: the spec asked for, the last one that was fully healthy, and how
//! the update goes). Written by the control loop, as leader; read by every
//! server (a replica of an earlier spec compiles from its stored body).

use futures_util::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Db, DbError};

/// Replicas are being replaced by ones of the new spec.
pub const ROLLING: &str = "rolling";
/// Every replica runs the spec asked for and was healthy.
pub const DONE: &str = "done";
/// A replica of the new spec was not healthy in time; nothing more is
/// replaced until the spec changes.
pub const FAILED: &str = "failed";
/// Failed, and the app went back to its stable spec (`auto_revert`).
pub const REVERTED: &str = "reverted";

/// One app's update, as `app_updates` holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AppUpdate {
    pub environment: String,
    pub app: String,
    /// The spec the environment's commit asks for.
    pub spec_hash: String,
    /// The last spec every replica was healthy at.
    #[schema(nullable = true)]
    pub stable_spec_hash: Option<String>,
    /// `rolling`, `done`, `failed` or `reverted`.
    pub state: String,
    /// Why it failed or reverted.
    #[schema(nullable = true)]
    pub reason: Option<String>,
    /// When it entered its state.
    pub since: String,
}

impl FromRow<'_, AnyRow> for AppUpdate {
    fn from_row(row: &AnyRow) -> Result<AppUpdate, sqlx::Error> {
        Ok(AppUpdate {
            environment: row.try_get("environment")?,
            app: row.try_get("app")?,
            spec_hash: row.try_get("spec_hash")?,
            stable_spec_hash: row.try_get("stable_spec_hash")?,
            state: row.try_get("state")?,
            reason: row.try_get("reason")?,
            since: row.try_get("since")?,
        })
    }
}

/// Every app's update, by environment and app.
pub async fn updates(db: &Db) -> Result<Vec<AppUpdate>, DbError> {
    Ok(sqlx::query_as(
        "SELECT environment, app, spec_hash, stable_spec_hash, state, reason, since
         FROM app_updates ORDER BY environment, app",
    )
    .fetch_all(db.reads())
    .await?)
}

/// The write of changed updates, for a leader's write (`crate::cluster`).
pub fn write_updates(
    changed: Vec<AppUpdate>,
) -> impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<(), DbError>> + Send + 'static
{
    super::job(move |conn| {
        Box::pin(async move {
            for u in &changed {
                sqlx::query(
                    "INSERT INTO app_updates (environment, app, spec_hash, stable_spec_hash,
                       state, reason, since) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (environment, app) DO UPDATE SET
                       spec_hash = excluded.spec_hash,
                       stable_spec_hash = excluded.stable_spec_hash,
                       state = excluded.state, reason = excluded.reason, since = excluded.since",
                )
                .bind(&u.environment)
                .bind(&u.app)
                .bind(&u.spec_hash)
                .bind(&u.stable_spec_hash)
                .bind(&u.state)
                .bind(&u.reason)
                .bind(&u.since)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    })
}

/// A stored app file body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpec {
    pub app: String,
    pub spec_hash: String,
    pub body: String,
}

impl FromRow<'_, AnyRow> for StoredSpec {
    fn from_row(row: &AnyRow) -> Result<StoredSpec, sqlx::Error> {
        Ok(StoredSpec {
            app: row.try_get("app")?,
            spec_hash: row.try_get("spec_hash")?,
            body: row.try_get("body")?,
        })
    }
}

/// The bodies of the specs that placements run or that updates may go
/// back to.
pub async fn specs_in_use(db: &Db) -> Result<Vec<StoredSpec>, DbError> {
    Ok(sqlx::query_as(
        "SELECT s.app, s.spec_hash, s.body FROM app_specs s
         WHERE EXISTS (SELECT 1 FROM placements p WHERE p.app = s.app
                         AND (p.spec_hash = s.spec_hash OR p.next_spec_hash = s.spec_hash))
            OR EXISTS (SELECT 1 FROM app_updates u WHERE u.app = s.app
                         AND u.stable_spec_hash = s.spec_hash)
         ORDER BY s.app, s.spec_hash",
    )
    .fetch_all(db.reads())
    .await?)
}

/// The (app, spec hash) pairs stored.
pub async fn stored_specs(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    let rows = sqlx::query("SELECT app, spec_hash FROM app_specs")
        .fetch_all(db.reads())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("app")?, r.try_get("spec_hash")?)))
        .collect()
}

/// The write of new bodies (a body stored once stays as it is).
pub fn store_specs(
    specs: Vec<StoredSpec>,
) -> impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<(), DbError>> + Send + 'static
{
    super::job(move |conn| {
        Box::pin(async move {
            let now = jiff::Timestamp::now().to_string();
            for s in &specs {
                sqlx::query(
                    "INSERT INTO app_specs (app, spec_hash, body, first_seen_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (app, spec_hash) DO NOTHING",
                )
                .bind(&s.app)
                .bind(&s.spec_hash)
                .bind(&s.body)
                .bind(&now)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    })
}
