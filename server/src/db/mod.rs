//! Storage: the SQLite (sqlx) pools, embedded migrations and every query.

use std::str::FromStr;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::future::BoxFuture;

use drover_catalog::{Catalog, Facts};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, SqliteConnection};

pub mod files;
mod health;
mod reports;
mod writer;

pub use reports::{
    HOUR_US, ReportSummary, clock_skew_secs, insert_report, insert_reports, report_body,
    report_received_at, reports,
};
pub use writer::Writer;

/// The database: readers in parallel (WAL readers never wait for the
/// writer), and every write through the one [`Writer`] (group commit).
#[derive(Debug, Clone)]
pub struct Db {
    reads: SqlitePool,
    writer: Writer,
    /// The last write probe of [`Db::health`], shared by its callers.
    probe: health::LastProbe,
}

impl Db {
    /// For queries: any of several connections.
    pub fn reads(&self) -> &SqlitePool {
        &self.reads
    }

    /// Runs `write` in the writer's next transaction (see [`Writer::write`]).
    pub async fn write<T, F>(&self, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, DbError>>
            + Send
            + 'static,
    {
        self.writer.write(write).await
    }
}

/// The WAL is truncated back to this after a checkpoint that emptied it.
pub const JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How [`open_with`] opens the database.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// `PRAGMA quick_check` before serving (minutes on a database of many
    /// gigabytes: `db_quick_check = false` skips it).
    pub quick_check: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions { quick_check: true }
    }
}

/// Connections that read at once (WAL readers do not block the writer).
const READERS: u32 = 8;

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
    #[error("database write failed: {0}")]
    Commit(String),
    #[error("the database writer has stopped")]
    Closed,
    #[error("cannot secure database file {}: {source}", path.display())]
    Files {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {} is in use by another drover-server{}\nhint: SQLite belongs to one server: \
         stop the other one, or give this one its own --data-dir (or --database)",
        path.display(),
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse {
        path: std::path::PathBuf,
        pid: Option<u32>,
    },
    #[error(
        "database {} is corrupt: {detail}\nhint: stop the server and restore the file from a backup \
         (or recover what is readable with `sqlite3 {} .recover`); \
         `db_quick_check = false` in server.toml or --skip-db-check starts without this check",
        path.display(),
        path.display()
    )]
    Corrupt {
        path: std::path::PathBuf,
        detail: String,
    },
}

/// The file of a SQLite database URL (`sqlite:///d/drover.db`).
pub fn sqlite_file(url: &str) -> Result<std::path::PathBuf, DbError> {
    Ok(parse_url(url)?.get_filename().to_owned())
}

fn parse_url(url: &str) -> Result<SqliteConnectOptions, DbError> {
    SqliteConnectOptions::from_str(url).map_err(|source| DbError::Url {
        url: url.to_owned(),
        source,
    })
}

/// Opens (creating if missing) the database, checks it and applies the migrations.
pub async fn open(url: &str) -> Result<Db, DbError> {
    open_with(url, OpenOptions::default()).await
}

/// [`open`] with options: the database file and its WAL are made 0600
/// (see [`files`]), and a database that fails `PRAGMA quick_check` (or
/// that SQLite finds malformed while migrating) is refused.
pub async fn open_with(url: &str, how: OpenOptions) -> Result<Db, DbError> {
    let options = parse_url(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Without it a WAL that one burst grew stays that big on disk.
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string());
    let opened = |source| DbError::Open {
        url: url.to_owned(),
        source,
    };
    // An in-memory database exists per connection: readers would see
    // another, empty one.
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(DbError::Open {
            url: url.to_owned(),
            source: sqlx::Error::Configuration(
                "an in-memory database cannot be shared by the server's connections; \
                 use a file (sqlite:///path/drover.db)"
                    .into(),
            ),
        });
    }
    // The writer never checkpoints: a checkpoint copies the WAL into the
    // database and syncs it, and every write queued behind it would wait.
    // A background task checkpoints from a reader instead (`checkpoints`).
    let path = options.get_filename().to_owned();
    files::secure(&path)?;
    let damaged = |e: sqlx::Error| {
        if files::is_corruption(&e) {
            files::corrupt(&path, e)
        } else {
            opened(e)
        }
    };
    let mut writing = options
        .clone()
        .pragma("wal_autocheckpoint", "0")
        .connect()
        .await
        .map_err(damaged)?;
    if how.quick_check {
        let started = std::time::Instant::now();
        files::quick_check(&mut writing, &path).await?;
        tracing::info!(took = ?started.elapsed(), file = %path.display(), "database quick_check: ok");
    }
    sqlx::migrate!()
        .run(&mut writing)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) if files::is_corruption(&e) => {
                files::corrupt(&path, e)
            }
            e => DbError::Migrate(e),
        })?;
    let reads = SqlitePoolOptions::new()
        .max_connections(READERS)
        .connect_with(options)
        .await
        .map_err(damaged)?;
    let writer = Writer::start(writing);
    tokio::spawn(checkpoints(reads.clone(), writer.liveness()));
    Ok(Db {
        reads,
        writer,
        probe: Default::default(),
    })
}

/// How often the WAL is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] from a reading
/// connection, PASSIVE: it copies what no reader still needs and never
/// takes the write lock, so writes go on meanwhile. Ends with the database
/// (`alive` false), closing the readers.
async fn checkpoints(reads: SqlitePool, alive: impl Fn() -> bool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !alive() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&reads)
            .await
        {
            tracing::warn!(error = %e, "checkpointing the database's WAL failed");
        }
    }
    reads.close().await;
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

/// One row of `nodes`, as the operator API shows it (and as read: the
/// JSON columns decoded by sqlx).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct NodeRow {
    pub name: String,
    pub environment: Option<String>,
    pub requested_environment: Option<String>,
    pub catalog_version: Option<String>,
    #[sqlx(rename = "commit_id")]
    pub commit: Option<String>,
    pub last_status: Option<String>,
    pub last_run_at: Option<String>,
    pub last_seen_at: Option<String>,
    #[sqlx(json)]
    pub facts: serde_json::Value,
    #[sqlx(json)]
    pub roles: Vec<String>,
    #[sqlx(json(nullable))]
    pub compile_error: Option<CompileError>,
}

pub(crate) const NODE_COLUMNS: &str = "name, environment, requested_environment, catalog_version, commit_id, \
     last_status, last_run_at, last_seen_at, facts, roles, compile_error";

pub async fn node(db: &Db, name: &str) -> Result<Option<NodeRow>, DbError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1");
    Ok(sqlx::query_as(&sql)
        .bind(name)
        .fetch_optional(db.reads())
        .await?)
}

/// A node that asked for a catalog: what recompiling it needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KnownNode {
    pub name: String,
    pub requested_environment: Option<String>,
    pub environment: Option<String>,
    /// Stored as the JSON object the node sent.
    #[sqlx(json)]
    pub facts: Facts,
    /// Whether a compile error is recorded for it now.
    pub has_compile_error: bool,
}

/// Up to `limit` nodes that have sent facts, in name order after `after`
/// (nodes only known from reports have no facts to compile with).
pub async fn known_nodes(db: &Db, after: &str, limit: u32) -> Result<Vec<KnownNode>, DbError> {
    Ok(sqlx::query_as(
        "SELECT name, requested_environment, environment, facts,
           compile_error IS NOT NULL AS has_compile_error FROM nodes
         WHERE last_seen_at IS NOT NULL AND name > $1 ORDER BY name LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(db.reads())
    .await?)
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
                   last_seen_at = excluded.last_seen_at, last_seen_at_us = excluded.last_seen_at_us",
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
    async fn write(self, conn: &mut SqliteConnection, node: &str) -> Result<(), DbError> {
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
    let same: Option<bool> = sqlx::query_scalar(
        "SELECT catalog_version IS NOT DISTINCT FROM $1 AND environment IS NOT DISTINCT FROM $2
           AND commit_id IS NOT DISTINCT FROM $3 AND roles IS NOT DISTINCT FROM $4
           AND compile_error IS NULL
         FROM nodes WHERE name = $5",
    )
    .bind(&catalog.version)
    .bind(&catalog.environment)
    .bind(&catalog.commit)
    .bind(roles)
    .bind(&catalog.node)
    .fetch_optional(db.reads())
    .await?;
    Ok(same == Some(true))
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
pub async fn set_compile_error(
    db: &Db,
    node: &str,
    error: Option<&CompileError>,
) -> Result<(), DbError> {
    let text = error.map(serde_json::to_string).transpose()?;
    let node = node.to_owned();
    db.write(move |conn| {
        Box::pin(async move {
            sqlx::query("UPDATE nodes SET compile_error = $1 WHERE name = $2")
                .bind(text)
                .bind(node)
                .execute(conn)
                .await?;
            Ok(())
        })
    })
    .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_in_memory_database_is_refused_with_the_reason() {
        for url in ["sqlite::memory:", "sqlite:file:x?mode=memory"] {
            let err = open(url).await.expect_err(url).to_string();
            assert!(err.contains(url), "{err}");
            assert!(err.contains("in-memory database"), "{err}");
        }
    }

    #[tokio::test]
    async fn every_connection_bounds_the_wal_left_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let db = open(&url).await.unwrap();
        let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
            .fetch_one(db.reads())
            .await
            .unwrap();
        assert_eq!(limit, JOURNAL_SIZE_LIMIT as i64);
        let on_writer = db
            .write(|conn| {
                Box::pin(async move {
                    let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
                        .fetch_one(conn)
                        .await?;
                    Ok(limit)
                })
            })
            .await
            .unwrap();
        assert_eq!(on_writer, JOURNAL_SIZE_LIMIT as i64);
    }

    #[tokio::test]
    async fn a_file_database_is_migrated_and_written_through_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let db = open(&url).await.unwrap();
        record_catalog_request(&db, "web-1", &Facts::new(), None, Answer::Shed)
            .await
            .unwrap();
        let seen: Option<String> =
            sqlx::query_scalar("SELECT last_seen_at FROM nodes WHERE name = 'web-1'")
                .fetch_one(db.reads())
                .await
                .unwrap();
        assert!(seen.is_some());
    }
}
