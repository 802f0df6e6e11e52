//! Routes a node calls for itself: its catalog, its files, its reports.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drover_catalog::signed::SIGNATURE_HEADER;
use drover_catalog::{CatalogRequest, Report};
use serde_json::json;

use crate::auth::Caller;
use crate::compile;
use crate::db;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::state::AppState;

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|r| AppError::Status(r.status(), r.body_text()))
}

/// `POST /api/v1/nodes/{name}/catalog`.
pub async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    caller.require_node(&node)?;
    let raw = body(raw)?;
    let request: CatalogRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        CatalogRequest::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| AppError::BadRequest(format!("invalid catalog request: {e}")))?
    };
    let catalog = compile::serve_catalog(&state, &node, &request).await?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", catalog.version))
        .map_err(|e| AppError::Internal(format!("catalog version is not a header value: {e}")))?;
    if etag_matches(&headers, &catalog.version) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // The signature covers exactly these bytes; the agent checks it before
    // parsing them, and again before each use of its cached copy.
    let body = serde_json::to_vec(&catalog)
        .map_err(|e| AppError::Internal(format!("cannot serialize the catalog: {e}")))?;
    let signature = HeaderValue::from_str(&state.pki.catalog_signer().sign(&body))
        .map_err(|e| AppError::Internal(format!("signature is not a header value: {e}")))?;
    Ok((
        [
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (HeaderName::from_static(SIGNATURE_HEADER), signature),
        ],
        body,
    )
        .into_response())
}

/// `If-None-Match` holds `"VERSION"` (or a list, or `*`).
fn etag_matches(headers: &HeaderMap, version: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|tag| tag == version || tag == "*")
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `GET /api/v1/nodes/{name}/files/{sha256}`: only hashes the node's current
/// (last served) catalog references.
pub async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path((node, sha)): Path<(String, String)>,
) -> Result<Response, AppError> {
    caller.require_node(&node)?;
    let not_found = || {
        AppError::NotFound(format!(
            "no content {sha} for node `{node}`: its current catalog does not reference it"
        ))
    };
    if !is_sha256(&sha) {
        return Err(AppError::NotFound(format!(
            "`{sha}` is not a sha256 (64 lowercase hex digits)"
        )));
    }
    let Some(catalog) = db::last_good(&state.db, &node).await? else {
        return Err(not_found());
    };
    if !catalog.referenced_hashes().any(|h| h == sha) {
        return Err(not_found());
    }
    let bytes = db::content(&state.db, &sha).await?.ok_or_else(not_found)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `POST /api/v1/nodes/{name}/reports`: 201 new, 200 already stored.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    caller.require_node(&node)?;
    let raw = body(raw)?;
    let report: Report = serde_json::from_slice(&raw)
        .map_err(|e| AppError::BadRequest(format!("invalid report: {e}")))?;
    if report.node != node {
        return Err(AppError::Forbidden(format!(
            "report is for node `{}` but was posted as node `{node}`",
            report.node
        )));
    }
    // It parsed as JSON, so it is UTF-8.
    let text = String::from_utf8_lossy(&raw);
    let inserted = db::insert_report(&state.db, &report, &text).await?;
    let status = if inserted {
        Metrics::inc(&state.metrics.reports_received);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"run_id": report.run_id, "stored": inserted})),
    )
        .into_response())
}
