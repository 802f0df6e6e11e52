//! The runs and events lists as CSV (RFC 4180): a header line, then one
//! line per row, every field quoted when it holds a comma, a quote or a
//! line break, lines ending in CRLF; a field starting with `=`, `+`, `-`
//! or `@` is prefixed with `'` so a spreadsheet does not run it.

use crate::db::ReportSummary;

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

pub fn runs_csv(runs: &[ReportSummary]) -> String {
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
    table(&RUN_COLUMNS, rows)
}

pub fn events_csv(events: &[EventLine]) -> String {
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
    table(&EVENT_COLUMNS, rows)
}

fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = line(header.iter().copied());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str)));
    }
    out
}

fn line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut out = fields.map(field).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

/// A field, quoted (its quotes doubled) when it must be; one a
/// spreadsheet would read as a formula (`=`, `+`, `-`, `@` first) is
/// prefixed with `'`, as the node list's CSV does.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        assert_eq!(field("file:/etc/motd"), "file:/etc/motd");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(field("-1,2"), "\"'-1,2\"");
        assert_eq!(line(["x", "y,z"].into_iter()), "x,\"y,z\"\r\n");
    }
}
