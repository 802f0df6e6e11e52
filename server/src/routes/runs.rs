//! Fleet-wide runs and resource events for operators (issue 23):
//! `GET /api/v1/reports` and `GET /api/v1/reports/events`, filtered and
//! keyset-paged by `crate::runs`, as JSON or as a CSV download.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::error::AppError;
use crate::export;
use crate::runs::{self, EventPage, Format, List, RunPage, RunsQuery};
use crate::state::AppState;

/// Runs across the fleet
///
/// Every node's runs, newest first (by when they finished, never later than
/// the server received them), filtered, a page at a time: give the answer's
/// `next_after` as `after` (with the same filters) for the next page.
/// `format=csv` downloads every match (at most `limit`, at most 100,000)
/// as CSV, `format=json` as a JSON file.
#[utoipa::path(
    get,
    path = "/api/v1/reports",
    operation_id = "list_reports",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    params(RunsQuery),
    responses(
        (status = 200, description = "Newest first (`format=csv`: text/csv, columns run_id, node, environment, status, noop, finished_at, duration_ms, resources, changed, failed, skipped, commit, catalog_version, cached_catalog)", content(
            (RunPage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A filter that cannot be used; the message names the parameter", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    caller.require_operator()?;
    let Query(query) = query?;
    let (filter, format) = parse(&query, List::Runs)?;
    let page = runs::runs(&state.db, &filter).await?;
    answer(format, "runs", &page, page.next_after.as_deref(), || {
        runs::runs_csv(&page.runs)
    })
}

/// Resource events across the fleet
///
/// Each resource a run did not leave unchanged (changed, noop, failed,
/// skipped), newest first: "every change to file:/etc/ssh/sshd_config in
/// the last 24 hours" is `?resource=file:/etc/ssh/sshd_config&since=24h`.
/// Paged and exported as the runs are.
#[utoipa::path(
    get,
    path = "/api/v1/reports/events",
    operation_id = "list_resource_events",
    tag = "operator",
    security(("operator_certificate" = []), ("operator_token" = []), ("operator_cookie" = [])),
    params(RunsQuery),
    responses(
        (status = 200, description = "Newest first (`format=csv`: text/csv, columns finished_at, node, run_id, environment, resource, status, corrective, summary)", content(
            (EventPage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A filter that cannot be used; the message names the parameter", body = crate::openapi::wire::ErrorBody),
        crate::openapi::OperatorOnly,
        crate::openapi::Internal,
    ),
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    caller.require_operator()?;
    let Query(query) = query?;
    let (filter, format) = parse(&query, List::Events)?;
    let page = runs::events(&state.db, &filter).await?;
    answer(format, "changes", &page, page.next_after.as_deref(), || {
        runs::events_csv(&page.events)
    })
}

/// The filter and the format, or a 400 naming the parameter.
fn parse(query: &RunsQuery, list: List) -> Result<(runs::RunFilter, Format), AppError> {
    let filter = query
        .parse(list, jiff::Timestamp::now())
        .map_err(AppError::BadRequest)?;
    let format = query.format().map_err(AppError::BadRequest)?;
    Ok((filter, format))
}

/// A page as `format` asks: JSON shown, or `NAME.json` / `NAME.csv` to
/// save; a CSV download cut by its limit names where the rest begins in
/// `Drover-Next-After` (the JSON file holds `next_after`).
fn answer<P: serde::Serialize>(
    format: Format,
    name: &str,
    page: &P,
    next_after: Option<&str>,
    csv: impl FnOnce() -> Result<String, AppError>,
) -> Result<Response, AppError> {
    Ok(match format {
        Format::Csv => export::cut_at(
            export::file(&format!("{name}.csv"), export::CSV, csv()?),
            next_after,
        ),
        Format::JsonFile => export::file(
            &format!("{name}.json"),
            export::JSON,
            export::json_text(page)?,
        ),
        Format::Json => Json(page).into_response(),
    })
}
