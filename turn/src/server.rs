use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use turn::allocation::AllocationInfo;
use turn::relay::relay_range::RelayAddressGeneratorRanges;
use turn::server::config::{ConnConfig, ServerConfig};
use turn::server::Server;
use util::vnet::net::Net;

use crate::auth::SecretAuthHandler;
use crate::guard::{Guard, GuardedGenerator, GuardedListener, TurnStats};
use crate::policy::PeerPolicy;

/// Default for [`TurnConfig::max_allocations_per_user`].
pub const DEFAULT_MAX_ALLOCATIONS_PER_USER: usize = 10;
/// Default for [`TurnConfig::max_allocations`].
pub const DEFAULT_MAX_ALLOCATIONS: usize = 10_000;

/// Errors returned by [`start`] and [`TurnServer`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid TURN config: {0}")]
    Config(String),
    #[error("TURN I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("TURN error: {0}")]
    Turn(#[from] turn::Error),
}

/// Configuration of the embedded TURN server (UDP only).
#[derive(Clone)]
pub struct TurnConfig {
    /// UDP address the TURN server listens on. Port 0 picks an ephemeral
    /// port; see [`TurnServer::local_addr`].
    pub listen: SocketAddr,
    /// Address advertised in relayed candidates (XOR-RELAYED-ADDRESS).
    ///
    /// Relay sockets are bound to this address when it is assigned to a local
    /// interface (e.g. 127.0.0.1 for laptop use); otherwise (e.g. a public IP
    /// behind 1:1 NAT) they are bound to the unspecified address of the same
    /// family.
    pub relay_ip: IpAddr,
    /// TURN realm; coturn's `realm=` must match for shared credentials.
    pub realm: String,
    /// Shared secret (coturn `static-auth-secret`).
    pub secret: String,
    /// Lowest relay port (inclusive, non-zero).
    pub relay_port_min: u16,
    /// Highest relay port (inclusive).
    pub relay_port_max: u16,
    /// Peer networks the relay may always talk to, overriding the built-in
    /// refusals of loopback, private, link-local, multicast, broadcast,
    /// reserved addresses and of this server's own addresses
    /// (`VCHAT_TURN_ALLOWED_PEERS`). Never overridden: the unspecified address
    /// and the TURN listen port (on any address). Default: empty.
    pub allowed_peers: Vec<IpNet>,
    /// Whether the relay may talk to loopback peers (`127.0.0.0/8`, `::1`).
    /// `None` (the default) = yes exactly when `listen` is a loopback address
    /// (the laptop setup, where every candidate is on 127.0.0.1).
    pub allow_loopback_peers: Option<bool>,
    /// Live allocations one user (the `<userId>` of the TURN username) may
    /// hold; further Allocate requests get 486. `0` = unlimited. Default 10.
    pub max_allocations_per_user: usize,
    /// Live allocations on the whole server; further Allocate requests get
    /// 486. `0` = unlimited. Default 10 000.
    pub max_allocations: usize,
}

impl TurnConfig {
    /// Whether loopback peers are allowed (resolves the `None` default of
    /// [`TurnConfig::allow_loopback_peers`]).
    pub fn loopback_peers_allowed(&self) -> bool {
        self.allow_loopback_peers
            .unwrap_or_else(|| self.listen.ip().is_loopback())
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 3478)),
            relay_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            realm: "vchat".to_owned(),
            secret: String::new(),
            relay_port_min: 49152,
            relay_port_max: 65535,
            allowed_peers: Vec::new(),
            allow_loopback_peers: None,
            max_allocations_per_user: DEFAULT_MAX_ALLOCATIONS_PER_USER,
            max_allocations: DEFAULT_MAX_ALLOCATIONS,
        }
    }
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("listen", &self.listen)
            .field("relay_ip", &self.relay_ip)
            .field("realm", &self.realm)
            .field("secret", &"<redacted>")
            .field("relay_port_min", &self.relay_port_min)
            .field("relay_port_max", &self.relay_port_max)
            .field("allowed_peers", &self.allowed_peers)
            .field("allow_loopback_peers", &self.allow_loopback_peers)
            .field("max_allocations_per_user", &self.max_allocations_per_user)
            .field("max_allocations", &self.max_allocations)
            .finish()
    }
}

/// Statistics of one live allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationStat {
    /// Full TURN username (`<expiry>:<userId>`).
    pub username: String,
    /// The `<userId>` part of the username.
    pub user_id: String,
    /// Client transport address (source of the five-tuple).
    pub client_addr: SocketAddr,
    /// Relayed transport address handed to the client.
    pub relay_addr: SocketAddr,
    /// Bytes relayed from the client towards peers by this allocation
    /// (Send indications + ChannelData payloads, as counted by the turn crate).
    pub relayed_bytes: usize,
}

/// Handle to a running TURN server. Dropping it also shuts the server down,
/// but [`TurnServer::close`] is the orderly way.
pub struct TurnServer {
    server: Server,
    local_addr: SocketAddr,
    /// Relayed bytes of allocations that have already closed, per user id.
    closed_totals: Arc<Mutex<HashMap<String, u64>>>,
    guard: Arc<Guard>,
}

fn user_id_of(username: &str) -> String {
    SecretAuthHandler::parse_username(username)
        .map(|(_, user)| user.to_owned())
        .unwrap_or_else(|| username.to_owned())
}

/// Picks the address relay sockets are bound to (see [`TurnConfig::relay_ip`]).
fn relay_bind_ip(relay_ip: IpAddr) -> IpAddr {
    if relay_ip.is_unspecified() || std::net::UdpSocket::bind((relay_ip, 0)).is_ok() {
        relay_ip
    } else if relay_ip.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    }
}

/// Binds the UDP listener and starts the TURN server.
pub async fn start(cfg: TurnConfig) -> Result<TurnServer, Error> {
    if cfg.secret.is_empty() {
        return Err(Error::Config("secret must not be empty".into()));
    }
    if cfg.relay_port_min == 0 || cfg.relay_port_min > cfg.relay_port_max {
        return Err(Error::Config(format!(
            "bad relay port range {}-{} (need 1 <= min <= max)",
            cfg.relay_port_min, cfg.relay_port_max
        )));
    }

    let conn = Arc::new(UdpSocket::bind(cfg.listen).await?);
    let local_addr = conn.local_addr()?;

    let bind_ip = relay_bind_ip(cfg.relay_ip);
    let bind_host = match bind_ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };

    let allow_loopback = cfg.loopback_peers_allowed();
    let auth = Arc::new(SecretAuthHandler::new(cfg.secret.clone()));
    let guard = Arc::new(Guard::new(
        PeerPolicy::new(
            cfg.allowed_peers.clone(),
            allow_loopback,
            local_addr.port(),
            [local_addr.ip(), cfg.relay_ip, bind_ip],
        ),
        cfg.max_allocations_per_user,
        cfg.max_allocations,
        Arc::clone(&auth),
    ));

    // The turn crate reports each allocation's final stats here when it closes;
    // we fold them into per-user totals so they survive the allocation.
    let (close_tx, mut close_rx) = mpsc::channel::<AllocationInfo>(64);
    let closed_totals: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let totals = Arc::clone(&closed_totals);
    tokio::spawn(async move {
        while let Some(info) = close_rx.recv().await {
            let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
            *t.entry(user_id_of(&info.username)).or_default() += info.relayed_bytes as u64;
        }
    });

    let server = Server::new(ServerConfig {
        conn_configs: vec![ConnConfig {
            conn: Arc::new(GuardedListener::new(conn, Arc::clone(&guard))),
            relay_addr_generator: Box::new(GuardedGenerator::new(
                RelayAddressGeneratorRanges {
                    relay_address: cfg.relay_ip,
                    min_port: cfg.relay_port_min,
                    max_port: cfg.relay_port_max,
                    max_retries: 32,
                    address: bind_host,
                    net: Arc::new(Net::new(None)),
                },
                Arc::clone(&guard),
            )),
        }],
        realm: cfg.realm.clone(),
        auth_handler: auth,
        channel_bind_timeout: Duration::from_secs(0), // crate default (10 min)
        alloc_close_notify: Some(close_tx),
    })
    .await?;

    tracing::info!(
        %local_addr,
        relay_ip = %cfg.relay_ip,
        relay_bind = %bind_ip,
        ports = %format!("{}-{}", cfg.relay_port_min, cfg.relay_port_max),
        realm = %cfg.realm,
        allowed_peers = ?cfg.allowed_peers,
        allow_loopback_peers = allow_loopback,
        max_allocations_per_user = cfg.max_allocations_per_user,
        max_allocations = cfg.max_allocations,
        "TURN server listening (udp)"
    );

    Ok(TurnServer {
        server,
        local_addr,
        closed_totals,
        guard,
    })
}

impl TurnServer {
    /// The actual bound UDP address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Snapshot of the currently live allocations. Allocations disappear when
    /// they expire or are released; use [`TurnServer::relayed_bytes_by_user`]
    /// for totals that survive that. Empty once the server is closed.
    pub async fn allocations(&self) -> Vec<AllocationStat> {
        let infos = match self.server.get_allocations_info(None).await {
            Ok(infos) => infos,
            Err(_) => return Vec::new(),
        };
        let mut stats: Vec<AllocationStat> = infos
            .into_values()
            .map(|i| AllocationStat {
                user_id: user_id_of(&i.username),
                username: i.username,
                client_addr: i.five_tuple.src_addr,
                relay_addr: i.relay_addr,
                relayed_bytes: i.relayed_bytes,
            })
            .collect();
        stats.sort_by(|a, b| (&a.user_id, a.client_addr).cmp(&(&b.user_id, b.client_addr)));
        stats
    }

    /// Cumulative relayed bytes per user id: closed allocations plus live ones.
    ///
    /// A closing allocation is reported to the totals asynchronously, so for a
    /// brief moment after an allocation closes its bytes may be missing
    /// (never double counted).
    pub async fn relayed_bytes_by_user(&self) -> HashMap<String, u64> {
        let live = self.allocations().await;
        let mut totals = self
            .closed_totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for a in live {
            *totals.entry(a.user_id).or_default() += a.relayed_bytes as u64;
        }
        totals
    }

    /// Cumulative relayed bytes for one user id (see [`Self::relayed_bytes_by_user`]).
    pub async fn relayed_bytes_for_user(&self, user_id: &str) -> u64 {
        self.relayed_bytes_by_user()
            .await
            .get(user_id)
            .copied()
            .unwrap_or(0)
    }

    /// Refusal counters and the number of live allocations (for `/metrics`).
    /// Counters only grow; they are per [`TurnServer`], starting at zero.
    pub fn stats(&self) -> TurnStats {
        self.guard.stats()
    }

    /// Stops the server: closes the listener and all allocations.
    pub async fn close(&self) -> Result<(), Error> {
        self.server.close().await?;
        tracing::info!(local_addr = %self.local_addr, "TURN server closed");
        Ok(())
    }
}
