//! [`schedule`]: current placements kept where they still fit, every other
//! replica placed by filter, score and pick, as Nomad's stack and
//! kube-scheduler's framework do, over one snapshot of the fleet.
//!
//! Order is part of the result, so it is fixed:
//! - Kept replicas are judged apps by name, replicas by index, each
//!   against the usage of those kept before it (two replicas that no
//!   longer fit together: the higher index moves).
//! - Replicas to place go app by app, the apps that need the largest share
//!   of the fleet first (first-fit decreasing: big replicas are placed
//!   while big holes exist, small ones fill the gaps; under scarcity the
//!   small apps are the ones that still fit), then by name; replicas by
//!   index. Spread is per app, so the app order cannot skew it.
//! - Ties go to the lowest hash of (app, replica, commit, node): FNV-1a,
//!   mixed by splitmix64. A new commit reshuffles ties, the same commit
//!   never does.
//!
//! The output lists kept placements, then new ones, each by app name and
//! index, and decisions by app name and index.
//!
//! Speed: the static predicates are evaluated once per app, giving the
//! nodes the app may ever use; each replica then walks that list checking
//! counters (room, ports, replicas of the app) and scoring the survivors,
//! reusing one buffer. A pending replica's reason needs every node's first
//! refusal, which is slower, but the following replicas of the same app
//! see the same fleet (nothing was placed in between) and reuse it.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use super::fleet::{FNV_OFFSET, Fleet, fnv1a, mix};
use super::predicates::{Mode, pending_reason};
use super::priorities::Context;
use super::{AppDemand, Decision, Explain, NodeState, Placement, Policy, Schedule, Verdict};

/// Places every replica of `apps` on `nodes` under `policy`, keeping the
/// `current` placements that still fit. `commit` seeds tie-breaks and
/// placement ids; `explain` says how many verdicts each decision keeps.
pub fn schedule(
    policy: &Policy,
    apps: &[AppDemand],
    nodes: &[NodeState],
    current: &[Placement],
    commit: &str,
    explain: Explain,
) -> Schedule {
    schedule_holding(policy, apps, nodes, current, &[], commit, explain)
}

/// [`schedule`], with `held` containers that still run and take their
/// app's room, ports and place on their nodes (counted after the kept
/// replicas, before the new ones): an old replica beside which its
/// replacement is placed (make-before-break). A hold stands for no replica.
pub fn schedule_holding(
    policy: &Policy,
    apps: &[AppDemand],
    nodes: &[NodeState],
    current: &[Placement],
    held: &[Placement],
    commit: &str,
    explain: Explain,
) -> Schedule {
    let mut fleet = Fleet::new(policy, apps, nodes);

    let super::keep::Kept {
        previous,
        mut kept,
        not_kept,
    } = super::keep::keep(&mut fleet, current);
    let placed: BTreeMap<(usize, u32), ()> = kept
        .iter()
        .map(|p| ((fleet.app_ix[p.app.as_str()], p.replica), ()))
        .collect();

    for hold in held {
        let app = fleet.app_ix.get(hold.app.as_str()).copied();
        let node = fleet.node_ix.get(hold.node.as_str()).copied();
        if let (Some(app), Some(node)) = (app, node) {
            fleet.add(app, node);
        }
    }

    let mut order: Vec<usize> = (0..fleet.apps.len()).collect();
    let total_cap = fleet.cap.iter().fold([0u64; 3], |acc, c| {
        std::array::from_fn(|d| acc[d].saturating_add(c[d]))
    });
    let share = |app: usize| -> f64 {
        (0..3)
            .filter(|&d| total_cap[d] > 0)
            .map(|d| fleet.req[app][d] as f64 / total_cap[d] as f64)
            .fold(0.0, f64::max)
    };
    order.sort_by(|&a, &b| share(b).total_cmp(&share(a)).then(a.cmp(&b)));

    let mut new = Vec::new();
    let mut decisions = Vec::new();
    let mut buf = Vec::with_capacity(fleet.nodes.len());
    for app in order {
        let todo: Vec<u32> = (0..fleet.apps[app].replicas)
            .filter(|r| !placed.contains_key(&(app, *r)))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let candidates = fleet.statically_feasible(app, Mode::Place);
        let mut pending: Option<(String, Vec<Verdict>)> = None;
        for replica in todo {
            let prev = previous.get(&(app, replica)).copied();
            if let Some((reason, verdicts)) = &pending {
                decisions.push(Decision {
                    app: fleet.apps[app].name.clone(),
                    replica,
                    node: None,
                    reason: Some(reason.clone()),
                    verdicts: verdicts.clone(),
                });
                continue;
            }
            let job = Job {
                app,
                replica,
                prev,
                commit,
                explain,
            };
            let (decision, placement) = place_one(&mut fleet, &candidates, &job, &mut buf);
            match placement {
                Some(p) => new.push(p),
                None => {
                    pending = Some((
                        decision.reason.clone().unwrap_or_default(),
                        decision.verdicts.clone(),
                    ));
                }
            }
            decisions.push(decision);
        }
    }

    let by_name = |a: &str, r: u32| (fleet.app_ix[a], r);
    new.sort_by_key(|p| by_name(&p.app, p.replica));
    decisions.sort_by_key(|d| by_name(&d.app, d.replica));
    kept.extend(new);
    Schedule {
        placements: kept,
        decisions,
        not_kept: not_kept
            .into_iter()
            .map(|(p, why)| (p.clone(), why))
            .collect(),
    }
}

/// One replica to place.
struct Job<'c> {
    app: usize,
    replica: u32,
    prev: Option<&'c Placement>,
    commit: &'c str,
    explain: Explain,
}

/// A scored node: total, tie hash, node index. Better is a higher total,
/// then a lower hash.
type Ranked = (f64, u64, usize);

fn better(a: &Ranked, b: &Ranked) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

fn place_one(
    fleet: &mut Fleet<'_>,
    candidates: &[u32],
    job: &Job<'_>,
    buf: &mut Vec<u32>,
) -> (Decision, Option<Placement>) {
    let app = job.app;
    let (mut min, mut max) = (u32::MAX, 0);
    buf.clear();
    for &n in candidates {
        let n = n as usize;
        if fleet.dynamically_feasible(app, n) {
            let c = fleet.domain_count(app, n);
            min = min.min(c);
            max = max.max(c);
            buf.push(n as u32);
        }
    }
    let name = &fleet.apps[app].name;
    let prev_node = job
        .prev
        .and_then(|p| fleet.node_ix.get(p.node.as_str()).copied());
    let ctx = Context {
        spread_min: min,
        spread_max: max,
        previous: prev_node,
    };

    if buf.is_empty() {
        let refusals: Vec<_> = (0..fleet.nodes.len())
            .filter_map(|n| Some((n, fleet.refusal(app, n, Mode::Place)?)))
            .collect();
        let reason = pending_reason(
            fleet.nodes.len(),
            refusals.iter().map(|(_, r)| r.reason.as_str()),
        );
        let verdicts = match job.explain {
            Explain::Full => refusals
                .into_iter()
                .map(|(n, refusal)| Verdict {
                    node: fleet.nodes[n].name.clone(),
                    refused: Some(refusal),
                    scores: Vec::new(),
                    total: 0.0,
                })
                .collect(),
            Explain::Top(_) => Vec::new(),
        };
        let decision = Decision {
            app: name.clone(),
            replica: job.replica,
            node: None,
            reason: Some(reason),
            verdicts,
        };
        return (decision, None);
    }

    let seed = tie_seed(name, job.replica, job.commit);
    let keep = match job.explain {
        Explain::Top(k) => k,
        Explain::Full => 0,
    };
    let mut top: Vec<Ranked> = Vec::with_capacity(keep + 1);
    let mut best: Ranked = (f64::NEG_INFINITY, u64::MAX, usize::MAX);
    for &n in buf.iter() {
        let n = n as usize;
        let ranked = (fleet.total(app, n, &ctx), mix(seed ^ fleet.node_hash[n]), n);
        if best.2 == usize::MAX || better(&ranked, &best) {
            best = ranked;
        }
        if keep > 0 && (top.len() < keep || better(&ranked, &top[top.len() - 1])) {
            let at = top.partition_point(|t| better(t, &ranked));
            top.insert(at, ranked);
            top.truncate(keep);
        }
    }
    let chosen = best.2;

    let verdict = |n: usize| {
        let (scores, total) = fleet.breakdown(app, n, &ctx);
        Verdict {
            node: fleet.nodes[n].name.clone(),
            refused: None,
            scores,
            total,
        }
    };
    let verdicts = match job.explain {
        Explain::Top(_) => top.iter().map(|t| verdict(t.2)).collect(),
        Explain::Full => (0..fleet.nodes.len())
            .map(|n| match fleet.refusal(app, n, Mode::Place) {
                Some(refusal) => Verdict {
                    node: fleet.nodes[n].name.clone(),
                    refused: Some(refusal),
                    scores: Vec::new(),
                    total: 0.0,
                },
                None => verdict(n),
            })
            .collect(),
    };

    let node_name = &fleet.nodes[chosen].name;
    let id = match job.prev {
        Some(p) if prev_node == Some(chosen) => p.id.clone(),
        _ => placement_id(name, job.replica, node_name, job.commit),
    };
    let placement = Placement {
        app: name.clone(),
        replica: job.replica,
        node: node_name.clone(),
        id,
        spec_hash: fleet.apps[app].spec_hash.clone(),
    };
    let decision = Decision {
        app: name.clone(),
        replica: job.replica,
        node: Some(node_name.clone()),
        reason: None,
        verdicts,
    };
    fleet.add(app, chosen);
    (decision, Some(placement))
}

/// The per-replica part of the tie hash; each node's name hash is mixed
/// into it. NUL separates the fields (no name contains one).
fn tie_seed(app: &str, replica: u32, commit: &str) -> u64 {
    let h = fnv1a(FNV_OFFSET, app.as_bytes());
    let h = fnv1a(h, &[0]);
    let h = fnv1a(h, &replica.to_le_bytes());
    let h = fnv1a(h, &[0]);
    fnv1a(h, commit.as_bytes())
}

/// The first 8 hex digits of sha256(app, replica, node, commit), NUL
/// separated: new for every (replica, node, commit), so a replacement's
/// container never has its predecessor's name.
pub(super) fn placement_id(app: &str, replica: u32, node: &str, commit: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        app.as_bytes(),
        replica.to_string().as_bytes(),
        node.as_bytes(),
        commit.as_bytes(),
    ] {
        h.update(part);
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}
