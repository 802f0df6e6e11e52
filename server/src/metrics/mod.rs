//! The server's metrics, exported at `/metrics` in the Prometheus text format
//! (version 0.0.4) through the Prometheus org's `prometheus-client` crate.
//!
//! Counters and histograms live in one registry for the server's lifetime;
//! gauges read at scrape time (nodes by state, refresh age) go into a
//! registry made for that scrape, so a state no node has any more vanishes.

mod http;
pub mod log;
mod process;

pub use http::track_requests;

use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::fleet::{Counts, NodeState};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Compile durations in seconds: a small site compiles in about a
/// millisecond, a big role tree with many templates in seconds.
const COMPILE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Refresh durations in seconds: re-reading a directory takes milliseconds,
/// a fetch from a slow remote up to a minute.
const REFRESH_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

/// Every metric the server keeps between scrapes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http: http::HttpMetrics,
    compiles: Counter,
    compile_errors: Counter,
    compile_duration: Histogram,
    pub reports_received: Counter,
    refreshes: Counter,
    refresh_failures: Counter,
    refresh_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let r = &mut registry;
        r.register(
            "drover_log_lines_dropped",
            "Log lines dropped because stderr could not take them (a full disk, a closed pipe)",
            log::LOG_LINES_DROPPED.clone(),
        );
        // The encoder appends `_total` to counter names and a period to help texts.
        Metrics {
            http: http::HttpMetrics::register(r),
            compiles: counter(
                r,
                "drover_catalog_compiles",
                "Catalog compiles that succeeded (a cached result is not compiled again)",
            ),
            compile_errors: counter(
                r,
                "drover_catalog_compile_errors",
                "Catalog compiles that failed: the environment does not exist or parse, or the catalog does not compile",
            ),
            compile_duration: histogram(
                r,
                "drover_catalog_compile_duration_seconds",
                "Time to compile one node's catalog, successful or not",
                &COMPILE_BUCKETS,
            ),
            reports_received: counter(
                r,
                "drover_reports_received",
                "Run reports stored (duplicates not counted)",
            ),
            refreshes: counter(
                r,
                "drover_git_refreshes",
                "Repository refreshes (fetch, reparse of moved environments), successful or not",
            ),
            refresh_failures: counter(
                r,
                "drover_git_refresh_failures",
                "Repository refreshes that failed; the previous environments stay in use",
            ),
            refresh_duration: histogram(
                r,
                "drover_git_refresh_duration_seconds",
                "Time of one repository refresh",
                &REFRESH_BUCKETS,
            ),
            registry,
        }
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

fn histogram(registry: &mut Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let histogram = Histogram::new(buckets.iter().copied());
    registry.register(name, help, histogram.clone());
    histogram
}

impl Metrics {
    /// Records one compile that ran (not a cache hit) and how long it took.
    pub fn compile_finished(&self, took: Duration, ok: bool) {
        self.compile_duration.observe(took.as_secs_f64());
        if ok {
            self.compiles.inc();
        } else {
            self.compile_errors.inc();
        }
    }

    /// Records a compile that failed before compiling: the environment
    /// does not exist or does not parse, or the node matches no entry.
    pub fn compile_failed_early(&self) {
        self.compile_errors.inc();
    }

    /// Records one repository refresh.
    pub fn refresh_finished(&self, took: Duration, ok: bool) {
        self.refresh_duration.observe(took.as_secs_f64());
        self.refreshes.inc();
        if !ok {
            self.refresh_failures.inc();
        }
    }

    /// Renders every metric, the counters kept and what `now` says.
    pub fn render(&self, now: &Scrape<'_>) -> String {
        let mut scrape = Registry::default();
        register_nodes(&mut scrape, now.nodes);
        register_server(&mut scrape, now);
        process::register(&mut scrape);
        let family = Family::<[(&'static str, String); 3], Gauge>::default();
        for ((environment, app, state), count) in now.replicas {
            family
                .get_or_create(&[
                    ("environment", environment.clone()),
                    ("app", app.clone()),
                    ("state", (*state).to_owned()),
                ])
                .set(*count);
        }
        scrape.register(
            "drover_app_replicas",
            "Replicas of each app by state (pending, starting, running, healthy, unhealthy)",
            family,
        );
        let leader = Gauge::<i64>::default();
        leader.set(i64::from(now.leads));
        scrape.register(
            "drover_cluster_leader",
            "1 while this server leads the servers of its database (always on SQLite), else 0",
            leader,
        );
        // NaN is Prometheus' "no value": the server has never refreshed.
        let age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        age.set(now.refresh_age.unwrap_or(f64::NAN));
        scrape.register(
            "drover_git_refresh_age_seconds",
            "Seconds since the last successful repository refresh",
            age,
        );
        let mut out = String::new();
        // Writing to a String cannot fail, and every name is a valid one.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scrape);
        out
    }
}

/// Replicas by (environment, app, state).
pub type ReplicaCounts = std::collections::BTreeMap<(String, String, &'static str), i64>;

/// What a scrape reads of the server's state now.
#[derive(Debug)]
pub struct Scrape<'a> {
    /// Node counts by state.
    pub nodes: &'a Counts,
    /// Seconds since the last successful repository refresh.
    pub refresh_age: Option<f64>,
    /// Whether this server leads the servers of its database.
    pub leads: bool,
    pub replicas: &'a ReplicaCounts,
    /// When the CA's certificate expires (seconds since the epoch).
    pub ca_expiry: Option<i64>,
    /// When this server's TLS certificate expires.
    pub server_expiry: Option<i64>,
    /// Certificate requests waiting for an operator.
    pub pending_requests: Option<i64>,
    /// Nodes whose newest commit does not compile for them.
    pub compile_errors: i64,
}

static NO_NODES: Counts = Counts {
    by_state: std::collections::BTreeMap::new(),
    stale: 0,
    compile_error: 0,
    corrective: 0,
    total: 0,
};
static NO_REPLICAS: ReplicaCounts = ReplicaCounts::new();

impl Default for Scrape<'_> {
    /// No node, no replica, nothing known.
    fn default() -> Self {
        Scrape {
            nodes: &NO_NODES,
            refresh_age: None,
            leads: false,
            replicas: &NO_REPLICAS,
            ca_expiry: None,
            server_expiry: None,
            pending_requests: None,
            compile_errors: 0,
        }
    }
}

/// What an operator alerts on about the server itself: its build, its
/// certificates' expiry, requests waiting, nodes that do not compile.
fn register_server(registry: &mut Registry, now: &Scrape<'_>) {
    let build = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    build
        .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
    registry.register(
        "drover_build_info",
        "1, labelled with the version of this drover-server",
        build,
    );
    for (name, help, value) in [
        (
            "drover_ca_certificate_expiry_timestamp_seconds",
            "When the CA certificate expires (renew it before: every node pins it)",
            now.ca_expiry,
        ),
        (
            "drover_server_certificate_expiry_timestamp_seconds",
            "When this server's TLS certificate expires (reissued at start within 30 days of it)",
            now.server_expiry,
        ),
        (
            "drover_certificate_requests_pending",
            "Certificate requests waiting for an operator to sign or reject them",
            now.pending_requests,
        ),
        (
            "drover_nodes_compile_errors",
            "Nodes whose environment's newest commit does not compile for them (they get their last good catalog)",
            Some(now.compile_errors),
        ),
    ] {
        if let Some(value) = value {
            let gauge = Gauge::<i64>::default();
            gauge.set(value);
            registry.register(name, help, gauge);
        }
    }
}

/// `drover_nodes{state=...}`, one series for every state (0 included, so a
/// rate or an alert never sees a series vanish), and the stale-catalog count.
fn register_nodes(registry: &mut Registry, nodes: &Counts) {
    let family = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    for state in NodeState::ALL {
        family
            .get_or_create(&[("state", state.as_str())])
            .set(nodes.get(state));
    }
    registry.register(
        "drover_nodes",
        "Known nodes by state, as the dashboard shows them",
        family,
    );
    let stale = Gauge::<i64>::default();
    stale.set(nodes.stale);
    registry.register(
        "drover_nodes_stale_catalog",
        "Nodes whose last run used the cached catalog or an older commit than their environment serves",
        stale,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_time_gauges_render_their_inputs() {
        let metrics = Metrics::default();
        let mut nodes = Counts {
            stale: 2,
            ..Counts::default()
        };
        nodes.by_state.insert(NodeState::Changed, 3);
        nodes.by_state.insert(NodeState::Failed, 1);
        let mut replicas = ReplicaCounts::new();
        replicas.insert(("production".into(), "web".into(), "pending"), 2);
        let text = metrics.render(&Scrape {
            nodes: &nodes,
            leads: true,
            replicas: &replicas,
            ca_expiry: Some(2_000_000_000),
            pending_requests: Some(3),
            compile_errors: 2,
            ..Scrape::default()
        });
        for line in [
            "drover_cluster_leader 1",
            "drover_app_replicas{environment=\"production\",app=\"web\",state=\"pending\"} 2",
            "# TYPE drover_nodes gauge",
            "drover_nodes{state=\"changed\"} 3",
            "drover_nodes{state=\"failed\"} 1",
            "drover_nodes{state=\"noop_pending\"} 0",
            "drover_nodes_stale_catalog 2",
            "drover_git_refresh_age_seconds NaN",
            "# TYPE drover_catalog_compiles_total counter",
            "drover_catalog_compiles_total 0",
            "drover_build_info{version=\"0.1.0\"} 1",
            "drover_ca_certificate_expiry_timestamp_seconds 2000000000",
            "drover_certificate_requests_pending 3",
            "drover_nodes_compile_errors 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(
            !text.contains("# EOF"),
            "the 0.0.4 format has no EOF marker"
        );
        let text = metrics.render(&Scrape {
            refresh_age: Some(1.5),
            ..Scrape::default()
        });
        assert!(
            !text.contains("drover_server_certificate_expiry"),
            "no value, no series"
        );
        for process in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(
                text.contains(&format!("\n{process}")),
                "{process} in {text}"
            );
        }
        assert!(text.contains("\ndrover_cluster_leader 0\n"), "{text}");
        assert!(
            text.contains("\ndrover_git_refresh_age_seconds 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("drover_nodes{state=\"unresponsive\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn compiles_and_refreshes_land_in_their_counters() {
        let metrics = Metrics::default();
        metrics.compile_finished(Duration::from_millis(3), true);
        metrics.compile_finished(Duration::from_millis(30), false);
        metrics.compile_failed_early();
        metrics.refresh_finished(Duration::from_millis(20), false);
        let text = metrics.render(&Scrape::default());
        for line in [
            "drover_catalog_compiles_total 1",
            "drover_catalog_compile_errors_total 2",
            "drover_catalog_compile_duration_seconds_count 2",
            "drover_catalog_compile_duration_seconds_bucket{le=\"0.005\"} 1",
            "drover_catalog_compile_duration_seconds_bucket{le=\"0.05\"} 2",
            "drover_git_refreshes_total 1",
            "drover_git_refresh_failures_total 1",
            "drover_git_refresh_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
