//! Socket.IO request heads, copied out of the connection's read buffer.
//!
//! hyper parses a request head in place: its URI and header values are slices of the
//! connection's read buffer, and a slice keeps the whole buffer (8 KiB or more) alive.
//! engineioxide keeps each Socket.IO session's request head for the session's life, so every
//! connected socket pinned a read buffer it would never use again: the largest single cost of
//! an idle connection. Copying the few hundred bytes of the head once, at the handshake, lets
//! the buffer go. Of the headers, only those read after this point are kept at all: the rest
//! would be held for the session's life for nothing (0.3 KiB an idle socket for the bench's
//! client, more for clients that send more headers).

use axum::extract::{OriginalUri, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};

/// The path every Socket.IO (Engine.IO) request is under.
const SOCKET_IO: &str = "/socket.io";

/// The headers of a Socket.IO request that anything reads after this layer: the token and the
/// client's address (`admit`, the gateway), the WebSocket key and a poll's content type
/// (engineioxide), and a cross-origin request's (tower-http's CORS layer). Nothing else in the
/// stack reads a Socket.IO request's headers (engineioxide and socketioxide 0.17/0.18 read
/// only those two); a header added to this list is one a new reader needs.
const KEPT: [HeaderName; 7] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-forwarded-for"),
    header::SEC_WEBSOCKET_KEY,
    header::CONTENT_TYPE,
    header::ORIGIN,
    header::ACCESS_CONTROL_REQUEST_METHOD,
    header::ACCESS_CONTROL_REQUEST_HEADERS,
];

pub async fn detach(mut req: Request) -> Request {
    if !req.uri().path().starts_with(SOCKET_IO) {
        return req;
    }
    if let Ok(uri) = Uri::try_from(req.uri().to_string()) {
        // axum's router keeps a clone of the URI as it came (`OriginalUri`), and
        // engineioxide keeps the extensions too.
        if let Some(original) = req.extensions_mut().get_mut::<OriginalUri>() {
            original.0 = uri.clone();
        }
        *req.uri_mut() = uri;
    }
    let mut kept = HeaderMap::new();
    for name in KEPT {
        for v in req.headers().get_all(&name) {
            // A copy of a valid value is valid.
            if let Ok(mut copy) = HeaderValue::from_bytes(v.as_bytes()) {
                copy.set_sensitive(v.is_sensitive());
                kept.append(name.clone(), copy);
            }
        }
    }
    *req.headers_mut() = kept;
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_io_head_no_longer_shares_the_read_buffer() {
        // A read buffer as hyper has it: the head is a slice of a larger allocation.
        let buffer = axum::body::Bytes::from(
            b"/socket.io/?EIO=4&transport=websocket Bearer abc.def.ghi and the rest of 8 KiB"
                .to_vec(),
        );
        let uri = Uri::from_maybe_shared(buffer.slice(0..37)).unwrap();
        let auth = HeaderValue::from_maybe_shared(buffer.slice(38..56)).unwrap();
        let mut req = Request::new(axum::body::Body::empty());
        req.extensions_mut().insert(OriginalUri(uri.clone()));
        *req.uri_mut() = uri;
        req.headers_mut().insert("authorization", auth);
        req.headers_mut()
            .insert("user-agent", HeaderValue::from_static("Dart/3.5"));
        req.headers_mut()
            .append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        req.headers_mut()
            .append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let inside = buffer.as_ptr_range();
        let req = detach(req).await;
        let value = req.headers()["authorization"].as_bytes();
        assert_eq!(value, b"Bearer abc.def.ghi");
        let hops: Vec<_> = req.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(hops, ["10.0.0.1", "10.0.0.2"], "every value, in order");
        assert!(
            req.headers().get("user-agent").is_none(),
            "a header nobody reads is not kept"
        );
        assert!(
            !inside.contains(&value.as_ptr()),
            "the header value is a copy"
        );
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        let q = req.uri().query().unwrap();
        assert!(!inside.contains(&q.as_ptr()), "the URI is a copy");
        let original = req.extensions().get::<OriginalUri>().unwrap();
        let q = original.0.query().unwrap();
        assert!(
            !inside.contains(&q.as_ptr()),
            "and so is axum's original URI"
        );
    }

    #[tokio::test]
    async fn other_requests_keep_every_header() {
        let mut req = Request::new(axum::body::Body::empty());
        *req.uri_mut() = Uri::from_static("/api/v2/channel/r1/message/");
        req.headers_mut()
            .insert("user-agent", HeaderValue::from_static("Dart/3.5"));
        let req = detach(req).await;
        assert_eq!(req.headers()["user-agent"], "Dart/3.5");
    }
}
