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
    let body = app.metrics.render(&[
        (
            "vchat_live_calls",
            "Calls ringing or in progress.",
            app.calls.live_count() as u64,
        ),
        (
            "vchat_busy_users",
            "Users in a live call.",
            app.calls.busy_count() as u64,
        ),
        (
            "vchat_online_users",
            "Users with at least one socket.",
            app.presence.online_users() as u64,
        ),
        (
            "vchat_sockets",
            "Connected sockets.",
            app.presence.socket_count() as u64,
        ),
    ]);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
