//! The composition root: builds every part from a [`Config`] (store, auth, TURN, push, the
//! Socket.IO gateway, HTTP routes), runs it, and stops it gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socketioxide::socket::Sid;
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{App, MAX_FRAME_BYTES};
use crate::auth::session::SessionKeys;
use crate::auth::signin::Lockout;
use crate::auth::{self, Verifier};
use crate::config::Config;
use crate::http::peer::Peer;
use crate::http::stall::StallListener;
use crate::push::{Provider, PushConfig, PushTarget, Pusher};
use crate::realtime::notify::Notifier;
use crate::realtime::outbox::Outboxes;
use crate::realtime::presence::Presence;
use crate::store::Store;

/// Events a socket's writer may have waiting (socketioxide's `max_buffer_size`).
pub const SEND_BUFFER: usize = 1024;

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    pub addr: SocketAddr,
    pub turn_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Graceful stop: refuse new work, close every socket cleanly, flush the store.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }

    /// Runs until SIGINT/SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("signal received, shutting down");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The HS256 key of this server: `VCHAT_JWT_SECRET`, else the development secret kept in the
/// data dir. It signs session tokens; it verifies external HS256 tokens only when no other key
/// kind is configured (or it was configured explicitly). Returns (key, is it the dev secret).
pub fn server_secret(config: &Config) -> Result<(String, bool), String> {
    if let Some(s) = &config.jwt_secret {
        return Ok((s.clone(), false));
    }
    let secret = auth::dev_secret(&config.data_dir).map_err(|e| {
        format!(
            "cannot keep the development secret in {}: {e}",
            config.data_dir.display()
        )
    })?;
    Ok((secret, true))
}

fn push_config(config: &Config) -> PushConfig {
    let d = PushConfig::default();
    PushConfig {
        provider: match config.push_provider.as_deref() {
            Some("fcm") => Some(Provider::Fcm),
            Some("onesignal") => Some(Provider::OneSignal),
            _ => None,
        },
        fcm_service_account: config.fcm_service_account.clone(),
        fcm_endpoint: config.fcm_endpoint.clone().unwrap_or(d.fcm_endpoint),
        fcm_token_uri: config.fcm_token_uri.clone(),
        onesignal_app_id: config.onesignal_app_id.clone(),
        onesignal_api_key: config.onesignal_api_key.clone(),
        onesignal_endpoint: config
            .onesignal_endpoint
            .clone()
            .unwrap_or(d.onesignal_endpoint),
        webhook_url: config.push_webhook_url.clone(),
        webhook_secret: config.push_webhook_secret.clone(),
        ..d
    }
}

pub async fn start(config: Config) -> Result<Server, String> {
    config.validate()?;
    let (secret, is_dev) = server_secret(&config)?;
    let external_keys = config.jwt_public_key.is_some() || config.jwt_jwks_url.is_some();
    // With only a public key or a JWKS configured, the generated secret signs our own session
    // tokens but must not admit hand-minted HS256 tokens.
    let hs = (config.jwt_secret.is_some() || !external_keys).then_some(secret.as_str());
    let verifier = Verifier::new(&config, hs)?;
    if is_dev && !external_keys {
        tracing::warn!(
            "no JWT key configured: using the development secret kept in {}. \
             Mint a token with: cargo run --release -- token --sub alice --name Alice{}",
            config.data_dir.join("dev-jwt-secret").display(),
            if config.data_dir == Config::default().data_dir {
                String::new()
            } else {
                format!(" --data-dir {}", config.data_dir.display())
            }
        );
    }

    let wait = Duration::from_millis(config.db_busy_timeout_ms);
    let store = match &config.database_url {
        Some(url) => Store::open_postgres(url, wait)
            .await
            .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?,
        None => Store::open(&config.database_path(), config.db_sync == "full", wait)
            .await
            .map_err(|e| {
                format!(
                    "cannot open the database {}: {e}",
                    config.database_path().display()
                )
            })?,
    };
    tracing::info!(store = store.kind(), "store open");

    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(|| format!("node-{}", crate::ids::random_hex(6)));
    let cluster = match &config.redis_url {
        Some(url) => Some(Arc::new(
            crate::cluster::link::Cluster::connect(
                url,
                node_id.clone(),
                &config.redis_prefix,
                Duration::from_millis(config.node_ttl_ms),
            )
            .await?,
        )),
        None => None,
    };
    // Alone, calls left live by the last run have no one to finish them. In a cluster they
    // are other nodes' live calls, or a dead node's, which the watch takes over.
    let (rung, ran) = if cluster.is_some() {
        (0, 0)
    } else {
        store
            .close_stale_calls()
            .await
            .map_err(|e| format!("cannot close stale calls: {e}"))?
    };
    if rung + ran > 0 {
        tracing::info!(
            timed_out = rung,
            finished = ran,
            "closed calls left live by the last run"
        );
    }

    let (dead_tx, mut dead_rx) = tokio::sync::mpsc::unbounded_channel::<PushTarget>();
    let push = Pusher::start(push_config(&config), dead_tx).map_err(|e| format!("push: {e}"))?;

    let (ice, turn) = crate::ice::start_turn(&config).await?;
    let turn = turn.map(Arc::new);
    let turn_addr = turn.as_ref().map(|t| t.local_addr());

    let adapter_dropped = prometheus_client::metrics::counter::Counter::default();
    let adapter_received = prometheus_client::metrics::counter::Counter::default();
    let pubsub = match (&config.redis_url, &cluster) {
        (Some(url), Some(_)) => {
            let client = crate::cluster::link::redis_client(&crate::cluster::link::resp3_url(url))?;
            crate::cluster::driver::Pubsub::Redis(
                crate::cluster::driver::Resilient::connect(
                    &client,
                    adapter_dropped.clone(),
                    adapter_received.clone(),
                )
                .await
                .map_err(|e| format!("cannot reach Redis for Socket.IO: {e}"))?,
            )
        }
        _ => crate::cluster::driver::Pubsub::Alone,
    };
    let adapter_connection = pubsub.connection();
    let adapter_config = RedisAdapterConfig::new().with_prefix(
        cluster
            .as_ref()
            .map_or("vchat-socket.io".to_string(), |c| c.socketio_prefix()),
    );
    let (io_layer, io) = SocketIo::builder()
        .with_adapter::<crate::cluster::driver::Adapter>(RedisAdapterCtr::new_with_driver(
            pubsub,
            adapter_config,
        ))
        .ping_interval(Duration::from_secs(15))
        .ping_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .max_payload(MAX_FRAME_BYTES as u64)
        .ws_max_message_size(MAX_FRAME_BYTES)
        .ws_max_frame_size(MAX_FRAME_BYTES)
        // Each socket holds a read buffer of this size for its whole life. Signaling frames
        // are a few hundred bytes (a candidate ~300, an offer ~2 KiB: the buffer grows for a
        // larger frame); 4 KiB (the default) cost idle sockets 3 KiB each for nothing.
        .ws_read_buffer_size(1024)
        // Events waiting for a socket's writer. A reader handling a burst of candidates relays
        // them faster than the callee's writer drains, and an emit to a full buffer is lost:
        // 128 (the default) lost candidates at 157k/s offered. The buffer's memory is taken
        // as it fills, not up front.
        .max_buffer_size(SEND_BUFFER)
        .build_layer();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let send_stall = config.send_stall();
    // A WebSocket session whose connection ended but which socketioxide still holds as connected
    // (it closed while its connect middleware ran: see `http::peer`) is disconnected here.
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<Sid>();
    let io_ended = io.clone();
    tokio::spawn(async move {
        while let Some(sid) = ended.recv().await {
            // `of`, not `get_socket`: the latter panics once a stop has removed the namespace.
            let socket = io_ended.of("/").and_then(|ns| ns.get_socket(sid));
            if let Some(s) = socket.filter(|s| s.connected()) {
                tracing::debug!(%sid, "connection ended before its session: closed");
                let _ = s.disconnect();
            }
        }
    });
    let metrics_listener = match config.metrics_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen for metrics on {a}: {e}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());

    let presence = Arc::new(Presence::default());
    let outbox = Arc::new(Outboxes::default());
    let ledger = cluster.as_ref().map(|c| {
        crate::cluster::graces::GraceLedger::start(c) as Arc<dyn crate::calls::timers::Ledger>
    });
    let (timers, fired) = crate::calls::timers::Timers::new(ledger);
    let window = Duration::from_secs(config.signin_failure_window_secs);
    let limits = crate::limits::Limits::new(&config)?;
    let media = crate::media::Media::open(&config.data_dir, config.media_store.as_deref())?;
    media.sweep_incoming();
    media.backing().check().await;
    if cluster.is_some() && matches!(media.backing(), crate::media::Backing::Dir { .. }) {
        tracing::warn!(
            "clustered with media in a directory: each node serves only the files it took \
             unless that directory is shared; set VCHAT_MEDIA_STORE=s3://bucket/prefix"
        );
    }
    let commit_batches = store.commit_batch_sizes();
    let notify = Notifier::new(
        io.clone(),
        presence.clone(),
        outbox.clone(),
        cluster.clone(),
        adapter_connection,
    );
    let counted = crate::metrics::Counted {
        emits_dropped: notify.dropped.clone(),
        adapter_dropped,
        adapter_received,
        peer_emits: notify.peer_emits.clone(),
        reach: notify.reach.clone(),
        room_emits: notify.room_emits.clone(),
        rooms_reread: notify.rooms_reread.clone(),
        messages_replayed: notify.messages_replayed.clone(),
        room_channels: notify
            .listening
            .as_ref()
            .map(|l| l.channels.clone())
            .unwrap_or_default(),
    };
    let app = Arc::new(App {
        notify,
        presence,
        calls: Default::default(),
        timers,
        sessions: SessionKeys::new(secret.as_bytes()),
        verifier,
        signin_by_identifier: Lockout::new(config.signin_max_failures_per_identifier, window),
        signin_by_address: Lockout::new(config.signin_max_failures_per_address, window),
        profiles: Default::default(),
        media,
        push,
        limits,
        config,
        store,
        ice,
        turn: turn.clone(),
        metrics: crate::metrics::Metrics::new(commit_batches, counted),
        addr,
        cluster,
        node_id,
    });
    if app.verifier.jwks().is_some() {
        // In the background: a key server that is down must not hold the start up.
        let app = app.clone();
        tokio::spawn(async move {
            if let Some(jwks) = app.verifier.jwks() {
                jwks.prefetch().await;
            }
        });
    }
    crate::realtime::register(&io, app.clone()).await?;
    crate::calls::service::run_timers(app.clone(), fired);
    crate::cluster::node::run(&app).await?;
    crate::cluster::node::resume(&app).await;
    {
        // Providers report dead keys; forget them so nobody pushes to them again.
        let app = app.clone();
        tokio::spawn(async move {
            while let Some(t) = dead_rx.recv().await {
                match app.store.drop_push_key(&t.user_id, &t.device, &t.key).await {
                    Ok(()) => app.metrics.inc(|m| &m.push_keys_dropped),
                    Err(e) => tracing::warn!(error = %e, "cannot drop a dead push key"),
                }
            }
        });
    }
    {
        // Housekeeping: expired outboxes every second, idle limiter keys every minute.
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for n in 0u64.. {
                tick.tick().await;
                app.notify.outbox.sweep();
                if n % 60 == 59 {
                    app.limits.sweep();
                }
            }
        });
    }

    let router = crate::http::router(app.clone(), metrics_listener.is_none()).layer(io_layer);
    let router = crate::http::admit_layer(app.clone(), router)
        .layer(tower_http::cors::CorsLayer::permissive());
    let router = crate::http::linger_layer(crate::http::detach_layer(router));
    tracing::info!(%addr, turn = ?turn_addr, metrics = ?metrics_addr, node = %app.node_id, clustered = app.cluster.is_some(), "vchat-signal listening");

    let (stop, stopped) = oneshot::channel::<()>();
    let (closing_tx, closing_rx) = oneshot::channel::<()>();
    let app2 = app.clone();
    let metrics_task = metrics_listener.map(|l| {
        let router = crate::http::metrics_router(app.clone());
        tokio::spawn(async move {
            let _ = axum::serve(l, router).await;
        })
    });
    let task = tokio::spawn(async move {
        let serve = axum::serve(
            StallListener::new(listener, send_stall, ended_tx),
            router.into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(async move {
            let _ = closing_rx.await;
        });
        let serve = tokio::spawn(async move { serve.await });
        let _ = stopped.await;
        // Sockets first, each with a Socket.IO disconnect packet so clients see a deliberate
        // server close rather than a dropped transport; then HTTP, push, the store.
        if let Some(c) = &app2.cluster {
            // Gone from the cluster first, so live nodes take this node's calls over while
            // its clients reconnect to them.
            c.leave().await;
            // Nothing of those calls runs here any more: no timer of ours may fire while
            // the new owners run them.
            for meet_id in app2.calls.meet_ids() {
                if let Some(mut g) = app2.calls.lock(&meet_id).await {
                    app2.calls.forget(&mut g);
                }
            }
        }
        for s in io.sockets() {
            let _ = s.disconnect();
        }
        io.close().await;
        let _ = closing_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
        if let Some(t) = metrics_task {
            t.abort();
        }
        if let Some(t) = turn {
            let _ = t.close().await;
        }
        app2.push.shutdown(Duration::from_secs(3)).await;
        app2.store.close().await;
        tracing::info!("stopped");
    });
    Ok(Server {
        addr,
        turn_addr,
        metrics_addr,
        app,
        stop: Some(stop),
        task,
    })
}
