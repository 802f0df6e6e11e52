//! Read-only routes for operators: nodes, run history, environments.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::db::{self, CompileError, ReportSummary};
use crate::error::AppError;
use crate::fleet;
use crate::state::AppState;

/// The nodes the server knows
///
/// A node is known from its first catalog request or report. Each comes
/// with the state the dashboard gives it. Filtered as the dashboard's form
/// filters, in name order unless `sort` names another (the dashboard's
/// columns, `-` first for descending), at most `limit` (default and most
/// 1000); a `Link: <...>; rel="next"` header gives the next page.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    operation_id = "list_nodes",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    params(fleet::FilterText, PageQuery),
    responses(
        (status = 200, description = "By name, or as `sort` asks", body = [fleet::NodeStatus], headers(
            ("Link" = String, description = "`<...?after=CURSOR>; rel=\"next\"` when there are more (in name order the cursor is the last name)"),
        )),
        (status = 400, description = "A filter that cannot be used", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn nodes(
    State(state): State<AppState>,
    caller: Caller,
    filter: Result<Query<fleet::FilterText>, QueryRejection>,
    page: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    caller.require_operator()?;
    let Query(text) = filter?;
    let Query(page) = page?;
    let (filter, error) = text.parse();
    if let Some(error) = error {
        return Err(AppError::BadRequest(error));
    }
    let limit = page.limit.unwrap_or(MAX_NODES).clamp(1, MAX_NODES);
    let sort = match page.sort.as_deref().map(str::trim) {
        None | Some("") => BY_NAME,
        Some(text) => fleet::Sort::parse(text).map_err(AppError::BadRequest)?,
    };
    let after = page
        .after
        .as_deref()
        .map(|a| sort.parse_cursor(a))
        .transpose()
        .map_err(|e| AppError::BadRequest(format!("invalid `after`: {e}")))?;
    let (nodes, next) = fleet::node_statuses(
        &state.db,
        &state.fleet_context(),
        &filter,
        sort,
        after.as_ref(),
        limit,
    )
    .await?;
    let mut answer = Json(nodes).into_response();
    if let Some(next) = next {
        let link = next_link(&text, sort, limit, &next);
        if let Ok(value) = axum::http::HeaderValue::from_str(&link) {
            answer.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(answer)
}

/// Nodes in one answer of the node list, at most.
const MAX_NODES: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many nodes (default and at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only nodes after this in the order asked for (the `Link` header's;
    /// in name order, a name).
    #[param(example = "web-0")]
    after: Option<String>,
    /// `name` (the default), `triage`, `state`, `environment`, `roles`,
    /// `last_run`, `duration` or `commit`; `-` first for descending.
    #[param(example = "-name")]
    sort: Option<String>,
}

/// The node list's order unless `sort` names another.
const BY_NAME: fleet::Sort = fleet::Sort {
    key: fleet::SortKey::Name,
    descending: false,
};

/// The next page's URL: the same filters and order, `after` the last row.
fn next_link(text: &fleet::FilterText, sort: fleet::Sort, limit: u32, after: &str) -> String {
    let sort = if sort == BY_NAME {
        String::new()
    } else {
        sort.as_param()
    };
    let query = text.query(&[
        ("sort", &sort),
        ("limit", &limit.to_string()),
        ("after", after),
    ]);
    format!("</api/v1/nodes?{query}>; rel=\"next\"")
}

/// One node
///
/// For operators, and for the node itself.
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{name}",
    operation_id = "get_node",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = []), ("node_certificate" = [])),
    params(("name" = String, Path, description = "The node's name")),
    responses(
        (status = 200, description = "The node, with the state the dashboard gives it and its replicas", body = NodeDetail),
        crate::openapi::NodeOrOperator,
        (status = 404, description = "Unknown node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::Internal,
    ),
)]
pub async fn node(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<NodeDetail>, AppError> {
    caller.require_node_or_operator(&name)?;
    let node = fleet::node_status(&state.db, &state.fleet_context(), &name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("unknown node `{name}`")))?;
    let replicas = crate::apps::view::node_replicas(&state, &name).await?;
    let drain = crate::db::drains::drain(&state.db, &name).await?;
    Ok(Json(NodeDetail {
        draining: drain
            .as_ref()
            .is_some_and(|d| d.state == crate::db::drains::DRAINING),
        drain,
        node,
        replicas,
    }))
}

/// A node with the replicas of apps placed on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub node: fleet::NodeStatus,
    pub replicas: Vec<crate::apps::view::NodeReplica>,
    /// A drain is moving its replicas away.
    pub draining: bool,
    /// Its drain (until it is uncordoned): state and what it waits for.
    #[schema(nullable = true)]
    pub drain: Option<crate::db::drains::Drain>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many runs, newest first (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// RFC 3339: only runs that finished strictly before it (for paging).
    #[param(format = DateTime)]
    before: Option<String>,
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

/// A node's run history
///
/// Newest first, one summary per run; for operators and the node itself.
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{name}/reports",
    operation_id = "list_node_reports",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = []), ("node_certificate" = [])),
    params(("name" = String, Path, description = "The node's name"), HistoryQuery),
    responses(
        (status = 200, description = "Newest first", body = [ReportSummary]),
        (status = 400, description = "A `limit` or `before` that does not parse", body = crate::openapi::wire::ErrorBody),
        crate::openapi::NodeOrOperator,
        (status = 404, description = "Unknown node", body = crate::openapi::wire::ErrorBody),
        crate::openapi::Internal,
    ),
)]
pub async fn node_reports(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Vec<ReportSummary>>, AppError> {
    caller.require_node_or_operator(&name)?;
    let Query(query) = query?;
    let before = query
        .before
        .as_deref()
        .map(|b| {
            b.parse::<jiff::Timestamp>().map_err(|e| {
                AppError::BadRequest(format!(
                    "invalid `before` timestamp `{b}`: {e} (hint: use RFC 3339, e.g. 2025-01-31T12:00:00Z)"
                ))
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    if db::node(&state.db, &name).await?.is_none() {
        return Err(AppError::NotFound(format!("unknown node `{name}`")));
    }
    Ok(Json(db::reports(&state.db, &name, limit, before).await?))
}

/// One run, with every resource event
///
/// The report exactly as the agent posted it, to operators and to the node
/// that posted it. Another node gets the same 404 as for a report that does
/// not exist, so run ids cannot be probed.
#[utoipa::path(
    get,
    path = "/api/v1/reports/{id}",
    operation_id = "get_report",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = []), ("node_certificate" = [])),
    params(("id" = String, Path, description = "The run_id")),
    responses(
        (status = 200, description = "The report as posted", body = crate::openapi::wire::Report),
        (status = 401, description = "No credential, or a bearer token that is not an operator token", body = crate::openapi::wire::ErrorBody),
        (status = 404, description = "No such run, or another node's", body = crate::openapi::wire::ErrorBody),
        crate::openapi::Internal,
    ),
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if matches!(caller, Caller::Anonymous) {
        caller.require_operator()?;
    }
    let not_found = || AppError::NotFound(format!("no report with run_id `{id}`"));
    // Run ids are unique per node: a node reads only its own run of that id.
    let own = match &caller {
        Caller::Node(name) => Some(name.as_str()),
        _ => None,
    };
    let (node, body) = db::report_body(&state.db, &id, own)
        .await?
        .ok_or_else(not_found)?;
    caller
        .require_node_or_operator(&node)
        .map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Environments {
    /// `git` (a mirror) or `directory` (development mode).
    pub source: &'static str,
    pub default_environment: String,
    /// Last successful refresh.
    pub refreshed_at: Option<jiff::Timestamp>,
    /// Why the last refresh failed, if it did (the previous snapshots stay).
    pub refresh_error: Option<String>,
    pub environments: Vec<Environment>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Environment {
    pub name: String,
    pub commit: String,
    /// The commit's subject, author and time (null in development mode).
    #[schema(nullable = true)]
    pub commit_subject: Option<String>,
    #[schema(nullable = true)]
    pub commit_author: Option<String>,
    #[schema(nullable = true)]
    pub commit_time: Option<String>,
    /// The commit's page on the forge, when `commit_url` is set.
    #[schema(nullable = true)]
    pub commit_url: Option<String>,
    /// When this commit was loaded.
    pub refreshed_at: jiff::Timestamp,
    /// Why the repository at this commit does not parse (`file:line:col: msg`).
    pub parse_errors: Vec<String>,
    /// Entries skipped while reading (symlinks, submodules).
    pub notes: Vec<String>,
    /// Nodes whose last compile in this environment failed.
    pub compile_errors: Vec<NodeCompileError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeCompileError {
    pub node: String,
    #[serde(flatten)]
    pub error: CompileError,
}

/// Builds the environments view (also used by the HTML page).
pub async fn environments_view(state: &AppState) -> Result<Environments, AppError> {
    // Only the nodes with an error: the whole fleet's facts are not needed.
    let errors = crate::fleet::compile_errors(&state.db).await?;
    let (refreshed_at, refresh_error) = state.snapshots.status();
    let environments = state
        .snapshots
        .list()
        .iter()
        .map(|snap| Environment {
            name: snap.name.clone(),
            commit: snap.commit.clone(),
            commit_subject: snap.info.as_ref().map(|i| i.subject.clone()),
            commit_author: snap.info.as_ref().map(|i| i.author.clone()),
            commit_time: snap.info.as_ref().map(|i| i.time.clone()),
            commit_url: state.config.commit_link(&snap.commit),
            refreshed_at: snap.loaded_at,
            parse_errors: snap.repo.as_ref().err().cloned().unwrap_or_default(),
            notes: snap.notes.clone(),
            compile_errors: errors
                .iter()
                .filter(|(_, error)| error.environment == snap.name)
                .map(|(node, error)| NodeCompileError {
                    node: node.clone(),
                    error: error.clone(),
                })
                .collect(),
        })
        .collect();
    Ok(Environments {
        source: state.snapshots.source().kind(),
        default_environment: state.snapshots.default_environment(),
        refreshed_at,
        refresh_error,
        environments,
    })
}

/// The environments (branches) and their errors
///
/// Each environment's commit, why it does not parse, and the nodes whose
/// last compile in it failed.
#[utoipa::path(
    get,
    path = "/api/v1/environments",
    operation_id = "list_environments",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    responses(
        (status = 200, description = "The environments", body = Environments),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn environments(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Environments>, AppError> {
    caller.require_operator()?;
    Ok(Json(environments_view(&state).await?))
}

/// The servers sharing the database, and who leads
///
/// Each server with its listen address, version and last heartbeat (on the
/// database's clock), and the leader's lease with its term. On SQLite, the
/// one server, which always leads.
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    operation_id = "cluster_status",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    responses(
        (status = 200, description = "The cluster", body = crate::cluster::ClusterStatus),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn cluster(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<crate::cluster::ClusterStatus>, AppError> {
    caller.require_operator()?;
    Ok(Json(state.cluster.status().await?))
}
