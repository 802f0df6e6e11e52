//! The apps' commands. `apps` and `explain` ask a running server over its
//! API (the placements are the leader's, and any server answers them);
//! `plan` runs the scheduler itself on a local commit against the fleet in
//! the server's database, and applies nothing.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use drover_catalog::schedule::{Decision, Verdict};

use super::client::{ServerArgs, encode, get};
use crate::apps::update::short;
use crate::apps::view::AppStatus;
use crate::db::apps::{FleetNode, PlacementRow};
use crate::impact::placements::{self, Fate};

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only this environment
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(value_name = "APP")]
    pub app: String,
    /// Only this replica
    #[arg(long, value_name = "N")]
    pub replica: Option<u32>,
    /// Only this environment
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the API's JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Catalog repository: a plain directory or a git repository (bare or not)
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// Branch to read [default: the work tree of a checkout, HEAD's branch of a bare repository]
    #[arg(long = "env", value_name = "BRANCH")]
    pub env: Option<String>,
    /// The environment whose fleet and placements to plan against [default: the server's default environment, else the branch's name]
    #[arg(long, value_name = "ENV")]
    pub against: Option<String>,
    /// Where the server's fleet and placements are
    #[command(flatten)]
    pub store: super::StoreArgs,
}

/// `drover-server apps`: exit 0 with the apps, 1 when the server refuses.
pub fn apps(args: &AppsArgs) -> anyhow::Result<u8> {
    let body = get(
        &args.server,
        &format!("/api/v1/apps{}", environment_query(args.env.as_deref())),
    )?;
    if args.json {
        println!("{body}");
        return Ok(0);
    }
    let apps: Vec<AppStatus> = serde_json::from_str(&body).context("the server's answer")?;
    if apps.is_empty() {
        println!("no apps (add apps/NAME.toml to the catalog repository)");
    }
    for app in &apps {
        print_app(app);
    }
    Ok(0)
}

fn print_app(app: &AppStatus) {
    let up = app
        .replicas
        .iter()
        .filter(|r| matches!(r.state.as_str(), "running" | "healthy"))
        .count();
    println!(
        "{} ({}): {up}/{} up",
        app.name, app.environment, app.desired
    );
    for error in &app.errors {
        println!("  error: {error}");
    }
    if let Some(u) = app.update.as_ref().filter(|u| u.state != "done") {
        let said = u
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        println!("  update {} to spec {}{said}", u.state, short(&u.spec_hash));
    }
    for r in &app.replicas {
        match &r.node {
            Some(node) => println!(
                "  #{} {} on {node}{} {}",
                r.index,
                r.container.as_deref().unwrap_or("-"),
                r.address
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default(),
                match (&r.moving_to, &r.moving_spec) {
                    (Some(to), Some(spec)) =>
                        format!("{}, moving to {to} (spec {})", r.state, short(spec)),
                    _ => r.state.clone(),
                }
            ),
            None => println!(
                "  #{} pending: {}",
                r.index,
                r.reason.as_deref().unwrap_or("not yet scheduled")
            ),
        }
    }
}

/// `drover-server explain APP`: every node's verdict for each replica.
pub fn explain(args: &ExplainArgs) -> anyhow::Result<u8> {
    let body = get(
        &args.server,
        &format!(
            "/api/v1/apps/{}{}",
            encode(&args.app),
            environment_query(args.env.as_deref())
        ),
    )?;
    if args.json {
        println!("{body}");
        return Ok(0);
    }
    let apps: Vec<AppStatus> = serde_json::from_str(&body).context("the server's answer")?;
    for app in &apps {
        print_app(app);
        for r in &app.replicas {
            if args.replica.is_some_and(|n| n != r.index) {
                continue;
            }
            let Some(decision) = r
                .decision
                .clone()
                .and_then(|d| serde_json::from_value::<Decision>(d).ok())
            else {
                continue;
            };
            println!();
            println!("{}#{} decided {}:", app.name, r.index, r.decided_at);
            print!("{}", decision_table(&decision));
        }
    }
    Ok(0)
}

/// A decision as a table: the chosen node first, then the scored nodes
/// best first, then the refused ones with the predicate that refused them.
fn decision_table(decision: &Decision) -> String {
    let mut scored: Vec<&Verdict> = decision
        .verdicts
        .iter()
        .filter(|v| v.refused.is_none())
        .collect();
    scored.sort_by(|a, b| b.total.total_cmp(&a.total));
    let mut out = String::new();
    if let Some(reason) = &decision.reason {
        out.push_str(&format!("  pending: {reason}\n"));
    }
    for v in scored {
        let chosen = decision.node.as_deref() == Some(v.node.as_str());
        let scores: Vec<String> = v
            .scores
            .iter()
            .map(|(priority, score)| format!("{}={score:.2}", priority.name()))
            .collect();
        out.push_str(&format!(
            "  {} {:<24} total {:>6.2}  {}\n",
            if chosen { "*" } else { " " },
            v.node,
            v.total,
            scores.join(" ")
        ));
    }
    for v in decision.verdicts.iter().filter(|v| v.refused.is_some()) {
        if let Some(refusal) = &v.refused {
            out.push_str(&format!(
                "    {:<24} refused by {}: {}\n",
                v.node,
                refusal.predicate.name(),
                refusal.reason
            ));
        }
    }
    out
}

/// `?environment=ENV`, or nothing.
fn environment_query(env: Option<&str>) -> String {
    env.map(|env| format!("?environment={}", encode(env)))
        .unwrap_or_default()
}

/// `drover-server plan`: prints, app by app, where each replica would run
/// (kept, placed, moved) or why it would be pending, without writing
/// anything. Exit 0 when nothing would change, 2 when placements would
/// change (as `--detailed-exitcodes`), 1 on errors.
pub fn plan(args: &PlanArgs) -> anyhow::Result<u8> {
    let local = super::load_local(&args.repo, args.env.as_deref())?;
    let repo = match drover_catalog::Repository::parse(local.tree.files.clone()) {
        Ok(repo) => repo,
        Err(diagnostics) => {
            for d in &diagnostics.0 {
                eprintln!("{d}");
            }
            return Ok(1);
        }
    };
    let mut broken = false;
    for (name, app) in repo.apps() {
        if let Err(errors) = app {
            broken = true;
            for e in errors {
                eprintln!("{e}");
            }
            eprintln!("app `{name}` does not parse: it would not be placed");
        }
    }
    let against = match &args.against {
        Some(env) => env.clone(),
        None => args
            .store
            .server_config()?
            .default_environment
            .unwrap_or_else(|| local.environment.clone()),
    };
    let (fleet, rows) = stored_fleet(&args.store)?;
    let now = jiff::Timestamp::now().as_microsecond();
    let nodes = placements::members(&repo, &fleet, &against, now);
    let current = placements::Current::stored(&rows, &against);
    println!(
        "plan of `{}` at {} against the {} node(s) of `{against}`:",
        local.environment,
        local.commit,
        nodes.len()
    );
    let plan = placements::plan(&repo, nodes, &current, &local.commit);
    print_plan(&plan);
    Ok(if broken {
        1
    } else if plan.changes() {
        2
    } else {
        0
    })
}

/// The fleet and every placement, from the server's database (opened as
/// the server opens it).
pub(super) fn stored_fleet(
    store: &super::StoreArgs,
) -> anyhow::Result<(Vec<FleetNode>, Vec<PlacementRow>)> {
    store.read(async |db| {
        anyhow::Ok((
            crate::db::apps::fleet(db).await?,
            crate::db::apps::placements(db).await?,
        ))
    })
}

/// Prints each replica's fate (a replica pending before and after is no
/// change), by app and replica.
fn print_plan(plan: &placements::Plan) {
    for r in &plan.replicas {
        let what = match r.fate {
            Fate::Pending => format!("pending: {}", r.reason.as_deref().unwrap_or("no node fits")),
            _ => r.what(),
        };
        println!("  {}#{}: {what}", r.app, r.replica);
    }
    if plan.replicas.is_empty() {
        println!("  no apps");
    }
}
