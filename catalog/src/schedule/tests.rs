//! Unit tests of the scheduler: each predicate's refusal and reason, each
//! priority's score, the pending message, and what is kept, moved and
//! re-identified. The invariants over random fleets are property tests in
//! `catalog/tests/schedule.rs`.

use std::collections::BTreeMap;

use super::*;

const GIB: u64 = 1 << 30;

fn node(name: &str) -> NodeState {
    NodeState {
        name: name.into(),
        roles: vec!["docker-host".into()],
        labels: BTreeMap::new(),
        taints: vec![],
        facts: serde_json::Map::new(),
        capacity: Resources {
            millicpu: 4000,
            memory: 8 * GIB,
            disk: 100 * GIB,
        },
        health: Health::Ready,
        cordoned: false,
    }
}

fn app(name: &str, replicas: u32) -> AppDemand {
    AppDemand {
        name: name.into(),
        replicas,
        spec_hash: "spec1".into(),
        requests: Resources {
            millicpu: 500,
            memory: GIB,
            disk: 0,
        },
        host_ports: vec![],
        selector: Selector::default(),
        spread: None,
        tolerations: vec![],
    }
}

fn port(port: u16) -> HostPort {
    HostPort {
        port,
        protocol: "tcp".into(),
    }
}

fn run(
    policy: &Policy,
    apps: &[AppDemand],
    nodes: &[NodeState],
    current: &[Placement],
) -> Schedule {
    schedule(policy, apps, nodes, current, "c0ffee", Explain::Full)
}

/// The one refusal of `node` for the single replica of `apps[0]`.
fn refusal_on(
    policy: &Policy,
    apps: &[AppDemand],
    nodes: &[NodeState],
    node: &str,
) -> Option<Refusal> {
    let s = run(policy, apps, nodes, &[]);
    let d = s.decisions.iter().find(|d| d.app == apps[0].name).unwrap();
    d.verdicts
        .iter()
        .find(|v| v.node == node)
        .unwrap()
        .refused
        .clone()
}

fn reason(r: Option<Refusal>) -> Option<(Predicate, String)> {
    r.map(|r| (r.predicate, r.reason))
}

#[test]
fn ready_refuses_failed_and_lost_nodes() {
    let mut nodes = vec![node("ok"), node("failed"), node("lost")];
    nodes[1].health = Health::Failed;
    nodes[2].health = Health::Lost;
    let apps = [app("web", 1)];
    let p = Policy::default();
    assert_eq!(reason(refusal_on(&p, &apps, &nodes, "ok")), None);
    assert_eq!(
        reason(refusal_on(&p, &apps, &nodes, "failed")),
        Some((Predicate::Ready, "not ready".into()))
    );
    assert_eq!(
        reason(refusal_on(&p, &apps, &nodes, "lost")),
        Some((Predicate::Ready, "lost".into()))
    );
}

#[test]
fn schedulable_refuses_cordoned_nodes() {
    let mut nodes = vec![node("a")];
    nodes[0].cordoned = true;
    let r = refusal_on(&Policy::default(), &[app("web", 1)], &nodes, "a");
    assert_eq!(reason(r), Some((Predicate::Schedulable, "cordoned".into())));
}

#[test]
fn selector_needs_every_role_fact_and_label() {
    let mut good = node("good");
    good.labels.insert("tier".into(), "app".into());
    good.facts = serde_json::from_str(r#"{"os":{"id":"debian","version":12}}"#).unwrap();
    let mut no_role = good.clone();
    no_role.name = "no-role".into();
    no_role.roles.clear();
    let mut wrong_fact = good.clone();
    wrong_fact.name = "wrong-fact".into();
    wrong_fact.facts = serde_json::from_str(r#"{"os":{"id":"ubuntu","version":12}}"#).unwrap();
    let mut no_label = good.clone();
    no_label.name = "no-label".into();
    no_label.labels.clear();
    let mut a = app("web", 1);
    a.selector = Selector {
        roles: vec!["docker-host".into()],
        // "12" as a string matches the number 12, as in nodes.toml
        facts: vec![
            ("os.id".into(), "debian".into()),
            ("os.version".into(), "12".into()),
        ],
        labels: [("tier".to_owned(), "app".to_owned())].into(),
    };
    let nodes = [good, no_role, wrong_fact, no_label];
    let p = Policy::default();
    assert_eq!(refusal_on(&p, &[a.clone()], &nodes, "good"), None);
    for bad in ["no-role", "wrong-fact", "no-label"] {
        assert_eq!(
            reason(refusal_on(&p, &[a.clone()], &nodes, bad)),
            Some((
                Predicate::Selector,
                "didn't match the app's selector".into()
            )),
            "{bad}"
        );
    }
}

#[test]
fn tolerations_allow_a_taint_by_key_value_or_by_key() {
    let mut edge = node("edge");
    edge.taints = vec!["dedicated=edge".into(), "gpu".into()];
    let nodes = [edge];
    let p = Policy::default();
    let mut a = app("web", 1);
    assert_eq!(
        reason(refusal_on(&p, &[a.clone()], &nodes, "edge")),
        Some((
            Predicate::Tolerations,
            "had untolerated taint {dedicated=edge}".into()
        ))
    );
    a.tolerations = vec!["dedicated=edge".into()];
    assert_eq!(
        reason(refusal_on(&p, &[a.clone()], &nodes, "edge")),
        Some((Predicate::Tolerations, "had untolerated taint {gpu}".into()))
    );
    a.tolerations = vec!["dedicated".into(), "gpu".into()];
    assert_eq!(refusal_on(&p, &[a.clone()], &nodes, "edge"), None);
    a.tolerations = vec!["dedicated=core".into(), "gpu".into()];
    assert!(refusal_on(&p, &[a], &nodes, "edge").is_some());
}

#[test]
fn host_ports_resources_and_distinct_hosts_count_what_is_placed() {
    let nodes = [node("a")];
    let p = Policy::default();
    let mut lb = app("lb", 1);
    lb.host_ports = vec![
        port(8080),
        HostPort {
            port: 53,
            protocol: "udp".into(),
        },
    ];
    let mut other = app("other", 1);
    other.host_ports = vec![
        HostPort {
            port: 8080,
            protocol: "udp".into(),
        },
        port(8080),
    ];
    let s = run(&p, &[lb.clone(), other.clone()], &nodes, &[]);
    // `lb` is placed first (name order among equal sizes), so `other` finds 8080/tcp taken
    // and its 8080/udp free
    assert_eq!(
        s.decisions[1].reason.as_deref(),
        Some("0/1 nodes are available: 1 host port 8080 in use")
    );
    other.host_ports = vec![HostPort {
        port: 53,
        protocol: "udp".into(),
    }];
    let s = run(&p, &[lb, other], &nodes, &[]);
    assert_eq!(
        s.decisions[1].reason.as_deref(),
        Some("0/1 nodes are available: 1 host port 53/udp in use")
    );

    let mut big = app("big", 1);
    big.requests = Resources {
        millicpu: 3000,
        memory: 9 * GIB,
        disk: 200 * GIB,
    };
    let s = run(&p, &[big.clone()], &nodes, &[]);
    assert_eq!(
        s.decisions[0].reason.as_deref(),
        Some("0/1 nodes are available: 1 insufficient memory")
    );
    big.requests.millicpu = 5000;
    let s = run(&p, &[big.clone()], &nodes, &[]);
    assert_eq!(
        s.decisions[0].reason.as_deref(),
        Some("0/1 nodes are available: 1 insufficient cpu")
    );
    big.requests = Resources {
        millicpu: 1,
        memory: 1,
        disk: 101 * GIB,
    };
    let s = run(&p, &[big], &nodes, &[]);
    assert_eq!(
        s.decisions[0].reason.as_deref(),
        Some("0/1 nodes are available: 1 insufficient disk")
    );

    let s = run(&p, &[app("web", 2)], &nodes, &[]);
    assert_eq!(s.placements.len(), 1);
    assert_eq!(
        s.decisions[1].reason.as_deref(),
        Some("0/1 nodes are available: 1 already runs a replica of web")
    );
    // a predicate left out of the policy is not applied
    let mut p2 = Policy::default();
    p2.predicates.retain(|p| *p != Predicate::DistinctHosts);
    assert_eq!(run(&p2, &[app("web", 2)], &nodes, &[]).placements.len(), 2);
}

#[test]
fn the_pending_reason_counts_each_node_once_by_its_first_refusal() {
    let mut nodes: Vec<NodeState> = (0..12).map(|i| node(&format!("n{i:02}"))).collect();
    for n in &mut nodes[..3] {
        n.cordoned = true;
        n.capacity.memory = 0; // cordoned comes first in the policy
    }
    for n in &mut nodes[3..8] {
        n.capacity.memory = GIB / 2;
    }
    let mut web = app("web", 1);
    web.host_ports = vec![port(8080)];
    let mut squatter = app("squatter", 4);
    squatter.host_ports = vec![port(8080)];
    squatter.requests = Resources {
        millicpu: 10,
        memory: 1,
        disk: 0,
    };
    // the squatter holds port 8080 on the last four nodes
    let current: Vec<Placement> = (0..4)
        .map(|r| Placement {
            app: "squatter".into(),
            replica: r,
            node: format!("n{:02}", 8 + r),
            id: format!("id{r}"),
            spec_hash: "spec1".into(),
        })
        .collect();
    let s = run(&Policy::default(), &[web, squatter], &nodes, &current);
    assert_eq!(
        s.decisions.len(),
        1,
        "the squatter's replicas are kept: {:#?}",
        s.decisions
    );
    assert_eq!(
        s.decisions[0].reason.as_deref(),
        Some(
            "0/12 nodes are available: 5 insufficient memory, 4 host port 8080 in use, 3 cordoned"
        )
    );
    assert_eq!(s.decisions[0].node, None);
    assert_eq!(s.decisions[0].verdicts.len(), 12);
    assert!(s.decisions[0].verdicts.iter().all(|v| v.refused.is_some()));
    let empty = run(&Policy::default(), &[app("web", 1)], &[], &[]);
    assert_eq!(
        empty.decisions[0].reason.as_deref(),
        Some("0/0 nodes are available: the fleet has no nodes")
    );
}

fn scores(s: &Schedule, replica: u32, node: &str) -> Vec<(Priority, f64)> {
    let d = s.decisions.iter().find(|d| d.replica == replica).unwrap();
    d.verdicts
        .iter()
        .find(|v| v.node == node)
        .unwrap()
        .scores
        .clone()
}

#[test]
fn allocation_priorities_score_the_node_after_placing() {
    let mut half = node("half");
    half.capacity = Resources {
        millicpu: 1000,
        memory: 4 * GIB,
        disk: 0,
    };
    let policy = Policy {
        priorities: vec![
            (Priority::LeastAllocated, 1),
            (Priority::MostAllocated, 2),
            (Priority::BalancedAllocation, 3),
        ],
        ..Policy::default()
    };
    // 500/1000 cpu, 1/4 memory used after placing; no disk capacity: left out
    let s = run(&policy, &[app("web", 1)], &[half], &[]);
    let got = scores(&s, 0, "half");
    assert_eq!(
        got,
        [
            (Priority::LeastAllocated, (0.5 + 0.75) / 2.0),
            (Priority::MostAllocated, 2.0 * (0.5 + 0.25) / 2.0),
            (Priority::BalancedAllocation, 3.0 * (1.0 - 0.25)),
        ]
    );
    let v = &s.decisions[0].verdicts[0];
    assert_eq!(v.total, got.iter().map(|s| s.1).sum::<f64>());
}

#[test]
fn spread_scores_domains_between_the_fewest_and_the_most() {
    let mut nodes = Vec::new();
    for (name, zone) in [
        ("a1", "a"),
        ("a2", "a"),
        ("b1", "b"),
        ("c1", "c"),
        ("x", ""),
    ] {
        let mut n = node(name);
        if !zone.is_empty() {
            n.labels.insert("zone".into(), zone.into());
        }
        nodes.push(n);
    }
    let mut web = app("web", 4);
    web.spread = Some("zone".into());
    let mut policy = Policy {
        priorities: vec![(Priority::Spread, 1)],
        ..Policy::default()
    };
    policy.predicates.retain(|p| *p != Predicate::DistinctHosts);
    let on = |r: u32, node: &str| Placement {
        app: "web".into(),
        replica: r,
        node: node.into(),
        id: format!("i{r}"),
        spec_hash: "spec1".into(),
    };
    // zone a holds 2, b 1, c 0, the unlabelled node ("") 0: replica 3 is placed
    let current = [on(0, "a1"), on(1, "a2"), on(2, "b1")];
    let s = run(&policy, &[web.clone()], &nodes, &current);
    assert_eq!(scores(&s, 3, "a1"), [(Priority::Spread, 0.0)]);
    assert_eq!(scores(&s, 3, "b1"), [(Priority::Spread, 0.5)]);
    assert_eq!(scores(&s, 3, "c1"), [(Priority::Spread, 1.0)]);
    assert_eq!(scores(&s, 3, "x"), [(Priority::Spread, 1.0)]);
    // with distinct hosts, a1, a2 and b1 are refused and their zones are
    // not among the domains of feasible nodes: c and "" are even
    policy.predicates.push(Predicate::DistinctHosts);
    let s = run(&policy, &[web], &nodes, &current);
    assert_eq!(scores(&s, 3, "c1"), [(Priority::Spread, 1.0)]);
    assert!(
        s.decisions[0]
            .verdicts
            .iter()
            .any(|v| v.node == "b1" && v.refused.is_some())
    );
}

#[test]
fn kept_replicas_stay_and_the_rest_move_with_new_ids() {
    let nodes = [node("n1"), node("n2"), node("n3")];
    let apps = [app("web", 3)];
    let p = Policy::default();
    let first = run(&p, &apps, &nodes, &[]);
    assert_eq!(first.placements.len(), 3);
    assert_eq!(first.decisions.len(), 3);
    for pl in &first.placements {
        assert_eq!(
            pl.id,
            place::placement_id("web", pl.replica, &pl.node, "c0ffee")
        );
        assert_eq!(pl.id.len(), 8);
    }
    // nothing changed: no decision, same placements
    let again = schedule(
        &p,
        &apps,
        &nodes,
        &first.placements,
        "other-commit",
        Explain::Top(3),
    );
    assert_eq!(again.placements, first.placements);
    assert!(again.decisions.is_empty());

    // the node of replica 1 is lost: only replica 1 moves, to a new id
    let lost = first.placements[1].node.clone();
    let mut nodes2 = nodes.clone();
    nodes2.iter_mut().find(|n| n.name == lost).unwrap().health = Health::Lost;
    let mut four = apps.clone();
    four[0].replicas = 2; // and scale down to 2: replica 2 is dropped
    let moved = run(&p, &four, &nodes2, &first.placements);
    assert_eq!(moved.placements.len(), 2);
    assert_eq!(moved.placements[0], first.placements[0]);
    assert_ne!(moved.placements[1].node, lost);
    assert_ne!(moved.placements[1].id, first.placements[1].id);
    assert_eq!(moved.decisions.len(), 1);

    // cordoned and failed nodes keep what runs on them
    let mut nodes3 = nodes.clone();
    nodes3[0].cordoned = true;
    nodes3[1].health = Health::Failed;
    assert!(
        run(&p, &apps, &nodes3, &first.placements)
            .decisions
            .is_empty()
    );
}

#[test]
fn a_new_spec_stays_on_its_node_with_its_id() {
    let nodes = [node("n1"), node("n2")];
    let p = Policy::default();
    let first = run(&p, &[app("web", 1)], &nodes, &[]);
    let mut v2 = app("web", 1);
    v2.spec_hash = "spec2".into();
    let second = run(&p, &[v2], &nodes, &first.placements);
    assert_eq!(second.decisions.len(), 1);
    assert_eq!(second.placements[0].node, first.placements[0].node);
    assert_eq!(second.placements[0].id, first.placements[0].id);
    assert_eq!(second.placements[0].spec_hash, "spec2");
    let stay = scores(&second, 0, &first.placements[0].node);
    assert!(stay.contains(&(Priority::Stay, 4.0)), "{stay:?}");
}

#[test]
fn a_held_container_takes_its_room_and_ports_but_stands_for_no_replica() {
    let nodes = [node("n1"), node("n2")];
    let p = Policy::default();
    let mut web = app("web", 1);
    web.host_ports = vec![port(8080)];
    let old = Placement {
        app: "web".into(),
        replica: 0,
        node: "n1".into(),
        id: "old".into(),
        spec_hash: "spec0".into(),
    };
    let s = schedule_holding(
        &p,
        &[web],
        &nodes,
        &[],
        std::slice::from_ref(&old),
        "c0ffee",
        Explain::Full,
    );
    // replica 0 is placed anew, beside (not on) the node its old one holds
    assert_eq!(s.placements.len(), 1);
    assert_eq!((s.placements[0].replica, &*s.placements[0].node), (0, "n2"));
    let n1 = s.decisions[0].verdicts.iter().find(|v| v.node == "n1");
    assert!(n1.unwrap().refused.is_some(), "{:?}", s.decisions[0]);
    // with nowhere else to go it is pending, not doubled on n1
    let s = schedule_holding(
        &p,
        &[app("web", 1)],
        &nodes[..1],
        &[],
        &[old],
        "c0ffee",
        Explain::Full,
    );
    assert!(s.placements.is_empty());
    assert_eq!(
        s.decisions[0].reason.as_deref(),
        Some("0/1 nodes are available: 1 already runs a replica of web")
    );
}

#[test]
fn kept_replicas_that_no_longer_fit_together_move_the_higher_index() {
    let mut small = node("small");
    small.capacity.memory = 2 * GIB;
    let nodes = [small, node("big")];
    let mut p = Policy::default();
    p.predicates.retain(|p| *p != Predicate::DistinctHosts);
    let on = |r: u32| Placement {
        app: "web".into(),
        replica: r,
        node: "small".into(),
        id: format!("i{r}"),
        spec_hash: "spec1".into(),
    };
    let s = run(&p, &[app("web", 3)], &nodes, &[on(2), on(0), on(1)]);
    assert_eq!(s.placements[..2], [on(0), on(1)]);
    assert_eq!(s.placements[2].node, "big");
}

#[test]
fn top_keeps_the_best_verdicts_chosen_first_and_ties_follow_the_commit() {
    let nodes: Vec<NodeState> = (0..20).map(|i| node(&format!("n{i}"))).collect();
    let apps = [app("web", 1)];
    let p = Policy::default();
    let top = schedule(&p, &apps, &nodes, &[], "c1", Explain::Top(3));
    let d = &top.decisions[0];
    assert_eq!(d.verdicts.len(), 3);
    assert_eq!(Some(&d.verdicts[0].node), d.node.as_ref());
    assert!(d.verdicts.windows(2).all(|w| w[0].total >= w[1].total));
    // every node ties: the hash of the commit picks, and picks the same again
    let picks: std::collections::BTreeSet<String> = (0..8)
        .map(|c| {
            schedule(&p, &apps, &nodes, &[], &format!("c{c}"), Explain::Top(1)).placements[0]
                .node
                .clone()
        })
        .collect();
    assert!(picks.len() > 1, "ties all went to {picks:?}");
    assert_eq!(schedule(&p, &apps, &nodes, &[], "c1", Explain::Top(3)), top);
    let full = schedule(&p, &apps, &nodes, &[], "c1", Explain::Full);
    assert_eq!(full.placements, top.placements);
    assert_eq!(full.decisions[0].verdicts.len(), 20);
}
