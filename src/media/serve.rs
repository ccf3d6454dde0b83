//! Files kept in a bucket, served by whichever node a client asks: the object streamed from the
//! bucket, with the same answers `ServeDir` gives for the directory store (type, length, one
//! byte range, `ETag` and `If-None-Match`, `Last-Modified`). Clients only ever see our URLs, so
//! the bucket can stay private. Range syntax and bounds are `http-range-header`'s (the parser
//! `ServeDir` uses).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::wire::ApiError;

/// `GET`/`HEAD /media/<folder>/<name>` for the bucket store.
pub async fn object(
    State(store): State<Arc<dyn ObjectStore>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::bad("method not allowed on this route").into_response();
    }
    let Some(key) = key_of(uri.path()) else {
        return ApiError::not_found("no such file").into_response();
    };
    match answer(store.as_ref(), &key, method == Method::HEAD, &headers).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => {
            ApiError::not_found("no such file").into_response()
        }
        Err(object_store::Error::NotModified { .. }) => not_modified(&headers),
        Err(e) => {
            tracing::error!(error = %e, key = %key, "the media store cannot serve a file");
            ApiError::Unavailable("the media store does not answer; try again".into())
                .into_response()
        }
    }
}

/// Stored names are server-made (`folder/<hex>.<ext>`): anything else is not a file of ours.
fn key_of(path: &str) -> Option<Key> {
    let path = path.trim_start_matches('/');
    let ok = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    ok.then(|| Key::from(path))
}

async fn answer(
    store: &dyn ObjectStore,
    key: &Key,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, object_store::Error> {
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A range is checked against the size first (the bucket's own answers to a bad range
    // differ between implementations).
    let (range, size) = match range {
        None => (None, None),
        Some(r) => {
            let meta = store.head(key).await?;
            let size = meta.size;
            match http_range_header::parse_range_header(r).and_then(|p| p.validate(size)) {
                Ok(ranges) if ranges.len() == 1 => {
                    let r = &ranges[0];
                    (
                        Some(GetRange::Bounded(*r.start()..*r.end() + 1)),
                        Some(size),
                    )
                }
                _ => return Ok(unsatisfiable(size)),
            }
        }
    };
    let partial = range.is_some();
    let got = store
        .get_opts(
            key,
            GetOptions {
                if_none_match,
                range,
                head,
                ..Default::default()
            },
        )
        .await?;
    let meta = &got.meta;
    let size = size.unwrap_or(meta.size);
    let r = got.range.clone();
    let mut res = Response::builder()
        .status(if partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(
            header::CONTENT_TYPE,
            super::store::content_type(key.as_ref()),
        )
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, r.end - r.start)
        .header(
            header::LAST_MODIFIED,
            meta.last_modified
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string(),
        );
    if partial {
        res = res.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", r.start, r.end - 1),
        );
    }
    if let Some(tag) = meta
        .e_tag
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        res = res.header(header::ETAG, tag);
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(got.into_stream().map_err(std::io::Error::other))
    };
    Ok(res.body(body).expect("valid header values"))
}

fn unsatisfiable(size: u64) -> Response {
    Response::builder()
        .status(StatusCode::RANGE_NOT_SATISFIABLE)
        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
        .body(Body::from("Cannot serve this range"))
        .expect("valid header values")
}

fn not_modified(headers: &HeaderMap) -> Response {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    if let Some(tag) = headers.get(header::IF_NONE_MATCH) {
        res.headers_mut().insert(header::ETAG, tag.clone());
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_made_names_are_looked_up() {
        assert_eq!(key_of("/m/ab12.png").unwrap().as_ref(), "m/ab12.png");
        assert_eq!(
            key_of("/avatars/x-y_z.jpg").unwrap().as_ref(),
            "avatars/x-y_z.jpg"
        );
        for bad in [
            "/",
            "",
            "/m//a.png",
            "/../a",
            "/m/.hidden",
            "/m/a%2Fb",
            "/m/a b",
        ] {
            assert!(key_of(bad).is_none(), "{bad}");
        }
    }
}
