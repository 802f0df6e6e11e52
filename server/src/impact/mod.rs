//! Impact analysis of a branch before it is merged (octocatalog-diff's
//! question, issue 23): every known node, with the facts it last sent, is
//! compiled from the branch and from the environment it would merge into,
//! on every core, and what changes is kept node by node (resources added,
//! removed, changed field by field, file diffs; sensitive values as hashes,
//! `drover_catalog::diff`), with the nodes the branch does not compile for
//! and their `file:line:col` errors; then the scheduler says which app
//! replicas would move (`placements.rs`, shared with `plan`).
//!
//! Both compiles use the target's environment name, as the nodes will run
//! the branch once merged. Callers: `drover-server diff` (`cli/diff.rs`,
//! the text and JSON) and the dashboard's impact page
//! (`dashboard/impact.rs`, which runs it off the async runtime, one at a
//! time, and caches the answer).

pub mod placements;
pub mod served;

use drover_catalog::{CatalogDiff, CompileRequest, Compiled, Facts, Repository, diff_catalogs};
use serde::Serialize;

use crate::db::apps::{FleetNode, PlacementRow};
use placements::{Current, ReplicaMove};

/// What the branch does to one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeImpact {
    pub node: String,
    /// The branch's errors for this node (`file:line:col: message`).
    pub errors: Vec<String>,
    /// The target did not compile for it either (its errors).
    pub errors_before: Vec<String>,
    pub diff: CatalogDiff,
}

/// The whole analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    pub branch: String,
    pub against: String,
    pub nodes: usize,
    /// Only the nodes the branch changes or breaks.
    pub impacts: Vec<NodeImpact>,
    /// Only the replicas whose placement would change, by app and replica.
    pub placements: Vec<ReplicaMove>,
}

impl Impact {
    /// Nodes the branch does not compile for.
    pub fn broken(&self) -> usize {
        self.impacts.iter().filter(|i| !i.errors.is_empty()).count()
    }

    /// Nodes whose catalog changes (and that compile).
    pub fn changed(&self) -> usize {
        self.impacts.len() - self.broken()
    }

    /// `diff`'s exit code: 1 the branch breaks a node, 2 a catalog or a
    /// placement changes, 0 nothing does.
    pub fn exit_code(&self) -> u8 {
        if self.broken() > 0 {
            1
        } else if self.impacts.is_empty() && self.placements.is_empty() {
            0
        } else {
            2
        }
    }
}

/// One side of the comparison: a parsed repository at a commit.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub repo: &'a Repository,
    pub commit: &'a str,
}

/// Where the replicas run now: the stored placements and fleet (a
/// server's database), or, from facts files alone, the target's own
/// schedule on those nodes.
pub enum Fleet<'a> {
    Stored {
        fleet: &'a [FleetNode],
        rows: &'a [PlacementRow],
    },
    Facts,
}

/// What merging `branch` (`new`) into `against` (`old`) does to `nodes`
/// and to the apps' placements.
pub struct Question<'a> {
    pub branch: &'a str,
    pub against: &'a str,
    pub old: Side<'a>,
    pub new: Side<'a>,
    pub nodes: &'a [(String, Facts)],
    pub fleet: Fleet<'a>,
    /// Now, in microseconds (whether a node is lost).
    pub now_us: i64,
}

/// Answers `question`: the compiles on every core, then the scheduler.
pub fn analyse(question: &Question<'_>) -> Impact {
    Impact {
        branch: question.branch.to_owned(),
        against: question.against.to_owned(),
        nodes: question.nodes.len(),
        impacts: compile_all(question.old, question.new, question.nodes, question.against),
        placements: moves(question),
    }
}

/// The replicas whose placement would change (none when neither side has
/// apps or placements).
fn moves(q: &Question<'_>) -> Vec<ReplicaMove> {
    let has_apps = |side: Side<'_>| side.repo.apps().next().is_some();
    let stored;
    let (fleet, current) = match &q.fleet {
        Fleet::Stored { fleet, rows } => {
            let current = Current::stored(rows, q.against);
            if !has_apps(q.old) && !has_apps(q.new) && current.placements.is_empty() {
                return Vec::new();
            }
            (*fleet, current)
        }
        Fleet::Facts => {
            if !has_apps(q.old) && !has_apps(q.new) {
                return Vec::new();
            }
            stored = q
                .nodes
                .iter()
                .map(|(name, facts)| FleetNode {
                    name: name.clone(),
                    environment: None,
                    facts: facts.clone(),
                    cordoned: false,
                    last_status: None,
                    seen_at_us: q.now_us,
                })
                .collect::<Vec<_>>();
            let nodes = placements::members(q.old.repo, &stored, q.against, q.now_us);
            let current = Current::scheduled(q.old.repo, &nodes, q.old.commit);
            (&stored[..], current)
        }
    };
    let nodes = placements::members(q.new.repo, fleet, q.against, q.now_us);
    let plan = placements::plan(q.new.repo, nodes, &current, q.new.commit);
    plan.replicas.into_iter().filter(|r| r.changes).collect()
}

/// Compiles every node from both repositories, on every core.
fn compile_all(
    old: Side<'_>,
    new: Side<'_>,
    nodes: &[(String, Facts)],
    environment: &str,
) -> Vec<NodeImpact> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = nodes.len().div_ceil(threads).max(1);
    let one = |(node, facts): &(String, Facts)| one_node(old, new, node, facts, environment);
    std::thread::scope(|s| {
        let workers: Vec<_> = nodes
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().filter_map(one).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    })
}

/// What the branch does to one node; none when its catalog is the same.
fn one_node(
    old: Side<'_>,
    new: Side<'_>,
    node: &str,
    facts: &Facts,
    environment: &str,
) -> Option<NodeImpact> {
    let compile = |side: Side<'_>| -> Result<Compiled, Vec<String>> {
        side.repo
            .compile(&CompileRequest {
                node,
                facts,
                environment,
                commit: side.commit,
            })
            .map_err(|d| d.0.iter().map(ToString::to_string).collect())
    };
    let impact = |errors, errors_before, diff| NodeImpact {
        node: node.to_owned(),
        errors,
        errors_before,
        diff,
    };
    match (compile(old), compile(new)) {
        (Ok(b), Ok(a)) => {
            let diff = diff_catalogs(&b, &a);
            (!diff.is_empty()).then(|| impact(Vec::new(), Vec::new(), diff))
        }
        (before, Err(errors)) => Some(impact(
            errors,
            before.err().unwrap_or_default(),
            CatalogDiff::default(),
        )),
        // Fixed by the branch: everything is new to it.
        (Err(errors_before), Ok(a)) => {
            let diff = CatalogDiff {
                added: a
                    .catalog
                    .resources
                    .iter()
                    .map(|r| r.id.to_string())
                    .collect(),
                ..CatalogDiff::default()
            };
            Some(impact(Vec::new(), errors_before, diff))
        }
    }
}
