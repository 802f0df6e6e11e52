//! The certificates page (`GET /certificates`): the pending certificate
//! requests with their key fingerprints, each signable and rejectable by
//! an operator (`POST /certificates/{name}/sign|reject`, checked by
//! `forms::guard`), then the certificates that need attention (revoked,
//! expired, expiring within 30 days) and the count of the valid rest.

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::forms::{self, token};
use super::page::{SignedIn, page};
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::state::AppState;
use crate::tls::requests::colon_hex;

/// A certificate expiring within this many days is listed.
const EXPIRING_DAYS: i64 = 30;

struct PendingRow {
    name: String,
    fingerprint: String,
    requested: String,
    from: String,
    sign_action: String,
    reject_action: String,
}

struct CertRow {
    name: String,
    kind: String,
    serial: String,
    not_after: String,
    /// `revoked`, `expired` or `expiring`.
    state: String,
}

#[derive(Template)]
#[template(path = "certificates.html")]
struct CertificatesPage {
    pending: Vec<PendingRow>,
    attention: Vec<CertRow>,
    valid: usize,
    /// The form token; none without a dashboard session (the buttons
    /// could not work).
    token: Option<String>,
}

/// `GET /certificates`.
pub(super) async fn show(
    State(state): State<AppState>,
    _: SignedIn,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let pki = state.pki.clone();
    let listing = tokio::task::spawn_blocking(move || pki.listing())
        .await
        .map_err(|e| AppError::Internal(format!("the CA task failed: {e}")))?
        .map_err(|e| AppError::Internal(format!("{e:#}")))?;
    let now = jiff::Timestamp::now();
    let soon = now
        .checked_add(jiff::SignedDuration::from_hours(24 * EXPIRING_DAYS))
        .unwrap_or(now);
    let pending = listing
        .pending
        .iter()
        .map(|p| {
            let base = format!("/certificates/{}", urlencode(&p.name));
            PendingRow {
                name: p.name.clone(),
                fingerprint: format!("sha256:{}", p.fingerprint),
                requested: super::format::when(&p.requested_at.to_string()),
                from: p.from.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
                sign_action: format!("{base}/sign"),
                reject_action: format!("{base}/reject"),
            }
        })
        .collect();
    let mut valid = 0;
    let mut attention = Vec::new();
    for (cert, revocation) in &listing.certificates {
        let state = match revocation {
            Some(_) => "revoked",
            None if cert.is_expired(now) => "expired",
            None if cert.not_after <= soon => "expiring",
            None => {
                valid += 1;
                continue;
            }
        };
        attention.push(CertRow {
            name: cert.name.clone(),
            kind: cert.kind.to_string(),
            serial: colon_hex(&cert.serial),
            not_after: super::format::when(&cert.not_after.to_string()),
            state: state.to_owned(),
        });
    }
    page(&CertificatesPage {
        pending,
        attention,
        valid,
        token: forms::session_id(&headers).map(token),
    })
}

/// `POST /certificates/{name}/sign|reject`: the guard, then the CA's
/// operation, and back to the page.
pub(super) async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<forms::TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    if !matches!(action.as_str(), "sign" | "reject") {
        return Err(AppError::NotFound(format!(
            "no action `{action}` on a certificate request (sign or reject)"
        )));
    }
    let token = form.as_ref().map(|f| f.token.as_str()).unwrap_or_default();
    if let Some(refused) = forms::guard(&state, &headers, &uri, token).await? {
        return Ok(refused);
    }
    let pki = state.pki.clone();
    let target = name.clone();
    let done = tokio::task::spawn_blocking(move || match action.as_str() {
        "sign" => crate::tls::admin::sign(&pki, &target),
        _ => crate::tls::admin::reject(&pki, &target),
    })
    .await
    .map_err(|e| AppError::Internal(format!("the CA task failed: {e}")))?;
    match done {
        Ok(said) => {
            tracing::info!(name = %name, said = %said.trim(), "certificate request handled from the dashboard");
            Ok(Redirect::to("/certificates").into_response())
        }
        Err(e) => Err(AppError::BadRequest(format!("{e:#}"))),
    }
}
