//! The `nodes`, `catalogs` and `contents` tables: what each node asked for
//! and was served, its compile error, and the content blobs of its files.

use axum::body::Bytes;
use drover_catalog::{Catalog, Facts};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Db, DbError, flag, json, optional_json};

/// A compile failure as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompileError {
    pub environment: String,
    pub commit: String,
    /// `file:line:col: message` lines.
    pub diagnostics: Vec<String>,
    pub at: jiff::Timestamp,
}

/// One row of `nodes`, as the operator API shows it (the JSON columns
/// decoded).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeRow {
    pub name: String,
    pub environment: Option<String>,
    pub requested_environment: Option<String>,
    pub catalog_version: Option<String>,
    pub commit: Option<String>,
    pub last_status: Option<String>,
    pub last_run_at: Option<String>,
    pub last_seen_at: Option<String>,
    pub facts: serde_json::Value,
    pub roles: Vec<String>,
    pub compile_error: Option<CompileError>,
    /// No new replica is placed on it (running ones stay).
    pub cordoned: bool,
    /// When `node deactivate` (or `node_ttl_days`) took it out of the
    /// fleet's lists; null while active (its next check-in clears it).
    pub deactivated_at: Option<String>,
}

impl FromRow<'_, AnyRow> for NodeRow {
    fn from_row(row: &AnyRow) -> Result<NodeRow, sqlx::Error> {
        Ok(NodeRow {
            name: row.try_get("name")?,
            environment: row.try_get("environment")?,
            requested_environment: row.try_get("requested_environment")?,
            catalog_version: row.try_get("catalog_version")?,
            commit: row.try_get("commit_id")?,
            last_status: row.try_get("last_status")?,
            last_run_at: row.try_get("last_run_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            facts: json(row, "facts")?,
            roles: json(row, "roles")?,
            compile_error: optional_json(row, "compile_error")?,
            cordoned: flag(row, "cordoned")?,
            deactivated_at: row.try_get("deactivated_at")?,
        })
    }
}

pub(crate) const NODE_COLUMNS: &str =
    "name, environment, requested_environment, catalog_version, commit_id, \
     last_status, last_run_at, last_seen_at, facts, roles, compile_error, cordoned,
     deactivated_at";

pub async fn node(db: &Db, name: &str) -> Result<Option<NodeRow>, DbError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1");
    Ok(sqlx::query_as(&sql)
        .bind(name)
        .fetch_optional(db.reads())
        .await?)
}

/// A node that asked for a catalog: what recompiling it needs.
#[derive(Debug, Clone)]
pub struct KnownNode {
    pub name: String,
    pub requested_environment: Option<String>,
    pub environment: Option<String>,
    /// Stored as the JSON object the node sent.
    pub facts: Facts,
    /// Whether a compile error is recorded for it now.
    pub has_compile_error: bool,
}

impl FromRow<'_, AnyRow> for KnownNode {
    fn from_row(row: &AnyRow) -> Result<KnownNode, sqlx::Error> {
        Ok(KnownNode {
            name: row.try_get("name")?,
            requested_environment: row.try_get("requested_environment")?,
            environment: row.try_get("environment")?,
            facts: json(row, "facts")?,
            has_compile_error: flag(row, "has_compile_error")?,
        })
    }
}

/// Up to `limit` nodes that have sent facts, in name order after `after`
/// (nodes only known from reports have no facts to compile with).
pub async fn known_nodes(db: &Db, after: &str, limit: u32) -> Result<Vec<KnownNode>, DbError> {
    Ok(sqlx::query_as(
        "SELECT name, requested_environment, environment, facts,
           CASE WHEN compile_error IS NULL THEN 0 ELSE 1 END AS has_compile_error FROM nodes
         WHERE last_seen_at IS NOT NULL AND name > $1 ORDER BY name LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(db.reads())
    .await?)
}

/// Every node that has sent facts, with them, in name order (read a page
/// of 1,000 at a time): what `diff` and the impact page compile with.
pub async fn known_facts(db: &Db) -> Result<Vec<(String, Facts)>, DbError> {
    let mut nodes = Vec::new();
    let mut after = String::new();
    loop {
        let page = known_nodes(db, &after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(nodes);
        };
        after = last.name.clone();
        nodes.extend(page.into_iter().map(|n| (n.name, n.facts)));
    }
}

/// How a catalog request ended, as far as the database keeps it.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// This catalog (and these roles) was served.
    Served(&'a Catalog, &'a [String]),
    /// The compile failed (the node may get its last good catalog).
    Failed(&'a CompileError),
    /// Shed before compiling: only the request is recorded.
    Shed,
}

/// Records a catalog request in one write: what the node asked for (facts,
/// requested environment, when) and what it got. A catalog is written only
/// when it differs from the stored one (most check-ins get the same again),
/// which costs a read on a reader beforehand.
pub async fn record_catalog_request(
    db: &Db,
    node: &str,
    facts: &Facts,
    requested_environment: Option<&str>,
    answer: Answer<'_>,
) -> Result<(), DbError> {
    let now = jiff::Timestamp::now();
    record_catalog_request_at(db, node, facts, requested_environment, answer, now).await
}

/// [`record_catalog_request`] of a request made at `now`: a bulk import,
/// such as the fleet history `drover-seed` writes for the dashboard
/// benchmark, records past requests.
pub async fn record_catalog_request_at(
    db: &Db,
    node: &str,
    facts: &Facts,
    requested_environment: Option<&str>,
    answer: Answer<'_>,
    now: jiff::Timestamp,
) -> Result<(), DbError> {
    let (node, facts) = (node.to_owned(), serde_json::to_string(facts)?);
    let requested_environment = requested_environment.map(str::to_owned);
    let outcome = match answer {
        Answer::Served(catalog, roles) => {
            let roles = serde_json::to_string(roles)?;
            if is_stored(db, catalog, &roles).await? {
                Outcome::Unchanged
            } else {
                Outcome::Served {
                    version: catalog.version.clone(),
                    environment: catalog.environment.clone(),
                    commit: catalog.commit.clone(),
                    roles,
                    catalog: serde_json::to_string(catalog)?,
                }
            }
        }
        Answer::Failed(error) => Outcome::Failed(serde_json::to_string(error)?),
        Answer::Shed => Outcome::Unchanged,
    };
    db.write(move |conn| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO nodes (name, facts, requested_environment, last_seen_at, last_seen_at_us)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET facts = excluded.facts,
                   requested_environment = excluded.requested_environment,
                   last_seen_at = excluded.last_seen_at, last_seen_at_us = excluded.last_seen_at_us,
                   deactivated_at = NULL",
            )
            .bind(&node)
            .bind(facts)
            .bind(requested_environment)
            .bind(now.to_string())
            .bind(now.as_microsecond())
            .execute(&mut *conn)
            .await?;
            outcome.write(conn, &node).await
        })
    })
    .await
}

/// What a catalog request changes beyond the request itself.
enum Outcome {
    Unchanged,
    Served {
        version: String,
        environment: String,
        commit: String,
        roles: String,
        catalog: String,
    },
    Failed(String),
}

impl Outcome {
    async fn write(self, conn: &mut AnyConnection, node: &str) -> Result<(), DbError> {
        match self {
            Outcome::Unchanged => {}
            Outcome::Served {
                version,
                environment,
                commit,
                roles,
                catalog,
            } => {
                sqlx::query(
                    "UPDATE nodes SET catalog_version = $1, environment = $2, commit_id = $3,
                       roles = $4, compile_error = NULL WHERE name = $5",
                )
                .bind(version)
                .bind(environment)
                .bind(commit)
                .bind(roles)
                .bind(node)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO catalogs (node, catalog) VALUES ($1, $2)
                     ON CONFLICT (node) DO UPDATE SET catalog = excluded.catalog",
                )
                .bind(node)
                .bind(catalog)
                .execute(&mut *conn)
                .await?;
            }
            Outcome::Failed(error) => {
                sqlx::query("UPDATE nodes SET compile_error = $1 WHERE name = $2")
                    .bind(error)
                    .bind(node)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Whether `catalog` (with `roles`) is what the node's row holds already,
/// without a compile error.
async fn is_stored(db: &Db, catalog: &Catalog, roles: &str) -> Result<bool, DbError> {
    let same: Option<i64> = sqlx::query_scalar(
        "SELECT CASE WHEN catalog_version IS NOT DISTINCT FROM $1
           AND environment IS NOT DISTINCT FROM $2
           AND commit_id IS NOT DISTINCT FROM $3 AND roles IS NOT DISTINCT FROM $4
           AND compile_error IS NULL THEN 1 ELSE 0 END
         FROM nodes WHERE name = $5",
    )
    .bind(&catalog.version)
    .bind(&catalog.environment)
    .bind(&catalog.commit)
    .bind(roles)
    .bind(&catalog.node)
    .fetch_optional(db.reads())
    .await?;
    Ok(same == Some(1))
}

/// The node's last good (last served) catalog.
pub async fn last_good(db: &Db, node: &str) -> Result<Option<Catalog>, DbError> {
    let text: Option<String> = sqlx::query_scalar("SELECT catalog FROM catalogs WHERE node = $1")
        .bind(node)
        .fetch_optional(db.reads())
        .await?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// Sets (`Some`) or clears (`None`) a node's compile error.
/// The write, for [`Db::write`] or a leader's write (`crate::cluster`).
pub fn set_compile_error(
    node: &str,
    error: Option<&CompileError>,
) -> Result<
    impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<(), DbError>> + Send + 'static,
    DbError,
> {
    let text = error.map(serde_json::to_string).transpose()?;
    let node = node.to_owned();
    Ok(super::job(move |conn| {
        Box::pin(async move {
            sqlx::query("UPDATE nodes SET compile_error = $1 WHERE name = $2")
                .bind(text)
                .bind(node)
                .execute(conn)
                .await?;
            Ok(())
        })
    }))
}

/// Stores content blobs (once per hash).
pub async fn store_contents(db: &Db, contents: Vec<(String, Bytes)>) -> Result<(), DbError> {
    db.write(move |conn| {
        Box::pin(async move {
            for (sha, bytes) in contents {
                sqlx::query(
                    "INSERT INTO contents (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(sha)
                .bind(&bytes[..])
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    })
    .await
}

pub async fn content(db: &Db, sha: &str) -> Result<Option<Vec<u8>>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT bytes FROM contents WHERE sha256 = $1")
            .bind(sha)
            .fetch_optional(db.reads())
            .await?,
    )
}
