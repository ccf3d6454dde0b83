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

/// Prometheus text format; behind a bearer token when `VCHAT_METRICS_TOKEN` is set.
pub async fn metrics(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(want) = &app.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .map(crate::auth::strip_bearer)
            .unwrap_or("");
        let matches: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), want.as_bytes()).into();
        if !matches {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(
                    serde_json::json!({"code": 401, "data": "metrics need the bearer token"}),
                ),
            )
                .into_response();
        }
    }
    let (outbox_devices, outbox_events) = app.notify.outbox.size();
    let push = app.push.stats();
    let mut body = format!(
        "# HELP vchat_node_info This node: its id, and whether it runs in a cluster.\n\
         # TYPE vchat_node_info gauge\n\
         vchat_node_info{{node=\"{}\",clustered=\"{}\"}} 1\n",
        app.node_name(),
        app.cluster.is_some()
    );
    if let Some(c) = &app.cluster {
        body.push_str(&format!(
            "# HELP vchat_cluster_nodes Nodes this node sees alive (itself included).\n\
             # TYPE vchat_cluster_nodes gauge\nvchat_cluster_nodes {}\n\
             # HELP vchat_remote_sockets Sockets on other nodes, as this node's presence has them.\n\
             # TYPE vchat_remote_sockets gauge\nvchat_remote_sockets {}\n\
             # HELP vchat_cluster_sockets Sockets on every node, as this node's presence has them.\n\
             # TYPE vchat_cluster_sockets gauge\nvchat_cluster_sockets {}\n\
             # HELP vchat_cluster_online_users Users with a socket on any node, as this node's presence has them.\n\
             # TYPE vchat_cluster_online_users gauge\nvchat_cluster_online_users {}\n",
            c.alive_count(),
            app.presence.remote_socket_count(),
            app.presence.all_socket_count(),
            app.presence.all_online_users()
        ));
    }
    body += &app.metrics.render(
        &[
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
            (
                "vchat_outbox_devices",
                "Call devices within their grace, with events kept for them.",
                outbox_devices as u64,
            ),
            (
                "vchat_outbox_events",
                "Call events kept for devices within their grace.",
                outbox_events as u64,
            ),
        ],
        &[
            (
                "vchat_outbox_kept_total",
                "Call events kept for a device within its grace.",
                app.notify.outbox.kept_total(),
            ),
            (
                "vchat_outbox_dropped_total",
                "Call events lost because a device's outbox was full.",
                app.notify.outbox.dropped_total(),
            ),
            (
                "vchat_push_sent_total",
                "Pushes the provider or webhook accepted.",
                push.sent,
            ),
            ("vchat_push_failed_total", "Pushes given up.", push.failed),
            (
                "vchat_push_dropped_total",
                "Pushes not queued (queue full).",
                push.dropped,
            ),
            (
                "vchat_push_retried_total",
                "Push attempts beyond the first.",
                push.retried,
            ),
            (
                "vchat_push_dead_keys_total",
                "Push keys the provider called dead.",
                push.dead_keys,
            ),
            (
                "vchat_jwks_fetches_total",
                "Fetches of the JWKS.",
                app.verifier.jwks().map_or(0, |j| j.fetch_count()),
            ),
        ],
    );
    if let Some(turn) = &app.turn {
        use std::fmt::Write;
        let t = turn.stats();
        let _ = writeln!(
            body,
            "# HELP vchat_turn_allocations Live allocations on the embedded TURN server.\n\
             # TYPE vchat_turn_allocations gauge\nvchat_turn_allocations {}",
            t.live_allocations
        );
        let _ = writeln!(
            body,
            "# HELP vchat_turn_refused_total What the embedded TURN server refused: allocations \
             over a cap, and peer requests, sends and receives to peers it does not relay to.\n\
             # TYPE vchat_turn_refused_total counter"
        );
        let _ = writeln!(
            body,
            "vchat_turn_refused_total{{kind=\"allocation\",reason=\"user_quota\"}} {}\n\
             vchat_turn_refused_total{{kind=\"allocation\",reason=\"total_quota\"}} {}",
            t.refused_allocations_user_quota, t.refused_allocations_total_quota
        );
        for (kind, counts) in [
            ("peer_request", &t.refused_peer_requests),
            ("send", &t.dropped_sends),
            ("receive", &t.dropped_receives),
        ] {
            for (reason, n) in counts.iter() {
                let _ = writeln!(
                    body,
                    "vchat_turn_refused_total{{kind=\"{kind}\",reason=\"{}\"}} {n}",
                    reason.as_str()
                );
            }
        }
    }
    let refused: Vec<(&str, u64)> = app
        .limits
        .refused()
        .into_iter()
        .map(|(r, n)| (r.as_str(), n))
        .collect();
    crate::metrics::Metrics::render_labeled(
        &mut body,
        "vchat_limited_total",
        "Requests, events, calls, messages and sockets refused by a limit, by reason.",
        "reason",
        &refused,
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
