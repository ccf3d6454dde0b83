//! The V Chat REST envelope: `{"code": <status>, "data": <payload or message>}`.
//! Clients decode every error body as JSON and show `data`, so nothing else may leave.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// V Chat clients map 450 to "unauthorized, log out" (protocol §3.1).
pub const STATUS_UNAUTHORIZED: u16 = 450;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Internal(String),
    /// Something we depend on (the store, a key server) cannot answer now.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError::Forbidden(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::NotFound(msg.into())
    }
    /// Rebuilds an error from its status and text (an answer from another node).
    pub fn from_status(status: u16, msg: String) -> Self {
        match status {
            400 => ApiError::BadRequest(msg),
            403 => ApiError::Forbidden(msg),
            404 => ApiError::NotFound(msg),
            STATUS_UNAUTHORIZED => ApiError::Unauthorized(msg),
            413 => ApiError::PayloadTooLarge(msg),
            429 => ApiError::TooManyRequests(msg),
            503 => ApiError::Unavailable(msg),
            _ => ApiError::Internal(msg),
        }
    }
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Unauthorized(_) => STATUS_UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::Internal("storage error".into())
    }
}

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    code: u16,
    data: T,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status();
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            Json(Envelope {
                code,
                data: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// A 200 answer in the envelope.
pub fn ok<T: Serialize>(data: T) -> Response {
    Json(Envelope { code: 200, data }).into_response()
}

pub type ApiResult = Result<Response, ApiError>;
