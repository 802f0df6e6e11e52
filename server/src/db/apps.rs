//! The tables of apps: `placements` (the control loop's, written only as
//! leader), `replica_states` (what reports say of each replica container),
//! `node_liveness` (heartbeats) and the fleet as the scheduler reads it.

use drover_catalog::Facts;
use futures_util::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Db, DbError, flag, json};

/// One row of `placements`: a replica, placed (`node`) or pending.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRow {
    pub environment: String,
    pub app: String,
    pub replica: u32,
    pub node: Option<String>,
    pub placement_id: Option<String>,
    /// Where services reach the replica (see the migration).
    pub address: Option<String>,
    pub spec_hash: String,
    pub reason: Option<String>,
    /// The scheduler's `Decision`, as JSON text.
    pub decision: String,
    pub decided_at: String,
    /// The replacement of a replica moving off its node (a drain) or to a
    /// new spec (an update): it runs beside the replica until it has been
    /// healthy long enough.
    pub next: Option<Replacement>,
}

/// Where a moving replica goes, with which spec, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub node: String,
    pub placement_id: String,
    pub address: Option<String>,
    pub spec_hash: String,
    pub since_us: i64,
}

impl FromRow<'_, AnyRow> for PlacementRow {
    fn from_row(row: &AnyRow) -> Result<PlacementRow, sqlx::Error> {
        let replica: i64 = row.try_get("replica")?;
        Ok(PlacementRow {
            environment: row.try_get("environment")?,
            app: row.try_get("app")?,
            replica: u32::try_from(replica).unwrap_or(u32::MAX),
            node: row.try_get("node")?,
            placement_id: row.try_get("placement_id")?,
            address: row.try_get("address")?,
            spec_hash: row.try_get("spec_hash")?,
            reason: row.try_get("reason")?,
            decision: row.try_get("decision")?,
            decided_at: row.try_get("decided_at")?,
            next: match (
                row.try_get::<Option<String>, _>("next_node")?,
                row.try_get::<Option<String>, _>("next_id")?,
            ) {
                (Some(node), Some(placement_id)) => Some(Replacement {
                    node,
                    placement_id,
                    address: row.try_get("next_address")?,
                    spec_hash: row
                        .try_get::<Option<String>, _>("next_spec_hash")?
                        .unwrap_or_default(),
                    since_us: row.try_get::<Option<i64>, _>("next_since_us")?.unwrap_or(0),
                }),
                _ => None,
            },
        })
    }
}

impl PlacementRow {
    /// The placement, when the replica has a node.
    pub fn placement(&self) -> Option<drover_catalog::schedule::Placement> {
        Some(drover_catalog::schedule::Placement {
            app: self.app.clone(),
            replica: self.replica,
            node: self.node.clone()?,
            id: self.placement_id.clone()?,
            spec_hash: self.spec_hash.clone(),
        })
    }
}

/// Every placement row, by environment, app and replica.
pub async fn placements(db: &Db) -> Result<Vec<PlacementRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT environment, app, replica, node, placement_id, address, spec_hash, reason,
           decision, decided_at, next_node, next_id, next_address, next_since_us, next_spec_hash
         FROM placements ORDER BY environment, app, replica",
    )
    .fetch_all(db.reads())
    .await?)
}

/// What the control loop changes in one environment: rows to write whole,
/// and (app, replica) rows to delete.
#[derive(Debug, Clone, Default)]
pub struct PlacementChanges {
    pub environment: String,
    pub upsert: Vec<PlacementRow>,
    pub delete: Vec<(String, u32)>,
}

impl PlacementChanges {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.delete.is_empty()
    }
}

/// The write of `changes`, for a leader's write (`crate::cluster`).
pub fn write_placements(
    changes: PlacementChanges,
) -> impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<(), DbError>> + Send + 'static
{
    super::job(move |conn| {
        Box::pin(async move {
            for (app, replica) in &changes.delete {
                sqlx::query(
                    "DELETE FROM placements WHERE environment = $1 AND app = $2 AND replica = $3",
                )
                .bind(&changes.environment)
                .bind(app)
                .bind(i64::from(*replica))
                .execute(&mut *conn)
                .await?;
            }
            for row in &changes.upsert {
                sqlx::query(
                    "INSERT INTO placements (environment, app, replica, node, placement_id,
                       address, spec_hash, reason, decision, decided_at, next_node, next_id,
                       next_address, next_since_us, next_spec_hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                     ON CONFLICT (environment, app, replica) DO UPDATE SET
                       node = excluded.node, placement_id = excluded.placement_id,
                       address = excluded.address,
                       spec_hash = excluded.spec_hash, reason = excluded.reason,
                       decision = excluded.decision, decided_at = excluded.decided_at,
                       next_node = excluded.next_node, next_id = excluded.next_id,
                       next_address = excluded.next_address,
                       next_since_us = excluded.next_since_us,
                       next_spec_hash = excluded.next_spec_hash",
                )
                .bind(&row.environment)
                .bind(&row.app)
                .bind(i64::from(row.replica))
                .bind(&row.node)
                .bind(&row.placement_id)
                .bind(&row.address)
                .bind(&row.spec_hash)
                .bind(&row.reason)
                .bind(&row.decision)
                .bind(&row.decided_at)
                .bind(row.next.as_ref().map(|n| n.node.clone()))
                .bind(row.next.as_ref().map(|n| n.placement_id.clone()))
                .bind(row.next.as_ref().and_then(|n| n.address.clone()))
                .bind(row.next.as_ref().map(|n| n.since_us))
                .bind(row.next.as_ref().map(|n| n.spec_hash.clone()))
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    })
}

/// A replica container's state, as a node's last report gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStateRow {
    pub node: String,
    pub container: String,
    /// `running`, `healthy`, `unhealthy`, `exited` or `missing`.
    pub state: String,
    pub since: Option<String>,
    pub reported_at: String,
}

impl FromRow<'_, AnyRow> for ReplicaStateRow {
    fn from_row(row: &AnyRow) -> Result<ReplicaStateRow, sqlx::Error> {
        Ok(ReplicaStateRow {
            node: row.try_get("node")?,
            container: row.try_get("container")?,
            state: row.try_get("state")?,
            since: row.try_get("since")?,
            reported_at: row.try_get("reported_at")?,
        })
    }
}

pub async fn replica_states(db: &Db) -> Result<Vec<ReplicaStateRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT node, container, state, since, reported_at FROM replica_states
         ORDER BY node, container",
    )
    .fetch_all(db.reads())
    .await?)
}

/// Replaces the replica states of `node` with `states` (container, state,
/// since): a report lists every replica container the node holds.
pub(crate) async fn record_replica_states(
    conn: &mut AnyConnection,
    node: &str,
    states: &[(String, String, Option<String>)],
    reported_at: &str,
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM replica_states WHERE node = $1")
        .bind(node)
        .execute(&mut *conn)
        .await?;
    for (container, state, since) in states {
        sqlx::query(
            "INSERT INTO replica_states (node, container, state, since, reported_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(node)
        .bind(container)
        .bind(state)
        .bind(since)
        .bind(reported_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records that these nodes were heard from at `at_us` (one write for all).
pub async fn touch_liveness(db: &Db, nodes: Vec<String>, at_us: i64) -> Result<(), DbError> {
    if nodes.is_empty() {
        return Ok(());
    }
    db.write(move |conn| {
        Box::pin(async move {
            for node in nodes {
                sqlx::query(
                    "INSERT INTO node_liveness (node, seen_at_us) VALUES ($1, $2)
                     ON CONFLICT (node) DO UPDATE SET seen_at_us = CASE
                       WHEN excluded.seen_at_us > node_liveness.seen_at_us
                       THEN excluded.seen_at_us ELSE node_liveness.seen_at_us END",
                )
                .bind(node)
                .bind(at_us)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        })
    })
    .await
}

/// A node as the scheduler needs it: where it is served, its facts, its
/// cordon, its last run, and when it was last heard from by any means
/// (heartbeat, catalog request, report).
#[derive(Debug, Clone)]
pub struct FleetNode {
    pub name: String,
    /// The environment it was last served, else the one it asks for.
    pub environment: Option<String>,
    pub facts: Facts,
    pub cordoned: bool,
    pub last_status: Option<String>,
    /// Microseconds since the epoch; 0 when never heard from.
    pub seen_at_us: i64,
}

impl FromRow<'_, AnyRow> for FleetNode {
    fn from_row(row: &AnyRow) -> Result<FleetNode, sqlx::Error> {
        let environment: Option<String> = row.try_get("environment")?;
        let requested: Option<String> = row.try_get("requested_environment")?;
        let seen = [
            row.try_get::<Option<i64>, _>("liveness_us")?,
            row.try_get::<Option<i64>, _>("last_seen_at_us")?,
            row.try_get::<Option<i64>, _>("last_run_at_us")?,
        ];
        Ok(FleetNode {
            name: row.try_get("name")?,
            environment: environment.or(requested),
            facts: json(row, "facts")?,
            cordoned: flag(row, "cordoned")?,
            last_status: row.try_get("last_status")?,
            seen_at_us: seen.into_iter().flatten().max().unwrap_or(0),
        })
    }
}

/// Every node that has sent facts, in name order.
pub async fn fleet(db: &Db) -> Result<Vec<FleetNode>, DbError> {
    Ok(sqlx::query_as(
        "SELECT n.name, n.environment, n.requested_environment, n.facts, n.cordoned,
           n.last_status, n.last_seen_at_us, n.last_run_at_us, l.seen_at_us AS liveness_us
         FROM nodes n LEFT JOIN node_liveness l ON l.node = n.name
         WHERE n.last_seen_at IS NOT NULL AND n.deactivated_at IS NULL ORDER BY n.name",
    )
    .fetch_all(db.reads())
    .await?)
}
