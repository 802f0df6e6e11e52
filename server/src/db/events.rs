//! Resource events: one `report_events` row per resource a report did not
//! leave unchanged (changed, failed, skipped, noop), written by
//! `reports::insert_row` in the report's own transaction, so the fleet-wide
//! runs and changes lists (`crate::runs`) find "every change to
//! file:/etc/motd" through an index. Retention and node purge delete them
//! with their reports.

use drover_catalog::report::{Report, ResourceReport, ResourceStatus};
use sqlx::AnyConnection;

use super::DbError;

/// The longest summary stored; the run page shows the whole resource.
const SUMMARY_CHARS: usize = 240;

/// What an event row holds besides its report's id, node and time.
pub(super) struct EventRow {
    resource: String,
    status: &'static str,
    corrective: bool,
    summary: String,
}

/// The rows of `report`: its resources not unchanged, in report order.
pub(super) fn rows(report: &Report) -> Vec<EventRow> {
    report
        .resources
        .iter()
        .filter(|r| r.status != ResourceStatus::Unchanged)
        .map(|r| EventRow {
            resource: r.id.to_string(),
            status: r.status.as_str(),
            corrective: r.corrective,
            summary: summary(r),
        })
        .collect()
}

/// One line of what happened: the error of a failed resource, else each
/// property that differed (`content: a → b`, or the event's message), and
/// that a diff is in the report; cut at [`SUMMARY_CHARS`].
pub fn summary(r: &ResourceReport) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(error) = &r.error {
        parts.push(error.clone());
    }
    for event in &r.events {
        parts.push(match &event.message {
            Some(message) => format!("{}: {message}", event.property),
            None => format!(
                "{}: {} → {}",
                event.property,
                event.previous.as_deref().unwrap_or("absent"),
                event.desired.as_deref().unwrap_or("absent")
            ),
        });
    }
    if r.diff.is_some() {
        parts.push("diff in the report".to_owned());
    }
    let text = parts.join("; ").replace(['\n', '\r'], " ");
    if text.chars().count() <= SUMMARY_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(SUMMARY_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The report a set of event rows belongs to.
pub(super) struct Of<'a> {
    pub report_id: i64,
    pub run_id: &'a str,
    pub node: &'a str,
    pub environment: &'a str,
    pub finished_us: i64,
}

/// Inserts `events` of report `of`, in the caller's transaction.
pub(super) async fn insert(
    conn: &mut AnyConnection,
    of: &Of<'_>,
    events: &[EventRow],
) -> Result<(), DbError> {
    for event in events {
        sqlx::query(
            "INSERT INTO report_events (report_id, run_id, node, environment, resource,
               status, corrective, finished_at_us, summary)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING",
        )
        .bind(of.report_id)
        .bind(of.run_id)
        .bind(of.node)
        .bind(of.environment)
        .bind(&event.resource)
        .bind(event.status)
        .bind(i64::from(event.corrective))
        .bind(of.finished_us)
        .bind(&event.summary)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How many events are stored (what `drover-seed` checks its fleet by).
pub async fn stored(db: &super::Db) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM report_events")
        .fetch_one(db.reads())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_catalog::report::Event;

    #[test]
    fn a_summary_says_what_differed_on_one_line() {
        let id: drover_catalog::model::ResourceId =
            serde_json::from_str("\"file:/etc/motd\"").unwrap();
        let mut r = ResourceReport::new(id, ResourceStatus::Changed);
        r.events.push(Event {
            property: "mode".into(),
            previous: Some("0600".into()),
            desired: Some("0644".into()),
            message: None,
        });
        r.diff = Some("-a\n+b\n".into());
        assert_eq!(summary(&r), "mode: 0600 → 0644; diff in the report");
        r.error = Some("x\n".repeat(200));
        let long = summary(&r);
        assert_eq!(long.chars().count(), SUMMARY_CHARS);
        assert!(long.ends_with('…') && !long.contains('\n'), "{long}");
    }
}
