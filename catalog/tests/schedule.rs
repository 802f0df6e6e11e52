//! The scheduler's invariants over random fleets and apps (proptest): what
//! it places always fits, honours every predicate and is reproducible;
//! rescheduling an unchanged fleet moves nothing; a lost node's replicas,
//! and only they, move; and the default policy spreads within one replica
//! of even when every zone has room. The checks are written here, apart
//! from the scheduler's own predicate code, so a shared mistake cannot
//! hide.

use std::collections::{BTreeMap, BTreeSet};

use drover_catalog::schedule::{
    AppDemand, Explain, Health, HostPort, NodeState, Placement, Policy, Predicate, Resources,
    Schedule, Selector, schedule,
};
use proptest::prelude::*;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const ZONES: [&str; 3] = ["a", "b", "c"];

fn arb_node(i: usize) -> impl Strategy<Value = NodeState> {
    (
        1u64..=8,
        1u64..=16,
        0usize..4,
        prop_oneof![4 => Just(None), 1 => Just(Some("dedicated=edge")), 1 => Just(Some("gpu"))],
        prop::bool::weighted(0.1),
        prop_oneof![8 => Just(Health::Ready), 1 => Just(Health::Failed), 1 => Just(Health::Lost)],
        any::<bool>(),
    )
        .prop_map(move |(cpus, gib, zone, taint, cordoned, health, ssd)| {
            let mut labels = BTreeMap::new();
            if let Some(z) = ZONES.get(zone) {
                labels.insert("zone".to_owned(), (*z).to_owned());
            }
            let mut roles = vec!["docker-host".to_owned()];
            if ssd {
                roles.push("ssd".to_owned());
            }
            NodeState {
                name: format!("n{i:02}"),
                roles,
                labels,
                taints: taint.map(str::to_owned).into_iter().collect(),
                facts: serde_json::json!({ "os": { "id": if ssd { "debian" } else { "ubuntu" } } })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                capacity: Resources {
                    millicpu: cpus * 1000,
                    memory: gib * GIB,
                    disk: 50 * GIB,
                },
                health,
                cordoned,
            }
        })
}

fn arb_app(i: usize) -> impl Strategy<Value = AppDemand> {
    (
        0u32..8,
        100u64..2000,
        128u64..4096,
        prop_oneof![
            3 => Just(vec![]),
            1 => Just(vec![(80, "tcp")]),
            1 => Just(vec![(8080, "tcp")]),
            1 => Just(vec![(53, "udp"), (53, "tcp")]),
        ],
        0usize..4,
        prop::option::of(Just("zone")),
        prop_oneof![
            Just(vec![]),
            Just(vec!["dedicated"]),
            Just(vec!["dedicated=edge", "gpu"])
        ],
    )
        .prop_map(
            move |(replicas, cpu, mem, ports, selector, spread, tolerations)| {
                let mut sel = Selector::default();
                match selector {
                    1 => sel.roles.push("ssd".to_owned()),
                    2 => {
                        sel.labels.insert("zone".to_owned(), "a".to_owned());
                    }
                    3 => sel.facts.push(("os.id".to_owned(), "debian".into())),
                    _ => {}
                }
                AppDemand {
                    name: format!("app{i}"),
                    replicas,
                    spec_hash: "v1".to_owned(),
                    requests: Resources {
                        millicpu: cpu,
                        memory: mem * MIB,
                        disk: GIB,
                    },
                    host_ports: ports
                        .into_iter()
                        .map(|(port, protocol)| HostPort {
                            port,
                            protocol: protocol.to_owned(),
                        })
                        .collect(),
                    selector: sel,
                    spread: spread.map(str::to_owned),
                    tolerations: tolerations.into_iter().map(str::to_owned).collect(),
                }
            },
        )
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeState>> {
    (1usize..16).prop_flat_map(|n| (0..n).map(arb_node).collect::<Vec<_>>())
}

fn arb_apps() -> impl Strategy<Value = Vec<AppDemand>> {
    (1usize..6).prop_flat_map(|n| (0..n).map(arb_app).collect::<Vec<_>>())
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    any::<bool>().prop_map(|distinct| {
        let mut p = Policy::default();
        if !distinct {
            p.predicates.retain(|p| *p != Predicate::DistinctHosts);
        }
        p
    })
}

/// Every predicate, checked from scratch; `fresh` holds the placements
/// made in this call (they may not be on cordoned or failed nodes).
fn check(
    s: &Schedule,
    apps: &[AppDemand],
    nodes: &[NodeState],
    policy: &Policy,
    fresh: &BTreeSet<(String, u32)>,
) {
    let app: BTreeMap<&str, &AppDemand> = apps.iter().map(|a| (a.name.as_str(), a)).collect();
    let node: BTreeMap<&str, &NodeState> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut used: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    let mut ports = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for p in &s.placements {
        let (a, n) = (app[p.app.as_str()], node[p.node.as_str()]);
        assert!(
            p.replica < a.replicas && seen.insert((&p.app, p.replica)),
            "{p:?} twice or too many"
        );
        let u = used.entry(&p.node).or_default();
        u[0] += a.requests.millicpu;
        u[1] += a.requests.memory;
        u[2] += a.requests.disk;
        for hp in &a.host_ports {
            assert!(
                ports.insert((&p.node, hp.port, &hp.protocol)),
                "{}: port {hp:?} twice",
                p.node
            );
        }
        let first_here = hosts.insert((&p.app, &p.node));
        if policy.predicates.contains(&Predicate::DistinctHosts) {
            assert!(first_here, "{}: two replicas of {}", p.node, p.app);
        }
        assert_ne!(n.health, Health::Lost, "{p:?} on a lost node");
        if fresh.contains(&(p.app.clone(), p.replica)) {
            assert!(
                n.health == Health::Ready && !n.cordoned,
                "{p:?} placed on {n:?}"
            );
        }
        let sel = &a.selector;
        assert!(
            sel.roles.iter().all(|r| n.roles.contains(r)),
            "{p:?}: roles"
        );
        assert!(
            sel.labels.iter().all(|(k, v)| n.labels.get(k) == Some(v)),
            "{p:?}: labels"
        );
        for (path, want) in &sel.facts {
            let (top, key) = path.split_once('.').unwrap();
            assert_eq!(n.facts[top][key].as_str(), want.as_str(), "{p:?}: facts");
        }
        for taint in &n.taints {
            let key = taint.split('=').next().unwrap();
            assert!(
                a.tolerations.iter().any(|t| t == taint || t == key),
                "{p:?}: taint {taint}"
            );
        }
    }
    for (name, u) in used {
        let c = node[name].capacity;
        assert!(
            u[0] <= c.millicpu && u[1] <= c.memory && u[2] <= c.disk,
            "{name} over capacity"
        );
    }
    // every replica is placed or has a pending decision
    let pending: BTreeSet<(&str, u32)> = s
        .decisions
        .iter()
        .filter(|d| d.node.is_none())
        .map(|d| (d.app.as_str(), d.replica))
        .collect();
    for a in apps {
        for r in 0..a.replicas {
            assert!(
                seen.contains(&(&a.name, r)) ^ pending.contains(&(a.name.as_str(), r)),
                "{}#{r}",
                a.name
            );
        }
    }
}

fn all(s: &Schedule) -> BTreeSet<(String, u32)> {
    s.placements
        .iter()
        .map(|p| (p.app.clone(), p.replica))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn placements_fit_and_honour_every_predicate(
        nodes in arb_nodes(), apps in arb_apps(), policy in arb_policy(), commit in "[a-f0-9]{8}",
    ) {
        let s = schedule(&policy, &apps, &nodes, &[], &commit, Explain::Top(2));
        check(&s, &apps, &nodes, &policy, &all(&s));
        // the same inputs give the same schedule, whatever is explained
        prop_assert_eq!(&schedule(&policy, &apps, &nodes, &[], &commit, Explain::Top(2)), &s);
        prop_assert_eq!(&schedule(&policy, &apps, &nodes, &[], &commit, Explain::Full).placements, &s.placements);
    }

    #[test]
    fn an_unchanged_fleet_reschedules_to_the_same_placements(
        nodes in arb_nodes(), apps in arb_apps(), policy in arb_policy(),
    ) {
        let first = schedule(&policy, &apps, &nodes, &[], "c1", Explain::Top(1));
        let again = schedule(&policy, &apps, &nodes, &first.placements, "c2", Explain::Top(1));
        let placed = |s: &Schedule| s.placements.iter().cloned().collect::<BTreeSet<Placement>>();
        prop_assert_eq!(placed(&again), placed(&first));
        // no churn: only the replicas that were pending are decided again
        let pending = first.decisions.iter().filter(|d| d.node.is_none()).count();
        prop_assert_eq!(again.decisions.len(), pending);
        prop_assert!(again.decisions.iter().all(|d| d.node.is_none()));
    }

    #[test]
    fn a_lost_nodes_replicas_move_and_no_others(
        nodes in arb_nodes(), apps in arb_apps(), policy in arb_policy(), pick in any::<prop::sample::Index>(),
    ) {
        let first = schedule(&policy, &apps, &nodes, &[], "c1", Explain::Top(1));
        prop_assume!(!first.placements.is_empty());
        let lost = pick.get(&first.placements).node.clone();
        let mut after = nodes.clone();
        after.iter_mut().find(|n| n.name == lost).unwrap().health = Health::Lost;
        let second = schedule(&policy, &apps, &after, &first.placements, "c2", Explain::Top(1));
        let before: BTreeMap<(&str, u32), &Placement> =
            first.placements.iter().map(|p| ((p.app.as_str(), p.replica), p)).collect();
        let mut fresh = BTreeSet::new();
        for p in &second.placements {
            prop_assert_ne!(&p.node, &lost);
            match before.get(&(p.app.as_str(), p.replica)) {
                Some(old) if old.node != lost => prop_assert_eq!(*old, p),
                Some(old) => {
                    prop_assert_ne!(&old.id, &p.id);
                    fresh.insert((p.app.clone(), p.replica));
                }
                None => {
                    fresh.insert((p.app.clone(), p.replica));
                }
            }
        }
        // every replica that was elsewhere is still there
        let kept = second.placements.len() - fresh.len();
        let elsewhere = first.placements.iter().filter(|p| p.node != lost).count();
        prop_assert_eq!(kept, elsewhere);
        check(&second, &apps, &after, &policy, &fresh);
    }

    #[test]
    fn the_default_policy_spreads_within_one_of_even_when_every_zone_has_room(
        per_zone in 2usize..6,
        shapes in prop::collection::vec((1u32..10, 100u64..1000, 128u64..1024, any::<bool>()), 1..6),
        commit in "[a-z]{4}",
    ) {
        // identical roomy nodes, the same number in each zone; replicas at
        // most the nodes of a zone times three, so distinct hosts leaves room
        let nodes: Vec<NodeState> = (0..per_zone * ZONES.len())
            .map(|i| NodeState {
                name: format!("n{i:02}"),
                roles: vec![],
                labels: [("zone".to_owned(), ZONES[i % ZONES.len()].to_owned())].into(),
                taints: vec![],
                facts: serde_json::Map::new(),
                capacity: Resources { millicpu: 64_000, memory: 256 * GIB, disk: 0 },
                health: Health::Ready,
                cordoned: false,
            })
            .collect();
        let apps: Vec<AppDemand> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(replicas, cpu, mem, by_zone))| AppDemand {
                name: format!("app{i}"),
                replicas: replicas.min(per_zone as u32 * 3),
                spec_hash: "v1".to_owned(),
                requests: Resources { millicpu: cpu, memory: mem * MIB, disk: 0 },
                host_ports: vec![],
                selector: Selector::default(),
                spread: by_zone.then(|| "zone".to_owned()),
                tolerations: vec![],
            })
            .collect();
        let s = schedule(&Policy::default(), &apps, &nodes, &[], &commit, Explain::Top(1));
        prop_assert!(s.decisions.iter().all(|d| d.node.is_some()), "all fit");
        let zone: BTreeMap<&str, &str> = nodes.iter().map(|n| (n.name.as_str(), n.labels["zone"].as_str())).collect();
        for a in &apps {
            let mut per: BTreeMap<&str, u32> = ZONES.iter().map(|z| (*z, 0)).collect();
            let mut per_node: BTreeMap<&str, u32> = nodes.iter().map(|n| (n.name.as_str(), 0)).collect();
            for p in s.placements.iter().filter(|p| p.app == a.name) {
                *per.get_mut(zone[p.node.as_str()]).unwrap() += 1;
                *per_node.get_mut(p.node.as_str()).unwrap() += 1;
            }
            let counts: Vec<u32> = if a.spread.is_some() { per.into_values().collect() } else { per_node.into_values().collect() };
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            prop_assert!(max - min <= 1, "{} spread {:?}", a.name, counts);
        }
    }
}
