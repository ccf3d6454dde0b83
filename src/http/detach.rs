//! Socket.IO request heads, copied out of the connection's read buffer.
//!
//! hyper parses a request head in place: its URI and header values are slices of the
//! connection's read buffer, and a slice keeps the whole buffer (8 KiB or more) alive.
//! engineioxide keeps each Socket.IO session's request head for the session's life, so every
//! connected socket pinned a read buffer it would never use again: the largest single cost of
//! an idle connection. Copying the few hundred bytes of the head once, at the handshake, lets
//! the buffer go.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Uri};

/// The path every Socket.IO (Engine.IO) request is under.
const SOCKET_IO: &str = "/socket.io";

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
    for v in req.headers_mut().values_mut() {
        // A copy of a valid value is valid.
        if let Ok(copy) = HeaderValue::from_bytes(v.as_bytes()) {
            let sensitive = v.is_sensitive();
            *v = copy;
            v.set_sensitive(sensitive);
        }
    }
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
        let inside = buffer.as_ptr_range();
        let req = detach(req).await;
        let value = req.headers()["authorization"].as_bytes();
        assert_eq!(value, b"Bearer abc.def.ghi");
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
}
