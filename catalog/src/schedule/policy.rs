//! The scheduler policy: its default, and `drover.toml`'s `[scheduler]`
//! table parsed into it. Parsing is two-stage like the rest of the crate
//! (`raw.rs`): [`RawScheduler`] mirrors the TOML with spans, and
//! [`parse_policy`] validates it, pointing every error at the value's
//! `file:line:col`. A key left out takes the default's value, so a
//! `[scheduler]` table that only says `lost_after_secs = 120` keeps the
//! default predicates and priorities; inside `reserved`, each of `cpu`,
//! `memory` and `disk` left out keeps the default's too (write `0` to
//! reserve none). Kubernetes' names are accepted beside ours because
//! operators come with them in their fingers; the policy stores only ours.
//!
//! The quantity helpers ([`quantity_cpu`], [`quantity_bytes`]) are shared
//! with the apps parser so `requests` and `reserved` read alike.

use serde::Deserialize;
use toml::Spanned;

use super::{Policy, Predicate, Priority, Resources};
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::values::{cpus_to_milli, parse_memory};

/// How many heartbeats per second the servers are meant to absorb, as
/// Nomad's `max_heartbeats_per_second` (50): a fleet of N nodes heartbeats
/// every N/50 seconds at most, so a node is lost only after that much more
/// silence (see [`Policy::lost_after_secs_for`]).
pub const HEARTBEATS_PER_SEC: u64 = 50;

/// Heaviest weight a priority may have: enough to make one dominate, small
/// enough that weighted sums stay exact in an `f64`.
pub const MAX_WEIGHT: i64 = 100;

/// Our predicate names, and Kubernetes' where it has one.
const PREDICATES: &[(&str, Option<&str>, Predicate)] = &[
    ("ready", None, Predicate::Ready),
    (
        "schedulable",
        Some("CheckNodeUnschedulable"),
        Predicate::Schedulable,
    ),
    ("selector", Some("MatchNodeSelector"), Predicate::Selector),
    (
        "tolerations",
        Some("PodToleratesNodeTaints"),
        Predicate::Tolerations,
    ),
    ("host_ports", Some("PodFitsHostPorts"), Predicate::HostPorts),
    ("resources", Some("PodFitsResources"), Predicate::Resources),
    ("distinct_hosts", None, Predicate::DistinctHosts),
];

const PRIORITIES: &[(&str, Option<&str>, Priority)] = &[
    (
        "least_allocated",
        Some("LeastRequestedPriority"),
        Priority::LeastAllocated,
    ),
    (
        "most_allocated",
        Some("MostRequestedPriority"),
        Priority::MostAllocated,
    ),
    (
        "balanced_allocation",
        Some("BalancedResourceAllocation"),
        Priority::BalancedAllocation,
    ),
    ("spread", Some("SelectorSpreadPriority"), Priority::Spread),
    ("stay", None, Priority::Stay),
];

impl Predicate {
    /// The name `drover.toml` and explanations use.
    pub fn name(self) -> &'static str {
        PREDICATES.iter().find(|p| p.2 == self).map_or("", |p| p.0)
    }
}

impl Priority {
    /// The name `drover.toml` and explanations use.
    pub fn name(self) -> &'static str {
        PRIORITIES.iter().find(|p| p.2 == self).map_or("", |p| p.0)
    }
}

impl Default for Policy {
    /// The spec's policy: every predicate but nothing that packs; spread
    /// outweighs the resource priorities (see `priorities.rs` for why that
    /// keeps replicas within one of even), and `stay` outweighs them all so
    /// a running replica is not moved for a slightly better node.
    fn default() -> Policy {
        Policy {
            predicates: vec![
                Predicate::Ready,
                Predicate::Schedulable,
                Predicate::Selector,
                Predicate::Tolerations,
                Predicate::HostPorts,
                Predicate::Resources,
                Predicate::DistinctHosts,
            ],
            priorities: vec![
                (Priority::LeastAllocated, 1),
                (Priority::BalancedAllocation, 1),
                (Priority::Spread, 2),
                (Priority::Stay, 4),
            ],
            reserved: Resources {
                millicpu: 500,
                memory: 512 << 20,
                disk: 0,
            },
            lost_after_secs: 60,
        }
    }
}

impl Policy {
    /// The silence after which a node of a fleet of `nodes` is lost: the
    /// configured `lost_after_secs` plus one second per
    /// [`HEARTBEATS_PER_SEC`] nodes. Nomad sets a node's heartbeat TTL to
    /// `max(min_heartbeat_ttl, nodes / max_heartbeats_per_second)` so the
    /// servers never take more than 50 heartbeats a second; a node is
    /// only late once that interval has passed, so the allowance is added
    /// to ours rather than compared with it (60 s at 100 nodes becomes
    /// 62 s; at 5,000 nodes 160 s).
    pub fn lost_after_secs_for(&self, nodes: usize) -> u64 {
        self.lost_after_secs
            .saturating_add(nodes as u64 / HEARTBEATS_PER_SEC)
    }
}

/// `[scheduler]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    pub predicates: Option<Vec<Spanned<String>>>,
    pub priorities: Option<Vec<RawPriority>>,
    pub reserved: Option<RawResources>,
    pub lost_after_secs: Option<Spanned<i64>>,
}

/// `{ name = "spread", weight = 2 }`; the weight defaults to 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPriority {
    pub name: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
}

/// `{ cpu = 0.5, memory = "512MiB", disk = "10GiB" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub cpu: Option<Spanned<toml::Value>>,
    pub memory: Option<Spanned<toml::Value>>,
    pub disk: Option<Spanned<toml::Value>>,
}

/// Validates `[scheduler]` into a [`Policy`]; every error is reported, each
/// at its value. `pub(crate)`, not `pub`: it takes the crate's private
/// [`SourceFile`].
pub(crate) fn parse_policy(src: &SourceFile, raw: RawScheduler) -> Result<Policy, Vec<Diagnostic>> {
    let mut policy = Policy::default();
    let mut errors = Vec::new();
    let at = |span: std::ops::Range<usize>, msg: String| src.span(&span).error(msg);

    if let Some(list) = raw.predicates {
        policy.predicates.clear();
        for name in list {
            match lookup(PREDICATES, name.get_ref()) {
                Some(p) if policy.predicates.contains(&p) => errors.push(at(
                    name.span(),
                    duplicate("predicate", name.get_ref(), p.name()),
                )),
                Some(p) => policy.predicates.push(p),
                None => errors.push(at(
                    name.span(),
                    unknown("predicate", name.get_ref(), PREDICATES),
                )),
            }
        }
    }

    if let Some(list) = raw.priorities {
        policy.priorities.clear();
        for RawPriority { name, weight } in list {
            let weight = match weight {
                None => 1,
                Some(w) if (0..=MAX_WEIGHT).contains(w.get_ref()) => *w.get_ref() as u32,
                Some(w) => {
                    errors.push(at(
                        w.span(),
                        format!(
                            "a priority's weight is a whole number from 0 (off) to {MAX_WEIGHT}, not {}",
                            w.get_ref()
                        ),
                    ));
                    continue;
                }
            };
            match lookup(PRIORITIES, name.get_ref()) {
                Some(p) if policy.priorities.iter().any(|(q, _)| *q == p) => errors.push(at(
                    name.span(),
                    duplicate("priority", name.get_ref(), p.name()),
                )),
                Some(p) => policy.priorities.push((p, weight)),
                None => errors.push(at(
                    name.span(),
                    unknown("priority", name.get_ref(), PRIORITIES),
                )),
            }
        }
    }

    if let Some(reserved) = raw.reserved {
        let dims: [(_, Quantity, &mut u64); 3] = [
            (reserved.cpu, quantity_cpu, &mut policy.reserved.millicpu),
            (reserved.memory, quantity_bytes, &mut policy.reserved.memory),
            (reserved.disk, quantity_bytes, &mut policy.reserved.disk),
        ];
        for (value, parse, slot) in dims {
            let Some(value) = value else { continue };
            match parse(value.get_ref()) {
                Ok(q) => *slot = q,
                Err(e) => errors.push(at(value.span(), e)),
            }
        }
    }

    if let Some(secs) = raw.lost_after_secs {
        match u64::try_from(*secs.get_ref()) {
            Ok(s) if s >= 1 => policy.lost_after_secs = s,
            _ => errors.push(at(
                secs.span(),
                format!(
                    "lost_after_secs is a number of seconds of at least 1, not {}",
                    secs.get_ref()
                ),
            )),
        }
    }

    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

/// A quantity parser: [`quantity_cpu`] or [`quantity_bytes`].
type Quantity = fn(&toml::Value) -> Result<u64, String>;

fn lookup<T: Copy>(table: &[(&str, Option<&str>, T)], name: &str) -> Option<T> {
    table
        .iter()
        .find(|(ours, alias, _)| *ours == name || *alias == Some(name))
        .map(|e| e.2)
}

fn duplicate(what: &str, written: &str, name: &str) -> String {
    if written == name {
        format!("{what} `{name}` is listed twice")
    } else {
        format!("{what} `{written}` is `{name}`, which is already listed")
    }
}

fn unknown<T>(what: &str, name: &str, table: &[(&str, Option<&str>, T)]) -> String {
    let known: Vec<&str> = table.iter().map(|e| e.0).collect();
    let closest = table
        .iter()
        .flat_map(|(ours, alias, _)| std::iter::once(*ours).chain(*alias))
        .map(|candidate| {
            let d = edit_distance(&name.to_ascii_lowercase(), &candidate.to_ascii_lowercase());
            (d, candidate)
        })
        .min()
        .filter(|(d, candidate)| *d <= candidate.len() / 3 + 1);
    let mut msg = format!("unknown {what} `{name}`; known: {}", known.join(", "));
    if let Some((_, candidate)) = closest {
        msg.push_str(&format!("\nhint: did you mean `{candidate}`?"));
    }
    msg
}

/// Levenshtein distance, for the "did you mean" hint.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// CPUs as millicpu: a number of CPUs (`0.5`, `2`) or a string, either a
/// number of CPUs (`"0.5"`) or Kubernetes' millicpu (`"500m"`). Zero is
/// allowed (nothing requested or reserved).
pub fn quantity_cpu(v: &toml::Value) -> Result<u64, String> {
    let bad = || format!("cpu is a number of CPUs (`0.5`, `2`) or millicpu (`\"500m\"`), not {v}");
    let cpus = match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        toml::Value::String(s) => match s.trim().strip_suffix('m') {
            Some(milli) => return milli.trim().parse::<u64>().map_err(|_| bad()),
            None => s.trim().parse::<f64>().map_err(|_| bad())?,
        },
        _ => return Err(bad()),
    };
    if cpus == 0.0 {
        return Ok(0);
    }
    if cpus < 0.0 {
        return Err(bad());
    }
    cpus_to_milli(cpus).ok_or_else(|| format!("cpu {v} is out of range: at least 0.001 CPUs, or 0"))
}

/// Bytes: a size with a binary unit as Docker reads it (`"512MiB"`,
/// `"2g"`) or a whole number of bytes; zero is allowed.
pub fn quantity_bytes(v: &toml::Value) -> Result<u64, String> {
    let bad =
        || format!("a size is like \"512MiB\" or \"2GiB\", or a whole number of bytes, not {v}");
    match v {
        toml::Value::Integer(i) => u64::try_from(*i).map_err(|_| bad()),
        toml::Value::String(s)
            if s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" =>
        {
            Ok(0)
        }
        toml::Value::String(s) => parse_memory(s).ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, Vec<String>> {
        #[derive(Deserialize)]
        struct Settings {
            scheduler: RawScheduler,
        }
        let src = SourceFile::new("drover.toml", text);
        let raw: Settings = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        parse_policy(&src, raw.scheduler).map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn the_specs_table_is_the_default() {
        let spec = r#"[scheduler]
predicates = ["ready", "schedulable", "selector", "tolerations", "host_ports", "resources", "distinct_hosts"]
priorities = [
  { name = "least_allocated", weight = 1 },
  { name = "balanced_allocation", weight = 1 },
  { name = "spread", weight = 2 },
  { name = "stay", weight = 4 },
]
reserved = { cpu = 0.5, memory = "512MiB" }
lost_after_secs = 60
"#;
        assert_eq!(parse(spec), Ok(Policy::default()));
        assert_eq!(parse("[scheduler]\n"), Ok(Policy::default()));
    }

    #[test]
    fn kubernetes_names_are_aliases_and_omitted_keys_keep_the_default() {
        let policy = parse(
            "[scheduler]\npredicates = [\"PodFitsResources\", \"MatchNodeSelector\"]\n\
             priorities = [{ name = \"MostRequestedPriority\", weight = 3 }, { name = \"stay\" }]\n\
             reserved = { memory = 0, disk = \"1GiB\" }\n",
        )
        .unwrap();
        assert_eq!(
            policy.predicates,
            [Predicate::Resources, Predicate::Selector]
        );
        assert_eq!(
            policy.priorities,
            [(Priority::MostAllocated, 3), (Priority::Stay, 1)]
        );
        assert_eq!(
            policy.reserved,
            Resources {
                millicpu: 500,
                memory: 0,
                disk: 1 << 30
            }
        );
        assert_eq!(policy.lost_after_secs, 60);
    }

    #[test]
    fn errors_point_at_the_value_and_say_what_is_known() {
        let errors = parse(
            "[scheduler]\n\
             predicates = [\"ready\", \"resources\", \"resorces\", \"PodFitsResources\", \"ready\"]\n\
             priorities = [{ name = \"spread\", weight = -1 }, { name = \"packing\" }]\n\
             reserved = { cpu = \"lots\", memory = \"12 parsecs\" }\nlost_after_secs = 0\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "drover.toml:2:37: unknown predicate `resorces`; known: ready, schedulable, selector, \
                 tolerations, host_ports, resources, distinct_hosts\nhint: did you mean `resources`?",
                "drover.toml:2:49: predicate `PodFitsResources` is `resources`, which is already listed",
                "drover.toml:2:69: predicate `ready` is listed twice",
                "drover.toml:3:43: a priority's weight is a whole number from 0 (off) to 100, not -1",
                "drover.toml:3:58: unknown priority `packing`; known: least_allocated, most_allocated, \
                 balanced_allocation, spread, stay",
                "drover.toml:4:20: cpu is a number of CPUs (`0.5`, `2`) or millicpu (`\"500m\"`), not \"lots\"",
                "drover.toml:4:37: a size is like \"512MiB\" or \"2GiB\", or a whole number of bytes, \
                 not \"12 parsecs\"",
                "drover.toml:5:19: lost_after_secs is a number of seconds of at least 1, not 0",
            ]
        );
    }

    #[test]
    fn quantities_read_like_docker_and_kubernetes() {
        let v = |s: &str| toml::from_str::<toml::Table>(&format!("v = {s}")).unwrap()["v"].clone();
        assert_eq!(quantity_cpu(&v("0.5")), Ok(500));
        assert_eq!(quantity_cpu(&v("2")), Ok(2000));
        assert_eq!(quantity_cpu(&v("\"250m\"")), Ok(250));
        assert_eq!(quantity_cpu(&v("\"1.5\"")), Ok(1500));
        assert_eq!(quantity_cpu(&v("0")), Ok(0));
        assert!(quantity_cpu(&v("-1")).is_err());
        assert!(quantity_cpu(&v("0.0001")).is_err());
        assert!(quantity_cpu(&v("true")).is_err());
        assert_eq!(quantity_bytes(&v("\"512MiB\"")), Ok(512 << 20));
        assert_eq!(quantity_bytes(&v("\"2g\"")), Ok(2 << 30));
        assert_eq!(quantity_bytes(&v("4096")), Ok(4096));
        assert_eq!(quantity_bytes(&v("\"0\"")), Ok(0));
        assert_eq!(quantity_bytes(&v("\"0MiB\"")), Ok(0));
        assert!(quantity_bytes(&v("-5")).is_err());
        assert!(quantity_bytes(&v("1.5")).is_err());
    }

    #[test]
    fn the_lost_allowance_grows_with_the_fleet_as_nomads_heartbeat_ttl() {
        let policy = Policy::default();
        assert_eq!(policy.lost_after_secs_for(0), 60);
        assert_eq!(policy.lost_after_secs_for(100), 62);
        assert_eq!(policy.lost_after_secs_for(5000), 160);
    }

    #[test]
    fn names_round_trip() {
        for (name, _, p) in PREDICATES {
            assert_eq!(p.name(), *name);
        }
        for (name, _, p) in PRIORITIES {
            assert_eq!(p.name(), *name);
        }
    }
}
