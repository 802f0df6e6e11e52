//! Staged rollouts: `drover.toml`'s `[rollout]` table parsed into a
//! [`RolloutPolicy`] (two stages, like `raw.rs`: [`RawRollout`] mirrors the
//! TOML with spans, [`parse_rollout`] validates it at `file:line:col`),
//! which stage each node is in ([`assign`]), and whether a stage passed
//! ([`gate::decide`]). Pure: the server's rollout loop feeds them what the
//! database holds, so the decisions are unit tested without a server.
//!
//! A node's place is a stable hash of its name (sha256), so the same fleet
//! gives the same stages on every server and after every restart. A
//! `nodes` stage takes the matching nodes not in an earlier stage; a
//! `percent` stage is cumulative: the first `ceil(percent% of the
//! environment's nodes)` in hash order, less those already in an earlier
//! stage (so `{ percent = 10 }` after a canary stage may be empty).

pub mod gate;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::diagnostic::{Diagnostic, SourceFile};

/// `[rollout]`, validated.
#[derive(Debug, Clone)]
pub struct RolloutPolicy {
    pub stages: Vec<Stage>,
    pub gate: Gate,
}

/// One stage of a rollout.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `{ nodes = "canary-*" }`: the nodes whose name matches.
    Nodes { pattern: String, glob: GlobMatcher },
    /// `{ percent = 10 }`: the first 10% of the environment's nodes by hash.
    Percent(u8),
}

impl Stage {
    /// How the stage is written, for the API and the dashboard.
    pub fn describe(&self) -> String {
        match self {
            Stage::Nodes { pattern, .. } => format!("nodes = \"{pattern}\""),
            Stage::Percent(p) => format!("percent = {p}"),
        }
    }
}

/// What a stage must show before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(default)]
pub struct Gate {
    /// Nodes of the stage that may report failed resources (or unhealthy
    /// replicas) without pausing the rollout.
    pub max_failed_nodes: u32,
    /// The least time a stage runs before it may pass.
    pub min_wait_secs: u64,
    /// Every replica on the stage's nodes must be healthy.
    pub healthy_apps: bool,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            max_failed_nodes: 0,
            min_wait_secs: 0,
            healthy_apps: true,
        }
    }
}

/// `[rollout]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    pub stages: Spanned<Vec<Spanned<RawStage>>>,
    pub gate: Option<RawGate>,
}

/// `{ nodes = "GLOB" }` or `{ percent = N }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub nodes: Option<Spanned<String>>,
    pub percent: Option<Spanned<i64>>,
}

/// `gate = { max_failed_nodes = 0, min_wait_secs = 60, healthy_apps = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub max_failed_nodes: Option<Spanned<i64>>,
    pub min_wait_secs: Option<Spanned<i64>>,
    pub healthy_apps: Option<bool>,
}

/// Validates `[rollout]`; every error is reported, each at its value.
pub(crate) fn parse_rollout(
    src: &SourceFile,
    raw: RawRollout,
) -> Result<RolloutPolicy, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let at = |span: std::ops::Range<usize>, msg: String| src.span(&span).error(msg);
    let mut stages = Vec::new();
    if raw.stages.get_ref().is_empty() {
        errors.push(at(
            raw.stages.span(),
            "a rollout needs at least one stage\nhint: stages = [{ nodes = \"canary-*\" }, { percent = 100 }]".into(),
        ));
    }
    let mut last_percent = 0;
    for stage in raw.stages.into_inner() {
        let span = stage.span();
        match stage.into_inner() {
            RawStage {
                nodes: Some(pattern),
                percent: None,
            } => match Glob::new(pattern.get_ref()) {
                Ok(glob) => stages.push(Stage::Nodes {
                    glob: glob.compile_matcher(),
                    pattern: pattern.into_inner(),
                }),
                Err(e) => errors.push(at(
                    pattern.span(),
                    format!(
                        "invalid glob `{}` in `nodes`: {}",
                        pattern.get_ref(),
                        e.kind()
                    ),
                )),
            },
            RawStage {
                nodes: None,
                percent: Some(percent),
            } => match u8::try_from(*percent.get_ref()) {
                Ok(p) if (1..=100).contains(&p) && p >= last_percent => {
                    last_percent = p;
                    stages.push(Stage::Percent(p));
                }
                Ok(p) if (1..=100).contains(&p) => errors.push(at(
                    percent.span(),
                    format!(
                        "percent {p} is below an earlier stage's {last_percent}: percents count \
                         from all the environment's nodes, so each stage's is at least the last"
                    ),
                )),
                _ => errors.push(at(
                    percent.span(),
                    format!(
                        "percent is a whole number from 1 to 100, not {}",
                        percent.get_ref()
                    ),
                )),
            },
            _ => errors.push(at(
                span,
                "a stage is either `{ nodes = \"GLOB\" }` or `{ percent = N }`".into(),
            )),
        }
    }
    let mut gate = Gate::default();
    if let Some(raw) = raw.gate {
        if let Some(n) = raw.max_failed_nodes {
            match u32::try_from(*n.get_ref()) {
                Ok(n) => gate.max_failed_nodes = n,
                Err(_) => errors.push(at(
                    n.span(),
                    format!("max_failed_nodes is a number of nodes, not {}", n.get_ref()),
                )),
            }
        }
        if let Some(secs) = raw.min_wait_secs {
            match u64::try_from(*secs.get_ref()) {
                Ok(s) => gate.min_wait_secs = s,
                Err(_) => errors.push(at(
                    secs.span(),
                    format!(
                        "min_wait_secs is a number of seconds, not {}",
                        secs.get_ref()
                    ),
                )),
            }
        }
        if let Some(healthy) = raw.healthy_apps {
            gate.healthy_apps = healthy;
        }
    }
    if errors.is_empty() {
        Ok(RolloutPolicy { stages, gate })
    } else {
        Err(errors)
    }
}

/// The stable hash that orders nodes: the first 8 bytes of sha256(name).
pub fn node_hash(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The nodes of each stage, given the environment's nodes (any order,
/// without duplicates). A node in no stage (when the last stage is not
/// `percent = 100`) is served the new commit once the rollout is done.
pub fn assign(stages: &[Stage], nodes: &[String]) -> Vec<Vec<String>> {
    let mut ordered: Vec<&String> = nodes.iter().collect();
    ordered.sort_by_key(|n| (node_hash(n), n.as_str()));
    let total = ordered.len();
    let mut taken = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(stages.len());
    for stage in stages {
        let members: Vec<String> = match stage {
            Stage::Nodes { glob, .. } => ordered
                .iter()
                .filter(|n| glob.is_match(n.as_str()) && !taken.contains(n.as_str()))
                .map(|n| (*n).clone())
                .collect(),
            Stage::Percent(p) => {
                let upto = (total * usize::from(*p)).div_ceil(100);
                ordered[..upto]
                    .iter()
                    .filter(|n| !taken.contains(n.as_str()))
                    .map(|n| (*n).clone())
                    .collect()
            }
        };
        taken.extend(members.iter().cloned());
        out.push(members);
    }
    out
}

#[cfg(test)]
mod tests;
