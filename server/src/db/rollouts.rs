//! The `rollouts` table: one staged rollout per environment. The leader's
//! rollout loop (`crate::rollout::control`) writes every column but
//! `request`, each write conditional on the `version` it read; an operator
//! (through any server) writes only `request`, which the loop applies.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Db, DbError, json};

pub const ROLLING: &str = "rolling";
pub const PAUSED: &str = "paused";
pub const DONE: &str = "done";
pub const ABORTED: &str = "aborted";

/// One stage of a rollout as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageRow {
    /// As `drover.toml` writes it: `nodes = "canary-*"` or `percent = 10`.
    pub spec: String,
    /// Its nodes, fixed when the rollout started.
    pub nodes: Vec<String>,
    /// When it began (RFC 3339), once it has.
    #[schema(nullable = true)]
    pub started_at: Option<String>,
    /// Microseconds since the epoch of `started_at`.
    #[schema(nullable = true)]
    pub started_us: Option<i64>,
    /// When its gate passed (or an operator resumed past it).
    #[schema(nullable = true)]
    pub passed_at: Option<String>,
}

/// An environment's rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rollout {
    pub environment: String,
    /// What nodes of stages not yet reached are served.
    pub from_commit: String,
    /// The environment's newest commit the rollout loop has seen.
    pub to_commit: String,
    /// `rolling`, `paused`, `done` or `aborted`.
    pub state: String,
    /// The index of the stage being gated (the number of stages once done).
    pub stage: i64,
    pub stages: Vec<StageRow>,
    /// The gate as `drover.toml` sets it (none for a commit without stages).
    #[schema(value_type = Option<Object>)]
    pub gate: Option<serde_json::Value>,
    /// What blocks the stage, why the rollout paused, or how it ended.
    pub reason: String,
    /// An operator's `resume` or `abort` not yet applied by the leader.
    #[schema(nullable = true)]
    pub request: Option<String>,
    #[serde(skip)]
    pub version: i64,
    pub started_at: String,
    pub updated_at: String,
}

impl Rollout {
    /// Whether `node` is in a stage that has begun (it is served `to_commit`
    /// while the rollout rolls or pauses).
    pub fn reached(&self, node: &str) -> bool {
        let upto = usize::try_from(self.stage).unwrap_or(0);
        self.stages
            .iter()
            .take(upto.saturating_add(1))
            .any(|s| s.nodes.iter().any(|n| n == node))
    }
}

impl FromRow<'_, AnyRow> for Rollout {
    fn from_row(row: &AnyRow) -> Result<Rollout, sqlx::Error> {
        Ok(Rollout {
            environment: row.try_get("environment")?,
            from_commit: row.try_get("from_commit")?,
            to_commit: row.try_get("to_commit")?,
            state: row.try_get("state")?,
            stage: row.try_get("stage")?,
            stages: json(row, "stages")?,
            gate: json(row, "gate")?,
            reason: row.try_get("reason")?,
            request: row.try_get("request")?,
            version: row.try_get("version")?,
            started_at: row.try_get("started_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const COLUMNS: &str = "environment, from_commit, to_commit, state, stage, stages, gate, reason, \
                       request, version, started_at, updated_at";

/// Every environment's rollout.
pub async fn rollouts(db: &Db) -> Result<Vec<Rollout>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rollouts ORDER BY environment"
    ))
    .fetch_all(db.reads())
    .await?)
}

/// The rollout of `environment`, if it has one.
pub async fn rollout(db: &Db, environment: &str) -> Result<Option<Rollout>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rollouts WHERE environment = $1"
    ))
    .bind(environment)
    .fetch_optional(db.reads())
    .await?)
}

/// An operator asks for `resume` or `abort`; the leader's loop applies it.
/// Whether the environment has a rollout.
pub async fn request(db: &Db, environment: &str, what: &'static str) -> Result<bool, DbError> {
    let environment = environment.to_owned();
    db.write(move |conn| {
        Box::pin(async move {
            Ok(
                sqlx::query("UPDATE rollouts SET request = $1 WHERE environment = $2")
                    .bind(what)
                    .bind(&environment)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    == 1,
            )
        })
    })
    .await
}

/// The loop's write of `next` (its `version` the one it read, or none for
/// a first row), for a leader's write (`crate::cluster`): made only if the
/// row is still at that version (or, for a first row, still absent), so a
/// step is never taken twice. `clear_request` clears the request it
/// applied. Whether it was written.
pub fn write(
    next: Rollout,
    first: bool,
    clear_request: Option<String>,
) -> impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<bool, DbError>> + Send + 'static
{
    super::job(move |conn| {
        Box::pin(async move {
            let stages = serde_json::to_string(&next.stages).unwrap_or_else(|_| "[]".into());
            let gate = next
                .gate
                .as_ref()
                .map_or_else(|| "null".to_owned(), ToString::to_string);
            let written = if first {
                sqlx::query(
                    "INSERT INTO rollouts (environment, from_commit, to_commit, state, stage,
                       stages, gate, reason, request, version, started_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 1, $9, $10)
                     ON CONFLICT (environment) DO NOTHING",
                )
                .bind(&next.environment)
                .bind(&next.from_commit)
                .bind(&next.to_commit)
                .bind(&next.state)
                .bind(next.stage)
                .bind(&stages)
                .bind(&gate)
                .bind(&next.reason)
                .bind(&next.started_at)
                .bind(&next.updated_at)
                .execute(&mut *conn)
                .await?
                .rows_affected()
            } else {
                sqlx::query(
                    "UPDATE rollouts SET from_commit = $1, to_commit = $2, state = $3, stage = $4,
                       stages = $5, gate = $6, reason = $7, version = version + 1,
                       started_at = $8, updated_at = $9,
                       request = CASE WHEN request IS NOT DISTINCT FROM $10 THEN NULL
                                      ELSE request END
                     WHERE environment = $11 AND version = $12",
                )
                .bind(&next.from_commit)
                .bind(&next.to_commit)
                .bind(&next.state)
                .bind(next.stage)
                .bind(&stages)
                .bind(&gate)
                .bind(&next.reason)
                .bind(&next.started_at)
                .bind(&next.updated_at)
                .bind(clear_request.as_deref().unwrap_or("-"))
                .bind(&next.environment)
                .bind(next.version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
            };
            Ok(written == 1)
        })
    })
}

/// A node's newest run that was not a noop: its commit and how many
/// resources failed in it (a failed run counts at least one).
pub async fn last_run(
    db: &Db,
    node: &str,
) -> Result<Option<drover_catalog::rollout::gate::LastRun>, DbError> {
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT commit_id, failed, status FROM reports WHERE node = $1 AND noop = 0
         ORDER BY finished_at_us DESC LIMIT 1",
    )
    .bind(node)
    .fetch_optional(db.reads())
    .await?;
    Ok(row.map(
        |(commit, failed, status)| drover_catalog::rollout::gate::LastRun {
            commit,
            failed: u64::try_from(failed)
                .unwrap_or(0)
                .max(u64::from(status == "failed")),
        },
    ))
}

/// The replica states a node's last report listed: (container, state).
pub async fn replicas_of(db: &Db, node: &str) -> Result<Vec<(String, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT container, state FROM replica_states WHERE node = $1 ORDER BY container",
    )
    .bind(node)
    .fetch_all(db.reads())
    .await?)
}
