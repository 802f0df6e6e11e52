//! Storage: the database pools, embedded migrations and every query, over
//! SQLite (embedded, the default) or PostgreSQL (several servers).
//!
//! Queries go through sqlx's `Any` driver and are written once, in the SQL
//! both databases speak: `$N` parameters, `ON CONFLICT`, `IS NOT DISTINCT
//! FROM`, integers for flags, JSON decoded in Rust. Where the two differ
//! (opening, maintenance, JSON inside SQL) [`Backend`] says which one this is.

use futures_util::future::BoxFuture;

use sqlx::AnyConnection;
use sqlx::AnyPool;

pub mod apps;
pub mod drains;
pub mod events;
pub mod files;
mod health;
pub mod lease;
pub mod lifecycle;
mod nodes;
mod postgres;
mod reports;
pub mod rollouts;
mod rows;
mod sql;
mod sqlite;
pub mod updates;
mod writer;

pub(crate) use nodes::NODE_COLUMNS;
pub use nodes::{
    Answer, CompileError, KnownNode, NodeRow, content, known_facts, known_nodes, last_good, node,
    record_catalog_request, record_catalog_request_at, set_compile_error, store_contents,
};
pub use reports::{
    HOUR_US, ReportSummary, RunPoint, clock_skew_secs, insert_report, insert_reports, report_body,
    report_received_at, reports, run_points,
};
pub use rows::{flag, json, optional_flag, optional_json};
pub use sql::Sql;
pub use sqlite::{JOURNAL_SIZE_LIMIT, sqlite_file};
pub use writer::Writer;

/// Which database a [`Db`] is: what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names: `postgres://` or `postgresql://`
    /// is PostgreSQL, anything else (a `sqlite:` URL) SQLite.
    pub fn of(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// A dotted fact path (`os.id`) as this database's JSON functions take
    /// it: `$."os"."id"` (SQLite), `{"os","id"}` (PostgreSQL's text[]).
    /// Every segment is quoted, so no character of a fact name can change
    /// the path's meaning.
    pub fn json_path(self, dotted: &str) -> String {
        let quoted = dotted.split('.').map(|segment| {
            let mut out = String::from('"');
            for c in segment.chars() {
                if matches!(c, '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        });
        match self {
            Backend::Sqlite => quoted.fold(String::from("$"), |path, s| path + "." + &s),
            Backend::Postgres => format!("{{{}}}", quoted.collect::<Vec<_>>().join(",")),
        }
    }

    /// The text of the JSON value at a path made by [`Backend::json_path`]
    /// in the JSON text column `column`, a JSON boolean as `true`/`false`:
    /// one SQL expression, the path bound as `$param`.
    pub fn json_text(self, column: &str, param: usize) -> String {
        match self {
            Backend::Sqlite => format!(
                "(CASE json_type({column}, ${param}) WHEN 'true' THEN 'true' \
                 WHEN 'false' THEN 'false' \
                 ELSE CAST(json_extract({column}, ${param}) AS TEXT) END)"
            ),
            Backend::Postgres => {
                format!("(CAST({column} AS jsonb) #>> CAST(${param} AS text[]))")
            }
        }
    }

    /// Whether the JSON array of strings in `column` holds the string bound
    /// as `$param`.
    pub fn json_array_has(self, column: &str, param: usize) -> String {
        match self {
            Backend::Sqlite => {
                format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ${param})")
            }
            Backend::Postgres => {
                format!("(CAST({column} AS jsonb) @> jsonb_build_array(CAST(${param} AS text)))")
            }
        }
    }
}

/// The database: readers in parallel (SQLite's WAL readers never wait for
/// the writer), and every write through the one [`Writer`] (group commit).
#[derive(Debug, Clone)]
pub struct Db {
    reads: AnyPool,
    /// The cluster's own connections (PostgreSQL): the lease must not wait
    /// for a reader behind the dashboard's and the nodes' queries. On
    /// SQLite, the readers.
    control: AnyPool,
    writer: Writer,
    backend: Backend,
    /// The last write probe of [`Db::health`], shared by its callers.
    probe: health::LastProbe,
}

impl Db {
    /// For queries: any of several connections.
    pub fn reads(&self) -> &AnyPool {
        &self.reads
    }

    /// For the cluster's lease and heartbeat (see `lease`).
    pub fn control(&self) -> &AnyPool {
        &self.control
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `write` in the writer's next transaction (see [`Writer::write`]).
    pub async fn write<T, F>(&self, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, DbError>>
            + Send
            + 'static,
    {
        self.writer.write(write).await
    }
}

/// `write` as a write for [`Db::write`], made outside the call (the
/// compiler infers a closure's lifetimes from where it is passed, and here
/// that is the bound below).
pub fn job<T, F>(write: F) -> F
where
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, DbError>>,
{
    write
}

/// How [`open_with`] opens the database.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// SQLite's `PRAGMA quick_check` before serving (minutes on a database
    /// of many gigabytes: `db_quick_check = false` skips it).
    pub quick_check: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions { quick_check: true }
    }
}

/// Connections that read at once.
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
    #[error("refused a leader's write of term {term}: the lease has moved on ({now})")]
    Fenced { term: i64, now: String },
    #[error("this server does not lead: the leader's work is not its to do")]
    NotLeader,
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

/// Opens (creating if missing) the database, checks it and applies the migrations.
pub async fn open(url: &str) -> Result<Db, DbError> {
    open_with(url, OpenOptions::default()).await
}

/// [`open`] with options. SQLite: see [`sqlite::open`]; PostgreSQL: see
/// [`postgres::open`].
pub async fn open_with(url: &str, how: OpenOptions) -> Result<Db, DbError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of(url);
    let (reads, connect) = match backend {
        Backend::Sqlite => sqlite::open(url, how).await?,
        Backend::Postgres => postgres::open(url).await?,
    };
    let writing = connect().await.map_err(|source| DbError::Open {
        url: redacted(url),
        source,
    })?;
    let writer = Writer::start(writing, connect, backend);
    let control = match backend {
        Backend::Sqlite => {
            tokio::spawn(sqlite::checkpoints(reads.clone(), writer.liveness()));
            reads.clone()
        }
        Backend::Postgres => pool(url, 2, "").await?,
    };
    Ok(Db {
        reads,
        control,
        writer,
        backend,
        probe: Default::default(),
    })
}

/// A pool of `max` connections to `url`, each set up by `setup` (SQL run
/// once per connection, may be empty).
async fn pool(url: &str, max: u32, setup: &'static str) -> Result<AnyPool, DbError> {
    use sqlx::Executor;
    sqlx::any::AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if !setup.is_empty() {
                    conn.execute(setup).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(|source| DbError::Open {
            url: redacted(url),
            source,
        })
}

/// `url` without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn json_paths_quote_every_segment() {
        assert_eq!(Backend::Sqlite.json_path("os.id"), "$.\"os\".\"id\"");
        assert_eq!(Backend::Sqlite.json_path("a\"b"), "$.\"a\\\"b\"");
        assert_eq!(Backend::Postgres.json_path("os.id"), "{\"os\",\"id\"}");
        assert_eq!(Backend::Postgres.json_path("a\"b,c"), "{\"a\\\"b,c\"}");
    }
}
