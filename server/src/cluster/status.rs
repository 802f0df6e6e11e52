//! What `GET /api/v1/cluster` and the dashboard show of the cluster.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Cluster, LISTED_FOR, Leadership, micros};
use crate::db::{Backend, DbError, lease};

/// The servers sharing this database and who leads them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterStatus {
    /// `sqlite` (one server, which leads) or `postgres`.
    #[schema(example = "postgres")]
    pub database: &'static str,
    /// The id of the server that answered.
    pub this_server: String,
    /// Whether the server that answered holds itself for the leader (it
    /// stops at once when a write as leader is refused).
    pub this_server_leads: bool,
    /// The leader's lease, if a server holds a live one.
    pub leader: Option<Leader>,
    /// Every server heard from in the last 5 minutes, by id.
    pub servers: Vec<Server>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Leader {
    pub id: String,
    /// Grows by one at every election.
    pub term: i64,
    pub since: Option<jiff::Timestamp>,
    pub expires_at: Option<jiff::Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Server {
    pub id: String,
    /// The URL it announced when it started listening.
    pub listen: String,
    pub version: String,
    pub started_at: Option<jiff::Timestamp>,
    pub last_heartbeat: Option<jiff::Timestamp>,
    /// Milliseconds since its last heartbeat, on the database's clock.
    pub heartbeat_age_ms: i64,
    pub leader: bool,
}

fn at(us: i64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_microsecond(us).ok()
}

impl Cluster {
    /// The cluster as the database says (on SQLite: this server alone).
    pub async fn status(&self) -> Result<ClusterStatus, DbError> {
        match self.db.backend() {
            Backend::Sqlite => {
                let term = match self.leadership() {
                    Leadership::Leader { term } => term,
                    Leadership::Follower => 0,
                };
                Ok(ClusterStatus {
                    database: "sqlite",
                    this_server: self.id.clone(),
                    this_server_leads: self.leadership().is_leader(),
                    leader: Some(Leader {
                        id: self.id.clone(),
                        term,
                        since: Some(self.started_at),
                        expires_at: None,
                    }),
                    servers: vec![Server {
                        id: self.id.clone(),
                        listen: self.listen(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        started_at: Some(self.started_at),
                        last_heartbeat: Some(jiff::Timestamp::now()),
                        heartbeat_age_ms: 0,
                        leader: true,
                    }],
                })
            }
            Backend::Postgres => {
                let lease = lease::lease(&self.db).await?.filter(|l| l.live);
                let servers = lease::servers(&self.db, micros(LISTED_FOR)).await?;
                let holder = lease.as_ref().map(|l| l.holder.clone());
                Ok(ClusterStatus {
                    database: "postgres",
                    this_server: self.id.clone(),
                    this_server_leads: self.leadership().is_leader(),
                    leader: lease.map(|l| Leader {
                        id: l.holder,
                        term: l.term,
                        since: at(l.acquired_at_us),
                        expires_at: at(l.expires_at_us),
                    }),
                    servers: servers
                        .into_iter()
                        .map(|s| Server {
                            leader: holder.as_deref() == Some(s.id.as_str()),
                            id: s.id,
                            listen: s.listen,
                            version: s.version,
                            started_at: at(s.started_at_us),
                            last_heartbeat: at(s.heartbeat_at_us),
                            heartbeat_age_ms: s.heartbeat_age_ms,
                        })
                        .collect(),
                })
            }
        }
    }
}
