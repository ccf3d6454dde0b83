//! The web client at `/`: static files built into the binary (or read from `VCHAT_WEB_DIR`
//! while working on them). It talks to this server exactly as a V Chat app does.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;

/// (path under `/`, content type, bytes) of every built-in file.
const FILES: &[(&str, &str, &[u8])] = &[(
    "index.html",
    "text/html; charset=utf-8",
    include_bytes!("../../web/index.html"),
)];

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/web/{*path}", get(file))
}

async fn index(State(app): State<Arc<App>>) -> Response {
    serve(&app, "index.html").await
}

async fn file(State(app): State<Arc<App>>, Path(path): Path<String>) -> Response {
    serve(&app, &path).await
}

async fn serve(app: &App, path: &str) -> Response {
    let Some((name, mime, built_in)) = FILES.iter().find(|(n, _, _)| *n == path) else {
        return crate::wire::ApiError::not_found("no such file").into_response();
    };
    let bytes = match &app.config.web_dir {
        Some(dir) => match tokio::fs::read(dir.join(name)).await {
            Ok(b) => b,
            Err(_) => return crate::wire::ApiError::not_found("no such file").into_response(),
        },
        None => built_in.to_vec(),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, *mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}
