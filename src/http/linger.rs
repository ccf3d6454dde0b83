//! Reading the rest of a request body we answered early (413 past a size limit, 400 on a bad
//! part, 429 from the request limit) instead of closing on it.
//!
//! hyper stops reading a body whose handler let go of it and closes the connection after the
//! answer. Closing a socket with unread input makes the kernel send a reset, and a reset can
//! destroy our answer before the client reads it: behind nginx, which is still sending the body
//! it buffered, the user gets nginx's HTML 502 instead of our JSON 413; a direct client gets
//! "connection reset". So, like nginx's own lingering close, a body dropped before its end is
//! read and discarded on a task of its own, bounded in time; hyper sends the answer meanwhile,
//! and the connection stays open for the next request.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::EXPECT;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

/// How long a dropped body may take to end, in all (nginx's `lingering_time`).
const LINGER_FOR: Duration = Duration::from_secs(30);
/// How long a dropped body may send nothing before the connection is closed on it (nginx's
/// `lingering_timeout`).
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// Wraps every request's body so that, dropped before its end, the rest is read and discarded.
pub async fn linger(req: Request) -> Request {
    // A client that waits for "100 Continue" before sending the body has sent nothing yet:
    // reading it would ask for it. Unread, hyper answers without asking.
    let expects_continue = req.headers().contains_key(EXPECT);
    req.map(|body| {
        Body::new(Lingering {
            inner: Some(body),
            polled: false,
            expects_continue,
        })
    })
}

struct Lingering {
    inner: Option<Body>,
    polled: bool,
    expects_continue: bool,
}

impl http_body::Body for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.polled = true;
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() || (self.expects_continue && !self.polled) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(body));
        }
    }
}

/// Reads `body` to its end, or until it stalls or takes too long (then dropping it lets hyper
/// close the connection).
async fn discard(mut body: Body) {
    let until = tokio::time::Instant::now() + LINGER_FOR;
    loop {
        let wait = until.min(tokio::time::Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(wait, body.frame()).await {
            Ok(Some(Ok(_))) => continue,
            _ => return,
        }
    }
}
