//! Enrollment: the CA and catalog key a new agent pins, certificate requests,
//! and renewal by a node over its own certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::credentials::PresentedSerial;
use crate::error::AppError;
use crate::state::AppState;
use crate::tls::Pki;
use crate::tls::csr::{CheckedCsr, check_csr};
use crate::tls::policy::Decision;
use crate::tls::requests::{
    Enrolled, MAX_PENDING_PER_ADDRESS, Recorded, RequestStatus, duplicate_refusal,
};
use crate::tls::store::IssuedCert;

/// Largest request body of the certificate routes (one CSR).
pub const CSR_BODY_LIMIT: usize = crate::tls::csr::MAX_CSR_PEM;

/// The CA certificate and the catalog signing key
///
/// Open: a new agent fetches it once, compares its fingerprint with the one
/// the operator gave it, and pins both.
#[utoipa::path(
    get,
    path = "/api/v1/ca",
    operation_id = "get_ca",
    tag = "enrollment",
    responses((status = 200, description = "What agents pin", body = crate::openapi::wire::CaBundle)),
)]
pub async fn ca(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "ca": state.pki.ca_pem(),
        "catalog_signing_key": state.pki.catalog_signer().public_key().to_base64(),
    }))
}

/// Submit a certificate request
///
/// Open. Signed at once when the autosign policy says so (an enrollment
/// token, an autosign command), else kept for `drover-server ca sign NAME`.
#[utoipa::path(
    post,
    path = "/api/v1/certificate_requests/{name}",
    operation_id = "submit_certificate_request",
    tag = "enrollment",
    security((), ("enrollment_token" = [])),
    params(("name" = String, Path, description = "The node name the CSR's subject must carry")),
    request_body(description = "A PKCS#10 CSR (PEM) for `{name}`", content(
        (String = "application/x-pem-file"),
        (String = "text/plain"),
    )),
    responses(
        (status = 200, description = "Signed at once", body = crate::openapi::wire::CertificateSigned),
        (status = 202, description = "Waiting for an operator", body = crate::openapi::wire::CertificatePending),
        (status = 400, description = "Not a CSR for `{name}`, or a bad name", body = crate::openapi::wire::ErrorBody),
        (status = 403, description = "Refused by the autosign policy (a wrong enrollment token)", body = crate::openapi::wire::ErrorBody),
        (status = 503, description = "Too many requests already wait for an operator, in all or from this address", body = crate::openapi::wire::ErrorBody),
        (status = 409, description = "Another key already waits for this name, or the name holds a valid certificate of another key (an operator revokes it first)", body = crate::openapi::wire::ErrorBody),
        crate::openapi::TooLarge,
        crate::openapi::Internal,
    ),
)]
pub async fn submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let csr = checked(&name, raw)?;
    let enrolled = {
        let csr = csr.clone();
        blocking(&state, move |pki| pki.enrolled(&csr)).await?
    };
    match enrolled {
        Enrolled::SameKey(held) => return Ok(signed(&held)),
        Enrolled::OtherKey(held) => return Err(duplicate(&csr, &held)),
        Enrolled::No => {}
    }
    let token = enrollment_token(&headers);
    let decision = state.autosign.decide(&csr, token).await;
    match decision {
        Decision::Refuse(why) => {
            log_decision(&csr, "refused", &why);
            Err(AppError::Forbidden(why))
        }
        Decision::Sign(why) => {
            let enrolled = {
                let csr = csr.clone();
                blocking(&state, move |pki| pki.enroll_csr(&csr)).await?
            };
            let cert = enrolled.map_err(|held| duplicate(&csr, &held))?;
            tracing::info!(name = %cert.name, fingerprint = %cert.fingerprint, serial = %cert.serial, why, "certificate request signed");
            Ok(signed(&cert))
        }
        Decision::Pending(why) => {
            let recorded = {
                let csr = csr.clone();
                let from = client.map(|Extension(ConnectInfo(addr))| addr.ip());
                blocking(&state, move |pki| pki.add_pending(&csr, from)).await?
            };
            match recorded {
                Recorded::Pending => {
                    log_decision(&csr, "pending", &why);
                    Ok(pending(csr.fingerprint()))
                }
                Recorded::Full { waiting } => {
                    log_decision(&csr, "refused", "too many requests wait already");
                    Err(AppError::Status(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "{waiting} certificate requests already wait for an operator; this one is not kept\nhint: the operator signs or rejects them (`drover-server ca list`, `ca sign NAME`, `ca reject NAME`), or enrolls with the enrollment token"
                        ),
                    ))
                }
                Recorded::AddressFull { waiting } => {
                    log_decision(
                        &csr,
                        "refused",
                        "too many requests from this address wait already",
                    );
                    Err(AppError::Status(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "{waiting} certificate requests from this address already wait for an operator (at most {MAX_PENDING_PER_ADDRESS}); this one is not kept\nhint: the operator signs or rejects them first (`drover-server ca list` shows where each came from), or the nodes enroll with the enrollment token"
                        ),
                    ))
                }
                Recorded::Conflict { fingerprint } => {
                    log_decision(&csr, "conflict", "another key already waits for this name");
                    Err(AppError::Status(
                        StatusCode::CONFLICT,
                        format!(
                            "another key (sha256 {fingerprint}) already has a pending request for `{name}`\nhint: the operator can sign or refuse it with `drover-server ca list` / `ca sign {name}` / `ca reject {name}`"
                        ),
                    ))
                }
            }
        }
    }
}

/// Which key a status request asks about.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// sha256 of the requesting key's SubjectPublicKeyInfo, hex: the
    /// `fingerprint` a submission answered with.
    #[param(required = true)]
    key: Option<String>,
}

/// Where a certificate request stands
///
/// Open; the agent polls it while an operator decides. It answers only for
/// the key that asks (`?key=`): another key's request or certificate is
/// 404, as no request at all is, so a stranger learns nothing of which
/// names exist.
#[utoipa::path(
    get,
    path = "/api/v1/certificate_requests/{name}",
    operation_id = "get_certificate_request",
    tag = "enrollment",
    params(("name" = String, Path, description = "The node name"), KeyQuery),
    responses(
        (status = 200, description = "Signed: the newest valid certificate of this name and key", body = crate::openapi::wire::CertificateSigned),
        (status = 202, description = "Pending for this key", body = crate::openapi::wire::CertificatePending),
        (status = 400, description = "Not a valid node name, or no `key`", body = crate::openapi::wire::ErrorBody),
        (status = 404, description = "No request and no certificate for this name and key", body = crate::openapi::wire::ErrorBody),
        crate::openapi::Internal,
    ),
)]
pub async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<KeyQuery>,
) -> Result<Response, AppError> {
    drover_catalog::names::check_node_name(&name).map_err(AppError::BadRequest)?;
    let Some(key) = query.key.filter(|k| is_fingerprint(k)) else {
        return Err(AppError::BadRequest(
            "a status request names its key: `?key=` the sha256 of its public key (64 hex digits)\nhint: it is the `fingerprint` the submission answered with".into(),
        ));
    };
    let status = {
        let name = name.clone();
        blocking(&state, move |pki| pki.request_status(&name, &key)).await?
    };
    match status {
        RequestStatus::Signed(cert) => Ok(signed(&cert)),
        RequestStatus::Pending(request) => Ok(pending(&request.fingerprint)),
        RequestStatus::Unknown => Err(AppError::NotFound(format!(
            "no certificate request and no certificate for `{name}` with this key"
        ))),
    }
}

fn is_fingerprint(text: &str) -> bool {
    drover_catalog::sha::Sha256::parse(text).is_some()
}

/// Renew the node's certificate
///
/// Over the node's own certificate; signed at once.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/certificate",
    operation_id = "renew_certificate",
    tag = "node",
    security(("node_certificate" = [])),
    params(("name" = String, Path, description = "The node's name (its certificate's)")),
    request_body(description = "A PKCS#10 CSR (PEM) for `{name}`", content(
        (String = "application/x-pem-file"),
        (String = "text/plain"),
    )),
    responses(
        (status = 200, description = "Signed; every older valid certificate of the node but the one this connection presented is revoked", body = crate::openapi::wire::CertificateSigned),
        (status = 400, description = "Not a CSR for `{name}`", body = crate::openapi::wire::ErrorBody),
        (status = 401, description = "No client certificate", body = crate::openapi::wire::ErrorBody),
        (status = 403, description = "Another node's certificate or an operator's, or a plain-HTTP server", body = crate::openapi::wire::ErrorBody),
        crate::openapi::TooLarge,
        crate::openapi::Internal,
    ),
)]
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    presented: Option<Extension<PresentedSerial>>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    caller.require_node(&name)?;
    if caller == Caller::Insecure {
        return Err(AppError::Forbidden(
            "renewal needs the node's own certificate; this server serves plain HTTP".into(),
        ));
    }
    let csr = checked(&name, raw)?;
    let presented = presented.map(|Extension(PresentedSerial(serial))| serial);
    let (cert, revoked) =
        blocking(&state, move |pki| pki.renew_csr(&csr, presented.as_deref())).await?;
    let revoked: Vec<&str> = revoked.iter().map(|r| r.serial.as_str()).collect();
    tracing::info!(name = %cert.name, fingerprint = %cert.fingerprint, serial = %cert.serial, ?revoked, "certificate renewed; older certificates but the one in use revoked");
    Ok(signed(&cert))
}

fn checked(name: &str, raw: Result<Bytes, BytesRejection>) -> Result<CheckedCsr, AppError> {
    let body = raw?;
    check_csr(name, &body).map_err(|e| {
        tracing::info!(name = %name.escape_debug(), error = %e, "certificate request refused");
        AppError::BadRequest(e.to_string())
    })
}

/// 409 for a request naming an enrolled node with another key, logged as
/// an impersonation attempt would be.
fn duplicate(csr: &CheckedCsr, held: &IssuedCert) -> AppError {
    log_decision(
        csr,
        "refused",
        "the name already holds a valid certificate of another key",
    );
    AppError::Status(StatusCode::CONFLICT, duplicate_refusal(csr.name(), held))
}

fn enrollment_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

fn log_decision(csr: &CheckedCsr, decision: &str, why: &str) {
    tracing::info!(
        name = csr.name(),
        fingerprint = csr.fingerprint(),
        decision,
        why,
        "certificate request"
    );
}

fn signed(cert: &IssuedCert) -> Response {
    Json(json!({"status": "signed", "certificate": cert.pem})).into_response()
}

fn pending(fingerprint: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "pending", "fingerprint": fingerprint})),
    )
        .into_response()
}

/// Runs a CA operation (file I/O under a flock) off the async workers.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    op: impl FnOnce(&Pki) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, AppError> {
    let pki: Arc<Pki> = state.pki.clone();
    tokio::task::spawn_blocking(move || op(&pki))
        .await
        .map_err(|e| AppError::Internal(format!("the CA task failed: {e}")))?
        .map_err(|e| AppError::Internal(format!("{e:#}")))
}
