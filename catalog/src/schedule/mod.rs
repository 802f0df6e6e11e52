//! The scheduler: where each replica of each app runs. A pure function of
//! (policy, apps, fleet state, current placements, commit): predicates
//! filter the nodes, weighted priorities score the feasible ones, the best
//! wins, and ties go to a hash of (app, replica, commit) so the same inputs
//! always give the same placement. Every decision keeps, per node, the
//! predicate that refused it or its score per priority.
//!
//! The server's control loop is the only caller that acts on a schedule;
//! `drover-server plan`, the property tests and `scripts/bench scheduler`
//! call it with no server at all.
//!
//! Modules: `policy` (the default and `[scheduler]`), `fleet` (the indexed
//! state a call works on), `predicates` and `priorities` (filter and
//! score), `keep` (which current placements stay, and why not), `place`
//! ([`schedule`] itself), `capacity` (capacity from facts
//! and the packing view).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod capacity;
mod fleet;
mod keep;
mod place;
mod policy;
mod predicates;
mod priorities;
#[cfg(test)]
mod tests;

pub use capacity::{capacity_from_facts, packing_lower_bound, usage};
pub use keep::NotKept;
pub use place::{schedule, schedule_holding};
#[allow(
    unused_imports,
    reason = "the repository parser calls it for drover.toml's [scheduler]; until that lands only tests do"
)]
pub(crate) use policy::parse_policy;
pub use policy::{
    HEARTBEATS_PER_SEC, MAX_WEIGHT, RawPriority, RawResources, RawScheduler, quantity_bytes,
    quantity_cpu,
};

/// What a replica reserves on a node, and what a node can hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU.
    pub millicpu: u64,
    /// Bytes.
    pub memory: u64,
    /// Bytes.
    pub disk: u64,
}

/// A host port an app's container publishes (`8080:80` publishes 8080/tcp).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostPort {
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// Which nodes an app may run on, as `apps/NAME.toml`'s `selector` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    /// The node must have every one of these roles (after includes).
    pub roles: Vec<String>,
    /// Dotted fact paths and the value each must have (compared as in
    /// `nodes.toml`: equal as values or as strings).
    pub facts: Vec<(String, toml::Value)>,
    /// Node labels that must be equal.
    pub labels: BTreeMap<String, String>,
}

/// One app as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppDemand {
    pub name: String,
    pub replicas: u32,
    /// A hash of the app's spec: a replica placed from another spec is
    /// scheduled again (and `stay` prefers its current node).
    pub spec_hash: String,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub selector: Selector,
    /// A node label whose values the replicas are spread across; `None`
    /// spreads across nodes.
    pub spread: Option<String>,
    /// Taints (`key=value` or `key`) it may run on.
    pub tolerations: Vec<String>,
}

/// Whether a node can take replicas, as the fleet's reports say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Heard from within `lost_after` and its last run did not fail.
    Ready,
    /// Its last run failed.
    Failed,
    /// Silent for longer than `lost_after`: its replicas go elsewhere.
    Lost,
}

/// One node of the fleet as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    /// Expanded roles (includes first), as the compiler gives them.
    pub roles: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `key=value` or `key`.
    pub taints: Vec<String>,
    /// The node's facts (for `selector.facts`).
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// What it can hold: from its facts, less `[scheduler] reserved`.
    pub capacity: Resources,
    pub health: Health,
    /// Cordoned or draining: nothing new is placed on it.
    pub cordoned: bool,
}

/// A replica on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Placement {
    pub app: String,
    pub replica: u32,
    pub node: String,
    /// A short id, new for every placement: the container is named
    /// `APP-REPLICA-ID`, so a replacement never collides with what it replaces.
    pub id: String,
    /// The [`AppDemand::spec_hash`] it was placed from.
    pub spec_hash: String,
}

impl Placement {
    /// The name of the replica's container.
    pub fn container_name(&self) -> String {
        format!("{}-{}-{}", self.app, self.replica, self.id)
    }
}

/// A filter: a node that fails one cannot take the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Predicate {
    Ready,
    Schedulable,
    Selector,
    Tolerations,
    HostPorts,
    Resources,
    DistinctHosts,
}

/// A score in 0..=1 per feasible node, multiplied by its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    LeastAllocated,
    MostAllocated,
    BalancedAllocation,
    Spread,
    Stay,
}

/// `[scheduler]` of `drover.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Applied in this order; the first that refuses a node names why.
    pub predicates: Vec<Predicate>,
    /// With their weights.
    pub priorities: Vec<(Priority, u32)>,
    /// Taken from every node's capacity.
    pub reserved: Resources,
    /// Silence after which a node is lost, before scaling with fleet size.
    pub lost_after_secs: u64,
}

/// Why a node cannot take a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub predicate: Predicate,
    /// Short and countable, as in a pending reason: `insufficient memory`,
    /// `host port 8080 in use`, `cordoned`.
    pub reason: String,
}

/// One node's verdict for one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub node: String,
    /// Set when a predicate refused the node (then `scores` is empty).
    pub refused: Option<Refusal>,
    /// The weighted score per priority, in the policy's order.
    pub scores: Vec<(Priority, f64)>,
    pub total: f64,
}

/// How one replica was placed, or why it could not be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub app: String,
    pub replica: u32,
    /// `None`: pending.
    pub node: Option<String>,
    /// For a pending replica, Kubernetes' form: `0/12 nodes are available:
    /// 5 insufficient memory, 4 host port 8080 in use, 3 cordoned`.
    pub reason: Option<String>,
    /// Per node, in the order of the fleet given; the chosen node first
    /// when [`Explain::Top`] keeps only some.
    pub verdicts: Vec<Verdict>,
}

/// How much of each decision to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explain {
    /// Every node's verdict.
    Full,
    /// The best `n` scored verdicts (the chosen one first); refusals only
    /// counted in `reason`.
    Top(usize),
}

/// What [`schedule`] decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Every replica that has a node: kept ones and new ones.
    pub placements: Vec<Placement>,
    /// One per replica that was placed anew or is pending in this call;
    /// kept replicas have none (their decision is the one that placed them).
    pub decisions: Vec<Decision>,
    /// The current placements it did not keep, with why (what `plan` and
    /// `diff` say of a replica that moves); not part of the wire form.
    #[serde(skip)]
    pub not_kept: Vec<(Placement, NotKept)>,
}
