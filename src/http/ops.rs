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
    let label = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut now = crate::metrics::Scrape::default();
    now.labeled_gauge(
        "vchat_node_info",
        "This node: its id, and whether it runs in a cluster.",
        vec![(
            label(&[
                ("node", app.node_name()),
                ("clustered", &app.cluster.is_some().to_string()),
            ]),
            1,
        )],
    );
    if let Some(c) = &app.cluster {
        now.gauge(
            "vchat_cluster_nodes",
            "Nodes this node sees alive (itself included).",
            c.alive_count() as u64,
        )
        .gauge(
            "vchat_remote_sockets",
            "Sockets on other nodes, as this node's presence has them.",
            app.presence.remote_socket_count() as u64,
        )
        .gauge(
            "vchat_cluster_sockets",
            "Sockets on every node, as this node's presence has them.",
            app.presence.all_socket_count() as u64,
        )
        .gauge(
            "vchat_cluster_online_users",
            "Users with a socket on any node, as this node's presence has them.",
            app.presence.all_online_users() as u64,
        );
    }
    if let Some(n) = app.store.writes_waiting() {
        now.gauge(
            "vchat_store_writes_waiting",
            "Store writes queued for the next group commit.",
            n as u64,
        );
    }
    now.gauge(
        "vchat_live_calls",
        "Calls ringing or in progress.",
        app.calls.live_count() as u64,
    )
    .gauge(
        "vchat_busy_users",
        "Users in a live call.",
        app.calls.busy_count() as u64,
    )
    .gauge(
        "vchat_online_users",
        "Users with at least one socket.",
        app.presence.online_users() as u64,
    )
    .gauge(
        "vchat_sockets",
        "Connected sockets.",
        app.presence.socket_count() as u64,
    )
    .gauge(
        "vchat_outbox_devices",
        "Call devices within their grace, with events kept for them.",
        outbox_devices as u64,
    )
    .gauge(
        "vchat_outbox_events",
        "Call events kept for devices within their grace.",
        outbox_events as u64,
    )
    .counter(
        "vchat_outbox_kept_total",
        "Call events kept for a device within its grace.",
        app.notify.outbox.kept_total(),
    )
    .counter(
        "vchat_outbox_dropped_total",
        "Call events lost because a device's outbox was full.",
        app.notify.outbox.dropped_total(),
    )
    .counter(
        "vchat_push_sent_total",
        "Pushes the provider or webhook accepted.",
        push.sent,
    )
    .counter("vchat_push_failed_total", "Pushes given up.", push.failed)
    .counter(
        "vchat_push_dropped_total",
        "Pushes not queued (queue full).",
        push.dropped,
    )
    .counter(
        "vchat_push_retried_total",
        "Push attempts beyond the first.",
        push.retried,
    )
    .counter(
        "vchat_push_dead_keys_total",
        "Push keys the provider called dead.",
        push.dead_keys,
    )
    .counter(
        "vchat_jwks_fetches_total",
        "Fetches of the JWKS.",
        app.verifier.jwks().map_or(0, |j| j.fetch_count()),
    );
    if let Some(turn) = &app.turn {
        let t = turn.stats();
        now.gauge(
            "vchat_turn_allocations",
            "Live allocations on the embedded TURN server.",
            t.live_allocations as u64,
        );
        let mut refused = vec![
            (
                label(&[("kind", "allocation"), ("reason", "user_quota")]),
                t.refused_allocations_user_quota,
            ),
            (
                label(&[("kind", "allocation"), ("reason", "total_quota")]),
                t.refused_allocations_total_quota,
            ),
        ];
        for (kind, counts) in [
            ("peer_request", &t.refused_peer_requests),
            ("send", &t.dropped_sends),
            ("receive", &t.dropped_receives),
        ] {
            for (reason, n) in counts.iter() {
                refused.push((label(&[("kind", kind), ("reason", reason.as_str())]), n));
            }
        }
        now.labeled_counter(
            "vchat_turn_refused_total",
            "What the embedded TURN server refused: allocations over a cap, and peer requests, \
             sends and receives to peers it does not relay to.",
            refused,
        );
    }
    let refused = app
        .limits
        .refused()
        .into_iter()
        .map(|(r, n)| (label(&[("reason", r.as_str())]), n))
        .collect();
    now.labeled_counter(
        "vchat_limited_total",
        "Requests, events, calls, messages and sockets refused by a limit, by reason.",
        refused,
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.render(now),
    )
        .into_response()
}
