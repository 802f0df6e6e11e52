//! `AppError`: every handler error, mapped to a status code and `{"error": ...}`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// No credential, or one that is not valid here.
    #[error("{0}")]
    Unauthorized(String),
    /// A rejection from an extractor (body too large, ...), with its own status.
    #[error("{1}")]
    Status(StatusCode, String),
    /// The node's catalog does not compile and it has no last good one.
    #[error("{message}")]
    Compile {
        message: String,
        diagnostics: Vec<String>,
    },
    /// Beyond the compile capacity (see `crate::shed`): 503 with `Retry-After`.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// A body that could not be read (too large, cut off): its own status.
impl From<BytesRejection> for AppError {
    fn from(r: BytesRejection) -> AppError {
        AppError::Status(r.status(), r.body_text())
    }
}

/// A query string that does not parse: the `{"error": ...}` body of every
/// other failure, not axum's plain text.
impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> AppError {
        AppError::BadRequest(r.body_text())
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> AppError {
        AppError::Internal(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Status(code, _) => *code,
            AppError::Compile { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        // Shedding is the server working as meant, not a failure to log.
        if status.is_server_error() && !matches!(self, AppError::Overloaded { .. }) {
            tracing::error!(error = %self, "request failed");
        }
        let retry_after = match &self {
            AppError::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let body = match self {
            AppError::Compile {
                message,
                diagnostics,
            } => json!({"error": message, "diagnostics": diagnostics}),
            other => json!({"error": other.to_string()}),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
