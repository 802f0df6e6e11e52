//! The servers sharing the database, as the overview's last section lists
//! them: the leader and its term, each server's heartbeat and version.

/// The servers sharing the database, as the overview lists them.
pub(super) struct ClusterView {
    pub(super) database: &'static str,
    pub(super) leader: String,
    pub(super) servers: Vec<ServerRow>,
}

pub(super) struct ServerRow {
    pub(super) id: String,
    pub(super) listen: String,
    pub(super) version: String,
    pub(super) heartbeat: String,
    pub(super) role: String,
    pub(super) this: bool,
}

impl ClusterView {
    pub(super) fn of(status: crate::cluster::ClusterStatus) -> ClusterView {
        let term = status.leader.as_ref().map_or(0, |l| l.term);
        ClusterView {
            database: status.database,
            leader: status.leader.as_ref().map_or_else(
                || "none (an election is due)".to_owned(),
                |l| format!("{} (term {})", l.id, l.term),
            ),
            servers: status
                .servers
                .into_iter()
                .map(|s| ServerRow {
                    this: s.id == status.this_server,
                    role: if s.leader {
                        format!("leader, term {term}")
                    } else {
                        "follower".to_owned()
                    },
                    heartbeat: format!("{:.1} s ago", s.heartbeat_age_ms.max(0) as f64 / 1000.0),
                    id: s.id,
                    listen: s.listen,
                    version: s.version,
                })
                .collect(),
        }
    }
}
