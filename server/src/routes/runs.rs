//! Fleet-wide runs and resource events for operators (issue 23):
//! `GET /api/v1/reports` and `GET /api/v1/reports/events`, filtered and
//! keyset-paged by `crate::runs`, as JSON or as a CSV download.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::error::AppError;
use crate::runs::{self, EventPage, Format, List, RunPage, RunsQuery};
use crate::state::AppState;

/// Runs across the fleet
///
/// Every node's runs, newest first (by when they finished, never later than
/// the server received them), filtered, a page at a time: give the answer's
/// `next_after` as `after` (with the same filters) for the next page.
/// `format=csv` downloads the page as CSV, `format=json` as a JSON file.
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
    answer(format, "runs", &page, || runs::runs_csv(&page.runs))
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
    answer(format, "changes", &page, || runs::events_csv(&page.events))
}

/// The filter and the format, or a 400 naming the parameter.
fn parse(query: &RunsQuery, list: List) -> Result<(runs::RunFilter, Format), AppError> {
    let filter = query
        .parse(list, jiff::Timestamp::now())
        .map_err(AppError::BadRequest)?;
    let format = query.format().map_err(AppError::BadRequest)?;
    Ok((filter, format))
}

/// A page as `format` asks: JSON shown, or `NAME.json` / `NAME.csv` to save.
fn answer<P: serde::Serialize>(
    format: Format,
    name: &str,
    page: &P,
    csv: impl FnOnce() -> Result<String, AppError>,
) -> Result<Response, AppError> {
    Ok(match format {
        Format::Csv => download(&format!("{name}.csv"), "text/csv; charset=utf-8", csv()?),
        Format::JsonFile => download(&format!("{name}.json"), "application/json", json(page)?),
        Format::Json => Json(page).into_response(),
    })
}

fn json(value: &impl serde::Serialize) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::Internal(format!("cannot write JSON: {e}")))
}

/// `body` as a file to save, named `name`.
fn download(name: &str, content_type: &'static str, body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
