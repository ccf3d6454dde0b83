//! HTTP: the V Chat REST API under `/api/v2`, plus health, readiness and metrics. Handlers decode,
//! call a service, and wrap the answer in the `{code, data}` envelope.

mod admit;
mod auth;
mod bans;
mod broadcasts;
mod calls;
mod channels;
mod detach;
pub mod extract;
mod groups;
mod linger;
mod ops;
pub mod peer;
mod profile;
pub mod stall;
mod web;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, patch, post};
use axum::Router;

use crate::app::{App, MAX_BODY_BYTES};
use crate::wire::ApiError;

/// The whole HTTP surface. `with_metrics`: serve `/metrics` here (not on its own listener).
pub fn router(app: Arc<App>, with_metrics: bool) -> Router {
    // Uploads may exceed the JSON body limit, up to their own.
    let upload_limit = DefaultBodyLimit::max(app.config.max_image_bytes as usize + 64 * 1024);
    let uploads = Router::new()
        .route("/auth/connect", post(auth::connect))
        .route("/profile/image", patch(profile::image))
        .route("/channel/group", post(channels::create_group))
        .route("/channel/broadcast", post(broadcasts::create))
        .route(
            "/channel/{room_id}/broadcast/image",
            patch(broadcasts::image),
        )
        .route("/channel/{room_id}/group/image", patch(groups::image))
        .layer(upload_limit);
    // Media messages: up to two files (a video and its thumbnail), streamed to disk.
    let message_limit = DefaultBodyLimit::max(
        (app.config.max_upload_bytes as usize)
            .saturating_mul(2)
            .saturating_add(1024 * 1024),
    );
    let api = Router::new()
        // sign-in and profile
        .route("/auth/logout", post(auth::logout))
        .route("/dev/token", post(auth::dev_token))
        .route("/profile/name", patch(profile::name))
        .route(
            "/profile/push",
            post(profile::set_push).delete(profile::clear_push),
        )
        .route(
            "/profile/users/{identifier}/last-seen",
            get(profile::last_seen),
        )
        .route("/profile/users", get(profile::users))
        // calls
        .route("/call/create/{room_id}", post(calls::create))
        .route("/call/accept/{meet_id}", post(calls::accept))
        .route("/call/reject/{meet_id}", post(calls::reject))
        .route("/call/cancel/{meet_id}", post(calls::cancel))
        .route("/call/end/{meet_id}", post(calls::end))
        .route("/call/end/v2/{meet_id}", post(calls::end_v2))
        .route("/call/active", get(calls::active))
        .route("/call/history", get(calls::history))
        .route("/call/history/clear", delete(calls::clear_history))
        .route("/call/history/clear/{id}", delete(calls::clear_one))
        .route("/call/ice-servers", get(calls::ice_servers))
        .route("/call/agora-access/{room_id}", get(calls::agora_access))
        // rooms and messages
        .route("/channel", get(channels::list))
        .route("/channel/", get(channels::list))
        .route("/channel/peer-room/{identifier}", post(channels::peer_room))
        .route(
            "/channel/{room_id}",
            get(channels::get).delete(channels::delete_room),
        )
        .route(
            "/channel/{room_id}/notification",
            patch(channels::notification),
        )
        .route(
            "/channel/{room_id}/notification/{what}",
            patch(channels::flag),
        )
        .route("/channel/{room_id}/{what}", patch(channels::flag))
        .route("/channel/{room_id}/one-seen/{what}", patch(channels::flag))
        .route("/channel/{room_id}/nick-name", patch(channels::nick_name))
        .route("/channel/{room_id}/translate", patch(channels::translate))
        .route(
            "/channel/{room_id}/translate/stop",
            patch(channels::translate_stop),
        )
        .route(
            "/channel/{room_id}/un-read-count",
            get(channels::unread_count),
        )
        .route(
            "/channel/{room_id}/group/members/{identifier}",
            delete(channels::kick),
        )
        .route("/channel/{room_id}/group/leave", post(channels::leave))
        .route(
            "/channel/{room_id}/broadcast/title",
            patch(broadcasts::title),
        )
        .route(
            "/channel/{room_id}/broadcast/members",
            get(broadcasts::members).post(broadcasts::add),
        )
        .route(
            "/channel/{room_id}/broadcast/members/{identifier}",
            delete(broadcasts::kick),
        )
        .route(
            "/channel/{room_id}/broadcast/my-info",
            get(broadcasts::my_info),
        )
        .route(
            "/channel/{room_id}/broadcast/available-users-to-add",
            get(broadcasts::available),
        )
        .route(
            "/channel/{room_id}/broadcast/message/{message_id}/status/{kind}",
            get(broadcasts::message_status),
        )
        .route("/channel/{room_id}/group/title", patch(groups::title))
        .route(
            "/channel/{room_id}/group/description",
            patch(groups::description),
        )
        .route(
            "/channel/{room_id}/group/extra-data",
            patch(groups::extra_data),
        )
        .route("/channel/{room_id}/group/my-info", get(groups::my_info))
        .route("/channel/{room_id}/group/my-status", get(groups::my_status))
        .route(
            "/channel/{room_id}/group/members",
            get(groups::members).post(channels::add_members),
        )
        .route(
            "/channel/{room_id}/group/members/{identifier}/{role}",
            patch(groups::set_role),
        )
        .route(
            "/channel/{room_id}/group/available-users-to-add",
            get(groups::available),
        )
        .route(
            "/channel/{room_id}/group/message/{message_id}/status/{kind}",
            get(groups::message_status),
        )
        .route(
            "/channel/{room_id}/message",
            post(channels::send)
                .layer(message_limit)
                .get(channels::messages),
        )
        .route(
            "/channel/{room_id}/message/",
            post(channels::send)
                .layer(message_limit)
                .get(channels::messages),
        )
        .route(
            "/channel/{room_id}/message/stars",
            get(channels::room_stars),
        )
        .route("/channel/messages/stars", get(channels::all_stars))
        .route(
            "/channel/{room_id}/message/{message_id}/one-seen",
            patch(channels::one_seen),
        )
        .route(
            "/channel/{room_id}/message/{message_id}/{what}",
            post(channels::star),
        )
        .route(
            "/channel/{room_id}/message/{message_id}/delete/all",
            delete(channels::delete_all),
        )
        .route(
            "/channel/{room_id}/message/{message_id}/delete/me",
            delete(channels::delete_me),
        )
        .route("/channel/{room_id}/deliver", patch(channels::deliver))
        // bans
        .route("/user-ban/{identifier}/ban", post(bans::ban).get(bans::get))
        .route("/user-ban/{identifier}/un-ban", post(bans::unban))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(uploads)
        .route_layer(middleware::from_fn_with_state(app.clone(), timed))
        .layer(middleware::from_fn(run_to_completion))
        .layer(middleware::from_fn(refuse_nul_in_url));

    let mut router = Router::new()
        .merge(web::routes())
        .nest("/api/v2", api)
        .nest_service(crate::media::URL_PREFIX, media(&app))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready));
    if with_metrics {
        router = router.route("/metrics", get(ops::metrics));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// Around everything the server's main listener serves, outermost: a request answered before
/// its body was read (by a handler or by `admit_layer`) still has its body read to the end,
/// so the answer reaches the client instead of a connection reset (see `linger`).
pub fn linger_layer(router: Router) -> Router {
    router.layer(middleware::map_request(linger::linger))
}

/// Socket.IO request heads copied out of the connection's read buffer, which they would
/// otherwise keep alive for the socket's life (see `detach`). Wrap it outside the Socket.IO
/// layer.
pub fn detach_layer(router: Router) -> Router {
    router.layer(middleware::map_request(detach::detach))
}

/// The per-address request limit around everything `router` serves (wrap it after the
/// Socket.IO layer so handshakes count too).
pub fn admit_layer(app: Arc<App>, router: Router) -> Router {
    router.layer(middleware::from_fn_with_state(app, admit::admit))
}

/// `/metrics` alone, for a listener of its own (`VCHAT_METRICS_LISTEN`).
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .with_state(app)
}

/// Uploaded files: names are random or content hashes and never reused, so they can be cached
/// for good. The directory store is tower-http's `ServeDir` (ranges, types, conditional
/// requests); the bucket store streams objects through `media::serve` with the same answers.
fn media(app: &App) -> Router {
    use axum::http::{header, HeaderValue};
    use tower_http::services::ServeDir;
    use tower_http::set_header::SetResponseHeaderLayer;
    let files = match app.media.backing() {
        crate::media::Backing::Dir { root, .. } => {
            Router::new().fallback_service(ServeDir::new(root).not_found_service(any(not_found)))
        }
        crate::media::Backing::Bucket { store, .. } => Router::new()
            .fallback(crate::media::serve::object)
            .with_state(store.clone()),
    };
    files
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static(crate::media::store::CACHE_CONTROL),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// A client that hangs up mid-request must not leave a half-done change behind (a call reserved
/// but never announced, a message stored but never emitted): hyper drops the handler future
/// when the connection goes, so every API request runs on its own task to the end.
async fn run_to_completion(req: Request, next: Next) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("request failed: {e}")).into_response(),
    }
}

/// `vchat_http_request_duration_seconds` by method, route template and status.
async fn timed(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    route: axum::extract::MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_string();
    let route = route.as_str().to_string();
    let res = next.run(req).await;
    app.metrics.http_request(
        crate::metrics::Route {
            method,
            route,
            status: res.status().as_u16(),
        },
        started,
    );
    res
}

/// Ids and names in paths and queries end up in store lookups (see `wire::nul`).
async fn refuse_nul_in_url(req: Request, next: Next) -> Response {
    let url = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    if crate::wire::nul::in_url(url) {
        return ApiError::bad(format!("the URL: {}", crate::wire::nul::REFUSED)).into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::bad("method not allowed on this route")
}
