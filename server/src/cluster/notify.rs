//! Wake-ups between the servers of one PostgreSQL database: `NOTIFY drover`
//! when something one server saw concerns the others, `LISTEN drover` on a
//! connection of its own in each. A notification only wakes: what it is
//! about is read from where it always is (the repository, the tables), and
//! the periodic refresh still runs, so a lost notification (a dropped
//! connection) delays a change but never loses it.

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::db::{Backend, Db, DbError};

/// The channel every server listens on.
const CHANNEL: &str = "drover";

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A server's refresh found new commits: the others refresh too.
    Refresh,
    /// The shared CA changed (a request, a certificate, a revocation): the
    /// others bring their copies up to date.
    Ca,
    /// The control loop changed placements, or a report changed a
    /// replica's state: the others reload theirs.
    Placements,
    /// An operator asked nodes to run now: the server holding a node's
    /// watch answers it.
    Runs,
    /// A rollout took a step, or an operator asked one to resume or
    /// abort: the others reload the rollouts, and the leader's loop wakes.
    Rollouts,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Refresh => "refresh",
            Event::Ca => "ca",
            Event::Placements => "placements",
            Event::Runs => "runs",
            Event::Rollouts => "rollouts",
        }
    }

    fn parse(s: &str) -> Option<Event> {
        match s {
            "refresh" => Some(Event::Refresh),
            "ca" => Some(Event::Ca),
            "placements" => Some(Event::Placements),
            "runs" => Some(Event::Runs),
            "rollouts" => Some(Event::Rollouts),
            _ => None,
        }
    }
}

/// Tells the other servers of `event` (nothing on SQLite). The payload is
/// `SENDER EVENT`, so a server ignores its own.
pub async fn announce(db: &Db, sender: &str, event: Event) -> Result<(), DbError> {
    if db.backend() != Backend::Postgres {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{sender} {}", event.as_str()))
        .execute(db.reads())
        .await?;
    Ok(())
}

/// Listens on `url` until `shutdown`, calling `on_event` for every event
/// another server than `me` announced, and with [`Event::Refresh`] after
/// the connection was lost and made again (what was announced meanwhile is
/// lost). Returns at once for a SQLite URL.
pub async fn listen(
    url: &str,
    me: &str,
    shutdown: CancellationToken,
    on_event: impl Fn(Event) + Send,
) {
    if Backend::of(url) != Backend::Postgres {
        return;
    }
    let mut listener = loop {
        match connect(url).await {
            Ok(listener) => break listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for the other servers' wake-ups; trying again in 5 s");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        }
    };
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                let payload = notification.payload();
                let (sender, event) = payload.split_once(' ').unwrap_or(("", payload));
                if sender == me {
                    continue;
                }
                match Event::parse(event) {
                    Some(event) => on_event(event),
                    None => tracing::debug!(payload, "ignored an unknown wake-up"),
                }
            }
            // The connection was lost and is made again on the next call:
            // whatever was announced meanwhile is read again from the source.
            Ok(None) => {
                tracing::warn!("the wake-up connection to the database was lost; refreshing");
                on_event(Event::Refresh);
                on_event(Event::Ca);
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for wake-ups failed; trying again in 1 s");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
