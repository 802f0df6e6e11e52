//! `drover-server diff --env BRANCH [--against ENV]`: impact analysis
//! before a merge (octocatalog-diff, Puppet's impact analysis). Every node
//! the server knows, with the facts it last sent (or `--facts-dir`), is
//! compiled from the branch and from the environment it would merge into;
//! what changes is printed node by node, resource by resource, with file
//! diffs (sensitive values as hashes), and the nodes the branch does not
//! compile for with their errors. Both compiles use the target's
//! environment name, as the nodes will run the branch once merged.
//! Compiles run on every core. Exit 0 nothing changes, 2 catalogs change,
//! 1 the branch does not compile for some node (or another error).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use drover_catalog::{CatalogDiff, CompileRequest, Compiled, Facts, Repository, diff_catalogs};
use serde::Serialize;

use super::{facts_files, load_local, print_diagnostics, stored_facts};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Catalog repository: a git repository (bare or not)
    #[arg(long, value_name = "PATH", default_value = ".")]
    pub repo: PathBuf,
    /// The branch to analyse
    #[arg(long = "env", value_name = "BRANCH")]
    pub env: String,
    /// The environment it would be merged into [default: the server's default environment, else HEAD's branch]
    #[arg(long, value_name = "ENV")]
    pub against: Option<String>,
    /// NODE.json facts files to use instead of the server's stored facts
    #[arg(long, value_name = "DIR")]
    pub facts_dir: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// Where the stored facts are
    #[command(flatten)]
    pub store: super::StoreArgs,
}

/// What the branch does to one node.
#[derive(Debug, Serialize)]
pub(super) struct NodeImpact {
    pub node: String,
    /// The branch's errors for this node (`file:line:col: message`).
    pub errors: Vec<String>,
    /// The target did not compile for it either (its errors).
    pub errors_before: Vec<String>,
    pub diff: CatalogDiff,
}

/// The whole analysis.
#[derive(Debug, Serialize)]
pub(super) struct Impact {
    pub branch: String,
    pub against: String,
    pub nodes: usize,
    /// Only the nodes the branch changes or breaks.
    pub impacts: Vec<NodeImpact>,
}

pub fn diff(args: &DiffArgs) -> anyhow::Result<u8> {
    let nodes = match &args.facts_dir {
        Some(dir) => facts_files(dir)?,
        None => stored_facts(&args.store)?,
    };
    let against = match &args.against {
        Some(env) => env.clone(),
        None => args
            .store
            .server_config()
            .ok()
            .and_then(|c| c.default_environment)
            .map_or_else(|| load_local(&args.repo, None).map(|l| l.environment), Ok)?,
    };
    let branch = load_local(&args.repo, Some(&args.env))?;
    let target = load_local(&args.repo, Some(&against))?;
    let parse = |files, what: &str| match Repository::parse(files) {
        Ok(repo) => Ok(repo),
        Err(d) => {
            print_diagnostics(&d.0);
            Err(anyhow::anyhow!("{what} does not parse"))
        }
    };
    let new = match parse(branch.tree.files, &args.env) {
        Ok(repo) => repo,
        Err(_) => return Ok(1),
    };
    let old = parse(target.tree.files, &against)?;
    let impacts = analyse(
        &old,
        &new,
        &nodes,
        &against,
        (&target.commit, &branch.commit),
    );
    let impact = Impact {
        branch: args.env.clone(),
        against,
        nodes: nodes.len(),
        impacts,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&impact)?);
    } else {
        print!("{}", render(&impact));
    }
    let broken = impact.impacts.iter().any(|i| !i.errors.is_empty());
    Ok(match (broken, impact.impacts.is_empty()) {
        (true, _) => 1,
        (false, false) => 2,
        (false, true) => 0,
    })
}

/// Compiles every node from both repositories, on every core.
fn analyse(
    old: &Repository,
    new: &Repository,
    nodes: &[(String, Facts)],
    environment: &str,
    (old_commit, new_commit): (&str, &str),
) -> Vec<NodeImpact> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = nodes.len().div_ceil(threads).max(1);
    let compile = |repo: &Repository, node: &str, facts: &Facts, commit: &str| {
        repo.compile(&CompileRequest {
            node,
            facts,
            environment,
            commit,
        })
        .map_err(|d| d.0.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    let one = |(node, facts): &(String, Facts)| -> Option<NodeImpact> {
        let before: Result<Compiled, Vec<String>> = compile(old, node, facts, old_commit);
        let after = compile(new, node, facts, new_commit);
        let impact = |errors, errors_before, diff| NodeImpact {
            node: node.clone(),
            errors,
            errors_before,
            diff,
        };
        match (before, after) {
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
    };
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

/// The analysis as an operator reads it.
pub(crate) fn render(impact: &Impact) -> String {
    let mut out = String::new();
    let mut changed = 0;
    let mut broken = 0;
    for i in &impact.impacts {
        if !i.errors.is_empty() {
            broken += 1;
            let _ = writeln!(out, "{}: does not compile on {}:", i.node, impact.branch);
            for e in &i.errors {
                let _ = writeln!(out, "  {e}");
            }
            continue;
        }
        changed += 1;
        let d = &i.diff;
        let _ = writeln!(
            out,
            "{}: {} changed, {} added, {} removed{}",
            i.node,
            d.changed.len(),
            d.added.len(),
            d.removed.len(),
            if i.errors_before.is_empty() {
                ""
            } else {
                " (it does not compile on the target: the branch fixes it)"
            }
        );
        for id in &d.added {
            let _ = writeln!(out, "  + {id}");
        }
        for id in &d.removed {
            let _ = writeln!(out, "  - {id}");
        }
        for c in &d.changed {
            let _ = writeln!(out, "  ~ {}", c.id);
            for (field, before, after) in &c.fields {
                let _ = writeln!(out, "      {field}: {before} -> {after}");
            }
            if let Some(diff) = &c.content_diff {
                for line in diff.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "{changed} of {} node(s) change and {broken} do not compile on {} (against {})",
        impact.nodes, impact.branch, impact.against
    );
    out
}
