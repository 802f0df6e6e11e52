//! Storage: the SQLite (sqlx) pool, embedded migrations and every query.

use std::str::FromStr;
use std::time::Duration;

use drover_catalog::{Catalog, Facts, Report, report::ResourceStatus};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqliteConnection};

pub type Db = SqlitePool;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url `{url}`: {source}")]
    Url {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot open database `{url}`: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
}

/// Opens (creating if missing) the database and applies the migrations.
pub async fn open(url: &str) -> Result<Db, DbError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| DbError::Url {
            url: url.to_owned(),
            source,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|source| DbError::Open {
            url: url.to_owned(),
            source,
        })?;
    sqlx::migrate!().run(&pool).await?;
    Ok(pool)
}

/// A compile failure as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompileError {
    pub environment: String,
    pub commit: String,
    /// `file:line:col: message` lines.
    pub diagnostics: Vec<String>,
    pub at: jiff::Timestamp,
}

/// One row of `nodes`, as the operator API shows it.
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
}

const NODE_COLUMNS: &str = "name, environment, requested_environment, catalog_version, commit_id, \
     last_status, last_run_at, last_seen_at, facts, roles, compile_error";

fn node_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<NodeRow, DbError> {
    let compile_error: Option<String> = row.try_get("compile_error")?;
    Ok(NodeRow {
        name: row.try_get("name")?,
        environment: row.try_get("environment")?,
        requested_environment: row.try_get("requested_environment")?,
        catalog_version: row.try_get("catalog_version")?,
        commit: row.try_get("commit_id")?,
        last_status: row.try_get("last_status")?,
        last_run_at: row.try_get("last_run_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        facts: serde_json::from_str(row.try_get("facts")?)?,
        roles: serde_json::from_str(row.try_get("roles")?)?,
        compile_error: compile_error
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?,
    })
}

pub async fn nodes(db: &Db) -> Result<Vec<NodeRow>, DbError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name");
    let rows = sqlx::query(&sql).fetch_all(db).await?;
    rows.iter().map(node_from_row).collect()
}

pub async fn node(db: &Db, name: &str) -> Result<Option<NodeRow>, DbError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = ?");
    let row = sqlx::query(&sql).bind(name).fetch_optional(db).await?;
    row.as_ref().map(node_from_row).transpose()
}

/// A node that asked for a catalog: what recompiling it needs.
#[derive(Debug, Clone)]
pub struct KnownNode {
    pub name: String,
    pub requested_environment: Option<String>,
    pub environment: Option<String>,
    pub facts: Facts,
}

/// Up to `limit` nodes that have sent facts, in name order after `after`
/// (nodes only known from reports have no facts to compile with).
pub async fn known_nodes(db: &Db, after: &str, limit: u32) -> Result<Vec<KnownNode>, DbError> {
    let rows = sqlx::query(
        "SELECT name, requested_environment, environment, facts FROM nodes
         WHERE last_seen_at IS NOT NULL AND name > ? ORDER BY name LIMIT ?",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            let facts: serde_json::Value = serde_json::from_str(row.try_get("facts")?)?;
            Ok(KnownNode {
                name: row.try_get("name")?,
                requested_environment: row.try_get("requested_environment")?,
                environment: row.try_get("environment")?,
                facts: match facts {
                    serde_json::Value::Object(map) => map,
                    _ => Facts::new(),
                },
            })
        })
        .collect()
}

/// Records what a node asked for (its facts, its requested environment).
pub async fn record_request(
    db: &Db,
    node: &str,
    facts: &Facts,
    requested_environment: Option<&str>,
) -> Result<(), DbError> {
    let now = jiff::Timestamp::now();
    sqlx::query(
        "INSERT INTO nodes (name, facts, requested_environment, last_seen_at, last_seen_at_us)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET facts = excluded.facts,
           requested_environment = excluded.requested_environment,
           last_seen_at = excluded.last_seen_at, last_seen_at_us = excluded.last_seen_at_us",
    )
    .bind(node)
    .bind(serde_json::to_string(facts)?)
    .bind(requested_environment)
    .bind(now.to_string())
    .bind(now.as_microsecond())
    .execute(db)
    .await?;
    Ok(())
}

/// The node's last good (last served) catalog.
pub async fn last_good(db: &Db, node: &str) -> Result<Option<Catalog>, DbError> {
    let text: Option<Option<String>> =
        sqlx::query_scalar("SELECT catalog FROM nodes WHERE name = ?")
            .bind(node)
            .fetch_optional(db)
            .await?;
    Ok(text
        .flatten()
        .map(|t| serde_json::from_str(&t))
        .transpose()?)
}

/// Stores a catalog as served and clears the node's compile error.
pub async fn record_served(db: &Db, catalog: &Catalog, roles: &[String]) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE nodes SET catalog = ?, catalog_version = ?, environment = ?, commit_id = ?,
           roles = ?, compile_error = NULL WHERE name = ?",
    )
    .bind(serde_json::to_string(catalog)?)
    .bind(&catalog.version)
    .bind(&catalog.environment)
    .bind(&catalog.commit)
    .bind(serde_json::to_string(roles)?)
    .bind(&catalog.node)
    .execute(db)
    .await?;
    Ok(())
}

/// Sets (`Some`) or clears (`None`) a node's compile error.
pub async fn set_compile_error(
    db: &Db,
    node: &str,
    error: Option<&CompileError>,
) -> Result<(), DbError> {
    let text = error.map(serde_json::to_string).transpose()?;
    sqlx::query("UPDATE nodes SET compile_error = ? WHERE name = ?")
        .bind(text)
        .bind(node)
        .execute(db)
        .await?;
    Ok(())
}

/// Stores content blobs (once per hash).
pub async fn store_contents<'a>(
    db: &Db,
    contents: impl Iterator<Item = (&'a String, &'a [u8])>,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    for (sha, bytes) in contents {
        insert_content(&mut tx, sha, bytes).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_content(
    conn: &mut SqliteConnection,
    sha: &str,
    bytes: &[u8],
) -> Result<(), DbError> {
    sqlx::query("INSERT OR IGNORE INTO contents (sha256, bytes) VALUES (?, ?)")
        .bind(sha)
        .bind(bytes)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn content(db: &Db, sha: &str) -> Result<Option<Vec<u8>>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT bytes FROM contents WHERE sha256 = ?")
            .bind(sha)
            .fetch_optional(db)
            .await?,
    )
}

/// Stores a report once per run_id; `true` when it was new. Updates the
/// node's last status unless a newer run is already recorded (spooled
/// reports can arrive out of order).
pub async fn insert_report(db: &Db, report: &Report, body: &str) -> Result<bool, DbError> {
    let count = |f: fn(ResourceStatus) -> bool| {
        i64::try_from(report.resources.iter().filter(|r| f(r.status)).count()).unwrap_or(i64::MAX)
    };
    let finished_us = report.finished_at.as_microsecond();
    let duration_ms = run_duration_ms(report);
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO reports (run_id, node, environment, commit_id, status, noop,
           started_at, finished_at, finished_at_us, catalog_version, cached_catalog,
           resources, changed, failed, skipped, received_at, body, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&report.run_id)
    .bind(&report.node)
    .bind(&report.environment)
    .bind(&report.commit)
    .bind(report.status.as_str())
    .bind(report.noop)
    .bind(report.started_at.to_string())
    .bind(report.finished_at.to_string())
    .bind(finished_us)
    .bind(&report.catalog_version)
    .bind(cached_str(report))
    .bind(i64::try_from(report.resources.len()).unwrap_or(i64::MAX))
    .bind(count(|s| {
        matches!(s, ResourceStatus::Changed | ResourceStatus::Noop)
    }))
    .bind(count(|s| s == ResourceStatus::Failed))
    .bind(count(|s| s == ResourceStatus::Skipped))
    .bind(jiff::Timestamp::now().to_string())
    .bind(body)
    .bind(duration_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        sqlx::query(
            "INSERT INTO nodes (name, last_status, last_run_at, last_run_at_us, last_run_id,
               last_noop, last_cached_catalog, last_environment, last_commit, last_catalog_version,
               last_duration_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET last_status = excluded.last_status,
               last_run_at = excluded.last_run_at, last_run_at_us = excluded.last_run_at_us,
               last_run_id = excluded.last_run_id, last_noop = excluded.last_noop,
               last_cached_catalog = excluded.last_cached_catalog,
               last_environment = excluded.last_environment,
               last_commit = excluded.last_commit,
               last_catalog_version = excluded.last_catalog_version,
               last_duration_ms = excluded.last_duration_ms
             WHERE nodes.last_run_at_us IS NULL OR nodes.last_run_at_us <= excluded.last_run_at_us",
        )
        .bind(&report.node)
        .bind(report.status.as_str())
        .bind(report.finished_at.to_string())
        .bind(finished_us)
        .bind(&report.run_id)
        .bind(report.noop)
        .bind(cached_str(report))
        .bind(&report.environment)
        .bind(&report.commit)
        .bind(&report.catalog_version)
        .bind(duration_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO report_hours (hour, status, runs, duration_ms_sum, duration_ms_max)
             VALUES (?, ?, 1, ?, ?)
             ON CONFLICT (hour, status) DO UPDATE SET runs = runs + 1,
               duration_ms_sum = duration_ms_sum + excluded.duration_ms_sum,
               duration_ms_max = MAX(duration_ms_max, excluded.duration_ms_max)",
        )
        .bind(finished_us.div_euclid(HOUR_US))
        .bind(chart_status(report))
        .bind(duration_ms)
        .bind(duration_ms)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// Microseconds in an hour: the bucket of `report_hours`.
pub const HOUR_US: i64 = 3_600_000_000;

/// How long the run took, from its own timestamps (never negative).
fn run_duration_ms(report: &Report) -> f64 {
    let span = report.finished_at.duration_since(report.started_at);
    (span.as_secs_f64() * 1000.0).max(0.0)
}

/// The run's status in the fleet chart: a dry run that would change is `noop`.
fn chart_status(report: &Report) -> &'static str {
    match report.status {
        drover_catalog::report::RunStatus::Changed if report.noop => "noop",
        status => status.as_str(),
    }
}

fn cached_str(report: &Report) -> &'static str {
    match report.cached_catalog {
        drover_catalog::report::CachedCatalog::NotUsed => "not_used",
        drover_catalog::report::CachedCatalog::OnFailure => "on_failure",
    }
}

/// One line of a node's run history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportSummary {
    /// The run_id.
    pub id: String,
    pub node: String,
    pub environment: String,
    pub commit: String,
    pub catalog_version: String,
    pub status: String,
    pub noop: bool,
    pub cached_catalog: String,
    pub started_at: String,
    pub finished_at: String,
    pub resources: i64,
    pub changed: i64,
    pub failed: i64,
    pub skipped: i64,
    /// From `started_at` to `finished_at`.
    pub duration_ms: f64,
}

/// A node's reports, newest first, finished strictly before `before`.
pub async fn reports(
    db: &Db,
    node: &str,
    limit: u32,
    before: Option<jiff::Timestamp>,
) -> Result<Vec<ReportSummary>, DbError> {
    let before_us = before.map_or(i64::MAX, |t| t.as_microsecond());
    let rows = sqlx::query(
        "SELECT run_id, node, environment, commit_id, catalog_version, status, noop,
           cached_catalog, started_at, finished_at, resources, changed, failed, skipped,
           duration_ms
         FROM reports WHERE node = ? AND finished_at_us < ?
         ORDER BY finished_at_us DESC, id DESC LIMIT ?",
    )
    .bind(node)
    .bind(before_us)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ReportSummary {
                id: r.try_get("run_id")?,
                node: r.try_get("node")?,
                environment: r.try_get("environment")?,
                commit: r.try_get("commit_id")?,
                catalog_version: r.try_get("catalog_version")?,
                status: r.try_get("status")?,
                noop: r.try_get("noop")?,
                cached_catalog: r.try_get("cached_catalog")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                resources: r.try_get("resources")?,
                changed: r.try_get("changed")?,
                failed: r.try_get("failed")?,
                skipped: r.try_get("skipped")?,
                duration_ms: r.try_get("duration_ms")?,
            })
        })
        .collect()
}

/// The report body exactly as it was posted.
/// The node and the body of one stored report.
pub async fn report_body(db: &Db, run_id: &str) -> Result<Option<(String, String)>, DbError> {
    Ok(
        sqlx::query_as("SELECT node, body FROM reports WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(db)
            .await?,
    )
}
