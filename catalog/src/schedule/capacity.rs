//! What nodes can hold and what is asked of them: a node's capacity from
//! its facts, the requests placed per node, and how few nodes the placed
//! replicas could fit on (the packing view of the API and dashboard).
//!
//! The capacity is read from the facts the agent reports, so it follows a
//! node's real size without anyone declaring it: `processors.count`,
//! `memory.total_bytes` and `disks.containers.available_bytes` (the free
//! space of the filesystem holding container storage, as the agent
//! measures it). A missing or unreadable fact gives that dimension 0: no
//! replica requesting it fits there, which is safer than guessing.

use std::collections::BTreeMap;

use super::{AppDemand, NodeState, Placement, Resources};
use crate::classify::fact_at;
use crate::values::cpus_to_milli;

/// The node's capacity: its facts less `reserved` (never below 0).
pub fn capacity_from_facts(
    facts: &serde_json::Map<String, serde_json::Value>,
    reserved: &Resources,
) -> Resources {
    let number = |path: &str| -> Option<f64> {
        match fact_at(facts, path)? {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
    };
    let millicpu = number("processors.count")
        .and_then(cpus_to_milli)
        .unwrap_or(0);
    let bytes = |path: &str| number(path).map_or(0, |v| v as u64);
    Resources {
        millicpu: millicpu.saturating_sub(reserved.millicpu),
        memory: bytes("memory.total_bytes").saturating_sub(reserved.memory),
        disk: bytes("disks.containers.available_bytes").saturating_sub(reserved.disk),
    }
}

/// What the placements request, per node name. Placements of apps not in
/// `apps` request nothing (their app is gone).
pub fn usage(placements: &[Placement], apps: &[AppDemand]) -> BTreeMap<String, Resources> {
    let requests: BTreeMap<&str, &Resources> = apps
        .iter()
        .map(|a| (a.name.as_str(), &a.requests))
        .collect();
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for p in placements {
        let Some(r) = requests.get(p.app.as_str()) else {
            continue;
        };
        let used = out.entry(p.node.clone()).or_default();
        used.millicpu = used.millicpu.saturating_add(r.millicpu);
        used.memory = used.memory.saturating_add(r.memory);
        used.disk = used.disk.saturating_add(r.disk);
    }
    out
}

/// A lower bound on the nodes the placed replicas need, packed as tightly
/// as can be: per dimension, the fewest of the largest nodes whose
/// capacities add up to the total requested; the most over the
/// dimensions. It is a bound, not a packing: replicas do not split across
/// nodes, and ports, selectors and distinct hosts are ignored, so the true
/// minimum can be higher; no packing can use fewer nodes. When even the
/// whole fleet falls short, every node is counted.
pub fn packing_lower_bound(
    nodes: &[NodeState],
    placements: &[Placement],
    apps: &[AppDemand],
) -> usize {
    let mut total = Resources::default();
    for used in usage(placements, apps).values() {
        total.millicpu = total.millicpu.saturating_add(used.millicpu);
        total.memory = total.memory.saturating_add(used.memory);
        total.disk = total.disk.saturating_add(used.disk);
    }
    let pick: [fn(&Resources) -> u64; 3] = [|r| r.millicpu, |r| r.memory, |r| r.disk];
    pick.iter()
        .map(|dim| {
            let need = dim(&total);
            let mut caps: Vec<u64> = nodes.iter().map(|n| dim(&n.capacity)).collect();
            caps.sort_unstable_by(|a, b| b.cmp(a));
            let mut sum = 0u64;
            caps.iter()
                .position(|&c| {
                    sum = sum.saturating_add(c);
                    sum >= need
                })
                .map_or(nodes.len(), |i| if need == 0 { 0 } else { i + 1 })
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::{Health, Selector};
    use super::*;

    fn node(name: &str, cpu: u64, memory: u64) -> NodeState {
        NodeState {
            name: name.into(),
            roles: vec![],
            labels: BTreeMap::new(),
            taints: vec![],
            facts: serde_json::Map::new(),
            capacity: Resources {
                millicpu: cpu,
                memory,
                disk: 0,
            },
            health: Health::Ready,
            cordoned: false,
        }
    }

    fn app(name: &str, cpu: u64, memory: u64) -> AppDemand {
        AppDemand {
            name: name.into(),
            replicas: 1,
            spec_hash: "h".into(),
            requests: Resources {
                millicpu: cpu,
                memory,
                disk: 0,
            },
            host_ports: vec![],
            selector: Selector::default(),
            spread: None,
            tolerations: vec![],
        }
    }

    fn on(app: &str, replica: u32, node: &str) -> Placement {
        Placement {
            app: app.into(),
            replica,
            node: node.into(),
            id: "x".into(),
            spec_hash: "h".into(),
        }
    }

    #[test]
    fn capacity_is_the_facts_less_reserved_and_missing_facts_give_zero() {
        let facts: serde_json::Map<_, _> = serde_json::from_str(
            r#"{"processors":{"count":4},"memory":{"total_bytes":8589934592},
                "disks":{"containers":{"available_bytes":"107374182400"}}}"#,
        )
        .unwrap();
        let reserved = Resources {
            millicpu: 500,
            memory: 512 << 20,
            disk: 0,
        };
        assert_eq!(
            capacity_from_facts(&facts, &reserved),
            Resources {
                millicpu: 3500,
                memory: (8 << 30) - (512 << 20),
                disk: 100 << 30
            }
        );
        let partial: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"processors":{"count":0.25}}"#).unwrap();
        assert_eq!(
            capacity_from_facts(&partial, &reserved),
            Resources::default()
        );
    }

    #[test]
    fn usage_adds_requests_per_node_and_ignores_removed_apps() {
        let apps = [app("web", 500, 100), app("db", 1000, 400)];
        let placements = [
            on("web", 0, "n1"),
            on("web", 1, "n2"),
            on("db", 0, "n1"),
            on("gone", 0, "n3"),
        ];
        let used = usage(&placements, &apps);
        assert_eq!(used.len(), 2);
        assert_eq!(
            used["n1"],
            Resources {
                millicpu: 1500,
                memory: 500,
                disk: 0
            }
        );
        assert_eq!(
            used["n2"],
            Resources {
                millicpu: 500,
                memory: 100,
                disk: 0
            }
        );
    }

    #[test]
    fn the_lower_bound_takes_the_largest_nodes_in_the_tightest_dimension() {
        let nodes = [
            node("big", 8000, 1000),
            node("a", 2000, 1000),
            node("b", 2000, 1000),
            node("c", 2000, 1000),
        ];
        let apps = [app("web", 1000, 500)];
        // 5 replicas: 5000 millicpu fit on `big` alone, 2500 bytes need 3 nodes
        let placements: Vec<_> = (0..5).map(|r| on("web", r, "a")).collect();
        assert_eq!(packing_lower_bound(&nodes, &placements, &apps), 3);
        assert_eq!(packing_lower_bound(&nodes, &[], &apps), 0);
        // more than the whole fleet holds: every node
        let placements: Vec<_> = (0..9).map(|r| on("web", r, "a")).collect();
        assert_eq!(packing_lower_bound(&nodes, &placements, &apps), 4);
    }
}
