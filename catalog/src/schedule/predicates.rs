//! The predicates: whether a node can take a replica, and if not, the
//! short, countable reason a pending replica's message groups.
//!
//! Two kinds, checked differently for speed. The *static* ones (`ready`,
//! `schedulable`, `selector`, `tolerations`) depend only on the app and
//! the node, so the scheduler evaluates them once per app for every node
//! and keeps the list of nodes that pass. The *dynamic* ones (`host_ports`,
//! `resources`, `distinct_hosts`) depend on what is placed so far and are
//! checked per replica against [`Fleet`]'s counters. Whether a node is
//! feasible does not depend on the order of the predicates; which one is
//! named as the refusal does, so [`Fleet::refusal`] walks the policy's
//! order and is only called when a reason is shown (a pending replica,
//! [`Explain::Full`](super::Explain::Full)).
//!
//! A replica that is already running is judged more leniently ([`Mode::Keep`]):
//! a cordoned node keeps its replicas (cordon stops new placements only, as
//! `drover-server node cordon` promises; drain moves them), and so does a
//! node whose last run failed (a failed run of some other resource is no
//! reason to move every container; a *lost* node's replicas do move).

use std::collections::BTreeMap;

use super::fleet::{DIM_NAMES, Fleet};
use super::{AppDemand, Health, NodeState, Predicate, Refusal};
use crate::classify::{fact_at, fact_equals};

/// For whom a node is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A replica being placed.
    Place,
    /// A replica running there, which stays unless a predicate says it
    /// cannot.
    Keep,
}

const STATIC: [Predicate; 4] = [
    Predicate::Ready,
    Predicate::Schedulable,
    Predicate::Selector,
    Predicate::Tolerations,
];

impl Fleet<'_> {
    /// The nodes that pass every static predicate of the policy for `app`.
    pub(super) fn statically_feasible(&self, app: usize, mode: Mode) -> Vec<u32> {
        let apply: Vec<Predicate> = STATIC
            .into_iter()
            .filter(|p| self.policy.predicates.contains(p))
            .collect();
        (0..self.nodes.len())
            .filter(|&n| {
                apply
                    .iter()
                    .all(|&p| self.static_reason(p, app, n, mode).is_none())
            })
            .map(|n| n as u32)
            .collect()
    }

    /// Whether `node` has room, free ports and no replica of `app`, as far
    /// as the policy asks. The hot path: array reads only.
    #[inline]
    pub(super) fn dynamically_feasible(&self, app: usize, node: usize) -> bool {
        if self.check_resources {
            let (cap, used, req) = (&self.cap[node], &self.used[node], &self.req[app]);
            if (0..3).any(|d| used[d].saturating_add(req[d]) > cap[d]) {
                return false;
            }
        }
        if self.check_distinct && self.on_node[app][node] > 0 {
            return false;
        }
        if self.check_ports {
            let taken = &self.ports[node];
            if !taken.is_empty()
                && self.app_ports[app]
                    .iter()
                    .any(|k| taken.binary_search(k).is_ok())
            {
                return false;
            }
        }
        true
    }

    /// The first predicate, in the policy's order, that refuses `node` for
    /// `app`, with its reason.
    pub(super) fn refusal(&self, app: usize, node: usize, mode: Mode) -> Option<Refusal> {
        self.policy.predicates.iter().find_map(|&predicate| {
            let reason = if STATIC.contains(&predicate) {
                self.static_reason(predicate, app, node, mode)
            } else {
                self.dynamic_reason(predicate, app, node)
            }?;
            Some(Refusal { predicate, reason })
        })
    }

    fn static_reason(
        &self,
        predicate: Predicate,
        app: usize,
        node: usize,
        mode: Mode,
    ) -> Option<String> {
        let (app, node) = (self.apps[app], self.nodes[node]);
        match predicate {
            Predicate::Ready => match (node.health, mode) {
                (Health::Ready, _) | (Health::Failed, Mode::Keep) => None,
                (Health::Failed, Mode::Place) => Some("not ready".into()),
                (Health::Lost, _) => Some("lost".into()),
            },
            Predicate::Schedulable => {
                (node.cordoned && mode == Mode::Place).then(|| "cordoned".into())
            }
            Predicate::Selector => {
                (!selector_matches(app, node)).then(|| "didn't match the app's selector".into())
            }
            Predicate::Tolerations => untolerated(&node.taints, &app.tolerations)
                .map(|taint| format!("had untolerated taint {{{taint}}}")),
            _ => None,
        }
    }

    fn dynamic_reason(&self, predicate: Predicate, app: usize, node: usize) -> Option<String> {
        match predicate {
            Predicate::Resources => {
                let (cap, used, req) = (&self.cap[node], &self.used[node], &self.req[app]);
                (0..3)
                    .find(|&d| used[d].saturating_add(req[d]) > cap[d])
                    .map(|d| format!("insufficient {}", DIM_NAMES[d]))
            }
            Predicate::DistinctHosts => (self.on_node[app][node] > 0)
                .then(|| format!("already runs a replica of {}", self.apps[app].name)),
            Predicate::HostPorts => {
                let taken = &self.ports[node];
                let (hp, _) = self.apps[app]
                    .host_ports
                    .iter()
                    .zip(&self.app_port_list[app])
                    .find(|(_, key)| taken.binary_search(key).is_ok())?;
                Some(match hp.protocol.as_str() {
                    "tcp" => format!("host port {} in use", hp.port),
                    proto => format!("host port {}/{proto} in use", hp.port),
                })
            }
            _ => None,
        }
    }
}

/// Every role, fact and label the selector asks for.
pub(super) fn selector_matches(app: &AppDemand, node: &NodeState) -> bool {
    let s = &app.selector;
    s.roles.iter().all(|r| node.roles.contains(r))
        && s.facts
            .iter()
            .all(|(path, want)| fact_at(&node.facts, path).is_some_and(|f| fact_equals(f, want)))
        && s.labels.iter().all(|(k, v)| node.labels.get(k) == Some(v))
}

/// The first of `taints` that no toleration allows: `key=value` allows that
/// taint only, a bare `key` allows the key with any value.
pub(super) fn untolerated<'t>(taints: &'t [String], tolerations: &[String]) -> Option<&'t str> {
    taints
        .iter()
        .find(|taint| {
            let key = taint.split_once('=').map_or(taint.as_str(), |(k, _)| k);
            !tolerations
                .iter()
                .any(|t| t == *taint || (!t.contains('=') && t == key))
        })
        .map(String::as_str)
}

/// Kubernetes' form: `0/12 nodes are available: 5 insufficient memory, 4
/// host port 8080 in use, 3 cordoned` (most frequent first, then by text).
pub(super) fn pending_reason<'r>(
    nodes: usize,
    reasons: impl IntoIterator<Item = &'r str>,
) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason).or_default() += 1;
    }
    if counts.is_empty() {
        return format!("0/{nodes} nodes are available: the fleet has no nodes");
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("0/{nodes} nodes are available: {}", parts.join(", "))
}
