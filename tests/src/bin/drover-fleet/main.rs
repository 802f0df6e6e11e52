//! drover-fleet: thousands of simulated agents in one process against a
//! real `drover-server` on 127.0.0.1, to measure what one server holds.
//!
//! Scenarios (each on a fresh server and data directory):
//! - `spread`: `--nodes` nodes enroll (setup, not measured), then check in
//!   `--checkins` times, spread evenly over `--spread-secs` each round (the
//!   first round compiles and fetches contents, later ones get 304);
//! - `burst`: `--burst` nodes check in at the same instant; the server sheds
//!   compiles beyond its capacity with 503 + Retry-After, the nodes back off
//!   with jitter, and a node whose run fell back runs again after
//!   `--burst-interval-secs` until every node converged;
//! - `compile`: catalogs per second of a 500-resource catalog through the
//!   HTTP route, facts changing at every request (compile cache missed) and
//!   the same facts (compile cache hit);
//! - `watch`: `--watchers` nodes hold the catalog watch as daemons do, a
//!   commit to the site's git repository and the webhook move every
//!   node's catalog, and each node is timed to its watch answering and to
//!   its report of the new version (see [`watch`]).
//!
//! `--servers N` (spread only) starts N servers sharing one `--database`
//! (PostgreSQL) and one cluster secret, the first before the others (it
//! creates the CA the others then read), and spreads the nodes over them:
//! node i enrolls and checks in through server i mod N (or enrolls through
//! the first, `--enroll-on-first-server`); each server gets its own table,
//! and the fleet a combined one.
//!
//! Prints a table per scenario and writes every figure to `--out` as JSON.

mod conn;
mod node;
mod scenarios;
mod server;
mod site;
mod stats;
mod watch;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Spread,
    Burst,
    Compile,
    Watch,
    All,
}

#[derive(Debug, Parser)]
#[command(
    name = "drover-fleet",
    about = "simulated agents against a real drover-server"
)]
pub struct Args {
    /// Which scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// spread: simulated nodes.
    #[arg(long, default_value_t = 10_000)]
    pub nodes: u64,
    /// spread: seconds each round of check-ins is spread over.
    #[arg(long, default_value_t = 60)]
    pub spread_secs: u64,
    /// spread: check-ins per node (the first compiles, the next get 304).
    #[arg(long, default_value_t = 2)]
    pub checkins: u32,
    /// burst: nodes checking in at the same instant.
    #[arg(long, default_value_t = 2_000)]
    pub burst: u64,
    /// burst: seconds before a node whose run fell back runs again.
    #[arg(long, default_value_t = 5)]
    pub burst_interval_secs: u64,
    /// compile: requests per measurement.
    #[arg(long, default_value_t = 200)]
    pub compile_requests: u64,
    /// compile: requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub compile_concurrency: u64,
    /// watch: nodes holding the catalog watch.
    #[arg(long, default_value_t = 1_000)]
    pub watchers: u64,
    /// watch: seconds after the webhook a node still counts as converging.
    #[arg(long, default_value_t = 60)]
    pub watch_deadline_secs: u64,
    /// spread: servers sharing `--database`, each node on one of them.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// spread: the servers' database (`database` in their server.toml,
    /// e.g. postgres://USER@localhost:PORT/DB?host=SOCKETDIR)
    /// [default: each server's DATA/drover.db].
    #[arg(long)]
    pub database: Option<String>,
    /// spread: the database server's pid (PostgreSQL's postmaster), whose
    /// CPU time and its children's over the rounds is printed.
    #[arg(long)]
    pub database_pid: Option<u32>,
    /// spread, with `--servers`: every node enrolls through the first
    /// server (and still checks in on its own).
    #[arg(long)]
    pub enroll_on_first_server: bool,
    /// Keep the scenarios' directories (site, data dirs, server logs) and
    /// print where they are.
    #[arg(long)]
    pub keep_dirs: bool,
    /// Plain HTTP, the node named by the path (no enrollment, no TLS).
    #[arg(long)]
    pub insecure_http: bool,
    /// Enrollments in flight at once during setup.
    #[arg(long, default_value_t = 32)]
    pub enroll_concurrency: usize,
    /// The server binary [default: drover-server next to this one].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Where the JSON figures go.
    #[arg(long, default_value = "bench-out/fleet.json")]
    pub out: PathBuf,
}

impl Args {
    pub fn watch_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.watch_deadline_secs)
    }
}

/// Raises the soft open-file limit to the hard one: every simulated node
/// holds a connection (a watching one two, briefly); the limit now.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.servers == 0 {
        anyhow::bail!("--servers must be at least 1");
    }
    if (args.servers > 1 || args.database.is_some()) && args.scenario != Scenario::Spread {
        anyhow::bail!("--servers and --database take --scenario spread");
    }
    if args.servers > 1 && args.database.is_none() {
        anyhow::bail!(
            "--servers {} needs a --database they share (PostgreSQL)",
            args.servers
        );
    }
    let fds = raise_fd_limit();
    let server_bin = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the simulator's directory")?
            .join("drover-server"),
    };
    if !server_bin.exists() {
        anyhow::bail!(
            "{} is missing\nhint: cargo build --release --bins (or pass --server-bin)",
            server_bin.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "drover-fleet: {} CPUs, open-file limit {fds}, {}, server {}",
        cpus,
        if args.insecure_http {
            "plain HTTP (--insecure-http)"
        } else {
            "mutual TLS, one enrolled certificate per node"
        },
        server_bin.display()
    );
    if let Some(url) = &args.database {
        println!(
            "drover-fleet: {} server(s) on one database, {}",
            args.servers,
            drover_server::db::redacted(url)
        );
    }
    let mut results = serde_json::Map::new();
    let all = args.scenario == Scenario::All;
    if all || args.scenario == Scenario::Spread {
        let r = runtime.block_on(scenarios::spread(&args, &server_bin))?;
        results.insert("spread".into(), r);
    }
    if all || args.scenario == Scenario::Burst {
        let r = runtime.block_on(scenarios::burst(&args, &server_bin))?;
        results.insert("burst".into(), r);
    }
    if all || args.scenario == Scenario::Compile {
        let r = runtime.block_on(scenarios::compile(&args, &server_bin))?;
        results.insert("compile".into(), r);
    }
    if all || args.scenario == Scenario::Watch {
        let r = runtime.block_on(watch::watch(&args, &server_bin))?;
        results.insert("watch".into(), r);
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs_err::create_dir_all(dir)?;
    }
    let document = json!({
        "cpus": cpus,
        "transport": if args.insecure_http { "http" } else { "mtls" },
        "servers": args.servers,
        "database": args.database.as_deref().map(drover_server::db::redacted),
        "at": jiff::Timestamp::now().to_string(),
        "scenarios": results,
    });
    fs_err::write(&args.out, serde_json::to_vec_pretty(&document)?)?;
    println!("\nfigures written to {}", args.out.display());
    Ok(())
}
