//! The per-address request limit, in front of everything (REST and Socket.IO handshakes): a
//! little over the rate a request waits its turn, well over it the answer is 429 in the
//! envelope. A request whose token is refused gets 450 even then: V Chat clients log out on 450
//! and must never be told 429 instead.

use super::peer::Peer;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::wire::ApiError;

pub async fn admit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.addr.ip());
    let Some(peer) = peer else {
        return next.run(req).await;
    };
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|h| h.to_str().ok());
    let client = app.limits.client_addr(peer, forwarded);
    match app.limits.admit_request(client).await {
        Ok(()) => next.run(req).await,
        Err(why) => {
            let path = req.uri().path().to_string();
            let auth = req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string);
            if let Some(refused) = token_refusal(&app, &path, auth.as_deref()).await {
                return refused.into_response();
            }
            ApiError::TooManyRequests(why).into_response()
        }
    }
}

/// For an API request that needs a token: the 450 it would get anyway, if its token is missing
/// or refused.
async fn token_refusal(app: &App, path: &str, auth: Option<&str>) -> Option<ApiError> {
    let open = ["/api/v2/auth/connect", "/api/v2/dev/token"];
    if !path.starts_with("/api/v2/") || open.contains(&path) {
        return None;
    }
    let Some(header) = auth else {
        return Some(ApiError::Unauthorized("missing access token".into()));
    };
    app.identify(header).await.err().map(ApiError::from)
}
