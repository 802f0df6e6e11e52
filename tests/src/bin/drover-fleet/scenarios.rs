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
pub(crate) struct Setup {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub fleet: Arc<Fleet>,
}

impl Setup {
    /// The site the server reads.
    pub(crate) fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("site")
    }
}

/// A server over a fresh site: a plain directory, or with `git` a git
/// repository (which the server mirrors, and a webhook refreshes).
pub(crate) async fn start(args: &Args, bin: &Path, extra_toml: &str, git: bool) -> Result<Setup> {
    let dir = tempfile::Builder::new().prefix("drover-fleet-").tempdir()?;
    let repo = dir.path().join("site");
    site::generate(&repo)?;
    if git {
        site::init_git(&repo)?;
    }
    let server = Server::start(
        bin,
        &repo,
        &dir.path().join("data"),
        args.insecure_http,
        extra_toml,
    )?;
    let roots = if args.insecure_http {
        None
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let pem = server.ca_pem()?;
        let ca = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .context("the server's CA does not parse")?;
        roots.add(ca)?;
        Some(Arc::new(roots))
    };
    let fleet = Arc::new(Fleet {
        addr: server.addr,
        roots,
        stats: Arc::default(),
    });
    Ok(Setup { dir, server, fleet })
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
    if setup.fleet.roots.is_none() {
        return Ok(nodes);
    }
    let started = Instant::now();
    let count = nodes.len();
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for mut node in nodes {
        let (slots, fleet) = (Arc::clone(&slots), Arc::clone(&setup.fleet));
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            node.enroll(&fleet).await.map(|()| node)
        });
    }
    let mut enrolled = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        enrolled.push(done??);
    }
    enrolled.sort_by(|a, b| a.name.cmp(&b.name));
    let took = started.elapsed().as_secs_f64();
    println!(
        "setup: {count} nodes enrolled in {took:.1} s ({:.0}/s, key + CSR + signed certificate each)",
        count as f64 / took
    );
    Ok(enrolled)
}

pub(crate) fn memory(setup: &Setup) -> Result<Value> {
    let (hwm, rss) = setup.server.memory_kib()?;
    println!(
        "server memory: peak RSS (VmHWM) {:.1} MiB, now {:.1} MiB",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    Ok(json!({"server_peak_rss_kib": hwm, "server_rss_kib": rss}))
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Scenario 1: check-ins spread evenly over `spread_secs`, `checkins` rounds.
pub(crate) async fn spread(args: &Args, bin: &Path) -> Result<Value> {
    let setup = start(args, bin, "", false).await?;
    let nodes = enroll(&setup, nodes(args.nodes, ""), args.enroll_concurrency).await?;
    let count = nodes.len() as u64;
    let round = Duration::from_secs(args.spread_secs);
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for (i, mut node) in nodes.into_iter().enumerate() {
        let fleet = Arc::clone(&setup.fleet);
        let offset = round.mul_f64(i as f64 / count.max(1) as f64);
        let checkins = args.checkins;
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..checkins {
                tokio::time::sleep_until(started + offset + round * n).await;
                outcomes.push(node.check_in(&fleet).await);
            }
            (node.busy, outcomes)
        });
    }
    let (mut busy, mut fresh, mut unchanged, mut fell_back, mut failed) = (0u64, 0, 0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        let (b, outcomes) = done?;
        busy += u64::from(b);
        for o in outcomes {
            match o {
                CheckIn::Fresh => fresh += 1,
                CheckIn::Unchanged => unchanged += 1,
                CheckIn::FellBack => fell_back += 1,
                CheckIn::Failed => failed += 1,
            }
        }
    }
    let duration = started.elapsed().as_secs_f64();
    let stats = &setup.fleet.stats;
    stats.print(&format!(
        "spread: {count} nodes x {} check-ins, each round over {} s ({duration:.1} s in all)",
        args.checkins, args.spread_secs
    ));
    println!(
        "check-ins: {fresh} new catalog, {unchanged} unchanged (304), {fell_back} fell back on 503, {failed} failed; 503s: {busy}"
    );
    let mem = memory(&setup)?;
    let p99 = [Route::Catalog, Route::File, Route::Report]
        .map(|r| stats.percentiles(r)[2])
        .into_iter()
        .fold(0.0, f64::max);
    let peak_mib = mem["server_peak_rss_kib"].as_u64().unwrap_or(0) as f64 / 1024.0;
    let errors = stats.errors();
    if count >= 10_000 && args.spread_secs <= 60 {
        println!("target zero errors: {errors}, {}", verdict(errors == 0));
        println!(
            "target p99 < 50 ms (worst route): {p99:.1} ms, {}",
            verdict(p99 < 50.0)
        );
        println!(
            "target server RSS < 300 MB: {peak_mib:.1} MiB, {}",
            verdict(peak_mib * 1.048_576 < 300.0)
        );
    }
    Ok(json!({
        "nodes": count, "checkins": args.checkins, "spread_secs": args.spread_secs,
        "duration_s": duration, "requests": stats.requests(), "errors": errors, "busy_503": busy,
        "fresh": fresh, "unchanged": unchanged, "fell_back": fell_back, "failed": failed,
        "worst_p99_ms": p99, "memory": mem, "stats": stats.to_json(),
    }))
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
