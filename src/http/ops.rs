use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::wire::envelope::ok;
use crate::wire::ApiError;

/// Liveness: the process answers.
pub async fn health() -> Response {
    ok("ok")
}

/// Readiness: the store answers too.
pub async fn ready(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    if app.store.ping().await {
        Ok(ok("ready"))
    } else {
        Err(ApiError::Internal("store unreachable".into()))
    }
}

/// Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let body = format!(
        "# HELP vchat_live_calls Calls ringing or in progress.\n\
         # TYPE vchat_live_calls gauge\nvchat_live_calls {}\n\
         # HELP vchat_busy_users Users in a live call.\n\
         # TYPE vchat_busy_users gauge\nvchat_busy_users {}\n\
         # HELP vchat_online_users Users with at least one socket.\n\
         # TYPE vchat_online_users gauge\nvchat_online_users {}\n\
         # HELP vchat_sockets Connected sockets.\n\
         # TYPE vchat_sockets gauge\nvchat_sockets {}\n",
        app.calls.live_count(),
        app.calls.busy_count(),
        app.presence.online_users(),
        app.presence.socket_count(),
    );
    let mut body = body;
    app.metrics.render(&mut body);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
