//! The convergence engine: walks a catalog in its dependency order, skips
//! what depends on a failure, collects refreshes, and reports every resource.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use drover_catalog::report::{ResourceReport, ResourceStatus};
use drover_catalog::{Catalog, Resource, ResourceId, Spec};

use anyhow::Result;

use crate::config::Settings;
use crate::filecache::Loading;
use crate::fsutil::TempMarker;
use crate::resources::container::replicas::{self, Replicas};
use crate::resources::{self, ContentSource, Env, Flags, Outcome};

mod batch;
mod packages;
mod protected;

use batch::Batch;

/// Why the remaining resources were not tried.
pub(crate) const INTERRUPTED: &str = "run interrupted: the agent is stopping";

pub(crate) struct EngineConfig<'a> {
    pub noop: bool,
    /// The node's name, on the labels of the containers it runs.
    pub node: &'a str,
    /// The Docker Engine API socket.
    pub container_socket: &'a Path,
    /// STATE/backups.
    pub backups: PathBuf,
    pub contents: &'a dyn ContentSource,
    /// The catalog applied last time: a change to an identical spec is drift repair.
    pub previous: Option<&'a Catalog>,
    /// Set by SIGTERM/SIGINT; checked between resources, never during one.
    pub stop: &'a AtomicBool,
    /// run_timeout_secs, from the start of the run.
    pub timeout: Option<(Instant, Duration)>,
    /// Print one line per change (and failure) as it happens.
    pub verbose: bool,
    /// STATE/filecache, loading; `None` hashes every file and keeps nothing.
    pub filecache: Option<Loading>,
    /// STATE/temps.pending; `None` sweeps every directory for stale temp files.
    pub temp_marker: Option<PathBuf>,
    /// STATE/probes.json, the replicas' probe verdicts; `None` keeps none.
    pub probe_state: Option<PathBuf>,
    /// The agent's state dir and run lock: no resource may be at or inside them.
    pub protected: Vec<PathBuf>,
    /// Only part of the catalog is applied (`--tags`): no stale replica is
    /// removed, no replica state read.
    pub partial: bool,
}

impl<'a> EngineConfig<'a> {
    /// A run as `settings` describe it, timed from `started`, with no
    /// previous catalog, and the file cache loading since the run started.
    pub(crate) fn new(
        settings: &'a Settings,
        backups: PathBuf,
        contents: &'a dyn ContentSource,
        stop: &'a AtomicBool,
        started: Instant,
        filecache: Loading,
    ) -> EngineConfig<'a> {
        EngineConfig {
            noop: settings.noop,
            node: &settings.node,
            container_socket: &settings.container_socket,
            backups,
            contents,
            previous: None,
            stop,
            timeout: Some((started, settings.run_timeout)),
            verbose: true,
            filecache: Some(filecache),
            temp_marker: Some(settings.state_dir.join(TempMarker::FILE_NAME)),
            probe_state: Some(settings.state_dir.join(replicas::PROBE_STATE)),
            protected: vec![settings.state_dir.clone(), settings.lock_file.clone()],
            partial: !settings.tags.is_empty(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Applied {
    pub resources: Vec<ResourceReport>,
    /// Set when the run stopped early (signal or timeout).
    pub stopped: Option<String>,
    /// How the managed files' contents were checked.
    pub files: drover_catalog::report::FileChecks,
    /// The states of the catalog's app replicas, read after the walk.
    pub replicas: Vec<drover_catalog::report::ReplicaReport>,
}

pub(crate) fn apply<'c>(catalog: &'c Catalog, cfg: &EngineConfig<'_>) -> Applied {
    let mut env = env_for(catalog, cfg);
    let previous: HashMap<&ResourceId, &Spec> = cfg
        .previous
        .map(|p| p.resources.iter().map(|r| (&r.id, &r.spec)).collect())
        .unwrap_or_default();
    let mut status: HashMap<&'c ResourceId, ResourceStatus> =
        HashMap::with_capacity(catalog.resources.len());
    // Results of packages converged ahead of their turn, in a batch.
    let mut batched: HashMap<usize, (Result<Outcome>, Duration)> = HashMap::new();
    // By catalog index: a staged file's report comes in at its flush.
    let mut reports: Vec<Option<ResourceReport>> = Vec::new();
    reports.resize_with(catalog.resources.len(), || None);
    let mut stopped: Option<String> = None;
    let mut batch = Batch::default();
    let settle = |batch: &mut Batch,
                  status: &mut HashMap<&'c ResourceId, ResourceStatus>,
                  reports: &mut Vec<Option<ResourceReport>>| {
        for (index, report) in batch.flush() {
            status.insert(&catalog.resources[index].id, report.status);
            if cfg.verbose {
                crate::output::print_resource(&report);
            }
            reports[index] = Some(report);
        }
    };

    for (index, resource) in catalog.resources.iter().enumerate() {
        if batch.must_flush_before(resource) {
            settle(&mut batch, &mut status, &mut reports);
        }
        let started = Instant::now();
        if stopped.is_none() && !batched.contains_key(&index) {
            stopped = stop_reason(cfg);
        }
        env.files.visit(index);
        let (mut report, duration) = converge_in_turn(
            catalog,
            index,
            cfg,
            &status,
            &mut env,
            &mut batched,
            stopped.as_deref(),
        );
        if resource.meta.sensitive {
            resources::sensitive::hide(&mut report, &resource.spec);
        }
        report.corrective = matches!(
            report.status,
            ResourceStatus::Changed | ResourceStatus::Noop
        ) && previous.get(&resource.id) == Some(&&resource.spec);
        if touches_other_paths(resource, &report, &batched) {
            env.files.invalidate_prehashed();
            env.anchors.forget();
        }
        let duration = duration.unwrap_or_else(|| started.elapsed());
        report.duration_ms = duration.as_secs_f64() * 1000.0;
        match env.staged.take() {
            Some(write) if report.status == ResourceStatus::Changed => {
                batch.push(index, report, write);
                continue;
            }
            Some(write) => write.discard(),
            None => {}
        }
        status.insert(&resource.id, report.status);
        if cfg.verbose {
            crate::output::print_resource(&report);
        }
        reports[index] = Some(report);
    }
    // Even a stopped run puts what it staged in place: those resources
    // were converged, only their rename was waiting.
    settle(&mut batch, &mut status, &mut reports);
    env.temps.finish(stopped.is_none());
    env.files.save(stopped.is_none());
    let mut resources: Vec<ResourceReport> = reports.into_iter().flatten().collect();
    // Stale replicas go once the catalog's own are converged (their
    // replacements first); a stopping run leaves them for the next.
    let replicas = match stopped {
        Some(_) => Replicas::default(),
        None if cfg.partial => Replicas::default(),
        None => replicas::settle(catalog, &mut env.containers, cfg.noop, || stop_reason(cfg)),
    };
    if cfg.verbose {
        replicas
            .removed
            .iter()
            .for_each(crate::output::print_resource);
    }
    resources.extend(replicas.removed);
    Applied {
        resources,
        stopped,
        files: env.files.checks(),
        replicas: replicas.states,
    }
}

/// The environment a walk converges in: the managed paths, the file cache
/// once loaded, the temp-file marker (and a sweep of what a killed run
/// left), and the pre-walk stats and hashes.
fn env_for<'a>(catalog: &'a Catalog, cfg: &EngineConfig<'a>) -> Env<'a> {
    let managed = catalog
        .resources
        .iter()
        .filter(|r| r.id.kind().is_path())
        .map(|r| r.id.name())
        .collect();
    let mut env = Env::new(cfg.contents, cfg.backups.clone(), managed);
    env.stage_writes = true;
    env.containers = resources::container::Containers::new(cfg.container_socket, cfg.node);
    env.containers.keep_probes_in(cfg.probe_state.clone());
    if let Some(loading) = &cfg.filecache {
        env.files = loading.wait();
    }
    if let (false, Some(path)) = (cfg.noop, &cfg.temp_marker) {
        env.temps = TempMarker::open(path.clone(), env.files.checks().full_verification);
        env.sweep_stale_temps(&cfg.backups);
    }
    env.files.prepare(catalog);
    env
}

/// Resource `index` in its turn: already converged with its package batch,
/// skipped (the run stops, a dependency failed), refused (it is the agent's
/// own state), or converged now. The report, and how long it took when
/// that was measured elsewhere (a batch).
fn converge_in_turn<'c>(
    catalog: &'c Catalog,
    index: usize,
    cfg: &EngineConfig<'_>,
    status: &HashMap<&'c ResourceId, ResourceStatus>,
    env: &mut Env<'_>,
    batched: &mut HashMap<usize, (Result<Outcome>, Duration)>,
    stopped: Option<&str>,
) -> (ResourceReport, Option<Duration>) {
    let resource = &catalog.resources[index];
    let mut report = ResourceReport::new(resource.id.clone(), ResourceStatus::Unchanged);
    let mut duration = None;
    if let Some((result, took)) = batched.remove(&index) {
        // Already converged with its batch: it happened, so report it.
        record(&mut report, result, flags_for(resource, cfg, status));
        duration = Some(took);
    } else if let Some(reason) = stopped {
        report.status = ResourceStatus::Skipped;
        report.error = Some(reason.to_owned());
    } else if let Some(why) = failed_dependency(resource, status) {
        report.status = ResourceStatus::Skipped;
        report.error = Some(why);
    } else if let Some(why) = protected::refusal(resource, &cfg.protected) {
        report.status = ResourceStatus::Failed;
        report.error = Some(why);
    } else {
        let flags = flags_for(resource, cfg, status);
        report.refreshed = flags.refresh;
        let result = match &resource.spec {
            Spec::Package(_) => {
                let (result, took) =
                    packages::converge_packages(catalog, index, cfg, status, env, batched);
                duration = Some(took);
                result
            }
            spec => resources::converge(spec, env, flags),
        };
        record(&mut report, result, flags);
    }
    (report, duration)
}

/// Whether converging `resource` may have changed managed files other than
/// its own path, so hashes made before the walk and parents anchored may be
/// stale: a file only
/// rewrites itself, unless it created or removed a path; an exec's guards
/// are commands; a package batch may have installed files.
fn touches_other_paths(
    resource: &Resource,
    report: &ResourceReport,
    batched: &HashMap<usize, (Result<Outcome>, Duration)>,
) -> bool {
    match &resource.spec {
        Spec::File(_) => report.events.iter().any(|e| e.property == "ensure"),
        Spec::Exec(_) => true,
        Spec::Package(_) => {
            report.status != ResourceStatus::Unchanged
                || batched
                    .values()
                    .any(|(r, _)| !matches!(r, Ok(o) if !o.changed()))
        }
        _ => report.status != ResourceStatus::Unchanged,
    }
}

fn flags_for(
    resource: &Resource,
    cfg: &EngineConfig<'_>,
    status: &HashMap<&ResourceId, ResourceStatus>,
) -> Flags {
    let noop = cfg.noop || resource.meta.noop;
    Flags {
        noop,
        sensitive: resource.meta.sensitive,
        refresh: refreshed(resource, status, noop),
    }
}

/// `skipped: dependency X failed` when something this resource requires did not converge.
fn failed_dependency(
    resource: &Resource,
    status: &HashMap<&ResourceId, ResourceStatus>,
) -> Option<String> {
    let (dep, dep_status) = resource
        .meta
        .require
        .iter()
        .find_map(|d| status.get(d).filter(|s| is_failure(**s)).map(|s| (d, *s)))?;
    let how = if dep_status == ResourceStatus::Failed {
        "failed"
    } else {
        "was skipped"
    };
    Some(format!("skipped: dependency {dep} {how}"))
}

fn record(report: &mut ResourceReport, result: Result<Outcome>, flags: Flags) {
    match result {
        Ok(outcome) if outcome.changed() => {
            report.status = if flags.noop {
                ResourceStatus::Noop
            } else {
                ResourceStatus::Changed
            };
            report.events = outcome.events;
            report.diff = outcome.diff;
        }
        Ok(_) => {}
        Err(e) => {
            report.status = ResourceStatus::Failed;
            report.error = Some(format!("{e:#}"));
        }
    }
}

/// Whether a subscribed resource changed. A source that only would have
/// changed (noop) refreshes a resource that is noop too, which then reports
/// what it would do; a real resource has nothing to react to.
fn refreshed(
    resource: &Resource,
    status: &HashMap<&ResourceId, ResourceStatus>,
    noop: bool,
) -> bool {
    resource
        .meta
        .subscribe
        .iter()
        .any(|source| match status.get(source) {
            Some(ResourceStatus::Changed) => true,
            Some(ResourceStatus::Noop) => noop,
            _ => false,
        })
}

fn stop_reason(cfg: &EngineConfig<'_>) -> Option<String> {
    if cfg.stop.load(Ordering::SeqCst) {
        return Some(INTERRUPTED.to_owned());
    }
    match cfg.timeout {
        Some((start, limit)) if start.elapsed() >= limit => Some(format!(
            "run timed out after {} s (run_timeout_secs): the remaining resources were skipped",
            limit.as_secs()
        )),
        _ => None,
    }
}

fn is_failure(s: ResourceStatus) -> bool {
    matches!(s, ResourceStatus::Failed | ResourceStatus::Skipped)
}

#[cfg(test)]
mod sensitive_tests;

#[cfg(test)]
mod tests;
