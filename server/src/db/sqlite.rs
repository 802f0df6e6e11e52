//! SQLite, the embedded default: one file, opened with WAL, checked, made
//! private and checkpointed from a reader.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyConnection, ConnectOptions, Connection, Executor};

use super::writer::Connect;
use super::{DbError, OpenOptions, READERS, files};

/// The WAL is truncated back to this after a checkpoint that emptied it.
pub const JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// Set on every connection: a writer waits for another (a `ca` command)
/// rather than failing, foreign keys hold, and the WAL a burst grew does
/// not stay that big on disk.
const EVERY_CONNECTION: &str = "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                                PRAGMA journal_size_limit = 67108864";

/// The writer never checkpoints: a checkpoint copies the WAL into the
/// database and syncs it, and every write queued behind it would wait.
/// [`checkpoints`] does it from a reader instead.
const THE_WRITER: &str = "PRAGMA wal_autocheckpoint = 0";

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

/// Opens (creating if missing) the file: made 0600 (see [`files`]),
/// checked with `PRAGMA quick_check` unless `how` says not to, migrated,
/// switched to WAL. A database SQLite finds malformed is refused. Returns
/// the readers and how to connect the writer.
pub(super) async fn open(url: &str, how: OpenOptions) -> Result<(AnyPool, Connect), DbError> {
    let options = parse_url(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
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
    let path = options.get_filename().to_owned();
    files::secure(&path)?;
    let damaged = {
        let (path, url) = (path.clone(), url.to_owned());
        move |e: sqlx::Error| {
            if files::is_corruption(&e) {
                files::corrupt(&path, e)
            } else {
                DbError::Open {
                    url: url.clone(),
                    source: e,
                }
            }
        }
    };
    let mut setup = options.connect().await.map_err(&damaged)?;
    if how.quick_check {
        let started = std::time::Instant::now();
        files::quick_check(&mut setup, &path).await?;
        tracing::info!(took = ?started.elapsed(), file = %path.display(), "database quick_check: ok");
    }
    sqlx::migrate!("migrations/sqlite")
        .run(&mut setup)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) if files::is_corruption(&e) => {
                files::corrupt(&path, e)
            }
            e => DbError::Migrate(e),
        })?;
    setup.close().await.map_err(&damaged)?;
    // The Any driver opens SQLite from a URL, which keeps the file and the
    // mode but no PRAGMA: each connection sets its own.
    let any_url = options.to_url_lossy().to_string();
    let reads = super::pool(&any_url, READERS, EVERY_CONNECTION)
        .await
        .map_err(|e| match e {
            DbError::Open { source, .. } => damaged(source),
            e => e,
        })?;
    let any = AnyConnectOptions::from_str(&any_url).map_err(&damaged)?;
    let connect: Connect = Arc::new(move || {
        let any = any.clone();
        Box::pin(async move {
            let mut conn = AnyConnection::connect_with(&any).await?;
            conn.execute(EVERY_CONNECTION).await?;
            conn.execute(THE_WRITER).await?;
            Ok(conn)
        })
    });
    Ok((reads, connect))
}

/// How often the WAL is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] from a reading
/// connection, PASSIVE: it copies what no reader still needs and never
/// takes the write lock, so writes go on meanwhile. Ends with the database
/// (`alive` false), closing the readers.
pub(super) async fn checkpoints(reads: AnyPool, alive: impl Fn() -> bool) {
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

#[cfg(test)]
mod tests {
    use super::super::{Answer, open, record_catalog_request};
    use super::*;
    use drover_catalog::Facts;

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
