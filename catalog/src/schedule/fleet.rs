//! The scheduler's working state: the fleet indexed once per call, and what
//! is placed on it so far, kept incrementally so that checking a node for a
//! replica costs a few array reads and no allocation. Nodes and apps are
//! numbered (apps by name, nodes in the order given), requests and
//! capacities are `[cpu, memory, disk]` arrays, host ports are integers
//! (port and an interned protocol), and each app keeps its replica count
//! per node and per value of its spread label.
//!
//! Nothing here iterates a hash map: every order that reaches a result is
//! the order of a `Vec` or a `BTreeMap`, so a schedule is a function of its
//! inputs alone.

use std::collections::BTreeMap;

use super::{AppDemand, NodeState, Policy, Predicate, Resources};

/// `[cpu, memory, disk]`.
pub(super) type Dims = [u64; 3];

pub(super) const DIM_NAMES: [&str; 3] = ["cpu", "memory", "disk"];

pub(super) fn dims(r: &Resources) -> Dims {
    [r.millicpu, r.memory, r.disk]
}

/// A node label whose values some app spreads across.
pub(super) struct Domains {
    /// Per node: the index of its value (nodes without the label share the
    /// value `""`).
    pub of_node: Vec<u32>,
    pub count: usize,
}

pub(super) struct Fleet<'a> {
    pub policy: &'a Policy,
    /// Sorted by name; of two apps with one name, the first given.
    pub apps: Vec<&'a AppDemand>,
    pub app_ix: BTreeMap<&'a str, usize>,
    /// In the order given; of two nodes with one name, the first.
    pub nodes: Vec<&'a NodeState>,
    pub node_ix: BTreeMap<&'a str, usize>,
    pub cap: Vec<Dims>,
    /// Per node, 1/capacity per dimension (0 where the capacity is 0).
    pub inv_cap: Vec<[f64; 3]>,
    pub used: Vec<Dims>,
    /// Per node, the host ports in use, sorted.
    pub ports: Vec<Vec<u64>>,
    /// Per app, its host ports as keys of `ports`, sorted.
    pub app_ports: Vec<Vec<u64>>,
    /// Per app, the key of each of its `host_ports`, in their order.
    pub app_port_list: Vec<Vec<u64>>,
    pub req: Vec<Dims>,
    /// Per app, its replicas per node.
    pub on_node: Vec<Vec<u32>>,
    /// Per app, the index into `domains` of its spread label (`None`:
    /// spread across nodes, counted by `on_node`).
    pub spread_by: Vec<Option<usize>>,
    pub domains: Vec<Domains>,
    /// Per app, its replicas per value of its spread label.
    pub in_domain: Vec<Vec<u32>>,
    /// Per node, a hash of its name (the tie-break mixes it in).
    pub node_hash: Vec<u64>,
    /// Which dynamic predicates the policy applies.
    pub check_ports: bool,
    pub check_resources: bool,
    pub check_distinct: bool,
}

impl<'a> Fleet<'a> {
    pub(super) fn new(
        policy: &'a Policy,
        apps: &'a [AppDemand],
        nodes: &'a [NodeState],
    ) -> Fleet<'a> {
        let mut app_ix = BTreeMap::new();
        for app in apps {
            app_ix.entry(app.name.as_str()).or_insert(app);
        }
        let apps: Vec<&AppDemand> = app_ix.values().copied().collect();
        let app_ix = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        let mut node_ix = BTreeMap::new();
        let mut unique = Vec::with_capacity(nodes.len());
        for node in nodes {
            if !node_ix.contains_key(node.name.as_str()) {
                node_ix.insert(node.name.as_str(), unique.len());
                unique.push(node);
            }
        }
        let nodes = unique;

        let mut protocols: BTreeMap<&str, u64> = BTreeMap::new();
        let app_port_list: Vec<Vec<u64>> = apps
            .iter()
            .map(|app| {
                app.host_ports
                    .iter()
                    .map(|hp| {
                        let next = protocols.len() as u64;
                        let proto = *protocols.entry(hp.protocol.as_str()).or_insert(next);
                        port_key(hp.port, proto)
                    })
                    .collect()
            })
            .collect();
        let app_ports = app_port_list
            .iter()
            .map(|list| {
                let mut keys = list.clone();
                keys.sort_unstable();
                keys.dedup();
                keys
            })
            .collect();

        let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
        let mut domains = Vec::new();
        let spread_by: Vec<Option<usize>> = apps
            .iter()
            .map(|app| {
                let label = app.spread.as_deref()?;
                Some(*labels.entry(label).or_insert_with(|| {
                    domains.push(domains_of(&nodes, label));
                    domains.len() - 1
                }))
            })
            .collect();
        let in_domain = spread_by
            .iter()
            .map(|by| by.map_or_else(Vec::new, |d| vec![0; domains[d].count]))
            .collect();

        Fleet {
            policy,
            app_ix,
            req: apps.iter().map(|a| dims(&a.requests)).collect(),
            on_node: vec![vec![0; nodes.len()]; apps.len()],
            apps,
            node_ix,
            cap: nodes.iter().map(|n| dims(&n.capacity)).collect(),
            inv_cap: nodes
                .iter()
                .map(|n| dims(&n.capacity).map(|c| if c == 0 { 0.0 } else { 1.0 / c as f64 }))
                .collect(),
            used: vec![[0; 3]; nodes.len()],
            ports: vec![Vec::new(); nodes.len()],
            app_ports,
            app_port_list,
            spread_by,
            domains,
            in_domain,
            node_hash: nodes
                .iter()
                .map(|n| fnv1a(FNV_OFFSET, n.name.as_bytes()))
                .collect(),
            nodes,
            check_ports: policy.predicates.contains(&Predicate::HostPorts),
            check_resources: policy.predicates.contains(&Predicate::Resources),
            check_distinct: policy.predicates.contains(&Predicate::DistinctHosts),
        }
    }

    /// Records a replica of `app` on `node`.
    pub(super) fn add(&mut self, app: usize, node: usize) {
        let req = self.req[app];
        for (used, r) in self.used[node].iter_mut().zip(req) {
            *used = used.saturating_add(r);
        }
        let ports = &mut self.ports[node];
        for &key in &self.app_ports[app] {
            let at = ports.partition_point(|&k| k < key);
            ports.insert(at, key);
        }
        self.on_node[app][node] += 1;
        if let Some(d) = self.spread_by[app] {
            self.in_domain[app][self.domains[d].of_node[node] as usize] += 1;
        }
    }

    /// This app's replicas in `node`'s spread domain.
    #[inline]
    pub(super) fn domain_count(&self, app: usize, node: usize) -> u32 {
        match self.spread_by[app] {
            None => self.on_node[app][node],
            Some(d) => self.in_domain[app][self.domains[d].of_node[node] as usize],
        }
    }
}

pub(super) fn port_key(port: u16, protocol: u64) -> u64 {
    (u64::from(port) << 32) | protocol
}

fn domains_of(nodes: &[&NodeState], label: &str) -> Domains {
    let mut values: BTreeMap<&str, u32> = BTreeMap::new();
    let of_node = nodes
        .iter()
        .map(|n| {
            let value = n.labels.get(label).map_or("", String::as_str);
            let next = values.len() as u32;
            *values.entry(value).or_insert(next)
        })
        .collect();
    Domains {
        of_node,
        count: values.len(),
    }
}

pub(super) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's
/// hasher, and cheap enough to hash every (replica, node) pair.
pub(super) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the word, so
/// the tie-break between nodes whose names differ in one character is not
/// biased.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
