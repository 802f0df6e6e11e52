//! `drover-server lookup KEY --node NAME [--explain]`: what a node gets for
//! a data key, read from a catalog repository as `compile` reads it, with
//! the node's facts from `--facts FILE`, else as the server's database last
//! stored them (`--data-dir`, `--database`, `--config`), else none (levels
//! that name a fact are then skipped, and a note says so).

use std::path::PathBuf;

use clap::Args;
use drover_catalog::{CompileRequest, Facts, Lookup, Repository};

use super::{load_local, print_diagnostics, read_facts, stored_facts};

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The data key, dotted for a key inside a table (`ntp.servers`)
    #[arg(value_name = "KEY")]
    pub key: String,
    /// The node
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Catalog repository: a plain directory or a git repository
    #[arg(long, value_name = "PATH", default_value = ".")]
    pub repo: PathBuf,
    /// Branch to read from git objects [default: the work tree of a checkout]
    #[arg(long = "env", value_name = "BRANCH")]
    pub env: Option<String>,
    /// The node's facts as a JSON object [default: as the server last stored them]
    #[arg(long, value_name = "FILE.json")]
    pub facts: Option<PathBuf>,
    /// Every hierarchy level tried, in order, with what it held and which won
    #[arg(long)]
    pub explain: bool,
    /// Print the answer as JSON
    #[arg(long)]
    pub json: bool,
    /// Where the stored facts are
    #[command(flatten)]
    pub store: super::StoreArgs,
}

/// Exit 0 with the value, 1 when no level has the key or on errors.
pub fn lookup(args: &LookupArgs) -> anyhow::Result<u8> {
    let facts = facts_of(args)?;
    let local = load_local(&args.repo, args.env.as_deref())?;
    let repo = match Repository::parse(local.tree.files) {
        Ok(repo) => repo,
        Err(d) => {
            print_diagnostics(&d.0);
            return Ok(1);
        }
    };
    let found = repo.lookup(
        &CompileRequest {
            node: &args.node,
            facts: &facts,
            environment: &local.environment,
            commit: &local.commit,
        },
        &args.key,
    );
    let found = match found {
        Ok(found) => found,
        Err(d) => {
            print_diagnostics(&d.0);
            return Ok(1);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print!("{}", render(&found, args.explain));
    }
    if found.value.is_none() && !args.json {
        eprintln!(
            "error: no level of the hierarchy has `{}` for node `{}`",
            args.key, args.node
        );
    }
    Ok(u8::from(found.value.is_none()))
}

fn facts_of(args: &LookupArgs) -> anyhow::Result<Facts> {
    if let Some(path) = &args.facts {
        return read_facts(path);
    }
    let stored = stored_facts(&args.store);
    match stored {
        Ok(nodes) => match nodes.into_iter().find(|(name, _)| *name == args.node) {
            Some((_, facts)) => Ok(facts),
            None => {
                eprintln!(
                    "note: the server has no facts of `{}`: levels naming a fact are skipped",
                    args.node
                );
                Ok(Facts::new())
            }
        },
        Err(e) => {
            eprintln!(
                "note: no facts ({e:#}): levels naming a fact are skipped\nhint: pass --facts FILE.json"
            );
            Ok(Facts::new())
        }
    }
}

/// The value as TOML, then with `explain` every place tried.
pub(crate) fn render(found: &Lookup, explain: bool) -> String {
    let mut out = String::new();
    if let Some(value) = &found.value {
        out.push_str(&value_text(value));
        out.push('\n');
    }
    if !explain {
        return out;
    }
    out.push_str(&format!("Searching for `{}`\n", found.key));
    for step in &found.steps {
        let level = step
            .level
            .as_deref()
            .map(|l| format!(" (level \"{l}\")"))
            .unwrap_or_default();
        let what = match (&step.found, step.exists) {
            (_, false) => "not found: the file does not exist".to_owned(),
            (None, true) => "not found".to_owned(),
            (Some(v), true) => format!("found {}", value_text(v)),
        };
        let mark = if step.used { "  <= used" } else { "" };
        out.push_str(&format!("  {}{level}: {what}{mark}\n", step.file));
    }
    out
}

fn value_text(value: &toml::Value) -> String {
    value.to_string()
}
