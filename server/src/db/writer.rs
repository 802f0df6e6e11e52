//! Group commit: every write of the server goes through one connection,
//! and the writes that queue while one transaction commits go into the
//! next one together.
//!
//! SQLite takes one writer at a time and, with `synchronous = FULL`, syncs
//! the WAL at every commit. Writes spread over a pool wait for the lock in
//! SQLite's busy handler, which sleeps (1 ms, 2, 5, 10, ... up to 100 ms
//! between tries), and commit one by one: under a fleet's check-ins both
//! turned into seconds of queueing. Here a write waits only for the batch
//! before it, a batch costs one sync, and each write still stands alone:
//! it runs in a savepoint, so one that fails is rolled back without taking
//! the others with it. A caller hears back only once its batch committed,
//! so an acknowledged write (a report, say) is durable.
//!
//! PostgreSQL takes writers in parallel, but a commit costs it a WAL flush
//! too, so the same batching halves its cost per write under load. Its
//! connection can break (a restart, a failover of the database): the writer
//! then connects again before its next batch.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, Connection};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, DbError};

/// Opens the writer's connection, set up as the backend needs.
pub(super) type Connect =
    Arc<dyn Fn() -> BoxFuture<'static, Result<AnyConnection, sqlx::Error>> + Send + Sync>;

/// Writes one transaction takes at most.
const MAX_BATCH: usize = 256;
/// Writes waiting at most; callers beyond it wait to queue.
const QUEUE: usize = 4096;

/// Called once the batch a write ran in committed (or failed to).
type Completion = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;
/// A write: its statements, whether they succeeded, and its completion.
type Job =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, (bool, Completion)> + Send>;

/// The handle writes are sent through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    /// The last failure of the storage itself (a batch that failed, or a
    /// write that failed for the file's sake, not its own): when and why.
    last_failure: Failure,
}

/// See [`Writer::last_failure`].
type Failure = Arc<std::sync::Mutex<Option<(Instant, Arc<str>)>>>;

fn note(failure: &Failure, why: Arc<str>) {
    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), why));
}

/// Whether a write failed because of the storage (read-only, I/O error,
/// corrupt, full, cannot open, not a database; a lost connection), not
/// because of what it wrote (a constraint, say).
fn is_storage_failure(e: &DbError) -> bool {
    match e {
        DbError::Query(e) => is_storage_error(e),
        _ => false,
    }
}

fn is_storage_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.parse::<i32>() {
                // SQLITE_READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
                Ok(sqlite) => matches!(sqlite & 0xff, 8 | 10 | 11 | 13 | 14 | 26),
                // PostgreSQL's SQLSTATE classes: connection exception,
                // insufficient resources (a full disk), operator
                // intervention (shutdown), system error, internal error;
                // and a read-only transaction (a standby).
                Err(_) => {
                    ["08", "53", "57", "58", "XX"]
                        .iter()
                        .any(|c| code.starts_with(c))
                        || code == "25006"
                }
            }
        }
        _ => false,
    }
}

impl Writer {
    /// Starts the writing task on `conn`. It ends when every handle is gone,
    /// after the writes already queued.
    pub fn start(conn: AnyConnection, connect: Connect, backend: Backend) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let last_failure = Arc::default();
        let connection = Link {
            conn: Some(conn),
            connect,
            backend,
        };
        tokio::spawn(run(connection, queue, Arc::clone(&last_failure)));
        Writer { jobs, last_failure }
    }

    /// Whether any handle is left: false once the database is dropped.
    pub fn liveness(&self) -> impl Fn() -> bool + Send + 'static {
        let weak = self.jobs.downgrade();
        move || weak.strong_count() > 0
    }

    /// When and why the storage last failed a write (see [`Writer`]).
    pub fn last_failure(&self) -> Option<(Instant, Arc<str>)> {
        self.last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `write` in the next batch; its result once that batch committed.
    pub async fn write<T, F>(&self, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, DbError>>
            + Send
            + 'static,
    {
        let (done, answer) = oneshot::channel();
        let failure = Arc::clone(&self.last_failure);
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = write(conn).await;
                if let Err(e) = &result
                    && is_storage_failure(e)
                {
                    note(&failure, e.to_string().into());
                }
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |committed| {
                    let _ = done.send(match committed {
                        Ok(()) => result,
                        Err(e) => Err(DbError::Commit(e.to_string())),
                    });
                });
                (ok, completion)
            })
        });
        self.jobs.send(job).await.map_err(|_| DbError::Closed)?;
        // Dropped unanswered: the batch failed before this write ran.
        answer.await.map_err(|_| {
            let why = self.last_failure().map(|(_, why)| why);
            DbError::Commit(format!(
                "its batch failed before it ran: {}",
                why.as_deref().unwrap_or("(the server log has why)")
            ))
        })?
    }
}

/// The writer's connection, and how to get another when it broke.
struct Link {
    /// `None` after a batch failed on a broken connection.
    conn: Option<AnyConnection>,
    connect: Connect,
    backend: Backend,
}

impl Link {
    /// The connection, connecting again when the last one broke.
    async fn get(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        if self.conn.is_none() {
            let conn = (self.connect)().await?;
            tracing::info!("the database writer connected again");
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// After a failed batch: no transaction left open for the next one, and
    /// a connection that cannot even roll back is dropped for a new one.
    async fn recover(&mut self) {
        if let Some(conn) = &mut self.conn
            && let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await
            && (is_storage_error(&e) || conn.ping().await.is_err())
        {
            tracing::warn!(error = %e, "the database writer's connection broke: it connects again before the next batch");
            self.conn = None;
        }
    }

    /// The statements that open a batch's transaction.
    fn begin(&self) -> &'static str {
        match self.backend {
            // Takes the write lock now rather than at the first write, so a
            // `ca` command's write cannot make this one fail mid-batch.
            Backend::Sqlite => "BEGIN IMMEDIATE; SAVEPOINT job",
            Backend::Postgres => "BEGIN; SAVEPOINT job",
        }
    }
}

async fn run(mut connection: Link, mut queue: mpsc::Receiver<Job>, last_failure: Failure) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let begin = connection.begin();
        let committed = match connection.get().await {
            Ok(conn) => commit_batch(conn, begin, batch.drain(..), &last_failure).await,
            Err(e) => {
                let why = Arc::<str>::from(format!("cannot connect to the database: {e}"));
                tracing::error!(error = %why, writes = batch.len(), "a batch of writes failed");
                // Noted before the writes are dropped: their callers read it.
                note(&last_failure, Arc::clone(&why));
                batch.clear();
                Err(why)
            }
        };
        if let Err(e) = &committed {
            note(&last_failure, Arc::clone(e));
            connection.recover().await;
        }
    }
    if let Some(conn) = connection.conn {
        let _ = conn.close().await;
    }
}

/// Runs several statements in one call (both databases take a
/// `;`-separated list without parameters).
fn statements<'c>(
    conn: &'c mut AnyConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        sqlx::Executor::execute(conn, sql).await?;
        Ok(())
    })
}

/// One transaction: each job in a savepoint, then one commit; every job's
/// completion hears how the commit went.
async fn commit_batch(
    conn: &mut AnyConnection,
    begin: &'static str,
    jobs: impl Iterator<Item = Job>,
    failure: &Failure,
) -> Result<(), Arc<str>> {
    let started = Instant::now();
    let mut completions = Vec::new();
    let outcome = async {
        // Each call to the connection is a round trip to its thread: the
        // statements between two jobs go together.
        statements(conn, begin).await?;
        for job in jobs {
            let (ok, completion) = job(conn).await;
            completions.push(completion);
            let next = if ok {
                "RELEASE job; SAVEPOINT job"
            } else {
                "ROLLBACK TO job; RELEASE job; SAVEPOINT job"
            };
            statements(conn, next).await?;
        }
        statements(conn, "RELEASE job; COMMIT").await?;
        Ok::<(), sqlx::Error>(())
    }
    .await
    .map_err(|e| {
        // SQLite rolls the whole transaction back itself on some failures
        // of a write (a full disk): the savepoint statements after it then
        // fail with "no such savepoint", and the write's failure is the
        // one to tell.
        match &*failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, why)) if *at >= started => Arc::clone(why),
            _ => Arc::<str>::from(e.to_string()),
        }
    });
    if let Err(e) = &outcome {
        tracing::error!(error = %e, writes = completions.len(), "a batch of writes failed");
    }
    for completion in completions {
        completion(outcome.clone());
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn writer(dir: &tempfile::TempDir) -> (Writer, String) {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let mut conn = AnyConnection::connect(&url).await.unwrap();
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        let again = url.clone();
        let connect: Connect = Arc::new(move || {
            let url = again.clone();
            Box::pin(async move { AnyConnection::connect(&url).await })
        });
        (Writer::start(conn, connect, Backend::Sqlite), url)
    }

    fn insert(
        k: i64,
        v: Option<&'static str>,
    ) -> impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<u64, DbError>> + Send + 'static
    {
        move |conn| {
            Box::pin(async move {
                // A NULL value breaks NOT NULL: that write fails.
                let done = sqlx::query("INSERT INTO t (k, v) VALUES ($1, $2)")
                    .bind(k)
                    .bind(v)
                    .execute(conn)
                    .await?;
                Ok(done.rows_affected())
            })
        }
    }

    #[tokio::test]
    async fn concurrent_writes_commit_together_and_a_failing_one_alone_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, url) = writer(&dir).await;
        let writes = (0..200).map(|k| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let value = if k == 77 { None } else { Some("v") };
                writer.write(insert(k, value)).await
            })
        });
        let results = futures_util::future::join_all(writes).await;
        for (k, result) in results.into_iter().enumerate() {
            match result.unwrap() {
                Ok(rows) => assert_eq!((k, rows), (k, 1)),
                Err(e) => {
                    assert_eq!(k, 77, "only the bad write fails: {e}");
                    assert!(e.to_string().contains("NOT NULL"), "{e}");
                }
            }
        }
        // What each caller was told is what another connection reads.
        let mut reader = AnyConnection::connect(&url).await.unwrap();
        let (count, bad): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(*) FILTER (WHERE k = 77) FROM t")
                .fetch_one(&mut reader)
                .await
                .unwrap();
        assert_eq!((count, bad), (199, 0));
        // A write whose statements failed left nothing half done: the same
        // key written again succeeds.
        assert_eq!(writer.write(insert(77, Some("again"))).await.unwrap(), 1);
    }
}
