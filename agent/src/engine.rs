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
mod tests {
    use drover_catalog::model::{FileSpec, Meta};

    use super::*;
    use crate::resources::testing::MapSource;

    fn file(path: &str, content: &[u8], require: &[&str], subscribe: &[&str]) -> Resource {
        let ids = |v: &[&str]| {
            v.iter()
                .map(|s| ResourceId::try_from(s.to_string()).unwrap())
                .collect()
        };
        Resource {
            meta: Meta {
                require: ids(require),
                subscribe: ids(subscribe),
                ..Meta::default()
            },
            ..Resource::new(Spec::File(FileSpec::with_content(path, content)))
        }
    }

    pub(super) fn catalog(resources: Vec<Resource>) -> Catalog {
        Catalog {
            node: "n".into(),
            environment: "production".into(),
            commit: "c".into(),
            version: Catalog::compute_version(&resources),
            resources,
            contents: Default::default(),
        }
    }

    pub(super) fn config<'a>(
        source: &'a MapSource,
        stop: &'a AtomicBool,
        previous: Option<&'a Catalog>,
    ) -> EngineConfig<'a> {
        EngineConfig {
            noop: false,
            node: "test-node",
            container_socket: Path::new("/nonexistent/docker.sock"),
            backups: "/nonexistent/backups".into(),
            contents: source,
            previous,
            stop,
            timeout: None,
            verbose: false,
            filecache: None,
            temp_marker: None,
            probe_state: None,
            protected: Vec::new(),
        }
    }

    #[test]
    fn failed_dependency_skips_dependents_and_refresh_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
        let (a, b, c, d) = (p("a"), p("missing/b"), p("c"), p("d"));
        let source = MapSource::with(&[b"x"]);
        let stop = AtomicBool::new(false);
        let (ida, idb, idc) = (
            format!("file:{a}"),
            format!("file:{b}"),
            format!("file:{c}"),
        );
        let cat = catalog(vec![
            file(&a, b"x", &[], &[]),
            file(&b, b"x", &[], &[]),
            file(&c, b"x", &[&idb], &[]),
            file(&d, b"x", &[&ida, &idc], &[&ida]),
        ]);
        let applied = apply(&cat, &config(&source, &stop, None));
        let st: Vec<_> = applied.resources.iter().map(|r| r.status).collect();
        assert_eq!(
            st[..3],
            [
                ResourceStatus::Changed,
                ResourceStatus::Failed,
                ResourceStatus::Skipped
            ]
        );
        assert_eq!(
            applied.resources[2].error.as_deref(),
            Some(format!("skipped: dependency {idb} failed").as_str())
        );
        assert_eq!(applied.resources[3].status, ResourceStatus::Skipped);
        assert!(
            applied.resources[3]
                .error
                .as_deref()
                .unwrap()
                .ends_with(&format!("{idc} was skipped"))
        );

        let cat2 = catalog(vec![
            file(&a, b"x", &[], &[]),
            file(&d, b"x", &[&ida], &[&ida]),
        ]);
        fs_err::remove_file(&a).unwrap();
        let applied = apply(&cat2, &config(&source, &stop, None));
        assert!(
            applied.resources[1].refreshed,
            "a changed, so d got a refresh"
        );
    }

    #[test]
    fn an_unreachable_engine_fails_its_container_alone_and_corrective_marks_drift() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a").to_string_lossy().into_owned();
        let container: Resource = serde_json::from_str(
            r#"{"id":"container:web","kind":"container","name":"web","image":"nginx"}"#,
        )
        .unwrap();
        let cat = catalog(vec![file(&a, b"x", &[], &[]), container]);
        let source = MapSource::with(&[b"x"]);
        let stop = AtomicBool::new(false);
        let applied = apply(&cat, &config(&source, &stop, Some(&cat)));
        assert!(
            applied.resources[0].corrective,
            "same spec as last time: drift repair"
        );
        assert_eq!(applied.resources[1].status, ResourceStatus::Failed);
        let error = applied.resources[1].error.as_deref().unwrap();
        assert!(
            error.starts_with("cannot reach the Docker Engine at /nonexistent/docker.sock"),
            "{error}"
        );
    }

    #[test]
    fn stop_flag_skips_the_rest_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a").to_string_lossy().into_owned();
        let source = MapSource::with(&[b"x"]);
        let stop = AtomicBool::new(true);
        let applied = apply(
            &catalog(vec![file(&a, b"x", &[], &[])]),
            &config(&source, &stop, None),
        );
        assert_eq!(applied.stopped.as_deref(), Some(INTERRUPTED));
        assert_eq!(applied.resources[0].status, ResourceStatus::Skipped);
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn run_timeout_skips_the_rest_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a").to_string_lossy().into_owned();
        let source = MapSource::with(&[b"x"]);
        let stop = AtomicBool::new(false);
        let mut cfg = config(&source, &stop, None);
        cfg.timeout = Some((std::time::Instant::now(), Duration::ZERO));
        let applied = apply(&catalog(vec![file(&a, b"x", &[], &[])]), &cfg);
        let reason = applied.stopped.expect("the run stopped");
        assert!(reason.contains("run_timeout_secs"), "{reason}");
        assert_eq!(applied.resources[0].status, ResourceStatus::Skipped);
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn noop_run_reports_noop_and_summary_counts() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a").to_string_lossy().into_owned();
        let source = MapSource::with(&[b"x"]);
        let stop = AtomicBool::new(false);
        let mut cfg = config(&source, &stop, None);
        cfg.noop = true;
        let applied = apply(&catalog(vec![file(&a, b"x", &[], &[])]), &cfg);
        assert_eq!(applied.resources[0].status, ResourceStatus::Noop);
        assert!(!dir.path().join("a").exists());
        let line = crate::output::summary_line(&applied.resources, true, Duration::from_millis(3));
        assert_eq!(
            line,
            "1 resources: 1 would change, 0 failed, 0 skipped in 3 ms"
        );
        assert!(
            crate::output::describe_events(&applied.resources[0])
                .starts_with("ensure absent -> present, content absent -> ")
        );
    }

    #[test]
    fn a_parent_changed_by_an_earlier_resource_is_walked_again() {
        // link -> real; f1 is written through it, then a symlink resource
        // points link at other: f2 must land in other, not in the
        // directory f1's walk reached.
        let dir = tempfile::tempdir().unwrap();
        let at = |n: &str| dir.path().join(n);
        fs_err::create_dir(at("real")).unwrap();
        fs_err::create_dir(at("other")).unwrap();
        std::os::unix::fs::symlink(at("real"), at("link")).unwrap();
        let link = at("link").display().to_string();
        let repoint: Resource = serde_json::from_value(serde_json::json!({
            "id": format!("symlink:{link}"),
            "kind": "symlink",
            "path": link,
            "target": at("other"),
        }))
        .unwrap();
        let cat = catalog(vec![
            file(&format!("{link}/f1"), b"x", &[], &[]),
            repoint,
            file(&format!("{link}/f2"), b"x", &[], &[]),
        ]);
        let source = MapSource::with(&[b"x"]);
        let stop = AtomicBool::new(false);
        let applied = apply(&cat, &config(&source, &stop, None));
        assert!(
            applied
                .resources
                .iter()
                .all(|r| r.status == ResourceStatus::Changed),
            "{:?}",
            applied.resources
        );
        assert!(at("real/f1").exists() && at("other/f2").exists());
        assert!(!at("real/f2").exists(), "f2 followed the new link");
    }
}
