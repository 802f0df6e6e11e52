//! The runs and events queries: the filter's conditions over `reports`
//! (alias `r`) and `report_events` (alias `e`), newest first by
//! `(finished_at_us, id)`, one row more than the page to know whether
//! another follows. A limit above a page (a download) is read a page at a
//! time by keyset, so no one query sorts more than a page.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::{Cursor, MAX_LIMIT, NodeMatch, RunFilter};
use crate::db::{Db, DbError, ReportSummary, Sql};

/// A page of runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<ReportSummary>,
    /// The `after` of the next page, when there is one.
    #[schema(nullable = true)]
    pub next_after: Option<String>,
}

/// One resource event: a resource a run did not leave unchanged.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventLine {
    pub node: String,
    /// The run's run_id (its page: `/runs/{run_id}`).
    pub run_id: String,
    pub environment: String,
    /// `KIND:NAME`.
    pub resource: String,
    /// `changed`, `noop`, `failed` or `skipped`.
    pub status: String,
    /// The change repaired drift from a desired state that had not changed.
    pub corrective: bool,
    /// When the run finished (never later than the server received it).
    pub finished_at: String,
    /// The error, the properties that differed (`mode: 0600 → 0644`),
    /// whether the report holds a diff; at most 240 characters.
    pub summary: String,
}

/// A page of events.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<EventLine>,
    #[schema(nullable = true)]
    pub next_after: Option<String>,
}

/// A row and where it sits in the order.
struct Keyed<T> {
    cursor: Cursor,
    item: T,
}

impl<'r, T: FromRow<'r, AnyRow>> FromRow<'r, AnyRow> for Keyed<T> {
    fn from_row(row: &'r AnyRow) -> Result<Keyed<T>, sqlx::Error> {
        Ok(Keyed {
            cursor: Cursor {
                us: row.try_get("key_us")?,
                id: row.try_get("key_id")?,
            },
            item: T::from_row(row)?,
        })
    }
}

impl FromRow<'_, AnyRow> for EventLine {
    fn from_row(row: &AnyRow) -> Result<EventLine, sqlx::Error> {
        let us: i64 = row.try_get("finished_at_us")?;
        Ok(EventLine {
            node: row.try_get("node")?,
            run_id: row.try_get("run_id")?,
            environment: row.try_get("environment")?,
            resource: row.try_get("resource")?,
            status: row.try_get("status")?,
            corrective: crate::db::flag(row, "corrective")?,
            finished_at: jiff::Timestamp::from_microsecond(us)
                .map_or_else(|_| us.to_string(), |t| t.to_string()),
            summary: row.try_get("summary")?,
        })
    }
}

/// The first `filter.limit` rows from `filter.after` on, read by `fetch`
/// (which asks for one row more than its filter's limit) at most
/// [`MAX_LIMIT`] at a time, and the cursor after them when more follow.
async fn walk<T, F, Fut>(filter: &RunFilter, fetch: F) -> Result<(Vec<T>, Option<String>), DbError>
where
    F: Fn(RunFilter) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Keyed<T>>, DbError>>,
{
    let wanted = filter.limit as usize;
    let mut items = Vec::new();
    let mut chunk = filter.clone();
    loop {
        chunk.limit = u32::try_from(wanted - items.len()).map_or(MAX_LIMIT, |n| n.min(MAX_LIMIT));
        let mut rows = fetch(chunk.clone()).await?;
        let more = rows.len() > chunk.limit as usize;
        rows.truncate(chunk.limit as usize);
        let last = rows.last().map(|r| r.cursor);
        items.extend(rows.into_iter().map(|r| r.item));
        match last.filter(|_| more) {
            Some(next) if items.len() < wanted => chunk.after = Some(next),
            next => return Ok((items, next.map(Cursor::text))),
        }
    }
}

const RUN_COLUMNS: &str = "r.run_id, r.node, r.environment, r.commit_id, r.catalog_version,
    r.status, r.noop, r.cached_catalog, r.started_at, r.finished_at, r.resources, r.changed,
    r.failed, r.skipped, r.duration_ms, r.received_at";

/// Runs matching `filter`, newest first.
pub async fn runs(db: &Db, filter: &RunFilter) -> Result<RunPage, DbError> {
    let (runs, next_after) = walk(filter, |chunk| runs_chunk(db, chunk)).await?;
    Ok(RunPage { runs, next_after })
}

/// Resource events matching `filter`, newest first.
pub async fn events(db: &Db, filter: &RunFilter) -> Result<EventPage, DbError> {
    let (events, next_after) = walk(filter, |chunk| events_chunk(db, chunk)).await?;
    Ok(EventPage { events, next_after })
}

/// At most `filter.limit + 1` runs.
async fn runs_chunk(db: &Db, filter: RunFilter) -> Result<Vec<Keyed<ReportSummary>>, DbError> {
    let filter = &filter;
    let mut q = Sql::new("SELECT ");
    // A resource filter walks that resource's events (one per run at most).
    let key = if let Some(resource) = &filter.resource {
        q.push("e.finished_at_us AS key_us, e.id AS key_id, ")
            .push(RUN_COLUMNS)
            .push(
                " FROM report_events AS e JOIN reports AS r ON r.id = e.report_id
                 WHERE e.resource = ",
            )
            .bind(resource.clone());
        if filter.corrective {
            q.push(" AND e.corrective = 1");
        }
        "e"
    } else {
        q.push("r.finished_at_us AS key_us, r.id AS key_id, ")
            .push(RUN_COLUMNS)
            .push(" FROM reports AS r WHERE 1 = 1");
        if filter.corrective {
            q.push(
                " AND EXISTS (SELECT 1 FROM report_events AS c
                   WHERE c.report_id = r.id AND c.corrective = 1)",
            );
        }
        "r"
    };
    match filter.status.as_deref() {
        Some("changed") => q.push(" AND r.status = 'changed' AND r.noop = 0"),
        Some("noop") => q.push(" AND r.status = 'changed' AND r.noop <> 0"),
        Some(status) => q.push(" AND r.status = ").bind(status.to_owned()),
        None => &mut q,
    };
    push_common(&mut q, filter, "r", key);
    q.fetch_all(db).await
}

/// At most `filter.limit + 1` events.
async fn events_chunk(db: &Db, filter: RunFilter) -> Result<Vec<Keyed<EventLine>>, DbError> {
    let filter = &filter;
    let mut q = Sql::new(
        "SELECT e.finished_at_us AS key_us, e.id AS key_id, e.node, e.run_id, e.environment,
           e.resource, e.status, e.corrective, e.finished_at_us, e.summary
         FROM report_events AS e WHERE 1 = 1",
    );
    if let Some(resource) = &filter.resource {
        q.push(" AND e.resource = ").bind(resource.clone());
    }
    if let Some(status) = &filter.status {
        q.push(" AND e.status = ").bind(status.clone());
    }
    if filter.corrective {
        q.push(" AND e.corrective = 1");
    }
    push_common(&mut q, filter, "e", "e");
    q.fetch_all(db).await
}

/// The node, environment, time range and cursor conditions (on table
/// `of`, ordered by `key`'s time and id), the order and the limit.
fn push_common(q: &mut Sql, filter: &RunFilter, of: &str, key: &str) {
    match &filter.node {
        Some(NodeMatch::Exact(node)) => {
            q.push(&format!(" AND {of}.node = ")).bind(node.clone());
        }
        Some(NodeMatch::Prefix(prefix)) => {
            let chars = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
            // The cast: PostgreSQL's substr takes an integer, not a bigint.
            q.push(&format!(" AND substr({of}.node, 1, CAST("))
                .bind(chars)
                .push(" AS INTEGER)) = ")
                .bind(prefix.clone());
        }
        None => {}
    }
    if let Some(env) = &filter.environment {
        q.push(&format!(" AND {of}.environment = "))
            .bind(env.clone());
    }
    if let Some(since) = filter.since_us {
        q.push(&format!(" AND {key}.finished_at_us >= "))
            .bind(since);
    }
    if let Some(until) = filter.until_us {
        q.push(&format!(" AND {key}.finished_at_us < ")).bind(until);
    }
    if let Some(after) = filter.after {
        // The first condition alone reads the index; the second the ties.
        q.push(&format!(" AND {key}.finished_at_us <= "))
            .bind(after.us)
            .push(&format!(" AND ({key}.finished_at_us < "))
            .bind(after.us)
            .push(&format!(" OR {key}.id < "))
            .bind(after.id)
            .push(")");
    }
    q.push(&format!(
        " ORDER BY {key}.finished_at_us DESC, {key}.id DESC LIMIT "
    ))
    .bind(i64::from(filter.limit) + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` rows, newest first, three to a microsecond.
    fn rows(n: i64) -> Vec<Keyed<i64>> {
        (0..n)
            .rev()
            .map(|id| Keyed {
                cursor: Cursor { us: id / 3, id },
                item: id,
            })
            .collect()
    }

    /// What a query would answer: the rows after the cursor, `limit + 1`.
    async fn fetch(all: &[Keyed<i64>], filter: RunFilter) -> Result<Vec<Keyed<i64>>, DbError> {
        let after = |r: &&Keyed<i64>| {
            filter
                .after
                .is_none_or(|a| (r.cursor.us, r.cursor.id) < (a.us, a.id))
        };
        Ok(all
            .iter()
            .filter(after)
            .take(filter.limit as usize + 1)
            .map(|r| Keyed {
                cursor: r.cursor,
                item: r.item,
            })
            .collect())
    }

    #[tokio::test]
    async fn a_long_list_is_read_a_page_at_a_time_without_gaps() {
        let all = rows(2_500);
        let asked = std::sync::Mutex::new(Vec::new());
        let read = |filter: RunFilter| {
            asked.lock().unwrap().push(filter.limit);
            fetch(&all, filter)
        };
        let everything = RunFilter {
            limit: 100_000,
            ..RunFilter::default()
        };
        let (items, next) = walk(&everything, read).await.unwrap();
        assert_eq!(items, (0..2_500).rev().collect::<Vec<_>>());
        assert_eq!(next, None);
        assert!(asked.lock().unwrap().iter().all(|l| *l <= MAX_LIMIT));

        let cut = RunFilter {
            limit: 2_100,
            ..RunFilter::default()
        };
        let (items, next) = walk(&cut, |f| fetch(&all, f)).await.unwrap();
        assert_eq!(items.len(), 2_100);
        assert_eq!(items.last(), Some(&400));
        let rest = RunFilter {
            after: Cursor::parse(&next.unwrap()),
            limit: 1_000,
            ..RunFilter::default()
        };
        let (items, next) = walk(&rest, |f| fetch(&all, f)).await.unwrap();
        assert_eq!(items, (0..400).rev().collect::<Vec<_>>());
        assert_eq!(next, None);
    }
}
