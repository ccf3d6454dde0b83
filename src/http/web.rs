//! The web client at `/`: static files built into the binary (or read from `VCHAT_WEB_DIR`
//! while working on them). It talks to this server exactly as a V Chat app does.
//!
//! `index.html` is served with two flags filled in, so the page knows which sign-ins to offer
//! without a probe: `{{VCHAT_DEV}}` (development sign-in, `--dev`) and `{{VCHAT_SIGNIN}}`
//! (`auth/connect`, an `encryptHashKey` is configured).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// (path under `/web/`, content type, bytes) of every built-in file.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../../web/index.html")),
    ("app.js", JS, include_bytes!("../../web/app.js")),
    ("util.js", JS, include_bytes!("../../web/util.js")),
    ("call.js", JS, include_bytes!("../../web/call.js")),
    ("sdp.js", JS, include_bytes!("../../web/sdp.js")),
    ("style.css", CSS, include_bytes!("../../web/style.css")),
    (
        "vendor/socket.io.min.js",
        JS,
        include_bytes!("../../web/vendor/socket.io.min.js"),
    ),
    (
        "vendor/sdp-transform.js",
        JS,
        include_bytes!("../../web/vendor/sdp-transform.js"),
    ),
];

/// Everything the page loads comes from here; media from the camera; the socket to this origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data: blob: http: https:; media-src 'self' blob:; \
                   connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'none'";

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
    let mut bytes = match &app.config.web_dir {
        Some(dir) => match tokio::fs::read(dir.join(name)).await {
            Ok(b) => b,
            Err(_) => return crate::wire::ApiError::not_found("no such file").into_response(),
        },
        None => built_in.to_vec(),
    };
    if *name == "index.html" {
        bytes = fill_flags(
            &bytes,
            app.config.dev,
            app.config.encrypt_hash_key.is_some(),
        );
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, *mime),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        bytes,
    )
        .into_response()
}

fn fill_flags(page: &[u8], dev: bool, signin: bool) -> Vec<u8> {
    String::from_utf8_lossy(page)
        .replace("{{VCHAT_DEV}}", if dev { "true" } else { "false" })
        .replace("{{VCHAT_SIGNIN}}", if signin { "true" } else { "false" })
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_and_flags_are_filled() {
        for (name, mime, bytes) in FILES {
            assert!(!bytes.is_empty(), "{name} is empty");
            assert!(mime.contains('/'), "{name}: {mime}");
        }
        let page = FILES[0].2;
        let on = String::from_utf8(fill_flags(page, true, false)).unwrap();
        assert!(on.contains(r#"data-dev="true""#) && on.contains(r#"data-signin="false""#));
        assert!(!on.contains("{{"));
    }
}
