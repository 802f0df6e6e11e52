//! This server among the others sharing its database: who leads, and the
//! wake-ups they send each other.
//!
//! On PostgreSQL every server writes a heartbeat and tries for the one
//! leader's lease every [`TICK`] (see `db::lease`): a lease of [`LEASE`] on
//! the database's clock, renewed by its holder, taken by another once it
//! expired, with a term that grows at every election. The leader runs the
//! background work that must happen once (report retention, the recompile of
//! every known node after a refresh, and later the control loop); each of
//! its writes carries its term ([`Cluster::write_as_leader`]) and is refused
//! once the lease has moved on, so a leader that was paused and wakes up
//! cannot overwrite its successor: it steps down instead. On SQLite the one
//! server always leads and nothing is checked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::lease::{self, Fence};
use crate::db::{Backend, Db, DbError};

pub mod notify;
mod status;

pub use status::{ClusterStatus, Leader, Server};

/// How long a lease lasts unless renewed: a follower leads at most this
/// plus a [`TICK`] after the leader died.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often each server writes its heartbeat and renews or tries for the lease.
pub const TICK: Duration = Duration::from_secs(2);
/// Servers silent for longer are left out of the cluster's list...
pub const LISTED_FOR: Duration = Duration::from_secs(300);
/// ...and forgotten after this.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(86_400);

/// Whether this server leads, and under which term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Follower,
    Leader { term: i64 },
}

impl Leadership {
    pub fn is_leader(self) -> bool {
        matches!(self, Leadership::Leader { .. })
    }
}

/// This server's place in the cluster; shared by the handlers and the
/// background tasks.
#[derive(Debug)]
pub struct Cluster {
    id: String,
    db: Db,
    started_at: jiff::Timestamp,
    listen: Mutex<String>,
    leadership: watch::Sender<Leadership>,
}

impl Cluster {
    /// This server, not yet leading on PostgreSQL (the first [`Cluster::run`]
    /// tick elects); leading at once on SQLite.
    pub fn new(db: Db) -> Cluster {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "server".into());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let leadership = match db.backend() {
            Backend::Sqlite => Leadership::Leader { term: 1 },
            Backend::Postgres => Leadership::Follower,
        };
        Cluster {
            id: format!("{host}-{}", &suffix[..8]),
            db,
            started_at: jiff::Timestamp::now(),
            listen: Mutex::new(String::new()),
            leadership: watch::Sender::new(leadership),
        }
    }

    /// This server's id in the cluster: its host name and a random suffix.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn started_at(&self) -> jiff::Timestamp {
        self.started_at
    }

    /// Records the address this server listens on, for the cluster's list.
    pub fn set_listen(&self, url: &str) {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = url.to_owned();
    }

    pub fn listen(&self) -> String {
        self.listen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn leadership(&self) -> Leadership {
        *self.leadership.borrow()
    }

    /// Follows this server's leadership.
    pub fn watch_leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }

    /// What this server's writes as the leader of `term` are checked
    /// against: its lease on PostgreSQL, nothing on SQLite.
    fn fence(&self, term: i64) -> Option<Fence> {
        (self.db.backend() == Backend::Postgres).then(|| Fence {
            holder: self.id.clone(),
            term,
        })
    }

    /// Runs `write` as the leader: refused without writing when this server
    /// does not lead, or when the lease it was elected with has moved on
    /// (checked in the same transaction; this server then steps down).
    pub async fn write_as_leader<T, F>(&self, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, DbError>>
            + Send
            + 'static,
    {
        let Leadership::Leader { term } = self.leadership() else {
            return Err(DbError::NotLeader);
        };
        // The fence of the term read above: a step-down meanwhile must not
        // turn this write into an unchecked one.
        let result = self.db.write_fenced(self.fence(term), write).await;
        if let Err(DbError::Fenced { now, .. }) = &result {
            self.step_down(term, &format!("a write as leader was refused: {now}"));
        }
        result
    }

    /// Stops leading under `term` (a later election's term stands).
    fn step_down(&self, term: i64, why: &str) {
        let stepped = self.leadership.send_if_modified(|now| {
            if *now == (Leadership::Leader { term }) {
                *now = Leadership::Follower;
                true
            } else {
                false
            }
        });
        if stepped {
            tracing::warn!(term, reason = why, server = %self.id, "this server no longer leads");
        }
    }

    fn lead(&self, term: i64) {
        let was = self.leadership.send_replace(Leadership::Leader { term });
        if was != (Leadership::Leader { term }) {
            tracing::info!(term, server = %self.id, "this server leads");
        }
    }

    /// On PostgreSQL: the heartbeat and the election every [`TICK`] until
    /// `shutdown`, then gives the lease up if it holds it. Returns at once
    /// on SQLite.
    pub async fn run(self: Arc<Cluster>, shutdown: CancellationToken) {
        if self.db.backend() != Backend::Postgres {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed_at = Instant::now();
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            ticks += 1;
            self.beat(ticks).await;
            match self.elect().await {
                Ok(()) => renewed_at = Instant::now(),
                Err(e) => {
                    tracing::warn!(error = %e, "the leader election could not reach the database");
                    // The lease cannot be renewed: past its length another
                    // may lead, so stop acting as the leader before then.
                    if let Leadership::Leader { term } = self.leadership()
                        && renewed_at.elapsed() + TICK >= LEASE
                    {
                        self.step_down(term, "the lease could not be renewed");
                    }
                }
            }
        }
        if let Leadership::Leader { term } = self.leadership()
            && let Some(fence) = self.fence(term)
        {
            self.step_down(term, "the server stops");
            if let Err(e) = lease::release(&self.db, &fence).await {
                tracing::warn!(error = %e, "giving up the lease failed; another server leads once it expires");
            }
        }
    }

    async fn beat(&self, ticks: u64) {
        let started_us = self.started_at.as_microsecond();
        let version = env!("CARGO_PKG_VERSION");
        if let Err(e) =
            lease::heartbeat(&self.db, &self.id, &self.listen(), version, started_us).await
        {
            tracing::warn!(error = %e, "writing this server's heartbeat failed");
        }
        // Now and then: the rows of servers long gone.
        if ticks % 1000 == 1
            && let Err(e) = lease::forget_silent(&self.db, micros(FORGOTTEN_AFTER)).await
        {
            tracing::warn!(error = %e, "forgetting silent servers failed");
        }
    }

    /// One round: the leader renews its lease (refused once it moved on:
    /// it steps down), a follower tries to take it.
    async fn elect(&self) -> Result<(), DbError> {
        let ttl = micros(LEASE);
        match self.leadership() {
            Leadership::Leader { term } => {
                let fence = Fence {
                    holder: self.id.clone(),
                    term,
                };
                if !lease::renew(&self.db, &fence, ttl).await? {
                    let now = match lease::lease(&self.db).await? {
                        Some(l) => format!("term {}, held by {}", l.term, l.holder),
                        None => "no lease".into(),
                    };
                    self.step_down(
                        term,
                        &format!(
                            "the renewal of its lease was refused: the lease has moved on ({now})"
                        ),
                    );
                }
            }
            Leadership::Follower => {
                if let Some(term) = lease::acquire(&self.db, &self.id, ttl).await? {
                    self.lead(term);
                }
            }
        }
        Ok(())
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Runs `work` while this server leads: started when it is elected, its
/// token cancelled when it steps down or `shutdown` comes. `work` gets the
/// token and should end soon after it is cancelled.
pub async fn while_leading<F, Fut>(cluster: Arc<Cluster>, shutdown: CancellationToken, work: F)
where
    F: Fn(CancellationToken) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut leadership = cluster.watch_leadership();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            elected = until(&mut leadership, true) => if !elected { return },
        }
        let stop = shutdown.child_token();
        let running = work(stop.clone());
        tokio::pin!(running);
        tokio::select! {
            () = &mut running => {}
            _ = until(&mut leadership, false) => {
                stop.cancel();
                running.await;
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        // Ended on its own while leading: wait for the next election.
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = until(&mut leadership, false) => {}
        }
    }
}

/// Waits until this server leads (`leading`) or follows; false when the
/// cluster is gone.
async fn until(leadership: &mut watch::Receiver<Leadership>, leading: bool) -> bool {
    leadership
        .wait_for(|l| l.is_leader() == leading)
        .await
        .is_ok()
}
