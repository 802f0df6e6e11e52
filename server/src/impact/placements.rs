//! Where a commit's apps would run against the fleet of an environment:
//! the pure scheduler (`drover_catalog::schedule`) run on a repository's
//! apps and policy, the environment's known nodes and its current
//! placements, and nothing applied. `drover-server plan` prints every
//! replica's fate; `drover-server diff` and the dashboard's impact page
//! show the ones that change (placed, moved with the reason the replica
//! could not stay, removed, newly pending).

use std::collections::HashSet;

use drover_catalog::Repository;
use drover_catalog::schedule::{self, Explain, NodeState, NotKept, Placement, Schedule};
use serde::Serialize;

use crate::apps::control;
use crate::db::apps::{FleetNode, PlacementRow};

/// What becomes of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// It keeps its node.
    Stays,
    /// It had no node and gets one.
    Placed,
    /// It leaves its node for another.
    Moved,
    /// Its app is gone or scaled down.
    Removed,
    /// No node can take it.
    Pending,
}

/// One replica's fate, as `plan` prints it and `diff` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ReplicaMove {
    pub app: String,
    pub replica: u32,
    pub fate: Fate,
    /// The node it runs on now (stays, moved, removed).
    pub from: Option<String>,
    /// The node it would run on (stays, placed, moved).
    pub to: Option<String>,
    /// Why it moved (why it cannot stay on `from`), or why it is pending.
    pub reason: Option<String>,
    /// Whether this is a change: a replica that stays, or one pending
    /// before and after, is none.
    pub changes: bool,
}

impl ReplicaMove {
    /// `stays on N`, `placed on N`, `moves from A to B`, `removed from A`
    /// or `pending`: its fate, without the reason.
    pub fn what(&self) -> String {
        let node = |n: &Option<String>| n.clone().unwrap_or_default();
        match self.fate {
            Fate::Stays => format!("stays on {}", node(&self.to)),
            Fate::Placed => format!("placed on {}", node(&self.to)),
            Fate::Moved => format!("moves from {} to {}", node(&self.from), node(&self.to)),
            Fate::Removed => format!("removed from {}", node(&self.from)),
            Fate::Pending => "pending".to_owned(),
        }
    }
}

/// The scheduler's answer for a commit, with what it was asked.
#[derive(Debug)]
pub struct Plan {
    /// The environment's nodes the scheduler saw.
    pub nodes: Vec<NodeState>,
    pub schedule: Schedule,
    /// Every replica's fate, by app and replica.
    pub replicas: Vec<ReplicaMove>,
}

impl Plan {
    /// Whether any placement would change.
    pub fn changes(&self) -> bool {
        self.replicas.iter().any(|r| r.changes)
    }
}

/// The current placements of `against`, and the replicas pending there.
pub struct Current {
    pub placements: Vec<Placement>,
    pub pending: HashSet<(String, u32)>,
}

impl Current {
    /// From the stored rows (the control loop's).
    pub fn stored(rows: &[PlacementRow], against: &str) -> Current {
        let rows = rows.iter().filter(|r| r.environment == against);
        Current {
            placements: rows.clone().filter_map(PlacementRow::placement).collect(),
            pending: rows
                .filter(|r| r.node.is_none())
                .map(|r| (r.app.clone(), r.replica))
                .collect(),
        }
    }

    /// What `repo` would place from scratch on `nodes` at `commit` (when
    /// no placements are stored: the target's own schedule is the baseline
    /// a branch is compared with).
    pub fn scheduled(repo: &Repository, nodes: &[NodeState], commit: &str) -> Current {
        let planned = schedule::schedule(
            repo.policy(),
            &repo.app_demands(),
            nodes,
            &[],
            commit,
            Explain::Top(0),
        );
        Current {
            pending: planned
                .decisions
                .iter()
                .filter(|d| d.node.is_none())
                .map(|d| (d.app.clone(), d.replica))
                .collect(),
            placements: planned.placements,
        }
    }
}

/// The nodes of `fleet` served `against` (a node that was never served is
/// taken as of `against`), as the scheduler sees them at `now_us`.
pub fn members(
    repo: &Repository,
    fleet: &[FleetNode],
    against: &str,
    now_us: i64,
) -> Vec<NodeState> {
    let members: Vec<&FleetNode> = fleet
        .iter()
        .filter(|n| n.environment.as_deref().unwrap_or(against) == against)
        .collect();
    control::node_states(repo, &members, now_us, 0)
}

/// Runs the scheduler on `repo`'s apps at `commit` against `nodes` and
/// `current`, and says what becomes of each replica.
pub fn plan(repo: &Repository, nodes: Vec<NodeState>, current: &Current, commit: &str) -> Plan {
    let apps = repo.app_demands();
    let planned = schedule::schedule(
        repo.policy(),
        &apps,
        &nodes,
        &current.placements,
        commit,
        Explain::Top(3),
    );
    let mut replicas = fates(&planned, current);
    replicas.sort();
    Plan {
        nodes,
        schedule: planned,
        replicas,
    }
}

fn fates(planned: &Schedule, current: &Current) -> Vec<ReplicaMove> {
    let before = |app: &str, replica: u32| {
        current
            .placements
            .iter()
            .find(|c| c.app == app && c.replica == replica)
    };
    let mut out = Vec::new();
    for p in &planned.placements {
        let fate = match before(&p.app, p.replica) {
            Some(b) if b.node == p.node && b.id == p.id => {
                replica(p.app.clone(), p.replica, Fate::Stays, Some(&b.node))
            }
            Some(b) => ReplicaMove {
                reason: Some(why_moved(b, &planned.not_kept)),
                ..replica(p.app.clone(), p.replica, Fate::Moved, Some(&b.node))
            },
            None => replica(p.app.clone(), p.replica, Fate::Placed, None),
        };
        out.push(ReplicaMove {
            to: Some(p.node.clone()),
            ..fate
        });
    }
    for d in planned.decisions.iter().filter(|d| d.node.is_none()) {
        let from = before(&d.app, d.replica).map(|b| b.node.as_str());
        out.push(ReplicaMove {
            reason: Some(d.reason.clone().unwrap_or_else(|| "no node fits".into())),
            changes: !current.pending.contains(&(d.app.clone(), d.replica)),
            ..replica(d.app.clone(), d.replica, Fate::Pending, from)
        });
    }
    for c in &current.placements {
        let kept = planned
            .placements
            .iter()
            .any(|p| p.app == c.app && p.replica == c.replica);
        let pending = planned
            .decisions
            .iter()
            .any(|d| d.app == c.app && d.replica == c.replica);
        if !kept && !pending {
            out.push(replica(
                c.app.clone(),
                c.replica,
                Fate::Removed,
                Some(&c.node),
            ));
        }
    }
    out
}

fn replica(app: String, replica: u32, fate: Fate, from: Option<&str>) -> ReplicaMove {
    ReplicaMove {
        app,
        replica,
        fate,
        from: from.map(str::to_owned),
        to: None,
        reason: None,
        changes: fate != Fate::Stays,
    }
}

/// Why the scheduler did not keep `was` on its node, as it says it: the
/// node is gone, the app's spec changed, or the predicate that refuses the
/// node for a running replica (`web-1 refused by selector: didn't match
/// the app's selector`, `... by ready: lost`).
fn why_moved(was: &Placement, why: &[(Placement, NotKept)]) -> String {
    match why.iter().find(|(p, _)| p == was).map(|(_, why)| why) {
        Some(NotKept::UnknownNode) => {
            format!("{} is not a known node of the environment", was.node)
        }
        Some(NotKept::SpecChanged) => "the app's spec changed: placed again".to_owned(),
        Some(NotKept::Refused(r)) => {
            format!(
                "{} refused by {}: {}",
                was.node,
                r.predicate.name(),
                r.reason
            )
        }
        None => format!("{} was not kept", was.node),
    }
}

#[cfg(test)]
mod tests {
    use drover_catalog::RepoFiles;
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_000_000_000_000;

    fn repo(app: &str) -> Repository {
        let mut files = RepoFiles::new();
        let nodes = "[[node]]\nmatch = \"*\"\nroles = [\"host\"]\n";
        files.insert("nodes.toml".into(), nodes.as_bytes().into());
        files.insert("roles/host.toml".into(), b"\n".to_vec().into());
        files.insert("apps/web.toml".into(), app.as_bytes().into());
        Repository::parse(files).unwrap()
    }

    fn node(name: &str, seen_at_us: i64) -> FleetNode {
        let facts = json!({"processors": {"count": 2}, "memory": {"total_bytes": 4_u64 << 30}});
        FleetNode {
            name: name.into(),
            environment: Some("main".into()),
            facts: facts.as_object().unwrap().clone(),
            cordoned: false,
            last_status: None,
            seen_at_us,
        }
    }

    fn web(replicas: u32) -> String {
        format!(
            "replicas = {replicas}\nimage = \"busybox:1\"\nrequests = {{ memory = \"64MiB\" }}\n"
        )
    }

    #[test]
    fn the_same_apps_move_nothing_and_a_lost_node_moves_its_replica_with_why() {
        let repo = repo(&web(2));
        let fleet = [node("a", NOW), node("b", NOW), node("c", NOW)];
        let nodes = members(&repo, &fleet, "main", NOW);
        let current = Current::scheduled(&repo, &nodes, "c1");
        assert_eq!(current.placements.len(), 2);
        let same = plan(&repo, nodes, &current, "c2");
        assert!(!same.changes(), "{:?}", same.replicas);
        assert!(same.replicas.iter().all(|r| r.fate == Fate::Stays));

        // The node of replica 0 falls silent: it moves, and says why.
        let gone = current.placements[0].node.clone();
        let fleet: Vec<FleetNode> = fleet
            .iter()
            .map(|n| node(&n.name, if n.name == gone { 1 } else { NOW }))
            .collect();
        let moved = plan(&repo, members(&repo, &fleet, "main", NOW), &current, "c2");
        let changes: Vec<&ReplicaMove> = moved.replicas.iter().filter(|r| r.changes).collect();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].fate, Fate::Moved);
        assert_eq!(changes[0].replica, 0);
        assert_eq!(changes[0].from.as_deref(), Some(gone.as_str()));
        assert_eq!(
            changes[0].reason.as_deref(),
            Some(&*format!("{gone} refused by ready: lost"))
        );
    }

    #[test]
    fn scaling_down_removes_and_a_replica_pending_before_and_after_is_no_change() {
        let fleet = [node("a", NOW)];
        let two = repo(&web(2));
        let nodes = members(&two, &fleet, "main", NOW);
        // One node, distinct hosts: replica 1 is pending from the start.
        let current = Current::scheduled(&two, &nodes, "c1");
        assert_eq!(current.placements.len(), 1);
        assert!(current.pending.contains(&("web".to_owned(), 1)));
        let again = plan(&two, nodes.clone(), &current, "c2");
        assert!(!again.changes(), "{:?}", again.replicas);

        let none = repo(&web(0));
        let down = plan(&none, nodes, &current, "c2");
        assert_eq!(down.replicas.len(), 1);
        assert_eq!(down.replicas[0].fate, Fate::Removed);
        assert_eq!(down.replicas[0].from.as_deref(), Some("a"));
        assert!(down.changes());
    }
}
