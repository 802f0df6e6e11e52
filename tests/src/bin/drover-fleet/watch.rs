//! The catalog-watch scenario: push to converged. Enrolled nodes check in
//! once (so the server knows their facts and version), then each holds
//! `GET nodes/{name}/catalog/watch` as the daemon does (agent/src/watch.rs:
//! the version it holds, 55 s, watching again on timeout, backing off on
//! errors). The simulator commits a change that moves every node's catalog
//! to the site's git repository, calls the git webhook, and times each node
//! from the webhook call to (a) its watch answering with the new version
//! and (b) its run — after the daemon's random wait of up to a second —
//! having fetched the new catalog (200 on `If-None-Match`), the new content,
//! and posted its report of the new version.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, header};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Args;
use crate::conn::{Conn, TIMEOUT};
use crate::node::{CheckIn, Fleet, SimNode, timed};
use crate::scenarios::{Setup, enroll, memory, nodes, start, verdict};
use crate::site;
use crate::stats::{Route, Stats, percentiles};

/// The daemon's long-poll (agent/src/watch.rs `WATCH_SECS`).
const WATCH_SECS: u64 = 55;
/// The daemon's random wait before the run it announces (`MAX_JITTER`).
const MAX_JITTER: Duration = Duration::from_secs(1);
/// The daemon's backoff after a failed watch, doubling up to the cap.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The target: every node reports the new version this soon after the webhook.
const TARGET: Duration = Duration::from_secs(5);
const TARGET_NODES: u64 = 1_000;
/// The longest the setup (first check-ins, watches opened) may take.
const SETUP_LIMIT: Duration = Duration::from_secs(900);

/// What the watching nodes share.
struct Shared {
    /// Where the measured requests are counted.
    fleet: Arc<Fleet>,
    /// The first check-ins' (setup).
    setup: Arc<Fleet>,
    /// First check-ins in flight at once.
    slots: Semaphore,
    /// When the webhook was sent; unset before.
    hooked: OnceLock<Instant>,
    /// Nodes holding their watch.
    watching: AtomicUsize,
    /// Nodes whose first check-in failed.
    broken: AtomicUsize,
}

/// One node's times, from the webhook call.
#[derive(Debug, Default)]
struct Timing {
    /// Its watch answered with the new version.
    watched: Option<Duration>,
    /// Its report of the new version was stored.
    reported: Option<Duration>,
    /// Runs it made after the webhook (more than one: a run fell back or failed).
    runs: u32,
}

/// The daemon's wait after `n` failures: doubling from a second to a
/// minute, in its upper half at random (`r` in [0, 1)).
fn backoff(n: u32, r: f64) -> Duration {
    let full = FIRST_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    full / 2 + (full / 2).mul_f64(r)
}

/// One long-poll on `conn`: the version the server announces and whether
/// it is news.
async fn watch_once(
    node: &SimNode,
    fleet: &Fleet,
    conn: &mut Conn,
    timeout_secs: u64,
) -> Result<(Option<String>, bool), String> {
    let mut path = node.path(&format!("catalog/watch?timeout_secs={timeout_secs}"));
    if let Some(version) = node.version() {
        path.push_str(&format!("&version={version}"));
    }
    let request = Request::get(path)
        .header(header::HOST, "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let started = Instant::now();
    let response = conn
        .send_within(request, Duration::from_secs(timeout_secs) + TIMEOUT)
        .await;
    let response = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            fleet
                .stats
                .answered(Route::Watch, status, started.elapsed());
            response
        }
        Err(failure) => {
            fleet.stats.failed(Route::Watch, failure.as_str());
            return Err(format!("watch of {}: {}", node.name, failure.as_str()));
        }
    };
    if response.status() != 200 {
        return Err(format!(
            "watch of {}: the server answered {}",
            node.name,
            response.status()
        ));
    }
    let answer: Value = serde_json::from_slice(response.body()).map_err(|_| {
        fleet.stats.failed(Route::Watch, "answer is not JSON");
        format!("watch of {}: the answer is not JSON", node.name)
    })?;
    let Some(changed) = answer["changed"].as_bool() else {
        fleet.stats.failed(Route::Watch, "answer without `changed`");
        return Err(format!("watch of {}: no `changed` in {answer}", node.name));
    };
    Ok((answer["version"].as_str().map(str::to_owned), changed))
}

/// One daemon, from its first check-in (setup) through its watch loop
/// until its report of a version announced after the webhook is stored.
async fn watcher(mut node: SimNode, shared: Arc<Shared>) -> Result<Timing, String> {
    {
        let _slot = shared.slots.acquire().await.map_err(|e| e.to_string())?;
        let outcome = node.check_in(&shared.setup).await;
        if outcome != CheckIn::Fresh {
            shared.broken.fetch_add(1, Ordering::SeqCst);
            return Err(format!(
                "the first check-in of {} ended {outcome:?}",
                node.name
            ));
        }
    }
    let fleet = &*shared.fleet;
    // The daemon's watch thread starts with the daemon. A wait of 0 s
    // answers at once: the connection is up before the webhook, so the
    // measured long-polls are all on the server already.
    let mut failures = 0u32;
    let mut conn = loop {
        let mut conn = node.connection(fleet);
        if watch_once(&node, fleet, &mut conn, 0).await.is_ok() {
            break conn;
        }
        failures += 1;
        let wait = backoff(failures, node.random());
        tokio::time::sleep(wait).await;
    };
    shared.watching.fetch_add(1, Ordering::SeqCst);
    let (mut timing, mut repeats) = (Timing::default(), 0u32);
    failures = 0;
    loop {
        let sent = Instant::now();
        let (version, changed) = match watch_once(&node, fleet, &mut conn, WATCH_SECS).await {
            Ok(answer) => {
                failures = 0;
                answer
            }
            Err(_) => {
                failures += 1;
                let wait = backoff(failures, node.random());
                tokio::time::sleep(wait).await;
                conn = node.connection(fleet);
                continue;
            }
        };
        let new = match version {
            Some(new) if changed && node.version() != Some(new.as_str()) => new,
            _ => {
                // An early "unchanged" is a server going away: pause, as the daemon does.
                if sent.elapsed() < FIRST_BACKOFF {
                    tokio::time::sleep(FIRST_BACKOFF).await;
                }
                continue;
            }
        };
        let Some(hooked) = shared.hooked.get().copied() else {
            return Err(format!(
                "{}: the watch announced {new} before the webhook",
                node.name
            ));
        };
        timing.watched.get_or_insert_with(|| hooked.elapsed());
        // The daemon's run starts after a random wait, later when the last
        // run did not reach this version.
        let mut delay = MAX_JITTER.mul_f64(node.random());
        if repeats > 0 {
            delay += backoff(repeats, node.random());
        }
        tokio::time::sleep(delay).await;
        timing.runs += 1;
        match node.check_in(fleet).await {
            CheckIn::Fresh if node.version() == Some(new.as_str()) => {
                timing.reported = Some(hooked.elapsed());
                return Ok(timing);
            }
            // A newer version than announced: watch with it.
            CheckIn::Fresh => repeats = 0,
            CheckIn::Unchanged | CheckIn::FellBack | CheckIn::Failed => repeats += 1,
        }
        // The daemon's next watch is a new connection.
        conn = node.connection(fleet);
    }
}

/// `POST /api/v1/hooks/git` with the operator token: its status and
/// whether the server says the refresh (and recompile) finished.
async fn call_webhook(setup: &Setup, stats: &Stats) -> Result<(u16, bool)> {
    let token = setup.server.operator_token()?;
    let mut conn = Conn::new(setup.fleet.addr, setup.fleet.tls(None)?);
    let request = Request::post("/api/v1/hooks/git")
        .header(header::HOST, "127.0.0.1")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let response = timed(stats, Route::Hook, &mut conn, request)
        .await
        .map_err(|f| anyhow::anyhow!("the git webhook: {}", f.as_str()))?;
    let status = response.status().as_u16();
    let answer: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    if status != 202 {
        bail!("the git webhook answered {status}: {answer}");
    }
    Ok((status, answer["refreshed"].as_bool().unwrap_or(false)))
}

fn print_row(label: &str, p: [f64; 4]) {
    println!(
        "{label:<28}{:>10.0}{:>10.0}{:>10.0}{:>10.0}",
        p[0], p[1], p[2], p[3]
    );
}

/// Scenario 4: push to converged through the catalog watch.
pub(crate) async fn watch(args: &Args, bin: &Path) -> Result<Value> {
    let setup = start(args, bin, "", true).await?;
    let nodes = enroll(&setup, nodes(args.watchers, "w"), args.enroll_concurrency).await?;
    let count = nodes.len();
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        fleet: Arc::new(Fleet {
            addr: setup.fleet.addr,
            roots: setup.fleet.roots.clone(),
            stats: Arc::clone(&stats),
        }),
        setup: Arc::clone(&setup.fleet),
        slots: Semaphore::new(args.enroll_concurrency.max(1)),
        hooked: OnceLock::new(),
        watching: AtomicUsize::new(0),
        broken: AtomicUsize::new(0),
    });
    let opening = Instant::now();
    let mut tasks = JoinSet::new();
    for node in nodes {
        tasks.spawn(watcher(node, Arc::clone(&shared)));
    }
    loop {
        let (watching, broken) = (
            shared.watching.load(Ordering::SeqCst),
            shared.broken.load(Ordering::SeqCst),
        );
        if broken > 0 {
            setup.fleet.stats.print("watch setup: first check-ins");
            bail!("{broken} of {count} first check-ins failed");
        }
        if watching == count {
            break;
        }
        if opening.elapsed() > SETUP_LIMIT {
            stats.print("watch: opening the watches");
            bail!(
                "only {watching} of {count} nodes were watching after {} s",
                SETUP_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = opening.elapsed().as_secs_f64();
    // The last long-polls reach the server (a watch sent late still answers
    // at once with the new version: it only adds to its time).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, held_rss) = setup.server.memory_kib()?;
    println!(
        "setup: {count} first check-ins (facts, catalog, contents, report), then each node's watch, in {opened:.1} s; {count} watches held, server RSS {:.1} MiB",
        held_rss as f64 / 1024.0
    );

    let repo = setup.repo();
    let commit = tokio::task::spawn_blocking(move || site::push(&repo, 1))
        .await
        .context("the git commit task")??;
    let hooked = Instant::now();
    shared
        .hooked
        .set(hooked)
        .expect("the webhook is called once");
    let (_, refreshed) = call_webhook(&setup, &stats).await?;
    let hook_ms = hooked.elapsed().as_secs_f64() * 1000.0;

    let deadline = tokio::time::Instant::from_std(hooked + args.watch_deadline());
    let mut timings = Vec::with_capacity(count);
    let mut gave_up = Vec::new();
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        match joined? {
            Ok(timing) => timings.push(timing),
            Err(why) => gave_up.push(why),
        }
    }
    let unfinished = tasks.len();
    tasks.abort_all();

    let watched: Vec<Duration> = timings.iter().filter_map(|t| t.watched).collect();
    let reported: Vec<Duration> = timings.iter().filter_map(|t| t.reported).collect();
    let reruns = timings.iter().filter(|t| t.runs > 1).count();
    let (pw, pr) = (percentiles(watched.clone()), percentiles(reported.clone()));
    stats.print(&format!(
        "watch: {count} nodes holding the catalog watch; commit {} pushed, webhook answered in {hook_ms:.0} ms (refreshed: {refreshed}); watch latencies include the wait",
        &commit[..12.min(commit.len())]
    ));
    println!(
        "new version: announced by the watch to {} of {count}, reported by {} of {count}; {reruns} needed more than one run; {} gave up, {unfinished} unfinished after {} s",
        watched.len(),
        reported.len(),
        gave_up.len(),
        args.watch_deadline().as_secs()
    );
    for why in gave_up.iter().take(5) {
        println!("  gave up: {why}");
    }
    println!(
        "{:<28}{:>10}{:>10}{:>10}{:>10}",
        "ms after the webhook", "p50", "p95", "p99", "max"
    );
    print_row("(a) watch answered", pw);
    print_row("(b) new version reported", pr);
    let mem = memory(&setup)?;
    let all = reported.len() == count;
    let in_time = all && pr[3] < TARGET.as_secs_f64() * 1000.0;
    if count as u64 >= TARGET_NODES {
        println!(
            "target {count} agents all report the new catalog version within {} s of the webhook: {}/{count}, last at {:.2} s, {}",
            TARGET.as_secs(),
            reported.len(),
            pr[3] / 1000.0,
            verdict(in_time)
        );
    } else {
        println!("(the target is judged at {TARGET_NODES} watchers or more)");
    }
    let ms = |p: [f64; 4]| json!({"p50_ms": p[0], "p95_ms": p[1], "p99_ms": p[2], "max_ms": p[3]});
    Ok(json!({
        "watchers": count, "commit": commit, "hook_ms": hook_ms, "hook_refreshed": refreshed,
        "announced": watched.len(), "reported": reported.len(), "reruns": reruns,
        "gave_up": gave_up.len(), "unfinished": unfinished,
        "deadline_s": args.watch_deadline().as_secs(),
        "watch_answered": ms(pw), "reported_new_version": ms(pr),
        "target_met": count as u64 >= TARGET_NODES && in_time,
        "errors": stats.errors(), "server_rss_watching_kib": held_rss,
        "memory": mem, "stats": stats.to_json(),
    }))
}
