//! What a run prints: one line per change or failure as it happens, and a
//! summary line at the end.

use std::io::Write;
use std::time::Duration;

use drover_catalog::report::{ResourceReport, ResourceStatus};

/// `changed file:/x: content 3a4b5c6d.. -> 9c1d2e3f.., mode 0600 -> 0644`,
/// then the diff; failures and skips go to stderr.
pub fn print_resource(r: &ResourceReport) {
    match r.status {
        ResourceStatus::Unchanged => {}
        ResourceStatus::Changed | ResourceStatus::Noop => {
            let verb = if r.status == ResourceStatus::Noop {
                "would change"
            } else {
                "changed"
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{verb} {}: {}", r.id, describe_events(r));
            if let Some(diff) = &r.diff {
                let _ = write!(out, "{diff}");
                if !diff.ends_with('\n') {
                    let _ = writeln!(out);
                }
            }
        }
        ResourceStatus::Failed | ResourceStatus::Skipped => {
            let verb = if r.status == ResourceStatus::Failed {
                "failed"
            } else {
                "skipped"
            };
            let error = r.error.as_deref().unwrap_or("");
            let error = error.strip_prefix("skipped: ").unwrap_or(error);
            eprintln!("{verb} {}: {error}", r.id);
        }
    }
}

pub fn describe_events(r: &ResourceReport) -> String {
    let short = |property: &str, v: &Option<String>| match v {
        None => "absent".to_owned(),
        Some(v) if property == "content" && v.len() > 8 => format!("{}..", &v[..8]),
        Some(v) => v.clone(),
    };
    let mut parts: Vec<String> = r
        .events
        .iter()
        .map(|e| match e.property.as_str() {
            "purged" => format!("purged {}", e.previous.as_deref().unwrap_or("")),
            p => format!("{p} {} -> {}", short(p, &e.previous), short(p, &e.desired)),
        })
        .collect();
    if r.refreshed {
        parts.push("refreshed".into());
    }
    parts.join(", ")
}

/// `N resources: X changed, Y failed, Z skipped in T ms`.
pub fn summary_line(resources: &[ResourceReport], elapsed: Duration) -> String {
    let count = |f: fn(ResourceStatus) -> bool| resources.iter().filter(|r| f(r.status)).count();
    let changed = count(|s| matches!(s, ResourceStatus::Changed | ResourceStatus::Noop));
    let failed = count(|s| s == ResourceStatus::Failed);
    let skipped = count(|s| s == ResourceStatus::Skipped);
    // The same shape in noop (where "changed" counts what would change), so
    // scripts parse one format; the per-resource lines say "would change".
    format!(
        "{} resources: {changed} changed, {failed} failed, {skipped} skipped in {} ms",
        resources.len(),
        elapsed.as_millis()
    )
}
