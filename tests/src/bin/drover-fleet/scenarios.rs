//! The scenarios: each starts its own server over a fresh data directory,
//! enrolls its nodes (setup, timed apart), runs, and returns its figures.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Args;
use crate::node::{CheckIn, Fleet, SimNode};
use crate::server::Server;
use crate::site;
use crate::stats::{Route, Stats};

/// A running server with its site, and the fleet's shared parts.
/// Fields drop in order: the servers stop before their directory goes.
pub(crate) struct Setup {
    pub server: Server,
    pub fleet: Arc<Fleet>,
    /// The servers after the first (`--servers`), each with its own fleet
    /// (address and stats) over the same CA.
    pub more: Vec<(Server, Arc<Fleet>)>,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// The site the server reads.
    pub(crate) fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("site")
    }
}

/// A server over a fresh site: a plain directory, or with `git` a git
/// repository (which the server mirrors, and a webhook refreshes). With
/// `--servers N` (spread only), N servers on `--database` with one cluster
/// secret, each its own data directory; the first is up (and has stored
/// the CA) before the next starts.
pub(crate) async fn start(args: &Args, bin: &Path, extra_toml: &str, git: bool) -> Result<Setup> {
    let dir = tempfile::Builder::new()
        .prefix("drover-fleet-")
        .disable_cleanup(args.keep_dirs)
        .tempdir()?;
    if args.keep_dirs {
        println!("drover-fleet: keeping {}", dir.path().display());
    }
    let repo = dir.path().join("site");
    site::generate(&repo)?;
    if git {
        site::init_git(&repo)?;
    }
    let mut toml = extra_toml.to_owned();
    if let Some(url) = &args.database {
        toml.push_str(&format!(
            "database = {url:?}\ncluster_secret_file = {:?}\n",
            dir.path().join("cluster-secret").display().to_string()
        ));
    }
    let mut servers = Vec::with_capacity(args.servers);
    for n in 0..args.servers.max(1) {
        let data = if n == 0 {
            dir.path().join("data")
        } else {
            dir.path().join(format!("data-{}", n + 1))
        };
        servers.push(Server::start(bin, &repo, &data, args.insecure_http, &toml)?);
    }
    let server = servers.remove(0);
    let roots = if args.insecure_http {
        None
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let pem = server.ca_pem()?;
        for other in &servers {
            if other.ca_pem()? != pem {
                bail!(
                    "{} holds another CA than {}: the servers do not share one",
                    other.data_dir.display(),
                    server.data_dir.display()
                );
            }
        }
        let ca = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .context("the server's CA does not parse")?;
        roots.add(ca)?;
        Some(Arc::new(roots))
    };
    let fleet_of = |server: &Server| {
        Arc::new(Fleet {
            addr: server.addr,
            roots: roots.clone(),
            stats: Arc::default(),
        })
    };
    let fleet = fleet_of(&server);
    let more = servers
        .into_iter()
        .map(|s| {
            let f = fleet_of(&s);
            (s, f)
        })
        .collect();
    Ok(Setup {
        server,
        fleet,
        more,
        dir,
    })
}

/// `count` nodes named `ROLE-NNNNN` (roles in turn), `prefix` before the number.
pub(crate) fn nodes(count: u64, prefix: &str) -> Vec<SimNode> {
    (0..count)
        .map(|i| {
            let role = site::ROLES[(i % site::ROLES.len() as u64) as usize];
            SimNode::new(format!("{role}-{prefix}{i:05}"), i, 0)
        })
        .collect()
}

/// Enrolls every node, `concurrency` at a time; prints how long it took.
pub(crate) async fn enroll(
    setup: &Setup,
    nodes: Vec<SimNode>,
    concurrency: usize,
) -> Result<Vec<SimNode>> {
    let fleets = [Arc::clone(&setup.fleet)];
    let nodes = nodes.into_iter().map(|n| (0, n)).collect();
    let enrolled = enroll_on(&fleets, nodes, concurrency).await?;
    Ok(enrolled.into_iter().map(|(_, n)| n).collect())
}

/// [`enroll`] with each node through its own server: `(i, node)` enrolls
/// through `fleets[i]`; returned sorted by name, each with its `i`.
pub(crate) async fn enroll_on(
    fleets: &[Arc<Fleet>],
    nodes: Vec<(usize, SimNode)>,
    concurrency: usize,
) -> Result<Vec<(usize, SimNode)>> {
    if fleets[0].roots.is_none() {
        return Ok(nodes);
    }
    let started = Instant::now();
    let count = nodes.len();
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (i, mut node) in nodes {
        let (slots, fleet) = (Arc::clone(&slots), Arc::clone(&fleets[i]));
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            node.enroll(&fleet).await.map(|()| (i, node))
        });
    }
    let mut enrolled = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        enrolled.push(done??);
    }
    enrolled.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let took = started.elapsed().as_secs_f64();
    println!(
        "setup: {count} nodes enrolled in {took:.1} s ({:.0}/s, key + CSR + signed certificate each)",
        count as f64 / took
    );
    Ok(enrolled)
}

pub(crate) fn memory(setup: &Setup) -> Result<Value> {
    server_memory(&setup.server, "server")
}

fn server_memory(server: &Server, label: &str) -> Result<Value> {
    let (hwm, rss) = server.memory_kib()?;
    println!(
        "{label} memory: peak RSS (VmHWM) {:.1} MiB, now {:.1} MiB",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    Ok(json!({"server_peak_rss_kib": hwm, "server_rss_kib": rss}))
}

/// CPU seconds so far: each server's, the simulator's, and the database
/// server's (`--database-pid`, with its children).
struct Cpu {
    servers: Vec<f64>,
    simulator: f64,
    database: Option<f64>,
}

impl Cpu {
    fn now(servers: &[&Server], database: Option<u32>) -> Result<Cpu> {
        Ok(Cpu {
            servers: servers
                .iter()
                .map(|s| s.cpu_secs())
                .collect::<Result<_>>()?,
            simulator: crate::server::own_cpu_secs()?,
            database: database.map(crate::server::tree_cpu_secs).transpose()?,
        })
    }
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Check-ins by outcome, and 503s answered.
#[derive(Debug, Default, Clone, Copy)]
struct Outcomes {
    busy: u64,
    fresh: u64,
    unchanged: u64,
    fell_back: u64,
    failed: u64,
}

impl Outcomes {
    fn print(&self) {
        let Outcomes {
            busy,
            fresh,
            unchanged,
            fell_back,
            failed,
        } = self;
        println!(
            "check-ins: {fresh} new catalog, {unchanged} unchanged (304), {fell_back} fell back on 503, {failed} failed; 503s: {busy}"
        );
    }
}

/// Scenario 1: check-ins spread evenly over `spread_secs`, `checkins` rounds
/// (over `--servers` servers: node i through server i mod N).
pub(crate) async fn spread(args: &Args, bin: &Path) -> Result<Value> {
    let setup = start(args, bin, "", false).await?;
    let fleets: Vec<Arc<Fleet>> = std::iter::once(Arc::clone(&setup.fleet))
        .chain(setup.more.iter().map(|(_, f)| Arc::clone(f)))
        .collect();
    let servers: Vec<&Server> = std::iter::once(&setup.server)
        .chain(setup.more.iter().map(|(s, _)| s))
        .collect();
    let many = servers.len();
    let nodes: Vec<(usize, SimNode)> = nodes(args.nodes, "")
        .into_iter()
        .enumerate()
        .map(|(i, node)| (i % many, node))
        .collect();
    let nodes = if args.enroll_on_first_server && many > 1 {
        // Enrolled through the first server, checking in on their own.
        let homes: std::collections::HashMap<String, usize> = nodes
            .iter()
            .map(|(home, node)| (node.name.clone(), *home))
            .collect();
        let nodes = nodes.into_iter().map(|(_, node)| (0, node)).collect();
        enroll_on(&fleets, nodes, args.enroll_concurrency)
            .await?
            .into_iter()
            .map(|(_, node)| (homes[&node.name], node))
            .collect()
    } else {
        enroll_on(&fleets, nodes, args.enroll_concurrency).await?
    };
    let count = nodes.len() as u64;
    let mut homed = vec![0u64; many];
    for (home, _) in &nodes {
        homed[*home] += 1;
    }
    let round = Duration::from_secs(args.spread_secs);
    let cpu_before = Cpu::now(&servers, args.database_pid)?;
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for (i, (home, mut node)) in nodes.into_iter().enumerate() {
        let fleet = Arc::clone(&fleets[home]);
        let offset = round.mul_f64(i as f64 / count.max(1) as f64);
        let checkins = args.checkins;
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..checkins {
                tokio::time::sleep_until(started + offset + round * n).await;
                outcomes.push(node.check_in(&fleet).await);
            }
            (home, node.busy, outcomes)
        });
    }
    let mut per_server = vec![Outcomes::default(); many];
    while let Some(done) = tasks.join_next().await {
        let (home, b, outcomes) = done?;
        let o = &mut per_server[home];
        o.busy += u64::from(b);
        for outcome in outcomes {
            match outcome {
                CheckIn::Fresh => o.fresh += 1,
                CheckIn::Unchanged => o.unchanged += 1,
                CheckIn::FellBack => o.fell_back += 1,
                CheckIn::Failed => o.failed += 1,
            }
        }
    }
    let duration = started.elapsed().as_secs_f64();
    let cpu_after = Cpu::now(&servers, args.database_pid)?;
    let server_cpu: Vec<f64> = cpu_after
        .servers
        .iter()
        .zip(&cpu_before.servers)
        .map(|(a, b)| a - b)
        .collect();
    let mut per_server_json = Vec::new();
    if many > 1 {
        for (k, (server, fleet)) in servers.iter().zip(&fleets).enumerate() {
            fleet.stats.print(&format!(
                "server {} of {many} ({}, {}): {} nodes",
                k + 1,
                server.addr,
                server.data_dir.display(),
                homed[k]
            ));
            per_server[k].print();
            let mem = server_memory(server, "server")?;
            println!(
                "server CPU over the rounds: {:.1} s ({:.0}% of one core)",
                server_cpu[k],
                100.0 * server_cpu[k] / duration
            );
            let o = per_server[k];
            per_server_json.push(json!({
                "addr": server.addr.to_string(), "nodes": homed[k],
                "errors": fleet.stats.errors(), "requests": fleet.stats.requests(),
                "busy_503": o.busy, "fresh": o.fresh, "unchanged": o.unchanged,
                "fell_back": o.fell_back, "failed": o.failed,
                "cpu_s": server_cpu[k], "memory": mem, "stats": fleet.stats.to_json(),
            }));
        }
    }
    let merged;
    let stats: &Stats = if many > 1 {
        merged = Stats::merged(fleets.iter().map(|f| &*f.stats));
        &merged
    } else {
        &setup.fleet.stats
    };
    let total = per_server
        .iter()
        .fold(Outcomes::default(), |a, o| Outcomes {
            busy: a.busy + o.busy,
            fresh: a.fresh + o.fresh,
            unchanged: a.unchanged + o.unchanged,
            fell_back: a.fell_back + o.fell_back,
            failed: a.failed + o.failed,
        });
    let title = format!(
        "spread: {count} nodes x {} check-ins, each round over {} s ({duration:.1} s in all)",
        args.checkins, args.spread_secs
    );
    stats.print(&if many > 1 {
        format!("{title}, all {many} servers together")
    } else {
        title
    });
    total.print();
    let (mem, peak_mib) = if many > 1 {
        let peaks: Vec<u64> = servers
            .iter()
            .map(|s| s.memory_kib().map(|(hwm, _)| hwm))
            .collect::<Result<_>>()?;
        let highest = peaks.iter().copied().max().unwrap_or(0);
        println!(
            "servers memory: peak RSS (VmHWM) {} MiB, highest {:.1} MiB",
            peaks
                .iter()
                .map(|p| format!("{:.1}", *p as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" + "),
            highest as f64 / 1024.0
        );
        (
            json!({"server_peak_rss_kib": highest, "servers_peak_rss_kib": peaks}),
            highest as f64 / 1024.0,
        )
    } else {
        let mem = memory(&setup)?;
        let peak = mem["server_peak_rss_kib"].as_u64().unwrap_or(0) as f64 / 1024.0;
        (mem, peak)
    };
    let servers_cpu: f64 = server_cpu.iter().sum();
    let simulator_cpu = cpu_after.simulator - cpu_before.simulator;
    let database_cpu = cpu_after
        .database
        .zip(cpu_before.database)
        .map(|(a, b)| a - b);
    println!(
        "CPU over the rounds: server{} {servers_cpu:.1} s ({:.0}% of one core){}, simulator {simulator_cpu:.1} s",
        if many > 1 { "s" } else { "" },
        100.0 * servers_cpu / duration,
        database_cpu.map_or(String::new(), |d| format!(
            ", database {d:.1} s ({:.0}% of one core)",
            100.0 * d / duration
        )),
    );
    let p99 = [Route::Catalog, Route::File, Route::Report]
        .map(|r| stats.percentiles(r)[2])
        .into_iter()
        .fold(0.0, f64::max);
    let errors = stats.errors();
    if count >= 10_000 && args.spread_secs <= 60 {
        println!("target zero errors: {errors}, {}", verdict(errors == 0));
        println!(
            "target p99 < 50 ms (worst route): {p99:.1} ms, {}",
            verdict(p99 < 50.0)
        );
        println!(
            "target server RSS < 300 MB{}: {peak_mib:.1} MiB, {}",
            if many > 1 { " (each server)" } else { "" },
            verdict(peak_mib * 1.048_576 < 300.0)
        );
    }
    let Outcomes {
        busy,
        fresh,
        unchanged,
        fell_back,
        failed,
    } = total;
    let mut figures = json!({
        "nodes": count, "checkins": args.checkins, "spread_secs": args.spread_secs,
        "duration_s": duration, "requests": stats.requests(), "errors": errors, "busy_503": busy,
        "fresh": fresh, "unchanged": unchanged, "fell_back": fell_back, "failed": failed,
        "worst_p99_ms": p99, "memory": mem, "stats": stats.to_json(),
        "cpu_s": {"servers": servers_cpu, "simulator": simulator_cpu, "database": database_cpu},
    });
    if many > 1 {
        figures["servers"] = Value::Array(per_server_json);
    }
    Ok(figures)
}

/// Scenario 2: every node at the same instant, runs repeated until converged.
pub(crate) async fn burst(args: &Args, bin: &Path) -> Result<Value> {
    let setup = start(args, bin, "", false).await?;
    let nodes = enroll(&setup, nodes(args.burst, "b"), args.enroll_concurrency).await?;
    let count = nodes.len() as u64;
    let interval = Duration::from_secs(args.burst_interval_secs);
    // Every task waits at the gate, then they all go.
    let gate = Arc::new(tokio::sync::Barrier::new(nodes.len() + 1));
    let mut tasks = JoinSet::new();
    for mut node in nodes {
        let (fleet, gate) = (Arc::clone(&setup.fleet), Arc::clone(&gate));
        tasks.spawn(async move {
            gate.wait().await;
            let started = Instant::now();
            let mut runs = 0u32;
            // A bounded number of runs: a node that never converges is a failure.
            while runs < 20 {
                runs += 1;
                match node.check_in(&fleet).await {
                    CheckIn::Fresh | CheckIn::Unchanged => {
                        return (true, runs, node.busy, started.elapsed());
                    }
                    CheckIn::FellBack | CheckIn::Failed => tokio::time::sleep(interval).await,
                }
            }
            (false, runs, node.busy, started.elapsed())
        });
    }
    gate.wait().await;
    let started = Instant::now();
    let (mut converged, mut busy, mut reruns, mut max_runs) = (0u64, 0u64, 0u64, 0u32);
    let mut last = Duration::ZERO;
    while let Some(done) = tasks.join_next().await {
        let (ok, runs, b, took) = done?;
        converged += u64::from(ok);
        busy += u64::from(b);
        reruns += u64::from(runs - 1);
        max_runs = max_runs.max(runs);
        last = last.max(took);
    }
    let duration = started.elapsed().as_secs_f64();
    let stats = &setup.fleet.stats;
    stats.print(&format!(
        "burst: {count} nodes checking in at the same instant"
    ));
    println!(
        "converged: {converged} of {count} in {:.1} s; 503s answered: {busy}; runs that fell back or failed and ran again: {reruns} (at most {max_runs} runs for one node)",
        last.as_secs_f64()
    );
    let mem = memory(&setup)?;
    let hard = stats.errors();
    println!(
        "target no hard failure (every node converges, only 503s refused): {} errors, {converged}/{count} converged, {}",
        hard,
        verdict(hard == 0 && converged == count)
    );
    Ok(json!({
        "nodes": count, "duration_s": duration, "converged": converged,
        "all_converged_s": last.as_secs_f64(), "busy_503": busy, "reruns": reruns,
        "max_runs": max_runs, "errors": hard, "requests": stats.requests(),
        "memory": mem, "stats": stats.to_json(),
    }))
}

/// Scenario 3: catalogs per second of the 500-resource role over HTTP.
pub(crate) async fn compile(args: &Args, bin: &Path) -> Result<Value> {
    let setup = start(args, bin, "", false).await?;
    let concurrency = args.compile_concurrency.max(1);
    let nodes: Vec<SimNode> = (0..concurrency)
        .map(|i| SimNode::new(format!("{}{i}", site::BIG_PREFIX), i, 0))
        .collect();
    let nodes = enroll(&setup, nodes, args.enroll_concurrency).await?;
    let mut figures = serde_json::Map::new();
    let mut nodes = nodes;
    for (label, vary) in [
        ("cache missed (facts change)", true),
        ("cache hit (same facts)", false),
    ] {
        let per_node = args.compile_requests.div_ceil(concurrency);
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for (n, mut node) in nodes.into_iter().enumerate() {
            let fleet = Arc::new(Fleet {
                addr: setup.fleet.addr,
                roots: setup.fleet.roots.clone(),
                stats: Arc::clone(&stats),
            });
            tasks.spawn(async move {
                let mut resources = 0;
                for i in 0..per_node {
                    if vary {
                        node.vary_facts(n as u64 * 1_000_000 + i + 1);
                    }
                    resources = node.fetch_catalog(&fleet).await?;
                }
                anyhow::Ok((node, resources))
            });
        }
        let mut back = Vec::new();
        let mut resources = 0;
        while let Some(done) = tasks.join_next().await {
            let (node, r) = done??;
            resources = r;
            back.push(node);
        }
        nodes = back;
        let took = started.elapsed().as_secs_f64();
        let total = per_node * concurrency;
        if stats.errors() > 0 || stats.count(Route::Catalog, 200) != total {
            stats.print("compile: failed requests");
            bail!("the compile scenario had failed requests ({label})");
        }
        let rate = total as f64 / took;
        let [p50, _, p99, _] = stats.percentiles(Route::Catalog);
        println!(
            "compile, {resources}-resource catalog, {label}: {rate:.0} catalogs/s ({total} requests, {concurrency} in flight, p50 {p50:.1} ms, p99 {p99:.1} ms)"
        );
        figures.insert(
            if vary { "miss" } else { "hit" }.into(),
            json!({"catalogs_per_s": rate, "requests": total, "concurrency": concurrency,
                   "resources": resources, "p50_ms": p50, "p99_ms": p99}),
        );
    }
    println!(
        "(through POST /api/v1/nodes/{{name}}/catalog: compile, database writes, JSON and signature included)"
    );
    figures.insert("memory".into(), memory(&setup)?);
    Ok(Value::Object(figures))
}
