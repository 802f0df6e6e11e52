//! The fleet: which nodes run what and when each reported over two weeks,
//! written through the server's own database code. Reports go in the order
//! they would have arrived (one node's lie apart in the table, as in
//! production), many to a write of the server's writer
//! (`db::insert_reports`); then each node's last catalog request, as the
//! catalog route records it (`db::record_catalog_request_at`).

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use drover_server::db::{self, Answer, Db, DbError};
use hyper::body::Bytes;
use jiff::{SignedDuration, Timestamp};
use tokio::task::{JoinHandle, JoinSet};

use crate::facts::{Os, facts_of};
use crate::rng::Rng;
use crate::runs::{DAY_US, HOUR_US, Node, Run, Runs};
use crate::site::Variant;

/// Reports per write (one transaction).
const BATCH: usize = 2_000;
/// Writes of reports queued at once: the next batch is made while one commits.
const IN_FLIGHT: usize = 2;
/// From this many reports on, each tenth is told on stderr.
const PROGRESS_FROM: usize = 100_000;
/// Catalog requests recorded at once (the writer commits them together).
const REQUESTS_IN_FLIGHT: usize = 256;

/// What to seed.
pub(crate) struct Plan {
    pub(crate) nodes: usize,
    pub(crate) reports: usize,
    pub(crate) seed: u64,
    /// The node whose every run is kept, for the page checks.
    pub(crate) probe: String,
}

/// The seeded fleet, as the checks and the benchmark need to know it.
pub(crate) struct Fleet {
    pub(crate) now: Timestamp,
    pub(crate) head: String,
    pub(crate) names: Vec<String>,
    pub(crate) os: Vec<Os>,
    /// Each node's last run.
    pub(crate) last: Vec<Run>,
    /// Each node's last run that fetched a fresh catalog (else its last).
    pub(crate) fresh: Vec<Run>,
    pub(crate) roles: Vec<Vec<String>>,
    /// The probe node (by index, when it is one of the fleet) and its
    /// runs, newest first (as the server orders them).
    pub(crate) probe: Option<usize>,
    pub(crate) probe_runs: Vec<Run>,
    pub(crate) runs: Runs,
    pub(crate) reports: usize,
    /// Mean bytes of a node's facts as stored.
    pub(crate) facts_bytes: f64,
}

/// Every report's finish time (µs) and node, in time order: a node's last
/// report lies within the agent's 30-minute interval (hours to days ago
/// for a node that stopped reporting), its others spread evenly back to
/// 13.5 days ago, inside the 14 days retention keeps.
fn schedule(rng: &mut Rng, now_us: i64, reports: usize, gone: &[bool]) -> Vec<(i64, u32)> {
    let nodes = gone.len();
    let oldest_us = now_us - 13 * DAY_US - 12 * HOUR_US;
    let (per, extra) = (reports / nodes, reports % nodes);
    let mut keys = Vec::with_capacity(reports);
    for (i, &gone) in gone.iter().enumerate() {
        let node = u32::try_from(i).expect("fewer than 4 billion nodes");
        let k = per + usize::from(i < extra);
        let ago = if gone {
            rng.uniform((2.0 * HOUR_US as f64, 3.0 * DAY_US as f64))
        } else {
            rng.uniform((30e6, 1800e6))
        };
        let last = now_us - ago as i64;
        let step = (last - oldest_us) as f64 / k as f64;
        keys.push((last, node));
        for j in 1..k {
            let at = last as f64 - j as f64 * step - rng.uniform((0.0, step / 5.0));
            keys.push((at as i64, node));
        }
    }
    keys.sort_unstable();
    keys
}

/// Seeds an empty database with `plan`'s fleet on the repository whose
/// head is `head` and whose catalogs are `variants`.
pub(crate) async fn seed(
    db: &Db,
    plan: &Plan,
    head: &str,
    variants: &[(Os, Variant)],
) -> Result<Fleet> {
    let n = plan.nodes;
    if n == 0 || plan.reports < n {
        bail!(
            "--reports ({}) must be at least --nodes ({n}), and --nodes at least 1: every node has a last report",
            plan.reports
        );
    }
    let variant = |os: Os| {
        &variants
            .iter()
            .find(|(o, _)| *o == os)
            .expect("a variant per OS")
            .1
    };
    let mut rng = Rng::new(plan.seed);
    let now = Timestamp::now();
    let mut runs = Runs::new(&mut rng, now.as_microsecond(), head);
    let names: Vec<String> = (1..=n).map(|i| format!("web-{i:05}")).collect();
    let os: Vec<Os> = (0..n)
        .map(|_| Os::ALL[rng.weighted(&Os::WEIGHTS)])
        .collect();
    // 2% run in noop, 2% stay on an older commit (stale), 1% stopped
    // reporting hours or days ago (unresponsive).
    let noop = rng.sample(n, n / 50);
    let pinned = rng.sample(n, n / 50);
    let gone = rng.sample(n, n / 100);
    let keys = schedule(&mut rng, now.as_microsecond(), plan.reports, &gone);
    let probe = names.iter().position(|name| *name == plan.probe);

    let mut last: Vec<Option<Run>> = vec![None; n];
    let mut fresh: Vec<Option<Run>> = vec![None; n];
    let mut probe_runs = Vec::new();
    let mut writes: VecDeque<JoinHandle<Result<usize, DbError>>> = VecDeque::new();
    let mut stored = 0;
    let mut batch = Vec::with_capacity(BATCH);
    let started = Instant::now();
    let tenth = (plan.reports / 10).max(1);
    for (done, (finish_us, i)) in keys.into_iter().enumerate() {
        let i = i as usize;
        let node = Node {
            name: &names[i],
            os: os[i],
            ids: &variant(os[i]).ids,
            noop: noop[i],
            pinned: pinned[i],
        };
        let (report, body, received, run) = runs.report(&mut rng, &node, finish_us);
        if !run.cached {
            fresh[i] = Some(run.clone());
        }
        if probe == Some(i) {
            probe_runs.push(run.clone());
        }
        last[i] = Some(run);
        batch.push((report, body, received));
        if batch.len() == BATCH {
            while writes.len() >= IN_FLIGHT {
                stored += writes.pop_front().expect("a write").await??;
            }
            let (db, reports) = (
                db.clone(),
                std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
            );
            writes.push_back(tokio::spawn(async move {
                db::insert_reports(&db, reports).await
            }));
        }
        if plan.reports >= PROGRESS_FROM && (done + 1) % tenth == 0 {
            eprintln!(
                "  {} reports, {:.0} s",
                done + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for write in writes {
        stored += write.await??;
    }
    stored += db::insert_reports(db, batch).await?;
    if stored != plan.reports {
        bail!(
            "{stored} of {} reports were stored: the others' run ids were there already",
            plan.reports
        );
    }

    // The file contents the catalogs reference, stored as a compile stores them.
    let contents: Vec<(String, Bytes)> = variants
        .iter()
        .flat_map(|(_, v)| v.contents.iter())
        .map(|(sha, bytes)| (sha.clone(), Bytes::from(bytes.clone())))
        .collect();
    db::store_contents(db, contents).await?;

    let last: Vec<Run> = last
        .into_iter()
        .map(|r| r.expect("every node has a report"))
        .collect();
    let fresh: Vec<Run> = fresh
        .into_iter()
        .zip(&last)
        .map(|(f, l)| f.unwrap_or_else(|| l.clone()))
        .collect();
    let facts_bytes = record_requests(db, &mut rng, &names, &os, &fresh, &variant).await?;
    probe_runs.reverse();
    Ok(Fleet {
        now,
        head: head.to_owned(),
        roles: os.iter().map(|&o| variant(o).roles.clone()).collect(),
        names,
        os,
        last,
        fresh,
        probe,
        probe_runs,
        runs,
        reports: plan.reports,
        facts_bytes,
    })
}

/// Each node's last catalog request, at the start of its last run that
/// made one: its facts, and the catalog it was served (of the commit that
/// run applied). Returns the mean size of the facts as stored.
async fn record_requests<'v>(
    db: &Db,
    rng: &mut Rng,
    names: &[String],
    os: &[Os],
    fresh: &[Run],
    variant: &impl Fn(Os) -> &'v Variant,
) -> Result<f64> {
    let mut requests = JoinSet::new();
    let mut facts_bytes = 0;
    for (i, name) in names.iter().enumerate() {
        let v = variant(os[i]);
        let mut catalog = v.catalog.clone();
        catalog.node = name.clone();
        catalog.commit = fresh[i].commit.clone();
        catalog.version = fresh[i].version.clone();
        let roles = v.roles.clone();
        let facts = facts_of(i, name, os[i], rng);
        facts_bytes += serde_json::to_string(&facts)?.len();
        let at = fresh[i]
            .started
            .checked_add(SignedDuration::from_millis(200))
            .context("a time of this century")?;
        while requests.len() >= REQUESTS_IN_FLIGHT {
            requests.join_next().await.expect("a request")??;
        }
        let (db, name) = (db.clone(), name.clone());
        requests.spawn(async move {
            let answer = Answer::Served(&catalog, &roles);
            db::record_catalog_request_at(&db, &name, &facts, None, answer, at).await
        });
    }
    while let Some(done) = requests.join_next().await {
        done??;
    }
    Ok(facts_bytes as f64 / names.len() as f64)
}
