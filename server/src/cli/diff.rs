//! `drover-server diff --env BRANCH [--against ENV]`: impact analysis
//! before a merge (octocatalog-diff, Puppet's impact analysis). Every node
//! the server knows, with the facts it last sent (or `--facts-dir`), is
//! compiled from the branch and from the environment it would merge into;
//! what changes is printed node by node, resource by resource, with file
//! diffs (sensitive values as hashes), and the nodes the branch does not
//! compile for with their errors. Both compiles use the target's
//! environment name, as the nodes will run the branch once merged.
//! Compiles run on every core. With apps, the replicas whose placement
//! would change follow (placed, moved with the reason, removed, pending),
//! against the stored placements (with `--facts-dir`: against the target's
//! own schedule on those nodes). The analysis is `crate::impact`'s; this
//! prints it. Exit 0 nothing changes, 2 catalogs or placements change, 1
//! the branch does not compile for some node (or another error).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use drover_catalog::Repository;

use super::{facts_files, load_local, print_diagnostics, stored_facts};
use crate::impact::{self, Fleet, Impact, Question, Side};

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
    // The fleet and placements are read only when there are apps to place.
    let has_apps = old.apps().next().is_some() || new.apps().next().is_some();
    let stored = match &args.facts_dir {
        Some(_) => None,
        None if has_apps => Some(super::apps::stored_fleet(&args.store)?),
        None => Some(Default::default()),
    };
    let impact = impact::analyse(&Question {
        branch: &args.env,
        against: &against,
        old: Side {
            repo: &old,
            commit: &target.commit,
        },
        new: Side {
            repo: &new,
            commit: &branch.commit,
        },
        nodes: &nodes,
        fleet: match &stored {
            Some((fleet, rows)) => Fleet::Stored { fleet, rows },
            None => Fleet::Facts,
        },
        now_us: jiff::Timestamp::now().as_microsecond(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&impact)?);
    } else {
        print!("{}", render(&impact));
    }
    Ok(impact.exit_code())
}

/// The analysis as an operator reads it.
pub(crate) fn render(impact: &Impact) -> String {
    let mut out = String::new();
    for i in &impact.impacts {
        if !i.errors.is_empty() {
            let _ = writeln!(out, "{}: does not compile on {}:", i.node, impact.branch);
            for e in &i.errors {
                let _ = writeln!(out, "  {e}");
            }
            continue;
        }
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
    render_moves(&mut out, impact);
    let _ = writeln!(
        out,
        "{} of {} node(s) change and {} do not compile on {} (against {}){}",
        impact.changed(),
        impact.nodes,
        impact.broken(),
        impact.branch,
        impact.against,
        match impact.placements.len() {
            0 => String::new(),
            n => format!("; {n} replica placement(s) change"),
        }
    );
    out
}

/// The replicas whose placement would change, app by app.
fn render_moves(out: &mut String, impact: &Impact) {
    if impact.placements.is_empty() {
        return;
    }
    let _ = writeln!(out, "placements of `{}` that would change:", impact.against);
    for r in &impact.placements {
        let what = r.what();
        let reason = r
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}#{}: {what}{reason}", r.app, r.replica);
    }
}
