//! The node API's view of the fleet: each node's row with the state the
//! dashboard gives it (one definition, `Context::push_columns`), filtered
//! and paged in the database.

use serde::Serialize;
use sqlx::FromRow;
use sqlx::any::AnyRow;

use super::{Context, Cursor, Filter, NodeState, Sort};
use crate::db::{self, Db, DbError, NODE_COLUMNS, NodeRow, Sql};

/// A node as `GET /api/v1/nodes` shows it: its row, and what the dashboard
/// says of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: NodeRow,
    pub state: NodeState,
    /// Its last run used the cached catalog, or another commit than its
    /// environment serves.
    pub stale: bool,
    /// Its last run was a noop run (none before its first report).
    pub noop: Option<bool>,
}

impl FromRow<'_, AnyRow> for NodeStatus {
    fn from_row(row: &AnyRow) -> Result<NodeStatus, sqlx::Error> {
        Ok(NodeStatus {
            node: NodeRow::from_row(row)?,
            state: super::state(row)?,
            stale: db::flag(row, "stale")?,
            noop: db::optional_flag(row, "last_noop")?,
        })
    }
}

/// Up to `limit` nodes matching `filter` in `sort` order after `after`, and
/// the `after` parameter to continue with when there are more.
pub async fn node_statuses(
    db: &Db,
    ctx: &Context,
    filter: &Filter,
    sort: Sort,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<(Vec<NodeStatus>, Option<String>), DbError> {
    let ordered = super::Ordered {
        filter,
        sort,
        after,
        limit,
    };
    let columns = format!("{NODE_COLUMNS}, state, stale, last_noop");
    let (rows, next) = ordered.rows(db, ctx, &columns).await?;
    let nodes = rows
        .iter()
        .map(NodeStatus::from_row)
        .collect::<Result<_, _>>()?;
    Ok((nodes, next))
}

/// One node, if the server knows it.
pub async fn node_status(
    db: &Db,
    ctx: &Context,
    name: &str,
) -> Result<Option<NodeStatus>, DbError> {
    let mut q = select(ctx);
    q.push(" AND name = ").bind(name.to_owned());
    q.fetch_optional(db).await
}

fn select(ctx: &Context) -> Sql {
    let mut q = Sql::new(format!(
        "SELECT {NODE_COLUMNS}, state, stale, last_noop FROM (SELECT *, "
    ));
    ctx.push_columns(&mut q);
    q.push(" FROM nodes) AS n WHERE 1 = 1");
    q
}
