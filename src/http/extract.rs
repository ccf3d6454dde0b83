//! Request extractors that answer in the V Chat envelope when they refuse.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::auth::Identity;
use crate::wire::ApiError;

/// The authenticated user. Missing or bad token: 450, which V Chat clients treat as "log out".
pub struct Me(pub Identity);

impl FromRequestParts<Arc<App>> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized("missing access token".into()))?;
        let who = app
            .verifier
            .verify(header)
            .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        app.remember_user(&who).await?;
        Ok(Me(who))
    }
}

/// Query parameters; a malformed one answers 400 in the envelope (axum's own answer is text).
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<App>> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, app)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad(format!("invalid query parameters: {e}")))
    }
}

/// A JSON body; an empty body reads as `{}` (several V Chat routes post none).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let bytes = read_bytes(req, app).await?;
        parse_json(&bytes).map(Body)
    }
}

pub async fn read_bytes(req: Request, app: &Arc<App>) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, app).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "request body too large (limit {} bytes)",
                crate::app::MAX_BODY_BYTES
            ))
        } else {
            ApiError::bad(format!("cannot read request body: {e}"))
        }
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        &b"{}"[..]
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}
