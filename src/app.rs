//! Builds the server from a config: store, auth, TURN, Socket.IO gateway, HTTP routes. Owns the
//! shared state every handler reaches through `Arc<App>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use socketioxide::SocketIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{self, Identity, Verifier};
use crate::calls::registry::Registry;
use crate::config::Config;
use crate::ice::IceIssuer;
use crate::realtime::notify::Notifier;
use crate::realtime::presence::Presence;
use crate::store::Store;

/// Socket events above this size get `v1OnException`; the connection stays usable.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Transport frames above this close the offending connection (abuse, not a mistake).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// REST bodies above this answer 413 in the envelope.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub verifier: Verifier,
    pub notify: Notifier,
    pub presence: Arc<Presence>,
    pub calls: Registry,
    pub ice: IceIssuer,
    pub metrics: crate::metrics::Metrics,
    /// Last claims written per user, so unchanged tokens do not write on every request.
    known_users: DashMap<String, Identity>,
}

impl App {
    /// Users are known from the claims of the tokens they present.
    pub async fn remember_user(&self, who: &Identity) -> Result<(), sqlx::Error> {
        if self
            .known_users
            .get(&who.user_id)
            .is_some_and(|k| *k == *who)
        {
            return Ok(());
        }
        self.store.upsert_user(who).await?;
        self.known_users.insert(who.user_id.clone(), who.clone());
        Ok(())
    }
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    pub addr: SocketAddr,
    pub turn_addr: Option<SocketAddr>,
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

/// How tokens are verified, and what to tell the operator about it.
pub fn verifier_for(config: &Config) -> Result<(Verifier, Option<String>), String> {
    if let Some(pem) = &config.jwt_public_key {
        return Ok((Verifier::from_public_pem(pem)?, None));
    }
    if let Some(secret) = &config.jwt_secret {
        return Ok((Verifier::hs256(secret.as_bytes()), None));
    }
    let secret = auth::dev_secret(&config.data_dir).map_err(|e| {
        format!(
            "cannot keep the development secret in {}: {e}",
            config.data_dir.display()
        )
    })?;
    Ok((Verifier::hs256(secret.as_bytes()), Some(secret)))
}

pub async fn start(config: Config) -> Result<Server, String> {
    config.validate()?;
    let (verifier, dev_secret) = verifier_for(&config)?;
    if dev_secret.is_some() {
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

    let store = Store::open(&config.database_path(), config.db_sync == "full")
        .await
        .map_err(|e| {
            format!(
                "cannot open the database {}: {e}",
                config.database_path().display()
            )
        })?;
    let (rung, ran) = store
        .close_stale_calls()
        .await
        .map_err(|e| format!("cannot close stale calls: {e}"))?;
    if rung + ran > 0 {
        tracing::info!(
            timed_out = rung,
            finished = ran,
            "closed calls left live by the last run"
        );
    }

    let (ice, turn) = crate::ice::start_turn(&config).await?;
    let turn_addr = turn.as_ref().map(|t| t.local_addr());

    let (io_layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_secs(15))
        .ping_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .max_payload(MAX_FRAME_BYTES as u64)
        .ws_max_message_size(MAX_FRAME_BYTES)
        .ws_max_frame_size(MAX_FRAME_BYTES)
        .build_layer();

    let presence = Arc::new(Presence::default());
    let app = Arc::new(App {
        notify: Notifier::new(io.clone(), presence.clone()),
        presence,
        calls: Registry::default(),
        config,
        store,
        verifier,
        ice,
        metrics: Default::default(),
        known_users: DashMap::new(),
    });
    crate::realtime::register(&io, app.clone());

    let router = crate::http::router(app.clone())
        .layer(io_layer)
        .layer(tower_http::cors::CorsLayer::permissive());
    let listener = tokio::net::TcpListener::bind(app.config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", app.config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, turn = ?turn_addr, "vchat-signal listening");

    let (stop, stopped) = oneshot::channel::<()>();
    let (closing_tx, closing_rx) = oneshot::channel::<()>();
    let app2 = app.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = closing_rx.await;
        });
        let serve = tokio::spawn(async move { serve.await });
        let _ = stopped.await;
        // Sockets first, each with a Socket.IO disconnect packet so clients see a deliberate
        // server close rather than a dropped transport; then HTTP, then the store.
        for s in io.sockets() {
            let _ = s.disconnect();
        }
        io.close().await;
        let _ = closing_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
        if let Some(t) = turn {
            let _ = t.close().await;
        }
        app2.store.close().await;
        tracing::info!("stopped");
    });
    Ok(Server {
        addr,
        turn_addr,
        app,
        stop: Some(stop),
        task,
    })
}
