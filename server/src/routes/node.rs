//! Routes a node calls for itself: its catalog, its files, its reports.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drover_catalog::signed::{CATALOG_ERROR_HEADER, SIGNATURE_HEADER, header_text};
use drover_catalog::{CatalogRequest, Report};
use serde_json::json;

use crate::auth::Caller;
use crate::compile;
use crate::db;
use crate::error::AppError;
use crate::served::parse_sha;
use crate::state::AppState;

/// The node's compiled catalog
///
/// Compiled from the node's environment with the facts it sends, cached per
/// commit and facts. When the newest commit does not compile the node gets
/// its last good catalog (the error shows in the API and the dashboard);
/// 422 only when it has none. Beyond the compile capacity a request that
/// needs a compile gets 503 with `Retry-After`. The signature in `drover-signature` covers
/// the body's exact bytes.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/catalog",
    operation_id = "post_catalog",
    tag = "node",
    security(("node_certificate" = [])),
    params(
        ("name" = String, Path, description = "The node's name (its certificate's)"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "`\"VERSION\"` of the catalog the agent holds (or a list, or `*`)"),
    ),
    request_body(
        content = crate::openapi::wire::CatalogRequest,
        description = "An empty body is the same as `{}`",
        example = json!({"facts": {"hostname": "web-1", "os": {"id": "debian"}}, "environment": "production"}),
    ),
    responses(
        (status = 200, description = "The catalog", body = crate::openapi::wire::Catalog, headers(
            ("ETag" = String, description = "`\"VERSION\"`"),
            ("drover-signature" = String, description = "ed25519 signature (base64) of the body, by the key of `GET /api/v1/ca`"),
            ("drover-catalog-error" = String, description = "Present when this is the node's last good catalog because the current commit does not compile for it: the compile error (printable ASCII); the agent's run then fails"),
        )),
        (status = 304, description = "`If-None-Match` names the current version", headers(
            ("ETag" = String),
            ("drover-catalog-error" = String, description = "As for 200"),
        )),
        (status = 400, description = "The body is not a catalog request", body = crate::openapi::wire::ErrorBody),
        crate::openapi::NodeOnly,
        crate::openapi::TooLarge,
        (status = 422, description = "The catalog does not compile and the node has no last good one", body = crate::openapi::wire::CompileFailure),
        crate::openapi::Internal,
        (status = 503, description = "A compile is needed and the server is at its compile capacity (`max_concurrent_compiles` running, `compile_queue` waiting); a catalog in the compile cache is never refused so", body = crate::openapi::wire::ErrorBody, headers(
            ("Retry-After" = String, description = "Seconds to wait before asking again (the agent adds jitter)"),
        )),
    ),
)]
pub async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    caller.require_node(&node)?;
    let raw = raw?;
    let request: CatalogRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        CatalogRequest::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| AppError::BadRequest(format!("invalid catalog request: {e}")))?
    };
    check_facts_size(&state, &node, &request)?;
    let (catalog, compile_error) = compile::serve_catalog(&state, &node, &request).await?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", catalog.version))
        .map_err(|e| AppError::Internal(format!("catalog version is not a header value: {e}")))?;
    // The last good catalog, served because the commit does not compile for
    // this node: the node's run must say so, and fail.
    let last_good = compile_error.map(|error| {
        let text = format!(
            "environment `{}` at commit {} does not compile for this node: {}",
            error.environment,
            error.commit,
            error.diagnostics.join("; ")
        );
        (
            HeaderName::from_static(CATALOG_ERROR_HEADER),
            HeaderValue::from_str(&header_text(&text))
                .unwrap_or_else(|_| HeaderValue::from_static("the commit does not compile")),
        )
    });
    if etag_matches(&headers, &catalog.version) {
        let mut answer = (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        answer.headers_mut().extend(last_good);
        return Ok(answer);
    }
    // The signature covers exactly these bytes; the agent checks it before
    // parsing them, and again before each use of its cached copy.
    let body = serde_json::to_vec(&catalog)
        .map_err(|e| AppError::Internal(format!("cannot serialize the catalog: {e}")))?;
    let signature = HeaderValue::from_str(&state.pki.catalog_signer().sign(&body))
        .map_err(|e| AppError::Internal(format!("signature is not a header value: {e}")))?;
    let mut answer = (
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
        .into_response();
    answer.headers_mut().extend(last_good);
    Ok(answer)
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

/// One file content of the node's catalog
///
/// Only hashes that the node's current (last served) catalog references.
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{name}/files/{sha256}",
    operation_id = "get_file",
    tag = "node",
    security(("node_certificate" = [])),
    params(
        ("name" = String, Path, description = "The node's name (its certificate's)"),
        ("sha256" = String, Path, description = "64 lowercase hex digits"),
    ),
    responses(
        (status = 200, description = "The content", body = [u8], content_type = "application/octet-stream"),
        crate::openapi::NodeOnly,
        (status = 404, description = "Not a sha256, or not referenced by the node's current catalog", body = crate::openapi::wire::ErrorBody),
        crate::openapi::Internal,
    ),
)]
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
    let Some(digest) = parse_sha(&sha) else {
        return Err(AppError::NotFound(format!(
            "`{sha}` is not a sha256 (64 lowercase hex digits)"
        )));
    };
    let references = match state.served.references(&node) {
        Some(references) => references,
        // Not served since the server started: its stored catalog says.
        None => match db::last_good(&state.db, &node).await? {
            Some(catalog) => state.served.record_stored(&catalog),
            None => return Err(not_found()),
        },
    };
    if references.binary_search(&digest).is_err() {
        return Err(not_found());
    }
    let bytes = match state.served.content(&digest) {
        Some(bytes) => bytes,
        None => {
            let generation = state.served.generation();
            let bytes = Bytes::from(db::content(&state.db, &sha).await?.ok_or_else(not_found)?);
            state.served.keep_read(digest, bytes.clone(), generation);
            bytes
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Store a run report
///
/// Stored once per `run_id`, so an agent re-posts its spool safely.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/reports",
    operation_id = "post_report",
    tag = "node",
    security(("node_certificate" = [])),
    params(("name" = String, Path, description = "The node's name (its certificate's)")),
    request_body(content = crate::openapi::wire::Report, example = json!({
        "run_id": "5f0c1b6e-8d2a-4c53-9a43-1f2e3d4c5b6a", "node": "web-1",
        "environment": "production", "commit": "3e1f0c9", "catalog_version": "9b2d...",
        "noop": false, "started_at": "2025-01-31T12:00:00Z", "finished_at": "2025-01-31T12:00:02Z",
        "status": "changed", "cached_catalog": "not_used", "agent_version": "0.1.0",
        "resources": [{"id": "file:/etc/motd", "status": "changed", "corrective": false,
            "events": [{"property": "content", "previous": null, "desired": "9b2d..."}],
            "duration_ms": 1.5}],
        "metrics": {"duration_ms": 2000.0}
    })),
    responses(
        (status = 201, description = "Stored", body = crate::openapi::wire::ReportStored),
        (status = 200, description = "Already stored (`stored` is false)", body = crate::openapi::wire::ReportStored),
        (status = 400, description = "The body is not a report", body = crate::openapi::wire::ErrorBody),
        (status = 401, description = "No client certificate", body = crate::openapi::wire::ErrorBody),
        (status = 403, description = "Another node's certificate or an operator's, or a report whose `node` is not `{name}`", body = crate::openapi::wire::ErrorBody),
        crate::openapi::TooLarge,
        crate::openapi::Internal,
    ),
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    caller.require_node(&node)?;
    let raw = raw?;
    let limit = state.config.max_report_bytes;
    if raw.len() > limit {
        return Err(AppError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "report of node `{node}` is {} bytes, over the server's max_report_bytes ({limit})\n\
                 hint: a report this big is refused every time it is sent; drop it from the spool",
                raw.len()
            ),
        ));
    }
    let report: Report = serde_json::from_slice(&raw)
        .map_err(|e| AppError::BadRequest(format!("invalid report: {e}")))?;
    if report.node != node {
        return Err(AppError::Forbidden(format!(
            "report is for node `{}` but was posted as node `{node}`",
            report.node
        )));
    }
    // It parsed as JSON, so it is UTF-8.
    let text = String::from_utf8_lossy(&raw).into_owned();
    let inserted = db::insert_report(&state.db, &report, text).await?;
    if inserted && crate::apps::reload::may_change_replicas(&state, &report) {
        crate::apps::reload::replicas_reported(&state);
    }
    let status = if inserted {
        state.metrics.reports_received.inc();
        state.live.publish(crate::live::StoredReport {
            node: report.node.clone(),
            run_id: report.run_id.clone(),
            status: report.status.as_str().to_owned(),
        });
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

/// Facts are stored on the node's row at every check-in: beyond the
/// server's `max_facts_bytes` the request is refused (413) before anything
/// is compiled or stored.
fn check_facts_size(
    state: &AppState,
    node: &str,
    request: &CatalogRequest,
) -> Result<(), AppError> {
    let limit = state.config.max_facts_bytes;
    let size = serde_json::to_vec(&request.facts).map_or(usize::MAX, |v| v.len());
    if size > limit {
        return Err(AppError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "facts of node `{node}` are {size} bytes, over the server's max_facts_bytes ({limit})\n\
                 hint: send fewer or smaller facts, or raise max_facts_bytes in server.toml"
            ),
        ));
    }
    Ok(())
}
