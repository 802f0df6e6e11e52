//! Counters exported at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub compiles: AtomicU64,
    pub compile_errors: AtomicU64,
    pub reports_received: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric; `nodes` are counts per last status, `refresh_age`
    /// the seconds since the last successful repository refresh.
    pub fn render(&self, nodes: &[(String, i64)], refresh_age: Option<f64>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "drover_catalog_compiles_total",
            "Catalog compiles that succeeded.",
            self.compiles.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "drover_catalog_compile_errors_total",
            "Catalog compiles that failed.",
            self.compile_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "drover_reports_received_total",
            "Run reports stored (duplicates not counted).",
            self.reports_received.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP drover_nodes Known nodes by the status of their last run.\n# TYPE drover_nodes gauge"
        );
        for (status, count) in nodes {
            let _ = writeln!(out, "drover_nodes{{status=\"{status}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP drover_git_refresh_age_seconds Seconds since the last successful repository refresh.\n# TYPE drover_git_refresh_age_seconds gauge"
        );
        // NaN is Prometheus' "no value yet": the server has never refreshed.
        let age = refresh_age.map_or_else(|| "NaN".to_owned(), |a| format!("{a:.3}"));
        let _ = writeln!(out, "drover_git_refresh_age_seconds {age}");
        out
    }
}
