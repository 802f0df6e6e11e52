//! A run's own metrics: the clock that times its phases (into the report's
//! `metrics`), and the Prometheus textfile each run leaves for
//! node-exporter's textfile collector, so the fleet is watched without asking
//! the server.
//!
//! The textfile is rewritten atomically after every run that held the run
//! lock, including runs that could not converge (no catalog): then the exit
//! code is 1 and the duration is still there. A run that did not get the
//! lock leaves it to the run holding it.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Result;
use drover_catalog::Report;
use drover_catalog::report::{
    CachedCatalog, ResourceCounts, ResourceReport, ResourceStatus, RunMetrics,
};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Settings;
use crate::fsutil::{self, NewFile};

/// The parts of a run that [`RunMetrics`] times separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Facts,
    /// Fetching, loading or compiling the catalog, and fetching file contents.
    Catalog,
    /// Converging, content fetches excluded.
    Apply,
}

/// When a run started, and how long it has spent in each phase so far.
#[derive(Debug, Clone)]
pub(crate) struct RunClock {
    started: Instant,
    started_at: jiff::Timestamp,
    facts: Duration,
    catalog: Duration,
    apply: Duration,
}

impl RunClock {
    pub(crate) fn start() -> RunClock {
        RunClock {
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
            facts: Duration::ZERO,
            catalog: Duration::ZERO,
            apply: Duration::ZERO,
        }
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn started_at(&self) -> jiff::Timestamp {
        self.started_at
    }

    pub(crate) fn add(&mut self, phase: Phase, spent: Duration) {
        let total = match phase {
            Phase::Facts => &mut self.facts,
            Phase::Catalog => &mut self.catalog,
            Phase::Apply => &mut self.apply,
        };
        *total += spent;
    }

    /// Runs `f`, counting its time in `phase`.
    pub(crate) fn time<T>(&mut self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = f();
        self.add(phase, started.elapsed());
        result
    }

    /// The run so far: its whole duration ends now.
    pub(crate) fn metrics(&self, resources: &[ResourceReport]) -> RunMetrics {
        RunMetrics {
            duration_ms: ms(self.started.elapsed()),
            facts_ms: ms(self.facts),
            catalog_ms: ms(self.catalog),
            apply_ms: ms(self.apply),
            resources: ResourceCounts::of(resources),
            // Counted by the engine: see `build_report_of_run`.
            files: Default::default(),
        }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the textfile says about the last run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub finished_at: jiff::Timestamp,
    pub metrics: RunMetrics,
    /// The detailed exit code (0, 2, 4, 6), 1 when the run could not happen.
    pub exit_code: i32,
    pub noop: bool,
    pub cached_catalog: bool,
    /// version, environment, commit of the catalog applied; none without one.
    pub catalog: Option<[String; 3]>,
}

impl Sample {
    pub(crate) fn of_report(report: &Report) -> Sample {
        Sample {
            finished_at: report.finished_at,
            metrics: report.metrics.clone(),
            exit_code: report.exit_code(),
            noop: report.noop,
            cached_catalog: report.cached_catalog == CachedCatalog::OnFailure,
            catalog: Some([
                report.catalog_version.clone(),
                report.environment.clone(),
                report.commit.clone(),
            ]),
        }
    }

    /// A run that stopped before converging anything.
    pub(crate) fn could_not_run(clock: &RunClock, noop: bool) -> Sample {
        Sample {
            finished_at: jiff::Timestamp::now(),
            metrics: clock.metrics(&[]),
            exit_code: 1,
            noop,
            cached_catalog: false,
            catalog: None,
        }
    }

    /// The run happened and nothing failed (it may have changed things).
    pub(crate) fn success(&self) -> bool {
        matches!(self.exit_code, 0 | 2)
    }
}

/// The textfile: gauges in the Prometheus text exposition format (0.0.4,
/// which node-exporter's textfile collector reads), encoded by
/// `prometheus-client` as the server's `/metrics` is (so the series of a
/// labelled family come in no fixed order, which Prometheus ignores).
pub(crate) fn render(sample: &Sample) -> String {
    let m = &sample.metrics;
    let flag = |b: bool| i64::from(b);
    let mut r = Registry::with_prefix("drover_agent");
    gauge(
        &mut r,
        "last_run_duration_seconds",
        "How long the last run took, from its start to its report",
        m.duration_ms / 1000.0,
    );
    let phases = labelled(
        &mut r,
        "last_run_phase_duration_seconds",
        "Time the last run spent gathering facts, getting the catalog and its file contents, and converging (0 for a phase that did not happen)",
    );
    for (phase, ms) in [
        ("facts", m.facts_ms),
        ("catalog", m.catalog_ms),
        ("apply", m.apply_ms),
    ] {
        phases
            .get_or_create(&vec![("phase", phase.to_owned())])
            .set(ms / 1000.0);
    }
    let resources = labelled_count(
        &mut r,
        "last_run_resources",
        "Resources of the last run's catalog by the status they ended in",
    );
    for status in ResourceStatus::ALL {
        resources
            .get_or_create(&vec![("status", status.as_str().to_owned())])
            .set(i64::try_from(m.resources.of_status(status)).unwrap_or(i64::MAX));
    }
    count(
        &mut r,
        "last_run_corrective_resources",
        "Resources whose change in the last run repaired drift from an unchanged desired state",
        i64::try_from(m.resources.corrective).unwrap_or(i64::MAX),
    );
    gauge(
        &mut r,
        "last_run_timestamp_seconds",
        "When the last run finished, in seconds since the Unix epoch",
        sample.finished_at.as_millisecond() as f64 / 1000.0,
    );
    count(
        &mut r,
        "last_run_exit_code",
        "The last run's detailed exit code: 0 unchanged, 2 changed, 4 failures, 6 both, 1 the run could not happen",
        i64::from(sample.exit_code),
    );
    count(
        &mut r,
        "last_run_success",
        "Whether the last run happened without a failed or skipped resource",
        flag(sample.success()),
    );
    count(
        &mut r,
        "last_run_cached_catalog",
        "Whether the last run applied the cached catalog because the server failed",
        flag(sample.cached_catalog),
    );
    count(
        &mut r,
        "last_run_noop",
        "Whether the last run was a noop run, which changes nothing",
        flag(sample.noop),
    );
    if let Some([version, environment, commit]) = &sample.catalog {
        let info = labelled_count(
            &mut r,
            "last_run_catalog_info",
            "The catalog the last run applied, in its labels",
        );
        let labels = vec![
            ("version", version.clone()),
            ("environment", environment.clone()),
            ("commit", commit.clone()),
        ];
        info.get_or_create(&labels).set(1);
    }
    let mut out = String::new();
    // Writing to a String cannot fail, and every name is a valid one.
    let _ = prometheus_text::encode(&mut out, &r);
    out
}

/// A gauge of fractional values (seconds, counts, flags).
type Value = Gauge<f64, AtomicU64>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let gauge = Value::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

/// A gauge of whole numbers (counts, flags, exit codes).
fn count(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let gauge = Gauge::<i64>::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

/// A family of whole-number gauges told apart by their labels.
fn labelled_count(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Vec<(&'static str, String)>, Gauge<i64>> {
    let family = Family::default();
    registry.register(name, help, family.clone());
    family
}

/// A family of gauges told apart by their labels.
fn labelled(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Vec<(&'static str, String)>, Value> {
    let family = Family::default();
    registry.register(name, help, family.clone());
    family
}

/// Replaces the textfile atomically, readable by node-exporter's user
/// (the content is not secret), creating its directory when missing. The
/// collector reads only `*.prom`, so it never sees the temp file; a temp a
/// killed run left there is swept first.
pub(crate) fn write_textfile(path: &Path, sample: &Sample) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent)?;
        fsutil::remove_stale_temps(parent);
    }
    fsutil::write_atomic(
        path,
        NewFile {
            content: render(sample).as_bytes(),
            mode: 0o644,
            uid: None,
            gid: None,
            validate: None,
            quiet: false,
        },
    )
}

/// Writes the textfile of a run, where `settings` say; a failure is a
/// warning, never the run's failure.
pub(crate) fn record(settings: &Settings, sample: &Sample) {
    let Some(path) = &settings.metrics_textfile else {
        return;
    };
    if let Err(e) = write_textfile(path, sample) {
        crate::output::warning(&format!(
            "cannot write the metrics textfile {}: {e:#}\nhint: set metrics_textfile in agent.toml to a writable path, or to \"\" to write none",
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            finished_at: "2024-05-01T10:00:01.5Z".parse().unwrap(),
            metrics: RunMetrics {
                duration_ms: 1500.0,
                facts_ms: 20.0,
                catalog_ms: 250.0,
                apply_ms: 1200.0,
                resources: ResourceCounts {
                    total: 3,
                    unchanged: 2,
                    changed: 1,
                    corrective: 1,
                    ..ResourceCounts::default()
                },
                files: Default::default(),
            },
            exit_code: 2,
            noop: false,
            cached_catalog: true,
            catalog: Some(["v\"1\\x\nz".into(), "production".into(), "abc".into()]),
        }
    }

    #[test]
    fn every_status_has_a_line_even_at_zero() {
        let text = render(&sample());
        for (status, value) in [
            ("unchanged", 2),
            ("changed", 1),
            ("failed", 0),
            ("skipped", 0),
            ("noop", 0),
        ] {
            let line = format!("drover_agent_last_run_resources{{status=\"{status}\"}} {value}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains("# TYPE drover_agent_last_run_resources gauge\n"));
    }

    #[test]
    fn values_are_seconds_and_flags() {
        let text = render(&sample());
        for line in [
            "drover_agent_last_run_duration_seconds 1.5\n",
            "drover_agent_last_run_phase_duration_seconds{phase=\"facts\"} 0.02\n",
            "drover_agent_last_run_phase_duration_seconds{phase=\"catalog\"} 0.25\n",
            "drover_agent_last_run_phase_duration_seconds{phase=\"apply\"} 1.2\n",
            "drover_agent_last_run_corrective_resources 1\n",
            "drover_agent_last_run_timestamp_seconds 1714557601.5\n",
            "drover_agent_last_run_exit_code 2\n",
            "drover_agent_last_run_success 1\n",
            "drover_agent_last_run_cached_catalog 1\n",
            "drover_agent_last_run_noop 0\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // Every sample line belongs to a family announced just before it.
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(family), "{line} after TYPE {family}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&sample());
        assert!(
            text.contains(
                "drover_agent_last_run_catalog_info{version=\"v\\\"1\\\\x\\nz\",environment=\"production\",commit=\"abc\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_run_that_could_not_happen_has_its_duration_and_no_catalog() {
        let mut clock = RunClock::start();
        clock.add(Phase::Facts, Duration::from_millis(30));
        let failed = Sample::could_not_run(&clock, true);
        assert!(!failed.success());
        assert!(failed.metrics.duration_ms >= 0.0);
        assert_eq!(failed.metrics.facts_ms, 30.0);
        let text = render(&failed);
        assert!(
            text.contains("drover_agent_last_run_exit_code 1\n"),
            "{text}"
        );
        assert!(text.contains("drover_agent_last_run_success 0\n"), "{text}");
        assert!(text.contains("drover_agent_last_run_noop 1\n"), "{text}");
        assert!(!text.contains("catalog_info"), "{text}");
        for code in [4, 6] {
            assert!(
                !Sample {
                    exit_code: code,
                    ..sample()
                }
                .success(),
                "{code}"
            );
        }
    }

    #[test]
    fn non_finite_values_have_their_names() {
        let text = render(&Sample {
            metrics: RunMetrics {
                duration_ms: f64::NAN,
                facts_ms: f64::INFINITY,
                catalog_ms: f64::NEG_INFINITY,
                ..sample().metrics
            },
            ..sample()
        });
        for line in [
            "drover_agent_last_run_duration_seconds NaN\n",
            "drover_agent_last_run_phase_duration_seconds{phase=\"facts\"} +Inf\n",
            "drover_agent_last_run_phase_duration_seconds{phase=\"catalog\"} -Inf\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn the_textfile_is_replaced_whole_and_world_readable() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector/drover-agent.prom");
        write_textfile(&path, &sample()).unwrap();
        fs_err::write(fsutil::temp_path_for(&path), b"# HELP half").unwrap();
        let failed = Sample::could_not_run(&RunClock::start(), false);
        write_textfile(&path, &failed).unwrap();
        // The same lines (a family's series come in no fixed order).
        let lines = |text: String| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(
            lines(fs_err::read_to_string(&path).unwrap()),
            lines(render(&failed))
        );
        assert_eq!(fs_err::metadata(&path).unwrap().mode() & 0o777, 0o644);
        let names: Vec<_> = fs_err::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["drover-agent.prom"],
            "no temp file left, a stale one swept"
        );
    }
}
