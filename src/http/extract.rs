//! Request extractors that answer in the V Chat envelope when they refuse.

use std::net::IpAddr;

use super::peer::Peer;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Multipart, Request};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::app::App;
use crate::auth::{AuthError, Identity};
use crate::wire::ApiError;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            // Not the client's fault: it must not read as "log out".
            AuthError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Unauthorized(e.to_string()),
        }
    }
}

/// The authenticated user. Missing, bad, expired or logged-out token: 450, which V Chat clients
/// treat as "log out".
pub struct Me(pub Identity);

impl FromRequestParts<Arc<App>> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized("missing access token".into()))?;
        Ok(Me(app.identify(header).await?))
    }
}

/// `X-Socket-Id`: which of the caller's sockets a REST call acts for, when its token names no
/// device (browser tabs, several sockets of one user).
pub struct SocketHint(pub Option<String>);

impl FromRequestParts<Arc<App>> for SocketHint {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, ApiError> {
        Ok(SocketHint(
            parts
                .headers
                .get("x-socket-id")
                .and_then(|h| h.to_str().ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.len() <= 64),
        ))
    }
}

/// The client's address: the TCP peer, or what a trusted proxy says it is.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .map(|c| c.0.addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|h| h.to_str().ok());
        Ok(ClientAddr(app.limits.client_addr(peer, forwarded)))
    }
}

/// The base URL of links we hand out, for this request.
pub struct PublicBase(pub String);

impl FromRequestParts<Arc<App>> for PublicBase {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok());
        Ok(PublicBase(app.public_base(host)))
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
    if crate::wire::nul::in_json(text) {
        return Err(ApiError::bad(format!(
            "invalid JSON body: {}",
            crate::wire::nul::REFUSED
        )));
    }
    serde_json::from_slice(text).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

/// One uploaded file part.
pub struct FilePart {
    pub field: String,
    pub file_name: Option<String>,
    pub bytes: Bytes,
}

/// A form as V Chat clients send it: JSON, or multipart with text fields (strings) and file
/// parts. Files are read up to their limit each; past that, 413.
pub struct Form {
    pub fields: Map<String, Value>,
    /// File parts read into memory ([`Files::InMemory`]).
    pub files: Vec<FilePart>,
    /// File parts streamed to disk ([`Files::Spooled`]), in the order they came.
    pub uploads: Vec<crate::media::Upload>,
}

/// Where a form's file parts go, and the largest each may be.
#[derive(Clone, Copy)]
pub enum Files {
    /// Small files (profile pictures): read whole.
    InMemory(u64),
    /// Media messages: streamed to disk as they arrive, never whole in memory.
    Spooled(u64),
}

/// Text fields longer than this are refused (names, ids, JSON lists).
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// At most this many file parts in one form.
const MAX_FILES: usize = 4;

impl Form {
    pub async fn read(req: Request, app: &Arc<App>, files: Files) -> Result<Form, ApiError> {
        let multipart = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            // A route that takes large uploads still takes JSON of the usual size only.
            let bytes = axum::body::to_bytes(req.into_body(), crate::app::MAX_BODY_BYTES)
                .await
                .map_err(|_| {
                    ApiError::PayloadTooLarge(format!(
                        "request body too large (limit {} bytes)",
                        crate::app::MAX_BODY_BYTES
                    ))
                })?;
            return Ok(Form {
                fields: parse_json(&bytes)?,
                files: Vec::new(),
                uploads: Vec::new(),
            });
        }
        let mut form = Multipart::from_request(req, app)
            .await
            .map_err(|e| ApiError::bad(format!("invalid multipart body: {e}")))?;
        let mut out = Form {
            fields: Map::new(),
            files: Vec::new(),
            uploads: Vec::new(),
        };
        let too_large = |what: &str, limit: u64| {
            ApiError::PayloadTooLarge(format!("{what} is too large (limit {limit} bytes)"))
        };
        let mut text_bytes = 0;
        while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_string();
            if name.contains('\0') || field.file_name().is_some_and(|f| f.contains('\0')) {
                return Err(ApiError::bad(format!(
                    "a part's name: {}",
                    crate::wire::nul::REFUSED
                )));
            }
            if let Some(file_name) = field.file_name().map(str::to_string) {
                if out.files.len() + out.uploads.len() >= MAX_FILES {
                    return Err(ApiError::bad(format!(
                        "at most {MAX_FILES} files per request"
                    )));
                }
                match files {
                    Files::InMemory(limit) => {
                        let mut buf = Vec::new();
                        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                            if (buf.len() + chunk.len()) as u64 > limit {
                                return Err(too_large("the file", limit));
                            }
                            buf.extend_from_slice(&chunk);
                        }
                        out.files.push(FilePart {
                            field: name,
                            file_name: Some(file_name),
                            bytes: buf.into(),
                        });
                    }
                    Files::Spooled(limit) => {
                        use crate::media::SpoolError;
                        let spool_error = |e: SpoolError| match e {
                            SpoolError::TooLarge(limit) => too_large("the file", limit),
                            SpoolError::Io(e) => {
                                tracing::error!(error = %e, "cannot spool an upload");
                                ApiError::Internal("cannot store the file".into())
                            }
                        };
                        let mut spool = app
                            .media
                            .spool(name, Some(file_name), limit)
                            .await
                            .map_err(spool_error)?;
                        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                            spool.write(&chunk).await.map_err(spool_error)?;
                        }
                        out.uploads.push(spool.finish().await.map_err(spool_error)?);
                    }
                }
                continue;
            }
            let mut buf = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if buf.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(too_large(
                        &format!("field {name:?}"),
                        MAX_FIELD_BYTES as u64,
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            text_bytes += buf.len();
            if text_bytes > crate::app::MAX_BODY_BYTES {
                return Err(too_large(
                    "the form's text",
                    crate::app::MAX_BODY_BYTES as u64,
                ));
            }
            let text = String::from_utf8(buf)
                .map_err(|_| ApiError::bad(format!("field {name:?} is not UTF-8 text")))?;
            if text.contains('\0') {
                return Err(ApiError::bad(format!(
                    "field {name:?}: {}",
                    crate::wire::nul::REFUSED
                )));
            }
            out.fields.insert(name, Value::String(text));
        }
        Ok(out)
    }

    /// The fields as a typed body (text fields arrive as strings).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&serde_json::to_vec(&self.fields).expect("serializes"))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The one file part named `field`, if any.
    pub fn file(&self, field: &str) -> Option<&FilePart> {
        self.files.iter().find(|f| f.field == field)
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("request body too large: {e}"))
    } else {
        ApiError::bad(format!("invalid multipart body: {e}"))
    }
}
