//! The scheduler's benchmark (`scripts/bench scheduler` runs it):
//! `cargo run --release -p drover-catalog --example schedule_bench --
//! --nodes 5000 --apps 200 --replicas 20000`.
//!
//! It builds a fleet and a set of apps from a fixed seed (zones, a tier of
//! tainted edge nodes, a few cordoned and lost nodes; apps with mixed
//! requests, host ports, selectors on roles, labels and facts, spread by
//! zone or by node), times one `schedule` call from nothing with
//! `Explain::Top(3)`, then checks the result with its own code (not the
//! scheduler's predicates): capacity, host ports, selectors, taints,
//! health, distinct hosts, the spread skew, and the nodes used against
//! `packing_lower_bound`. It does so for the default policy and for a
//! bin-packing one (`most_allocated`), then times a second call with the
//! first's placements as current and 1% of the nodes lost. One JSON line
//! per policy, then a human summary.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use drover_catalog::schedule::{
    AppDemand, Explain, Health, HostPort, NodeState, Policy, Predicate, Priority, Resources,
    Schedule, Selector, packing_lower_bound, schedule,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const ZONES: [&str; 5] = ["z1", "z2", "z3", "z4", "z5"];
const PORTS: [u16; 6] = [80, 443, 8080, 9000, 9100, 5432];

/// xorshift64*: a fixed sequence for a fixed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Args {
    nodes: usize,
    apps: usize,
    replicas: usize,
    seed: u64,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 5000,
        apps: 200,
        replicas: 20000,
        seed: 42,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        let Some(value) = value else {
            eprintln!("usage: schedule_bench [--nodes N] [--apps N] [--replicas N] [--seed N]");
            std::process::exit(64);
        };
        match flag.as_str() {
            "--nodes" => a.nodes = value as usize,
            "--apps" => a.apps = value as usize,
            "--replicas" => a.replicas = value as usize,
            "--seed" => a.seed = value,
            _ => {
                eprintln!("schedule_bench: unknown flag {flag}");
                std::process::exit(64);
            }
        }
    }
    a
}

fn fleet(rng: &mut Rng, count: usize) -> Vec<NodeState> {
    (0..count)
        .map(|i| {
            let edge = rng.chance(10);
            let mut labels = BTreeMap::new();
            labels.insert("zone".to_owned(), ZONES[i % ZONES.len()].to_owned());
            labels.insert(
                "tier".to_owned(),
                if edge { "edge" } else { "app" }.to_owned(),
            );
            let mut roles = vec!["docker-host".to_owned()];
            if rng.chance(30) {
                roles.push("ssd".to_owned());
            }
            let os = if rng.chance(95) { "debian" } else { "ubuntu" };
            let facts = serde_json::json!({ "os": { "id": os } });
            let health = match rng.below(100) {
                0 => Health::Lost,
                1 => Health::Failed,
                _ => Health::Ready,
            };
            NodeState {
                name: format!("node-{i:05}"),
                roles,
                labels,
                taints: if edge {
                    vec!["dedicated=edge".to_owned()]
                } else {
                    vec![]
                },
                facts: facts.as_object().cloned().unwrap_or_default(),
                capacity: Resources {
                    millicpu: 16_000,
                    memory: 64 * GIB,
                    disk: 500 * GIB,
                },
                health,
                cordoned: rng.chance(1),
            }
        })
        .collect()
}

fn apps(rng: &mut Rng, count: usize, replicas: usize) -> Vec<AppDemand> {
    (0..count)
        .map(|i| {
            // mixed shapes: cpu-heavy, memory-heavy and small services
            let (cpu, mem) = match rng.below(3) {
                0 => (500 + rng.below(3500), 256 + rng.below(4096)),
                1 => (100 + rng.below(900), 2048 + rng.below(12288)),
                _ => (100 + rng.below(1000), 128 + rng.below(2048)),
            };
            let mut selector = Selector::default();
            let mut tolerations = vec![];
            match rng.below(10) {
                0 => {
                    selector.labels.insert("tier".to_owned(), "edge".to_owned());
                    tolerations.push("dedicated".to_owned());
                }
                1 => selector.roles.push("ssd".to_owned()),
                2 => selector.facts.push(("os.id".to_owned(), "debian".into())),
                _ => {}
            }
            let host_ports = if rng.chance(15) {
                let port = PORTS[rng.below(PORTS.len() as u64) as usize];
                vec![HostPort {
                    port,
                    protocol: "tcp".to_owned(),
                }]
            } else {
                vec![]
            };
            // the replicas split evenly, the first apps taking the remainder
            let share = replicas / count + usize::from(i < replicas % count);
            AppDemand {
                name: format!("app-{i:03}"),
                replicas: share as u32,
                spec_hash: format!("spec-{i}"),
                requests: Resources {
                    millicpu: cpu,
                    memory: mem * MIB,
                    disk: rng.below(10) * GIB,
                },
                host_ports,
                selector,
                spread: rng.chance(50).then(|| "zone".to_owned()),
                tolerations,
            }
        })
        .collect()
}

/// Every constraint of the result, checked without the scheduler's code.
fn violations(
    s: &Schedule,
    apps: &[AppDemand],
    nodes: &[NodeState],
    policy: &Policy,
) -> Vec<String> {
    let app: BTreeMap<&str, &AppDemand> = apps.iter().map(|a| (a.name.as_str(), a)).collect();
    let node: BTreeMap<&str, &NodeState> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut bad = Vec::new();
    let mut used: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    let mut ports: BTreeSet<(&str, u16, &str)> = BTreeSet::new();
    let mut hosts: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut replicas: BTreeSet<(&str, u32)> = BTreeSet::new();
    for p in &s.placements {
        let (a, n) = (app[p.app.as_str()], node[p.node.as_str()]);
        if !replicas.insert((&p.app, p.replica)) || p.replica >= a.replicas {
            bad.push(format!(
                "{}#{} placed twice or beyond its replicas",
                p.app, p.replica
            ));
        }
        let u = used.entry(&p.node).or_default();
        u[0] += a.requests.millicpu;
        u[1] += a.requests.memory;
        u[2] += a.requests.disk;
        for hp in &a.host_ports {
            if !ports.insert((&p.node, hp.port, &hp.protocol)) {
                bad.push(format!("{}: host port {} twice", p.node, hp.port));
            }
        }
        if !hosts.insert((&p.app, &p.node)) && policy.predicates.contains(&Predicate::DistinctHosts)
        {
            bad.push(format!("{}: two replicas of {}", p.node, p.app));
        }
        if n.health != Health::Ready || n.cordoned {
            bad.push(format!(
                "{} placed on {} ({:?}, cordoned {})",
                p.app, p.node, n.health, n.cordoned
            ));
        }
        let sel = &a.selector;
        let facts_ok = sel.facts.iter().all(|(path, want)| {
            let (top, key) = path.split_once('.').unwrap_or((path, ""));
            n.facts
                .get(top)
                .and_then(|v| v.get(key))
                .and_then(|v| v.as_str())
                == want.as_str()
        });
        if !sel.roles.iter().all(|r| n.roles.contains(r))
            || !sel.labels.iter().all(|(k, v)| n.labels.get(k) == Some(v))
            || !facts_ok
        {
            bad.push(format!("{} on {}: selector not matched", p.app, p.node));
        }
        for taint in &n.taints {
            let key = taint.split('=').next().unwrap_or_default();
            if !a.tolerations.iter().any(|t| t == taint || t == key) {
                bad.push(format!(
                    "{} on {}: taint {taint} not tolerated",
                    p.app, p.node
                ));
            }
        }
    }
    for (name, u) in &used {
        let c = node[name].capacity;
        if u[0] > c.millicpu || u[1] > c.memory || u[2] > c.disk {
            bad.push(format!("{name} over capacity"));
        }
    }
    bad
}

/// The largest (max - min) replicas per zone over the apps spread by zone,
/// counting only the zones where the app has nodes it may use.
fn spread_skew(s: &Schedule, apps: &[AppDemand], nodes: &[NodeState]) -> u32 {
    let zone_of: BTreeMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.labels["zone"].as_str()))
        .collect();
    let mut per: BTreeMap<&str, BTreeMap<&str, u32>> = BTreeMap::new();
    for p in &s.placements {
        *per.entry(&p.app)
            .or_default()
            .entry(zone_of[p.node.as_str()])
            .or_default() += 1;
    }
    apps.iter()
        .filter(|a| a.spread.is_some())
        .map(|a| {
            let counts = per.get(a.name.as_str());
            let zones = ZONES.map(|z| counts.and_then(|c| c.get(z)).copied().unwrap_or(0));
            zones.iter().max().unwrap_or(&0) - zones.iter().min().unwrap_or(&0)
        })
        .max()
        .unwrap_or(0)
}

fn run(label: &str, policy: &Policy, apps: &[AppDemand], nodes: &[NodeState]) -> String {
    let start = Instant::now();
    let s = schedule(policy, apps, nodes, &[], "bench-commit", Explain::Top(3));
    let secs = start.elapsed().as_secs_f64();
    let placed = s.placements.len();
    let pending = s.decisions.iter().filter(|d| d.node.is_none()).count();
    let bad = violations(&s, apps, nodes, policy);
    let skew = spread_skew(&s, apps, nodes);
    let used: BTreeSet<&str> = s.placements.iter().map(|p| p.node.as_str()).collect();
    let usable: Vec<NodeState> = nodes
        .iter()
        .filter(|n| n.health == Health::Ready && !n.cordoned)
        .cloned()
        .collect();
    let bound = packing_lower_bound(&usable, &s.placements, apps);

    // the control loop's next pass: 1% of the nodes lost
    let mut after = nodes.to_vec();
    for n in after.iter_mut().step_by(100) {
        n.health = Health::Lost;
    }
    let start = Instant::now();
    let again = schedule(
        policy,
        apps,
        &after,
        &s.placements,
        "bench-commit-2",
        Explain::Top(3),
    );
    let resched = start.elapsed().as_secs_f64();
    let moved = again.decisions.iter().filter(|d| d.node.is_some()).count();

    let rate = placed as f64 / secs;
    println!(
        "{}",
        serde_json::json!({
            "policy": label, "nodes": nodes.len(), "apps": apps.len(),
            "replicas": apps.iter().map(|a| a.replicas as usize).sum::<usize>(),
            "placed": placed, "pending": pending, "secs": secs, "placements_per_sec": rate,
            "violations": bad.len(), "max_spread_skew": skew, "nodes_used": used.len(),
            "lower_bound": bound, "usable_nodes": usable.len(), "used_over_bound": used.len() as f64 / bound.max(1) as f64,
            "reschedule_lost_1pct_secs": resched, "reschedule_moved": moved,
            "reschedule_violations": violations(&again, apps, &after, policy).len(),
        })
    );
    for b in bad.iter().take(5) {
        eprintln!("violation: {b}");
    }
    format!(
        "{label}: {placed} placed, {pending} pending in {:.2} s ({rate:.0} placements/s); {} violations; \
         spread skew at most {skew}; {} of {} usable nodes used, lower bound {bound} ({:+.1}%); 1% of nodes lost: \
         {moved} replicas moved in {:.3} s",
        secs,
        bad.len(),
        used.len(),
        usable.len(),
        (used.len() as f64 / bound.max(1) as f64 - 1.0) * 100.0,
        resched,
    )
}

fn main() {
    let a = args();
    let mut rng = Rng(a.seed.max(1));
    let nodes = fleet(&mut rng, a.nodes);
    let apps = apps(&mut rng, a.apps, a.replicas);
    let default = Policy::default();
    let packing = Policy {
        priorities: vec![(Priority::MostAllocated, 1), (Priority::Stay, 4)],
        ..Policy::default()
    };
    let lines = [
        run("default", &default, &apps, &nodes),
        run("most_allocated", &packing, &apps, &nodes),
    ];
    println!();
    for line in lines {
        println!("{line}");
    }
}
