//! The fleet as the dashboard and the metrics see it: each node's state,
//! counts per state, filtered and paged node lists, and run history for the
//! charts. Every query reads the `nodes` row or the `report_hours` rollup,
//! never a scan of `reports`, so 10,000 nodes and 1,000,000 reports stay fast.
//!
//! This is the one definition of a node's state, as SQL so it filters,
//! counts and pages in the database: `unresponsive` (last report, or before
//! one the last catalog request, older than `unresponsive_after_secs`), then
//! `failed` for a node whose catalog never compiled (no run, a compile
//! error), `never_reported`, `failed`, `noop_pending` (a noop run that would change),
//! `changed`, `unchanged`; `stale` is a separate flag (the last run used the
//! cached catalog, or applied another commit than its environment's head,
//! passed in as JSON). The same counts feed `drover_nodes{state}`. To keep
//! 10,000 nodes and 1,000,000 reports fast, every page reads the `nodes` row,
//! which carries its last run's columns (`last_run_id`, `last_noop`,
//! `last_commit`, ... updated with the report in one transaction, and only by
//! a newer run), and the fleet chart reads `report_hours`, an hourly rollup
//! upserted with each report; a node's history uses the `(node,
//! finished_at_us)` index and keyset paging. `retention.rs` deletes reports
//! older than `report_retention_days` hourly, 5,000 rows a statement so
//! inserts never wait long behind it, and the rollup's old hours with them.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::db::{self, CompileError, Db, DbError, HOUR_US, Sql};

mod filter;
mod nodes;
mod sort;

pub use filter::{Filter, FilterText, StateFilter, urlencode};
pub use nodes::{NodeStatus, node_status, node_statuses};
pub use sort::{Cursor, Sort, SortKey};

/// What the dashboard says about a node, from its last report and its age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Failed,
    Unresponsive,
    NoopPending,
    Changed,
    Unchanged,
    NeverReported,
}

impl NodeState {
    pub const ALL: [NodeState; 6] = [
        NodeState::Failed,
        NodeState::Unresponsive,
        NodeState::NoopPending,
        NodeState::Changed,
        NodeState::Unchanged,
        NodeState::NeverReported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Failed => "failed",
            NodeState::Unresponsive => "unresponsive",
            NodeState::NoopPending => "noop_pending",
            NodeState::Changed => "changed",
            NodeState::Unchanged => "unchanged",
            NodeState::NeverReported => "never_reported",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            NodeState::Failed => "failed",
            NodeState::Unresponsive => "unresponsive",
            NodeState::NoopPending => "noop pending",
            NodeState::Changed => "changed",
            NodeState::Unchanged => "unchanged",
            NodeState::NeverReported => "never reported",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// The `state` column the fleet query computes; a name it cannot compute
/// is an error, not a guess.
impl TryFrom<String> for NodeState {
    type Error = String;

    fn try_from(s: String) -> Result<NodeState, String> {
        NodeState::parse(&s).ok_or_else(|| format!("unknown node state `{s}`"))
    }
}

/// What the fleet is measured against: now, and each environment's head.
#[derive(Debug, Clone)]
pub struct Context {
    /// Nodes whose last report finished before this (µs) are unresponsive.
    pub unresponsive_before_us: i64,
    /// Environment name → the commit it serves now.
    pub heads: BTreeMap<String, String>,
    /// Environment name → the earlier commit a staged rollout still serves
    /// some of its nodes (`crate::rollout`): running it is not stale.
    pub held: BTreeMap<String, String>,
}

impl Context {
    /// The computed `state` and `stale` columns, so they can be filtered and
    /// counted in SQL. A node is unresponsive when its last report (or, before
    /// one, its last request) is older than the cutoff; stale when its last
    /// run used the cached catalog or applied a commit other than the head
    /// of the environment it ran (its report's, else the one last served)
    /// and other than the earlier commit a rollout holds nodes on.
    fn push_columns(&self, q: &mut Sql) {
        q.push("(CASE WHEN COALESCE(last_run_at_us, last_seen_at_us, 0) < ")
            .bind(self.unresponsive_before_us)
            .push(
                " THEN 'unresponsive'
                 WHEN last_status IS NULL AND compile_error IS NOT NULL THEN 'failed'
                 WHEN last_status IS NULL THEN 'never_reported'
                 WHEN last_status = 'failed' THEN 'failed'
                 WHEN last_status = 'changed' AND last_noop <> 0 THEN 'noop_pending'
                 ELSE last_status END) AS state,
                 (CASE WHEN last_status IS NOT NULL AND (last_cached_catalog = 'on_failure'
                   OR last_commit IS DISTINCT FROM ",
            );
        // A CASE over the few environments: cheaper per row than a lookup.
        if self.heads.is_empty() {
            q.push("NULL");
        } else {
            q.push("(CASE COALESCE(last_environment, environment)");
            for (env, head) in &self.heads {
                q.push(" WHEN ")
                    .bind(env.clone())
                    .push(" THEN ")
                    .bind(head.clone());
            }
            q.push(" END)");
        }
        if !self.held.is_empty() {
            q.push(
                " AND last_commit IS DISTINCT FROM (CASE COALESCE(last_environment, environment)",
            );
            for (env, commit) in &self.held {
                q.push(" WHEN ")
                    .bind(env.clone())
                    .push(" THEN ")
                    .bind(commit.clone());
            }
            q.push(" END)");
        }
        q.push(") THEN 1 ELSE 0 END) AS stale");
    }
}

/// Nodes per state, and how many of them run a stale catalog, have a
/// catalog that does not compile, or repaired drift in their last run (each
/// of these also counted in its state).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub by_state: BTreeMap<NodeState, i64>,
    pub stale: i64,
    pub compile_error: i64,
    pub corrective: i64,
    pub total: i64,
}

impl Counts {
    pub fn get(&self, state: NodeState) -> i64 {
        self.by_state.get(&state).copied().unwrap_or(0)
    }
}

pub async fn counts(db: &Db, ctx: &Context) -> Result<Counts, DbError> {
    let mut q = Sql::new(
        "SELECT state, COUNT(*), SUM(stale),
           SUM(CASE WHEN compile_error IS NULL THEN 0 ELSE 1 END),
           SUM(CASE WHEN state = 'changed' AND COALESCE(last_corrective, 0) > 0 THEN 1 ELSE 0 END)
         FROM (SELECT *, ",
    );
    ctx.push_columns(&mut q);
    q.push(" FROM nodes WHERE deactivated_at IS NULL) AS n GROUP BY state");
    let rows = q.rows(db).await?;
    let mut counts = Counts::default();
    for row in rows {
        let state: String = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        let sum = |i: usize| {
            row.try_get::<Option<i64>, _>(i)
                .map(Option::unwrap_or_default)
        };
        if let Some(state) = NodeState::parse(&state) {
            counts.by_state.insert(state, n);
        }
        counts.stale += sum(2)?;
        counts.compile_error += sum(3)?;
        counts.corrective += sum(4)?;
        counts.total += n;
    }
    Ok(counts)
}

/// One line of the overview's node table.
#[derive(Debug, Clone, Serialize)]
pub struct NodeLine {
    pub name: String,
    pub state: NodeState,
    pub stale: bool,
    pub environment: Option<String>,
    pub roles: Vec<String>,
    pub last_run_at: Option<String>,
    pub last_run_id: Option<String>,
    pub last_duration_ms: Option<f64>,
    pub catalog_version: Option<String>,
    /// The commit its last run applied.
    pub last_commit: Option<String>,
    pub has_compile_error: bool,
    /// Cordoned (or drained): in maintenance until uncordoned.
    pub cordoned: bool,
    /// Resources its last run repaired.
    pub corrective: i64,
}

impl FromRow<'_, AnyRow> for NodeLine {
    fn from_row(row: &AnyRow) -> Result<NodeLine, sqlx::Error> {
        Ok(NodeLine {
            name: row.try_get("name")?,
            state: state(row)?,
            stale: db::flag(row, "stale")?,
            environment: row.try_get("environment")?,
            roles: db::json(row, "roles")?,
            last_run_at: row.try_get("last_run_at")?,
            last_run_id: row.try_get("last_run_id")?,
            last_duration_ms: row.try_get("last_duration_ms")?,
            catalog_version: row.try_get("catalog_version")?,
            last_commit: row.try_get("last_commit")?,
            has_compile_error: db::flag(row, "has_error")?,
            cordoned: db::flag(row, "cordoned")?,
            corrective: row
                .try_get::<Option<i64>, _>("last_corrective")?
                .unwrap_or_default(),
        })
    }
}

/// The `state` column [`Context::push_columns`] computes.
pub(crate) fn state(row: &AnyRow) -> Result<NodeState, sqlx::Error> {
    let text: String = row.try_get("state")?;
    NodeState::try_from(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: "state".into(),
        source: e.into(),
    })
}

/// A page of nodes in the order asked for, and how many match in all.
#[derive(Debug, Clone, Serialize)]
pub struct NodePage {
    pub nodes: Vec<NodeLine>,
    pub total: i64,
    /// The `after` parameter of the next page, when there are more.
    pub next_after: Option<String>,
}

/// Up to `limit` nodes matching `filter` in `sort` order, after `after`.
pub async fn page(
    db: &Db,
    ctx: &Context,
    filter: &Filter,
    sort: Sort,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<NodePage, DbError> {
    let columns = "name, environment, roles, last_run_at, last_run_id, last_duration_ms,
        catalog_version, last_commit, CASE WHEN compile_error IS NULL THEN 0 ELSE 1 END AS has_error,
        cordoned, last_corrective, state, stale";
    let ordered = Ordered {
        filter,
        sort,
        after,
        limit,
    };
    let (rows, next_after) = ordered.rows(db, ctx, columns).await?;
    let nodes = rows
        .iter()
        .map(NodeLine::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut q = Sql::new("SELECT COUNT(*) FROM (SELECT *, ");
    ctx.push_columns(&mut q);
    q.push(" FROM nodes WHERE deactivated_at IS NULL) AS n WHERE 1 = 1");
    filter.push(&mut q, db.backend());
    let total: i64 = q.scalar(db).await?;
    Ok(NodePage {
        nodes,
        total,
        next_after,
    })
}

/// A page of the node list as asked for: which nodes, in what order, from
/// where, how many.
struct Ordered<'a> {
    filter: &'a Filter,
    sort: Sort,
    after: Option<&'a Cursor>,
    limit: u32,
}

impl Ordered<'_> {
    /// `columns` (over the node's row and `Context::push_columns`) of the
    /// page's rows, and the `after` parameter of the next when there are
    /// more.
    async fn rows(
        &self,
        db: &Db,
        ctx: &Context,
        columns: &str,
    ) -> Result<(Vec<AnyRow>, Option<String>), DbError> {
        let mut q = Sql::new(format!("SELECT {columns}, sort_key FROM (SELECT *"));
        self.sort.push_column(&mut q);
        q.push(" FROM (SELECT *, ");
        ctx.push_columns(&mut q);
        q.push(" FROM nodes WHERE deactivated_at IS NULL) AS s) AS n WHERE 1 = 1");
        self.filter.push(&mut q, db.backend());
        if let Some(after) = self.after {
            self.sort.push_after(&mut q, after);
        }
        self.sort.push_order(&mut q);
        q.push(" LIMIT ").bind(i64::from(self.limit) + 1);
        let mut rows = q.rows(db).await?;
        if rows.len() <= self.limit as usize {
            return Ok((rows, None));
        }
        rows.truncate(self.limit as usize);
        let next = rows
            .last()
            .map(|row| self.sort.cursor_of(row).map(|c| c.to_param(self.sort)))
            .transpose()?;
        Ok((rows, next))
    }
}

/// A node's own state, for its page.
pub async fn node_state(
    db: &Db,
    ctx: &Context,
    name: &str,
) -> Result<Option<(NodeState, bool)>, DbError> {
    let mut q = Sql::new("SELECT ");
    ctx.push_columns(&mut q);
    q.push(" FROM nodes WHERE name = ").bind(name.to_owned());
    let row = q.row(db).await?;
    row.map(|row| {
        let state: String = row.try_get("state")?;
        Ok((
            NodeState::parse(&state).unwrap_or(NodeState::NeverReported),
            db::flag(&row, "stale")?,
        ))
    })
    .transpose()
}

/// Runs that finished in one hour, by status, for the fleet chart.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HourBucket {
    /// Hours since the epoch.
    pub hour: i64,
    pub unchanged: i64,
    pub changed: i64,
    pub failed: i64,
    pub noop: i64,
    pub duration_ms_sum: f64,
    pub duration_ms_max: f64,
}

impl HourBucket {
    pub fn runs(&self) -> i64 {
        self.unchanged + self.changed + self.failed + self.noop
    }

    pub fn mean_duration_ms(&self) -> f64 {
        match self.runs() {
            0 => 0.0,
            n => self.duration_ms_sum / n as f64,
        }
    }
}

/// The last `hours` hours up to `now_us`, oldest first, one bucket per hour
/// (empty hours included).
pub async fn fleet_history(db: &Db, now_us: i64, hours: i64) -> Result<Vec<HourBucket>, DbError> {
    let last = now_us.div_euclid(HOUR_US);
    let first = last - hours + 1;
    let rows = sqlx::query(
        "SELECT hour, status, runs, duration_ms_sum, duration_ms_max FROM report_hours
         WHERE hour >= $1 AND hour <= $2 ORDER BY hour",
    )
    .bind(first)
    .bind(last)
    .fetch_all(db.reads())
    .await?;
    let mut buckets: Vec<HourBucket> = (first..=last)
        .map(|hour| HourBucket {
            hour,
            ..HourBucket::default()
        })
        .collect();
    for row in rows {
        let hour: i64 = row.try_get("hour")?;
        let Some(bucket) = usize::try_from(hour - first)
            .ok()
            .and_then(|i| buckets.get_mut(i))
        else {
            continue;
        };
        let runs: i64 = row.try_get("runs")?;
        match row.try_get::<String, _>("status")?.as_str() {
            "unchanged" => bucket.unchanged += runs,
            "changed" => bucket.changed += runs,
            "failed" => bucket.failed += runs,
            _ => bucket.noop += runs,
        }
        bucket.duration_ms_sum += row.try_get::<f64, _>("duration_ms_sum")?;
        bucket.duration_ms_max = bucket.duration_ms_max.max(row.try_get("duration_ms_max")?);
    }
    Ok(buckets)
}

/// How many nodes have a compile error (for `/metrics`).
pub async fn compile_error_count(db: &Db) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE compile_error IS NOT NULL")
            .fetch_one(db.reads())
            .await?,
    )
}

/// Nodes with a compile error, for the environments view.
pub async fn compile_errors(db: &Db) -> Result<Vec<(String, CompileError)>, DbError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, compile_error FROM nodes WHERE compile_error IS NOT NULL ORDER BY name",
    )
    .fetch_all(db.reads())
    .await?;
    rows.into_iter()
        .map(|(node, json)| Ok((node, serde_json::from_str(&json)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in NodeState::ALL {
            assert_eq!(NodeState::parse(state.as_str()), Some(state));
        }
        assert_eq!(StateFilter::parse("stale"), Some(StateFilter::Stale));
        assert_eq!(StateFilter::parse("bogus"), None);
    }
}
