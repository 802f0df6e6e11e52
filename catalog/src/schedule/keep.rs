//! Which current placements [`schedule`](super::schedule) keeps, and why it
//! does not keep the others (its answer's `not_kept`): the first step of
//! every schedule, and what `drover-server diff` and `plan` say of a
//! replica that moves.
//!
//! Current placements are judged app by app (by name), replica by index,
//! each against the usage of those kept before it, in the lenient
//! [`Mode::Keep`]; a replica of another spec is never kept (it is placed
//! again, and `stay` prefers its node).

use std::collections::BTreeMap;

use super::fleet::Fleet;
use super::predicates::Mode;
use super::{Placement, Refusal};

/// Why a current placement was not kept.
#[derive(Debug, Clone, PartialEq)]
pub enum NotKept {
    /// Its node is not among the nodes given.
    UnknownNode,
    /// Its app's spec changed since it was placed (and its node would still
    /// take it).
    SpecChanged,
    /// A predicate refuses its node for a running replica (of the app's
    /// spec now: a spec that changed so that its node no longer fits says
    /// so, not only that it changed).
    Refused(Refusal),
}

/// What [`keep`] found.
pub(super) struct Kept<'c> {
    /// The replica each current placement stands for (app index, replica);
    /// of two for one replica, the first given.
    pub previous: BTreeMap<(usize, u32), &'c Placement>,
    pub kept: Vec<Placement>,
    /// The replicas not kept, with why.
    pub not_kept: Vec<(&'c Placement, NotKept)>,
}

/// Keeps the `current` placements that still fit, adding each to `fleet`.
/// Scaled-down and removed apps' placements drop out (neither kept nor
/// listed as not kept).
pub(super) fn keep<'c>(fleet: &mut Fleet<'_>, current: &'c [Placement]) -> Kept<'c> {
    let mut previous: BTreeMap<(usize, u32), &Placement> = BTreeMap::new();
    for p in current {
        let Some(&app) = fleet.app_ix.get(p.app.as_str()) else {
            continue;
        };
        if p.replica < fleet.apps[app].replicas {
            previous.entry((app, p.replica)).or_insert(p);
        }
    }
    let mut kept = Vec::new();
    let mut not_kept = Vec::new();
    for (&(app, _), p) in &previous {
        let why = match fleet.node_ix.get(p.node.as_str()).copied() {
            None => Err(NotKept::UnknownNode),
            Some(n) => match fleet.refusal(app, n, Mode::Keep) {
                Some(refusal) => Err(NotKept::Refused(refusal)),
                None if p.spec_hash != fleet.apps[app].spec_hash => Err(NotKept::SpecChanged),
                None => Ok(n),
            },
        };
        match why {
            Ok(n) => {
                fleet.add(app, n);
                kept.push((*p).clone());
            }
            Err(why) => not_kept.push((*p, why)),
        }
    }
    Kept {
        previous,
        kept,
        not_kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{
        AppDemand, Explain, Health, NodeState, Policy, Predicate, Resources, Selector,
    };

    /// What a schedule says it did not keep of `current`.
    fn not_kept(
        policy: &Policy,
        apps: &[AppDemand],
        nodes: &[NodeState],
        current: &[Placement],
    ) -> Vec<(Placement, NotKept)> {
        crate::schedule::schedule(policy, apps, nodes, current, "c1", Explain::Top(0)).not_kept
    }

    fn node(name: &str, roles: &[&str], health: Health) -> NodeState {
        NodeState {
            name: name.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            facts: serde_json::Map::new(),
            capacity: Resources {
                millicpu: 2000,
                memory: 4 << 30,
                disk: 0,
            },
            health,
            cordoned: false,
        }
    }

    fn placed(replica: u32, node: &str, spec: &str) -> Placement {
        Placement {
            app: "web".into(),
            replica,
            node: node.into(),
            id: format!("id{replica}"),
            spec_hash: spec.into(),
        }
    }

    #[test]
    fn each_replica_not_kept_says_why_and_the_kept_ones_are_not_listed() {
        let app = AppDemand {
            name: "web".into(),
            replicas: 4,
            spec_hash: "s1".into(),
            requests: Resources::default(),
            host_ports: Vec::new(),
            selector: Selector {
                roles: vec!["web".into()],
                ..Selector::default()
            },
            spread: None,
            tolerations: Vec::new(),
        };
        let nodes = [
            node("a", &["web"], Health::Ready),
            node("b", &["db"], Health::Ready),
            node("c", &["web"], Health::Lost),
        ];
        let current = [
            placed(0, "a", "s1"),
            placed(1, "b", "s1"),
            placed(2, "c", "s1"),
            placed(3, "gone", "s1"),
            // Scaled down: neither kept nor listed.
            placed(4, "a", "s1"),
        ];
        let why = not_kept(
            &Policy::default(),
            std::slice::from_ref(&app),
            &nodes,
            &current,
        );
        let said: Vec<(u32, NotKept)> = why.into_iter().map(|(p, w)| (p.replica, w)).collect();
        let refused = |predicate, reason: &str| {
            NotKept::Refused(Refusal {
                predicate,
                reason: reason.into(),
            })
        };
        assert_eq!(
            said,
            [
                (
                    1,
                    refused(Predicate::Selector, "didn't match the app's selector")
                ),
                (2, refused(Predicate::Ready, "lost")),
                (3, NotKept::UnknownNode),
            ]
        );
        let changed = not_kept(
            &Policy::default(),
            &[AppDemand {
                spec_hash: "s2".into(),
                ..app
            }],
            &nodes,
            &current[..1],
        );
        assert_eq!(changed, [(current[0].clone(), NotKept::SpecChanged)]);
    }
}
