//! One agent run against the server: lock, make sure of the node's identity,
//! deliver the spool, fetch the signed catalog (or fall back to the cached
//! one, verified again), converge, report, and leave the run's metrics for
//! node-exporter (see [`crate::metrics`]).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Result, anyhow};
use drover_catalog::report::{CachedCatalog, ResourceStatus};
use drover_catalog::{Catalog, CatalogRequest, Report};

use crate::client::{CatalogAnswer, Client, Posted};
use crate::config::Settings;
use crate::contents::{StoreFirst, Timed};
use crate::engine::{self, Applied, EngineConfig};
use crate::filecache::Loading;
use crate::identity;
use crate::lock::RunLock;
use crate::metrics::{self, Phase, RunClock, Sample};
use crate::output;
use crate::state::{LastRun, StateDir};

mod backoff;

/// A run that happened: its report (delivered or spooled), and what
/// failed after the report was handed over (caching the catalog, the run
/// summary), already printed as errors.
#[derive(Debug)]
pub(crate) struct Ran {
    pub report: Report,
    pub failed_after: Vec<String>,
}

impl Ran {
    /// The report's exit code, with the failure bit (4) when something
    /// failed after it.
    pub(crate) fn exit_code(&self) -> i32 {
        let failed = if self.failed_after.is_empty() { 0 } else { 4 };
        self.report.exit_code() | failed
    }
}

/// Runs once; `Err` means the run could not happen at all (exit 1). Once
/// the lock is held, the run leaves its metrics textfile either way.
pub(crate) fn run_once(settings: &Settings, stop: &AtomicBool) -> Result<Ran> {
    let mut clock = RunClock::start();
    let run_id = uuid::Uuid::new_v4().to_string();
    let scope = output::run_scope(&run_id, &settings.node);
    crate::disable::check(&settings.state_dir)?;
    let _lock = RunLock::acquire_within(&settings.lock_file, settings.wait_for_lock)?;
    output::debug(|| format!("took the run lock {}", settings.lock_file.display()));
    let result = converge(settings, stop, run_id, &scope, &mut clock);
    let sample = match &result {
        Ok(ran) => Sample::of_report(&ran.report),
        Err(_) => Sample::could_not_run(&clock, settings.noop),
    };
    metrics::record(settings, &sample);
    result
}

fn converge(
    settings: &Settings,
    stop: &AtomicBool,
    run_id: String,
    scope: &output::RunScope,
    clock: &mut RunClock,
) -> Result<Ran> {
    let state = StateDir::new(&settings.state_dir);
    state.prepare()?;
    let filecache = Loading::start(state.root(), settings.verify_interval);
    let identity = identity::ensure(settings, stop)?;
    let client = Client::new(
        &settings.servers,
        &settings.node,
        &identity,
        settings.http_timeout,
    )?;
    let queue_clear = deliver_spool(&state, &client);
    let chosen = choose_catalog(settings, &state, &client, &identity, stop, clock)?;
    scope.catalog_version(&chosen.catalog.version);

    let store = state.content_store();
    let upstream = Timed::new(&client);
    let contents = StoreFirst {
        store: &store,
        upstream: &upstream,
    };
    let converging = Instant::now();
    let selected = match settings.tags.is_empty() {
        true => None,
        false => Some(crate::tags::select(&chosen.catalog, &settings.tags)?),
    };
    let applied = engine::apply(
        selected.as_ref().unwrap_or(&chosen.catalog),
        &EngineConfig {
            previous: chosen.cached.as_ref(),
            ..EngineConfig::new(
                settings,
                state.backups(),
                &contents,
                stop,
                clock.started(),
                filecache,
            )
        },
    );
    // Contents come from the server on demand, while converging: their
    // fetches count with the catalog's, so `apply` is the local work alone.
    clock.add(Phase::Catalog, upstream.spent());
    clock.add(
        Phase::Apply,
        converging.elapsed().saturating_sub(upstream.spent()),
    );
    let changed = applied
        .resources
        .iter()
        .any(|r| r.status == ResourceStatus::Changed);
    let report = build_report_of_run(
        run_id,
        &chosen.catalog,
        settings.noop,
        clock,
        applied,
        chosen.cached_use,
        chosen.error.clone(),
    );
    let report = Report {
        catalog_error: chosen.catalog_error.clone(),
        // The server that answered the catalog request (none did when the
        // cached catalog was applied on failure).
        server: (chosen.cached_use != CachedCatalog::OnFailure).then(|| client.server().to_owned()),
        tags: settings.tags.clone(),
        ..report
    };

    // The report first: a state directory too full to cache the catalog
    // must not lose what the run did (it is posted, or spooled if it can be).
    deliver(&state, &client, &report, queue_clear);
    let failed_after = keep_after_delivery(settings, &state, &chosen, changed, &report);
    output::print_summary(&report, clock.started().elapsed());
    for failure in &failed_after {
        output::error(failure);
    }
    Ok(Ran {
        report,
        failed_after,
    })
}

/// The catalog a run applies, and where it came from.
struct Chosen {
    catalog: Catalog,
    /// The fresh catalog's signed bytes and signature, to cache once applied.
    fresh: Option<(Vec<u8>, String)>,
    /// The cached catalog, if one was readable (the engine compares with it).
    cached: Option<Catalog>,
    cached_use: CachedCatalog,
    /// Why the cached catalog was applied instead of a fresh one.
    error: Option<String>,
    /// The server's compile error, when it sent the last good catalog.
    catalog_error: Option<String>,
}

/// Asks the server for the node's catalog (waiting out a few 503s), and
/// falls back to the cached one when the server cannot give one; `Err`
/// when there is neither.
fn choose_catalog(
    settings: &Settings,
    state: &StateDir,
    client: &Client,
    identity: &identity::Identity,
    stop: &AtomicBool,
    clock: &mut RunClock,
) -> Result<Chosen> {
    let facts = clock.time(Phase::Facts, || {
        crate::facts::gather_with(&settings.facts_dir)
    })?;
    output::debug(|| format!("gathered {} top-level facts", facts.len()));
    let fetching = Instant::now();
    let (cached, cache_refused) = match state.cached_catalog(&identity.signing_key) {
        Ok(cached) => (cached.filter(|c| c.node == settings.node), false),
        Err(e) => {
            output::error(&format!("{e:#}"));
            (None, true)
        }
    };
    let request = CatalogRequest {
        facts,
        environment: settings.environment.clone(),
    };
    // A 503 (the server shedding load) is waited out a few times first.
    let answer = backoff::catalog_with_backoff(
        client,
        &request,
        cached.as_ref().map(|c| c.version.as_str()),
        stop,
    );
    clock.add(Phase::Catalog, fetching.elapsed());
    output::debug(|| match &answer {
        Ok(CatalogAnswer::Fresh(signed)) => format!(
            "{} sent catalog {} ({} resources) in {:?}",
            client.server(),
            signed.catalog.version,
            signed.catalog.resources.len(),
            fetching.elapsed()
        ),
        Ok(CatalogAnswer::NotModified { .. }) => format!(
            "{} answered 304: the cached catalog is current",
            client.server()
        ),
        Err(e) => format!("the catalog request failed: {e:#}"),
    });
    let chosen = |catalog, fresh, cached_use, error, catalog_error: Option<String>| {
        if let Some(why) = &catalog_error {
            output::warning(&format!(
                "the server sent this node's last good catalog: {why}; this run fails"
            ));
        }
        Chosen {
            catalog,
            fresh,
            cached: cached.clone(),
            cached_use,
            error,
            catalog_error,
        }
    };
    match (answer, cached.clone()) {
        (Ok(CatalogAnswer::Fresh(signed)), _) => Ok(chosen(
            signed.catalog,
            Some((signed.body, signed.signature)),
            CachedCatalog::NotUsed,
            None,
            signed.catalog_error,
        )),
        (Ok(CatalogAnswer::NotModified { catalog_error }), Some(cached)) => Ok(chosen(
            cached,
            None,
            CachedCatalog::NotUsed,
            None,
            catalog_error,
        )),
        (Ok(CatalogAnswer::NotModified { .. }), None) => Err(anyhow!(
            "the server answered 304 Not Modified but there is no cached catalog"
        )),
        (Err(e), Some(cached)) => {
            let why = format!(
                "{e:#}; applied the cached catalog {}; this run fails",
                cached.version
            );
            output::warning(&why);
            Ok(chosen(
                cached,
                None,
                CachedCatalog::OnFailure,
                Some(why),
                None,
            ))
        }
        (Err(e), None) => {
            let cache = if cache_refused {
                format!(
                    "the cached catalog {} was refused (see above)",
                    state.catalog_path().display()
                )
            } else {
                format!("no cached catalog in {}", settings.state_dir.display())
            };
            Err(e.context(format!(
                "no catalog for node `{}`, and {cache}",
                settings.node
            )))
        }
    }
}

/// What a run keeps once its report is delivered: the fresh catalog (even
/// with failures: it is the server's current desired state, and the next
/// run repairs what failed), the content store, the run summary. Returns
/// what failed, for the exit code.
fn keep_after_delivery(
    settings: &Settings,
    state: &StateDir,
    chosen: &Chosen,
    changed: bool,
    report: &Report,
) -> Vec<String> {
    let mut failed_after = Vec::new();
    if let Some((body, signature)) = &chosen.fresh
        && !settings.noop
        && let Err(e) = state.store_catalog(body, signature)
    {
        failed_after.push(format!(
            "cannot cache the catalog in {}: {e:#}\nhint: the run's report was delivered; free space in the state directory, the next run caches it",
            state.catalog_path().display()
        ));
    }
    if (chosen.fresh.is_some() || changed)
        && !settings.noop
        && let Err(e) = state.content_store().sync_with(&chosen.catalog)
    {
        output::warning(&format!("cannot update the content store: {e:#}"));
    }
    if let Err(e) = state.write_last_run(&LastRun::of(report)) {
        failed_after.push(format!("cannot write the run summary: {e:#}"));
    }
    failed_after
}

/// The report of a run whose id was chosen when it started (its journal
/// entries carry the same id); its metrics end now.
pub(crate) fn build_report_of_run(
    run_id: String,
    catalog: &Catalog,
    noop: bool,
    clock: &RunClock,
    applied: Applied,
    cached_catalog: CachedCatalog,
    error: Option<String>,
) -> Report {
    let error = match (error, applied.stopped) {
        (Some(e), Some(s)) => Some(format!("{e}; {s}")),
        (e, s) => e.or(s),
    };
    Report {
        run_id,
        node: catalog.node.clone(),
        environment: catalog.environment.clone(),
        commit: catalog.commit.clone(),
        catalog_version: catalog.version.clone(),
        noop,
        started_at: clock.started_at(),
        finished_at: jiff::Timestamp::now(),
        status: Report::summarize(&applied.resources),
        cached_catalog,
        error,
        catalog_error: None,
        server: None,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        metrics: drover_catalog::report::RunMetrics {
            files: applied.files,
            ..clock.metrics(&applied.resources)
        },
        resources: applied.resources,
        replicas: applied.replicas,
        tags: Vec::new(),
    }
}

/// Posts spooled reports oldest first; stops at the first that cannot be
/// delivered (so order holds). Returns whether the queue is now empty.
pub(crate) fn deliver_spool(state: &StateDir, client: &Client) -> bool {
    let spooled = match state.spooled() {
        Ok(spooled) => spooled,
        Err(e) => {
            output::warning(&format!("cannot read the report spool: {e:#}"));
            return false;
        }
    };
    for path in spooled {
        let json = match fs_err::read(&path) {
            Ok(json) => json,
            Err(e) => {
                output::warning(&e.to_string());
                return false;
            }
        };
        let done = match client.post_report(&json) {
            Ok(Posted::Stored) => state.unspool(&path),
            Ok(Posted::Rejected(why)) => state.reject(&path).map(|to| {
                output::warning(&format!(
                    "the server rejected spooled report {} ({why}); moved to {}",
                    path.display(),
                    to.display()
                ));
            }),
            Err(e) => {
                output::warning(&format!("spooled reports stay queued: {e:#}"));
                return false;
            }
        };
        if let Err(e) = done {
            output::warning(&format!("{e:#}"));
            return false;
        }
    }
    true
}

/// Posts this run's report, or spools it (behind older ones, keeping order).
fn deliver(state: &StateDir, client: &Client, report: &Report, queue_clear: bool) {
    let spool = |why: String| match state.spool(report) {
        Ok(path) => output::warning(&format!("{why}; report spooled in {}", path.display())),
        Err(e) => output::error(&format!("{why}, and spooling the report failed: {e:#}")),
    };
    if !queue_clear {
        spool("older reports are still queued".into());
        return;
    }
    let json = match serde_json::to_vec(report) {
        Ok(json) => json,
        Err(e) => return output::error(&format!("cannot serialize the report: {e}")),
    };
    match client.post_report(&json) {
        Ok(Posted::Stored) => output::debug(|| {
            format!(
                "report {} stored by {} ({} bytes)",
                report.run_id,
                client.server(),
                json.len()
            )
        }),
        Ok(Posted::Rejected(why)) => {
            // Kept for inspection, out of the delivery queue.
            if let Ok(path) = state.spool(report) {
                let _ = state.reject(&path);
            }
            output::error(&format!("the server rejected the report: {why}"));
        }
        Err(e) => spool(format!("{e:#}")),
    }
}
