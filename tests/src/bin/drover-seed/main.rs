//! drover-seed: the fleet a server would have stored, for the dashboard
//! benchmark (`scripts/bench dashboard`): 10,000 nodes and 1,000,000
//! reports over two weeks by default, deterministic from `--seed`.
//!
//! It writes through the server's own database code, so its rows cannot
//! drift from the server's: `drover_server::db::open` (the migrations),
//! `db::insert_reports` (the statements a stored report runs, many reports
//! to a transaction of the server's writer) and
//! `db::record_catalog_request_at` (what the catalog route records); the
//! catalogs are compiled from the repository as a development-mode server
//! compiles them, and every report is a `drover_catalog::Report`
//! serialized as the agent posts it. The result is read back through the
//! server's queries before it exits (see [`check`]).
//!
//! - `drover-seed repo DIR` writes the benchmark's catalog repository;
//! - `drover-seed fleet --db FILE --repo DIR` seeds an empty database and
//!   writes what the page checks need to `--summary` as JSON.

mod check;
mod facts;
mod rng;
mod runs;
mod seed;
mod site;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "drover-seed",
    about = "the fleet a drover-server would have stored, for the dashboard benchmark"
)]
enum Command {
    /// Writes the benchmark's catalog repository into DIR (a new directory).
    Repo { dir: PathBuf },
    /// Seeds an empty (or new) database with the fleet.
    Fleet(FleetArgs),
    /// Writes the fleet's facts as DIR/NODE.json, for `drover-server diff
    /// --facts-dir` (`scripts/bench diff`).
    Facts {
        /// A new directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        #[arg(long, default_value_t = 6)]
        seed: u64,
    },
}

#[derive(Debug, clap::Args)]
struct FleetArgs {
    /// The server's database file (DATA_DIR/drover.db); created and
    /// migrated if missing, and it must hold no node yet.
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// The catalog repository the server serves (a plain directory, as
    /// `drover-seed repo` writes it).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Nodes.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Reports, spread evenly over the nodes (at least one each).
    #[arg(long, default_value_t = 1_000_000)]
    reports: usize,
    /// Seed of the random generator: the same seed, the same fleet.
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// The node whose every run is listed in the summary [default: the
    /// node in the middle, web-05000 of 10,000].
    #[arg(long, value_name = "NODE")]
    probe: Option<String>,
    /// Writes what the page checks need to know as JSON.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Command::parse() {
        Command::Repo { dir } => site::write_repo(&dir),
        Command::Facts { dir, nodes, seed } => write_facts(&dir, nodes, seed),
        Command::Fleet(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(fleet(args)),
    }
}

/// Each node's facts as the seeded fleet has them, one JSON file per node.
fn write_facts(dir: &Path, nodes: usize, seed: u64) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    let mut rng = rng::Rng::new(seed);
    for i in 1..=nodes {
        let name = format!("web-{i:05}");
        let os = facts::Os::ALL[rng.weighted(&facts::Os::WEIGHTS)];
        let facts = facts::facts_of(i, &name, os, &mut rng);
        fs_err::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec(&facts)?,
        )?;
    }
    eprintln!("wrote the facts of {nodes} nodes into {}", dir.display());
    Ok(())
}

async fn fleet(args: FleetArgs) -> Result<()> {
    let started = Instant::now();
    let (head, variants) = site::compile(&args.repo)?;
    let path = std::path::absolute(&args.db)?;
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let db = drover_server::db::open(&format!("sqlite://{}", path.display()))
        .await
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    let before = drover_server::fleet::counts(
        &db,
        &drover_server::fleet::Context {
            unresponsive_before_us: 0,
            held: Default::default(),
            heads: Default::default(),
        },
    )
    .await?;
    if before.total > 0 {
        bail!(
            "{} holds {} nodes already; seed a new database",
            path.display(),
            before.total
        );
    }
    let plan = seed::Plan {
        nodes: args.nodes,
        reports: args.reports,
        seed: args.seed,
        probe: args
            .probe
            .unwrap_or_else(|| format!("web-{:05}", args.nodes / 2)),
    };
    eprintln!(
        "seeding {} nodes and {} reports into {} ...",
        plan.nodes,
        plan.reports,
        path.display()
    );
    let fleet = seed::seed(&db, &plan, &head, &variants).await?;
    let seeded = started.elapsed();
    check::check(&db, &fleet).await?;
    drop(db);
    wait_closed(&path).await;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {} nodes and {} reports in {:.1} s ({:.1} s with the checks)",
        plan.nodes,
        plan.reports,
        seeded.as_secs_f64(),
        seconds
    );
    if let Some(out) = &args.summary {
        fs_err::write(out, serde_json::to_vec(&summary(&fleet, &plan, seconds))?)?;
    }
    Ok(())
}

/// The server's writer and readers close once the last handle is dropped
/// (the readers at the next checkpoint tick, a second later); the last
/// connection to close checkpoints the WAL into the database and removes
/// it, so the benchmark's server starts on one file, as after a clean stop.
async fn wait_closed(db: &Path) {
    let wal = db.with_file_name(format!(
        "{}-wal",
        db.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    for _ in 0..100 {
        if !wal.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("note: {} is still there after 10 s", wal.display());
}

/// What `scripts/bench_dashboard.py` checks the pages against.
fn summary(fleet: &seed::Fleet, plan: &seed::Plan, seconds: f64) -> serde_json::Value {
    let states = fleet.states();
    let probe_runs: Vec<_> = fleet
        .probe_runs
        .iter()
        .map(|r| json!({"run_id": r.run_id, "status": r.status.as_str(), "finished_at": r.finished.to_string()}))
        .collect();
    json!({
        "head": fleet.head,
        "now": fleet.now.to_string(),
        "nodes": plan.nodes,
        "reports": plan.reports,
        "seed": plan.seed,
        "seconds": seconds,
        "names": fleet.names,
        "os_ids": fleet.os.iter().map(|o| o.id()).collect::<Vec<_>>(),
        "state_of": states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "node_states": fleet.state_counts().into_iter().map(|(s, n)| (s.as_str(), n)).collect::<std::collections::BTreeMap<_, _>>(),
        "stale": fleet.last.iter().filter(|r| fleet.is_stale(r)).count(),
        "statuses": fleet.runs.statuses,
        "probe": plan.probe,
        "probe_runs": probe_runs,
        "facts_bytes": fleet.facts_bytes,
        "body_bytes": fleet.runs.body_bytes as f64 / plan.reports as f64,
    })
}
