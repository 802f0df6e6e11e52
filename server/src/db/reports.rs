//! Run reports: stored once per node and run_id, with the node's last-run columns
//! and the hourly chart counts in the same write; the queries that read them.

use drover_catalog::{Report, report::ResourceStatus};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Db, DbError, flag};

/// Stores a report once per node and run_id; `true` when it was new. Updates the
/// node's last status unless a newer run is already recorded (spooled
/// reports can arrive out of order).
pub async fn insert_report(db: &Db, report: &Report, body: String) -> Result<bool, DbError> {
    let row = ReportRow::of(report, jiff::Timestamp::now());
    db.write(move |conn| Box::pin(insert_row(conn, row, body)))
        .await
}

/// Stores several reports in one write (one transaction of the writer),
/// each as [`insert_report`] stores it but received at the time beside it:
/// a bulk import, such as the fleet history `drover-seed` writes for the
/// dashboard benchmark. How many were new.
pub async fn insert_reports(
    db: &Db,
    reports: Vec<(Report, String, jiff::Timestamp)>,
) -> Result<usize, DbError> {
    let rows: Vec<(ReportRow, String)> = reports
        .into_iter()
        .map(|(report, body, received)| (ReportRow::of(&report, received), body))
        .collect();
    db.write(move |conn| {
        Box::pin(async move {
            let mut new = 0;
            for (row, body) in rows {
                new += usize::from(insert_row(conn, row, body).await?);
            }
            Ok(new)
        })
    })
    .await
}

/// What a report's row holds besides its body, taken from the report.
struct ReportRow {
    run_id: String,
    node: String,
    environment: String,
    commit: String,
    status: &'static str,
    chart_status: &'static str,
    noop: bool,
    started_at: String,
    finished_at: String,
    finished_us: i64,
    received_at: String,
    catalog_version: String,
    cached: &'static str,
    resources: i64,
    changed: i64,
    failed: i64,
    skipped: i64,
    /// Resources the run repaired (drift the catalog did not ask for).
    corrective: i64,
    duration_ms: f64,
    /// (container, state, since) of each replica the node holds; written
    /// only by a noop-free report that is the node's newest.
    replicas: Option<Vec<(String, String, Option<String>)>>,
    /// Its resources not unchanged, for `report_events`.
    events: Vec<super::events::EventRow>,
}

impl ReportRow {
    fn of(report: &Report, received: jiff::Timestamp) -> ReportRow {
        let count = |f: fn(ResourceStatus) -> bool| {
            i64::try_from(report.resources.iter().filter(|r| f(r.status)).count())
                .unwrap_or(i64::MAX)
        };
        ReportRow {
            run_id: report.run_id.clone(),
            node: report.node.clone(),
            environment: report.environment.clone(),
            commit: report.commit.clone(),
            status: report.status.as_str(),
            chart_status: chart_status(report),
            noop: report.noop,
            started_at: report.started_at.to_string(),
            finished_at: report.finished_at.to_string(),
            finished_us: order_us(report.finished_at, received),
            received_at: received.to_string(),
            catalog_version: report.catalog_version.clone(),
            cached: cached_str(report),
            resources: i64::try_from(report.resources.len()).unwrap_or(i64::MAX),
            changed: count(|s| matches!(s, ResourceStatus::Changed | ResourceStatus::Noop)),
            failed: count(|s| s == ResourceStatus::Failed),
            skipped: count(|s| s == ResourceStatus::Skipped),
            corrective: i64::try_from(report.resources.iter().filter(|r| r.corrective).count())
                .unwrap_or(i64::MAX),
            duration_ms: run_duration_ms(report),
            // A noop run converged nothing: the states it saw are not news
            // for the control loop, and a noop run reports missing replicas
            // that a real run would have created; a tagged run (`--tags`)
            // left the replicas alone.
            replicas: (!report.noop && report.tags.is_empty()).then(|| {
                report
                    .replicas
                    .iter()
                    .map(|r| {
                        (
                            r.container.clone(),
                            r.state.as_str().to_owned(),
                            r.since.map(|t| t.to_string()),
                        )
                    })
                    .collect()
            }),
            events: super::events::rows(report),
        }
    }
}

async fn insert_row(
    conn: &mut AnyConnection,
    row: ReportRow,
    body: String,
) -> Result<bool, DbError> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO reports (run_key, run_id, node, environment, commit_id, status, noop,
           started_at, finished_at, finished_at_us, catalog_version, cached_catalog,
           resources, changed, failed, skipped, received_at, body, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    // Unique per node (migration 0007): another node's run_id is news here.
    .bind(serde_json::to_string(&[&row.node, &row.run_id])?)
    .bind(&row.run_id)
    .bind(&row.node)
    .bind(&row.environment)
    .bind(&row.commit)
    .bind(row.status)
    .bind(i64::from(row.noop))
    .bind(&row.started_at)
    .bind(&row.finished_at)
    .bind(row.finished_us)
    .bind(&row.catalog_version)
    .bind(row.cached)
    .bind(row.resources)
    .bind(row.changed)
    .bind(row.failed)
    .bind(row.skipped)
    .bind(&row.received_at)
    .bind(body)
    .bind(row.duration_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(report_id) = inserted else {
        return Ok(false);
    };
    let of = super::events::Of {
        report_id,
        run_id: &row.run_id,
        node: &row.node,
        environment: &row.environment,
        finished_us: row.finished_us,
    };
    super::events::insert(conn, &of, &row.events).await?;
    let newest = sqlx::query(
        "INSERT INTO nodes (name, last_status, last_run_at, last_run_at_us, last_run_id,
           last_noop, last_cached_catalog, last_environment, last_commit, last_catalog_version,
           last_duration_ms, last_corrective)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (name) DO UPDATE SET last_status = excluded.last_status,
           last_run_at = excluded.last_run_at, last_run_at_us = excluded.last_run_at_us,
           last_run_id = excluded.last_run_id, last_noop = excluded.last_noop,
           last_cached_catalog = excluded.last_cached_catalog,
           last_environment = excluded.last_environment,
           last_commit = excluded.last_commit,
           last_catalog_version = excluded.last_catalog_version,
           last_duration_ms = excluded.last_duration_ms,
           last_corrective = excluded.last_corrective, deactivated_at = NULL
         WHERE nodes.last_run_at_us IS NULL OR nodes.last_run_at_us <= excluded.last_run_at_us",
    )
    .bind(&row.node)
    .bind(row.status)
    .bind(order_time(row.finished_us))
    .bind(row.finished_us)
    .bind(&row.run_id)
    .bind(i64::from(row.noop))
    .bind(row.cached)
    .bind(&row.environment)
    .bind(&row.commit)
    .bind(&row.catalog_version)
    .bind(row.duration_ms)
    .bind(row.corrective)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // Only the node's newest run says what its replicas are now.
    if newest == 1
        && let Some(replicas) = &row.replicas
    {
        super::apps::record_replica_states(conn, &row.node, replicas, &row.received_at).await?;
    }
    sqlx::query(
        "INSERT INTO report_hours (hour, status, runs, duration_ms_sum, duration_ms_max)
         VALUES ($1, $2, 1, $3, $4)
         ON CONFLICT (hour, status) DO UPDATE SET runs = report_hours.runs + 1,
           duration_ms_sum = report_hours.duration_ms_sum + excluded.duration_ms_sum,
           duration_ms_max = CASE WHEN excluded.duration_ms_max > report_hours.duration_ms_max
             THEN excluded.duration_ms_max ELSE report_hours.duration_ms_max END",
    )
    .bind(row.finished_us.div_euclid(HOUR_US))
    .bind(row.chart_status)
    .bind(row.duration_ms)
    .bind(row.duration_ms)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// The ordering time of a run (history, the node's last run, the chart):
/// when it says it finished, but never later than when the server received
/// it, since no run finishes after its report arrives. A node whose clock
/// says 2036 cannot hide every later run behind that one; late (spooled)
/// reports keep their own, earlier time.
fn order_us(finished: jiff::Timestamp, received: jiff::Timestamp) -> i64 {
    finished.as_microsecond().min(received.as_microsecond())
}

fn order_time(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map_or_else(|_| String::new(), |t| t.to_string())
}

/// How far the node's clock was ahead of the server's: the reported finish
/// minus the arrival, in seconds; 0 when it arrived after it finished.
pub fn clock_skew_secs(finished_at: &str, received_at: &str) -> f64 {
    match (
        finished_at.parse::<jiff::Timestamp>(),
        received_at.parse::<jiff::Timestamp>(),
    ) {
        (Ok(f), Ok(r)) => f.duration_since(r).as_secs_f64().max(0.0).round(),
        _ => 0.0,
    }
}

/// When the server received node `node`'s run `run_id`.
pub async fn report_received_at(
    db: &Db,
    node: &str,
    run_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT received_at FROM reports WHERE node = $1 AND run_id = $2")
            .bind(node)
            .bind(run_id)
            .fetch_optional(db.reads())
            .await?,
    )
}

/// Microseconds in an hour: the bucket of `report_hours`.
pub const HOUR_US: i64 = 3_600_000_000;

/// How long the run took, from its own timestamps (never negative).
fn run_duration_ms(report: &Report) -> f64 {
    let span = report.finished_at.duration_since(report.started_at);
    (span.as_secs_f64() * 1000.0).max(0.0)
}

/// The run's status in the fleet chart: a dry run that would change is `noop`.
fn chart_status(report: &Report) -> &'static str {
    match report.status {
        drover_catalog::report::RunStatus::Changed if report.noop => "noop",
        status => status.as_str(),
    }
}

fn cached_str(report: &Report) -> &'static str {
    match report.cached_catalog {
        drover_catalog::report::CachedCatalog::NotUsed => "not_used",
        drover_catalog::report::CachedCatalog::OnFailure => "on_failure",
    }
}

/// One line of a node's run history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportSummary {
    /// The run_id.
    pub id: String,
    pub node: String,
    pub environment: String,
    pub commit: String,
    pub catalog_version: String,
    pub status: String,
    pub noop: bool,
    pub cached_catalog: String,
    pub started_at: String,
    pub finished_at: String,
    pub resources: i64,
    pub changed: i64,
    pub failed: i64,
    pub skipped: i64,
    /// From `started_at` to `finished_at`.
    pub duration_ms: f64,
    /// When the server received the report.
    pub received_at: String,
    /// How far ahead of the server's clock the node's was (`finished_at`
    /// minus `received_at`, seconds, 0 if not ahead). Runs are ordered by
    /// `finished_at`, but never later than `received_at`.
    pub clock_skew_secs: f64,
}

impl FromRow<'_, AnyRow> for ReportSummary {
    fn from_row(row: &AnyRow) -> Result<ReportSummary, sqlx::Error> {
        let (finished_at, received_at): (String, String) =
            (row.try_get("finished_at")?, row.try_get("received_at")?);
        Ok(ReportSummary {
            id: row.try_get("run_id")?,
            node: row.try_get("node")?,
            environment: row.try_get("environment")?,
            commit: row.try_get("commit_id")?,
            catalog_version: row.try_get("catalog_version")?,
            status: row.try_get("status")?,
            noop: flag(row, "noop")?,
            cached_catalog: row.try_get("cached_catalog")?,
            started_at: row.try_get("started_at")?,
            resources: row.try_get("resources")?,
            changed: row.try_get("changed")?,
            failed: row.try_get("failed")?,
            skipped: row.try_get("skipped")?,
            duration_ms: row.try_get("duration_ms")?,
            clock_skew_secs: clock_skew_secs(&finished_at, &received_at),
            finished_at,
            received_at,
        })
    }
}

/// A node's reports, newest first, finished strictly before `before`.
pub async fn reports(
    db: &Db,
    node: &str,
    limit: u32,
    before: Option<jiff::Timestamp>,
) -> Result<Vec<ReportSummary>, DbError> {
    let before_us = before.map_or(i64::MAX, |t| t.as_microsecond());
    Ok(sqlx::query_as(
        "SELECT run_id, node, environment, commit_id, catalog_version, status, noop,
           cached_catalog, started_at, finished_at, resources, changed, failed, skipped,
           duration_ms, received_at
         FROM reports WHERE node = $1 AND finished_at_us < $2
         ORDER BY finished_at_us DESC, id DESC LIMIT $3",
    )
    .bind(node)
    .bind(before_us)
    .bind(i64::from(limit))
    .fetch_all(db.reads())
    .await?)
}

/// The node and the body of one stored report: node `of`'s run `run_id`,
/// or (`of` = None) the first stored run with that id, whichever node's
/// (run ids are unique per node only).
pub async fn report_body(
    db: &Db,
    run_id: &str,
    of: Option<&str>,
) -> Result<Option<(String, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT node, body FROM reports WHERE run_id = $1 AND ($2 IS NULL OR node = $2)
         ORDER BY id LIMIT 1",
    )
    .bind(run_id)
    .bind(of)
    .fetch_optional(db.reads())
    .await?)
}

/// One run of a node as its chart draws it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunPoint {
    pub finished_at_us: i64,
    pub status: String,
    pub noop: i64,
    pub duration_ms: f64,
}

/// A node's runs that finished in `[from_us, to_us)`, oldest first, at most
/// `limit` of them (the newest when there are more): the columns its chart
/// needs, read along the `(node, finished_at_us)` index.
pub async fn run_points(
    db: &Db,
    node: &str,
    (from_us, to_us): (i64, i64),
    limit: u32,
) -> Result<Vec<RunPoint>, DbError> {
    let mut points: Vec<RunPoint> = sqlx::query_as(
        "SELECT finished_at_us, status, noop, duration_ms FROM reports
         WHERE node = $1 AND finished_at_us >= $2 AND finished_at_us < $3
         ORDER BY finished_at_us DESC LIMIT $4",
    )
    .bind(node)
    .bind(from_us)
    .bind(to_us)
    .bind(i64::from(limit))
    .fetch_all(db.reads())
    .await?;
    points.reverse();
    Ok(points)
}
