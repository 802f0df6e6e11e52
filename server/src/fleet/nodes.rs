//! The node API's view of the fleet: each node's row with the state the
//! dashboard gives it (one definition, `Context::push_columns`), filtered
//! and paged in the database.

use serde::Serialize;
use sqlx::QueryBuilder;

use super::{Context, Filter, NodeState};
use crate::db::{Db, DbError, NODE_COLUMNS, NodeRow};

/// A node as `GET /api/v1/nodes` shows it: its row, and what the dashboard
/// says of it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NodeStatus {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub node: NodeRow,
    #[sqlx(try_from = "String")]
    pub state: NodeState,
    /// Its last run used the cached catalog, or another commit than its
    /// environment serves.
    pub stale: bool,
    /// Its last run was a noop run (none before its first report).
    #[sqlx(rename = "last_noop")]
    pub noop: Option<bool>,
}

/// Up to `limit` nodes matching `filter`, in name order after `after`, and
/// the name to continue after when there are more.
pub async fn node_statuses(
    db: &Db,
    ctx: &Context,
    filter: &Filter,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<NodeStatus>, Option<String>), DbError> {
    let mut q = select(ctx);
    filter.push(&mut q);
    if let Some(after) = after {
        q.push(" AND name > ").push_bind(after.to_owned());
    }
    q.push(" ORDER BY name LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut nodes: Vec<NodeStatus> = q.build_query_as().fetch_all(db.reads()).await?;
    let next = super::keep_page(&mut nodes, limit, |n| &n.node.name);
    Ok((nodes, next))
}

/// One node, if the server knows it.
pub async fn node_status(
    db: &Db,
    ctx: &Context,
    name: &str,
) -> Result<Option<NodeStatus>, DbError> {
    let mut q = select(ctx);
    q.push(" AND name = ").push_bind(name.to_owned());
    Ok(q.build_query_as().fetch_optional(db.reads()).await?)
}

fn select(ctx: &Context) -> QueryBuilder<'static, sqlx::Sqlite> {
    let mut q = QueryBuilder::new(format!(
        "SELECT {NODE_COLUMNS}, state, stale, last_noop FROM (SELECT *, "
    ));
    ctx.push_columns(&mut q);
    q.push(" FROM nodes) WHERE 1");
    q
}
