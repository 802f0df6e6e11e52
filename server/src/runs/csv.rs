//! The runs and events lists as CSV: their chosen columns, written by
//! [`crate::export::csv_table`] (RFC 4180, CRLF lines, formula-like cells
//! defused).

use crate::db::ReportSummary;
use crate::error::AppError;

use super::EventLine;

/// The columns of the runs CSV, in order.
const RUN_COLUMNS: [&str; 14] = [
    "run_id",
    "node",
    "environment",
    "status",
    "noop",
    "finished_at",
    "duration_ms",
    "resources",
    "changed",
    "failed",
    "skipped",
    "commit",
    "catalog_version",
    "cached_catalog",
];

/// The columns of the events CSV, in order.
const EVENT_COLUMNS: [&str; 8] = [
    "finished_at",
    "node",
    "run_id",
    "environment",
    "resource",
    "status",
    "corrective",
    "summary",
];

pub fn runs_csv(runs: &[ReportSummary]) -> Result<String, AppError> {
    let rows = runs.iter().map(|r| {
        vec![
            r.id.clone(),
            r.node.clone(),
            r.environment.clone(),
            r.status.clone(),
            r.noop.to_string(),
            r.finished_at.clone(),
            format!("{:.0}", r.duration_ms),
            r.resources.to_string(),
            r.changed.to_string(),
            r.failed.to_string(),
            r.skipped.to_string(),
            r.commit.clone(),
            r.catalog_version.clone(),
            r.cached_catalog.clone(),
        ]
    });
    crate::export::csv_table(&RUN_COLUMNS, rows)
}

pub fn events_csv(events: &[EventLine]) -> Result<String, AppError> {
    let rows = events.iter().map(|e| {
        vec![
            e.finished_at.clone(),
            e.node.clone(),
            e.run_id.clone(),
            e.environment.clone(),
            e.resource.clone(),
            e.status.clone(),
            e.corrective.to_string(),
            e.summary.clone(),
        ]
    });
    crate::export::csv_table(&EVENT_COLUMNS, rows)
}
