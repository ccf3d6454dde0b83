//! Configuration: defaults, then an optional TOML file, then `VCHAT_*` environment, then flags.
//!
//! clap already gives flags precedence over environment, so the file is applied first and every
//! value clap saw (from a flag or its env var) overwrites it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Everything the server needs to run. `Config::default()` is the laptop setup.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP + Socket.IO listen address.
    pub listen: SocketAddr,
    /// Where the SQLite database and the development JWT secret live.
    pub data_dir: PathBuf,
    /// HS256 secret for access tokens. Without it (and without a public key) a development secret
    /// is generated once and kept in the data dir.
    pub jwt_secret: Option<String>,
    /// PEM public key (RS256 or ES256) of an existing auth server; takes precedence over the secret.
    pub jwt_public_key: Option<PathBuf>,
    /// `full` (default): commits reach the disk before they are acknowledged; `normal`: faster,
    /// survives a process crash but not a power cut.
    pub db_sync: String,
    /// Ring timeout.
    pub call_timeout_ms: u64,
    /// How long a ringing caller's device may be gone before the call is canceled.
    pub caller_grace_ms: u64,
    /// How long a party's call device may be gone during a call before it is finished.
    pub reconnect_grace_ms: u64,
    /// A connection whose writes have made no progress this long (its client stopped reading)
    /// is closed (see `http::stall`).
    pub send_stall_ms: u64,
    /// A call still running after this long is finished by the server.
    pub max_call_ms: u64,
    /// tracing filter, e.g. `info` or `vchat_signal=debug`.
    pub log: String,
    /// `text` (default) or `json`: one JSON object per line for log shippers.
    pub log_format: String,
    /// Shared secret with the TURN server (coturn `static-auth-secret`). Without it, and with the
    /// embedded TURN server on, a secret is generated for the session.
    pub turn_secret: Option<String>,
    /// `turn:`/`turns:`/`stun:` URLs handed to clients. Empty: the embedded server's URL.
    pub turn_urls: Vec<String>,
    /// Lifetime of minted TURN credentials, seconds (at most 24 h).
    pub turn_ttl: u64,
    /// Run the embedded TURN server.
    pub embedded_turn: bool,
    /// UDP address of the embedded TURN server.
    pub turn_listen: SocketAddr,
    /// Realm of the embedded TURN server (coturn `realm`).
    pub turn_realm: String,
    /// Address the embedded TURN server puts in relayed candidates [default: the listen IP].
    pub turn_relay_ip: Option<std::net::IpAddr>,
    /// Relay ports of the embedded TURN server, `MIN-MAX`.
    pub turn_port_range: String,
    /// Peer networks the embedded TURN server may relay to despite its refusals (CIDRs).
    pub turn_allowed_peers: Vec<String>,
    /// Live TURN allocations per user (0: unlimited).
    pub turn_max_allocations_per_user: usize,
    /// Live TURN allocations in all (0: unlimited).
    pub turn_max_allocations: usize,
    /// PostgreSQL URL (`postgres://…`): the store lives there instead of SQLite in the data dir.
    pub database_url: Option<String>,
    /// SQLite busy timeout: how long a write waits for the lock before it fails.
    pub db_busy_timeout_ms: u64,

    // ---- cluster ----
    /// Redis URL (`redis://host:6379/0?protocol=resp3`): cluster mode (rooms, presence, busy
    /// users and call ownership shared between nodes).
    pub redis_url: Option<String>,
    /// This node's id in logs, `/metrics` and Redis [default: generated per start].
    pub node_id: Option<String>,
    /// Prefix of every Redis key and channel, so several clusters can share one Redis.
    pub redis_prefix: String,
    /// A node that has not renewed its heartbeat for this long is dead: its sockets leave
    /// presence and a live node takes its calls over.
    pub node_ttl_ms: u64,
    /// Which node runs a new call: `caller`, the one holding the caller's socket (its
    /// candidates then start at the call's owner), or `request`, the one the create request
    /// reached (no forwarding of the creation).
    pub call_placement: String,

    // ---- sign-in and tokens ----
    /// Audience external tokens must carry (`aud`); unset: any or none.
    pub jwt_audience: Option<String>,
    /// Issuer external tokens must carry (`iss`); unset: any or none.
    pub jwt_issuer: Option<String>,
    /// JSON Web Key Set of an auth server that rotates its keys (Firebase Auth, Keycloak, Auth0).
    pub jwt_jwks_url: Option<String>,
    /// Least time between two JWKS fetches caused by unknown key ids, seconds.
    pub jwt_jwks_min_refresh_secs: u64,
    /// The key the V Chat SDK hashes into its sign-in password; enables `auth/connect`.
    pub encrypt_hash_key: Option<String>,
    /// Lifetime of the access tokens `auth/connect` issues, seconds (the SDK never refreshes).
    pub session_ttl_secs: u64,
    /// Failed sign-ins per identifier within the window before sign-in is refused with 429.
    pub signin_max_failures_per_identifier: u32,
    /// Failed sign-ins per client address within the window before sign-in is refused with 429.
    pub signin_max_failures_per_address: u32,
    /// The failed sign-in window, seconds.
    pub signin_failure_window_secs: u64,

    // ---- profile and media ----
    /// Base URL clients reach this server at; file URLs are built under it. Unset: derived from
    /// the listen address (or, when that is a wildcard, from the request's Host header).
    pub public_url: Option<String>,
    /// Largest profile image accepted, bytes.
    pub max_image_bytes: u64,
    /// Largest file of a media message (image, file, video, voice), bytes; checked while the
    /// upload streams to disk.
    pub max_upload_bytes: u64,
    /// Most members a group may have.
    pub max_group_members: u64,
    /// Where uploaded files live: `file:///dir` or `s3://bucket/prefix` (a cluster needs a
    /// bucket). Unset: `<data dir>/media`.
    pub media_store: Option<String>,

    // ---- push ----
    /// Which provider device push keys belong to: `fcm` or `onesignal`.
    pub push_provider: Option<String>,
    /// Google service-account JSON for FCM HTTP v1.
    pub fcm_service_account: Option<PathBuf>,
    /// FCM API base URL.
    pub fcm_endpoint: Option<String>,
    /// OAuth2 token URL for FCM (default: the service account's `token_uri`).
    pub fcm_token_uri: Option<String>,
    pub onesignal_app_id: Option<String>,
    pub onesignal_api_key: Option<String>,
    /// OneSignal create-notification URL.
    pub onesignal_endpoint: Option<String>,
    /// A webhook that receives every push (ops running their own push service).
    pub push_webhook_url: Option<String>,
    /// HMAC-SHA256 key signing webhook bodies.
    pub push_webhook_secret: Option<String>,

    // ---- Agora (Gen-B calls) ----
    pub agora_app_id: Option<String>,
    pub agora_app_certificate: Option<String>,
    /// Lifetime of Agora RTC tokens, seconds.
    pub agora_token_ttl_secs: u64,

    // ---- operations ----
    /// Bearer token `/metrics` requires when set.
    pub metrics_token: Option<String>,
    /// Serve `/metrics` on this address instead of the main listener.
    pub metrics_listen: Option<SocketAddr>,

    // ---- abuse limits (0 turns each off) ----
    /// Call creates per caller per minute.
    pub max_calls_per_minute: u32,
    /// Unanswered calls in a row from one caller to one callee before a cool-down.
    pub max_unanswered_calls: u32,
    /// That cool-down, seconds.
    pub unanswered_cool_down_secs: u64,
    /// Messages per user per 10 seconds.
    pub max_messages_per_10s: u32,
    /// Socket events per socket per second (bursts of twice that).
    pub max_events_per_second: u32,
    /// REST requests and socket handshakes per client address per second (bursts of twice
    /// that; a little above, requests are slowed before they are refused).
    pub max_requests_per_address_per_second: u32,
    /// Live sockets per user.
    pub max_sockets_per_user: usize,
    /// Live sockets per client address.
    pub max_sockets_per_address: usize,
    /// Proxies whose `X-Forwarded-For` names the client (IP addresses or CIDRs).
    pub trusted_proxies: Vec<String>,

    // ---- trying it out ----
    /// Development mode: anyone can get a token for a name they choose (`POST dev/token`).
    pub dev: bool,
    /// Allow development mode even with a JWT key or secret configured.
    pub dev_force: bool,
    /// Serve the web client from this directory instead of the copy built into the binary.
    pub web_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:3000".parse().expect("valid default"),
            data_dir: PathBuf::from("./data"),
            jwt_secret: None,
            jwt_public_key: None,
            db_sync: "full".into(),
            call_timeout_ms: 30_000,
            caller_grace_ms: 5_000,
            reconnect_grace_ms: 30_000,
            send_stall_ms: 20_000,
            max_call_ms: 12 * 3600 * 1000,
            log: "info".into(),
            log_format: "text".into(),
            turn_secret: None,
            turn_urls: Vec::new(),
            turn_ttl: 4 * 3600,
            embedded_turn: true,
            turn_listen: "127.0.0.1:3478".parse().expect("valid default"),
            turn_realm: "vchat".into(),
            turn_relay_ip: None,
            turn_port_range: "49152-65535".into(),
            turn_allowed_peers: Vec::new(),
            turn_max_allocations_per_user: 10,
            turn_max_allocations: 10_000,
            database_url: None,
            db_busy_timeout_ms: 10_000,
            redis_url: None,
            node_id: None,
            redis_prefix: "vchat".into(),
            node_ttl_ms: 3_000,
            call_placement: "caller".into(),
            jwt_audience: None,
            jwt_issuer: None,
            jwt_jwks_url: None,
            jwt_jwks_min_refresh_secs: 30,
            encrypt_hash_key: None,
            session_ttl_secs: 90 * 24 * 3600,
            signin_max_failures_per_identifier: 10,
            signin_max_failures_per_address: 50,
            signin_failure_window_secs: 15 * 60,
            public_url: None,
            max_image_bytes: 5 * 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            max_group_members: 1024,
            media_store: None,
            push_provider: None,
            fcm_service_account: None,
            fcm_endpoint: None,
            fcm_token_uri: None,
            onesignal_app_id: None,
            onesignal_api_key: None,
            onesignal_endpoint: None,
            push_webhook_url: None,
            push_webhook_secret: None,
            agora_app_id: None,
            agora_app_certificate: None,
            agora_token_ttl_secs: 24 * 3600,
            metrics_token: None,
            metrics_listen: None,
            max_calls_per_minute: 10,
            max_unanswered_calls: 3,
            unanswered_cool_down_secs: 600,
            max_messages_per_10s: 50,
            max_events_per_second: 100,
            max_requests_per_address_per_second: 100,
            max_sockets_per_user: 20,
            max_sockets_per_address: 2000,
            trusted_proxies: Vec::new(),
            dev: false,
            dev_force: false,
            web_dir: None,
        }
    }
}

/// Longest TURN credential lifetime we mint; longer-lived secrets leak for longer.
pub const MAX_TURN_TTL: u64 = 24 * 3600;

/// An HS256 secret shorter than this can be brute-forced offline from one token (RFC 7518 §3.2
/// asks for a key at least as long as the hash).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// `90d`, `12h`, `30m`, `45s` or plain seconds.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90d, 12h, 30m, 45s)"))?;
    let mult = match unit.trim() {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too long"))
}

impl Config {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
    pub fn caller_grace(&self) -> Duration {
        Duration::from_millis(self.caller_grace_ms)
    }
    pub fn reconnect_grace(&self) -> Duration {
        Duration::from_millis(self.reconnect_grace_ms)
    }
    pub fn send_stall(&self) -> Duration {
        Duration::from_millis(self.send_stall_ms.max(1))
    }
    pub fn max_call_duration(&self) -> Duration {
        Duration::from_millis(self.max_call_ms)
    }
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("vchat.db")
    }

    /// Rejects values that would make the server misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.db_sync.as_str(), "full" | "normal") {
            return Err(format!(
                "db sync must be full or normal, got {:?}",
                self.db_sync
            ));
        }
        if self.call_timeout_ms == 0 {
            return Err("call timeout must be greater than 0 ms".into());
        }
        if self.max_call_ms == 0 {
            return Err("max call duration must be greater than 0 ms".into());
        }
        if self.turn_ttl == 0 || self.turn_ttl > MAX_TURN_TTL {
            return Err(format!(
                "turn ttl must be between 1 and {MAX_TURN_TTL} seconds, got {}",
                self.turn_ttl
            ));
        }
        vchat_turn::parse_port_range(&self.turn_port_range)
            .map_err(|e| format!("turn port range: {e}"))?;
        if self.embedded_turn
            && self.turn_listen.ip().is_unspecified()
            && self.turn_relay_ip.is_none()
        {
            return Err(
                "the embedded TURN server listens on all interfaces: set the turn relay ip \
                        (VCHAT_TURN_RELAY_IP) to the address clients can reach"
                    .into(),
            );
        }
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(format!(
                    "the JWT secret (VCHAT_JWT_SECRET) is {} bytes; HS256 needs at least \
                     {MIN_JWT_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                    secret.len()
                ));
            }
        }
        let keys = self.jwt_secret.is_some()
            || self.jwt_public_key.is_some()
            || self.jwt_jwks_url.is_some();
        if self.dev && keys && !self.dev_force {
            return Err(
                "--dev hands out tokens to anyone; it is refused when a JWT secret, public key or \
                 JWKS is configured (add --dev-force if you really mean it)"
                    .into(),
            );
        }
        crate::limits::Limits::new(self)?;
        vchat_turn::parse_allowed_peers(&self.turn_allowed_peers.join(","))
            .map_err(|e| format!("turn allowed peers: {e}"))?;
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(
                    "database url must be a PostgreSQL URL (postgres://user@host/db); \
                     leave it unset for SQLite in the data dir"
                        .into(),
                );
            }
        }
        self.validate_cluster()?;
        if self.session_ttl_secs == 0 {
            return Err("session ttl must be greater than 0".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log format must be text or json, got {:?}",
                self.log_format
            ));
        }
        if let Some(url) = &self.media_store {
            crate::media::Location::parse(url)?;
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "public url {url:?} must start with http:// or https://"
                ));
            }
        }
        if let Some(p) = &self.push_provider {
            if !matches!(p.as_str(), "fcm" | "onesignal") {
                return Err(format!("push provider must be fcm or onesignal, got {p:?}"));
            }
        }
        if self.agora_app_id.is_some() != self.agora_app_certificate.is_some() {
            return Err(
                "Agora needs both VCHAT_AGORA_APP_ID and VCHAT_AGORA_APP_CERTIFICATE".into(),
            );
        }
        if self.agora_token_ttl_secs == 0 || self.agora_token_ttl_secs > u32::MAX as u64 {
            return Err("agora token ttl must be between 1 and 4294967295 seconds".into());
        }
        if let (Some(id), Some(cert)) = (&self.agora_app_id, &self.agora_app_certificate) {
            crate::agora::rtc_token(id, cert, "check", 0, 60)
                .map_err(|e| format!("Agora configuration: {e}"))?;
        }
        for url in &self.turn_urls {
            if !(url.starts_with("turn:") || url.starts_with("turns:") || url.starts_with("stun:"))
            {
                return Err(format!(
                    "turn url {url:?} must start with turn:, turns: or stun:"
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Whether this node runs as part of a cluster.
    pub fn clustered(&self) -> bool {
        self.redis_url.is_some()
    }

    /// A cluster needs every node to share what one process keeps to itself today: the store,
    /// the keys tokens are checked with, and the TURN secret credentials are minted with.
    fn validate_cluster(&self) -> Result<(), String> {
        let Some(url) = &self.redis_url else {
            return Ok(());
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err("redis url must start with redis:// or rediss://".into());
        }
        let mut missing = Vec::new();
        if self.database_url.is_none() {
            missing.push("a PostgreSQL store (VCHAT_DATABASE_URL): SQLite is one node's file");
        }
        if self.jwt_secret.is_none() && self.jwt_public_key.is_none() && self.jwt_jwks_url.is_none()
        {
            missing.push(
                "a shared token key (VCHAT_JWT_SECRET, VCHAT_JWT_PUBLIC_KEY or VCHAT_JWT_JWKS_URL): \
                 a generated one differs per node",
            );
        }
        if self.turn_secret.is_none() {
            missing.push("a shared TURN secret (VCHAT_TURN_SECRET): a random one differs per node");
        }
        if self.dev {
            missing.push("no --dev: development tokens are for one laptop");
        }
        if !missing.is_empty() {
            return Err(format!(
                "cluster mode (VCHAT_REDIS_URL) is refused; it needs {}",
                missing.join("; ")
            ));
        }
        if let Some(id) = &self.node_id {
            if id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(format!(
                    "node id {id:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
                ));
            }
        }
        if self.node_ttl_ms < 500 {
            return Err("node ttl must be at least 500 ms".into());
        }
        if !matches!(self.call_placement.as_str(), "caller" | "request") {
            return Err(format!(
                "call placement must be caller or request, got {:?}",
                self.call_placement
            ));
        }
        Ok(())
    }
}

/// Server options as flags; each also reads its `VCHAT_*` environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the options below (snake_case keys, e.g. `call_timeout_ms = 20000`).
    #[arg(long, env = "VCHAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address for HTTP and Socket.IO [default: 127.0.0.1:3000]
    #[arg(long, env = "VCHAT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (SQLite database, development secret) [default: ./data]
    #[arg(long, env = "VCHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret for access tokens [default: generated once, kept in the data dir]
    #[arg(long, env = "VCHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key file (RS256/ES256) of the auth server issuing tokens
    #[arg(long, env = "VCHAT_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// SQLite durability: full (survives power loss) or normal (survives crashes) [default: full]
    #[arg(long, env = "VCHAT_DB_SYNC")]
    pub db_sync: Option<String>,
    /// Ring timeout in milliseconds [default: 30000]
    #[arg(long, env = "VCHAT_CALL_TIMEOUT_MS")]
    pub call_timeout_ms: Option<u64>,
    /// Grace before a ringing call whose caller device disconnected is canceled, ms [default: 5000]
    #[arg(long, env = "VCHAT_CALLER_GRACE_MS")]
    pub caller_grace_ms: Option<u64>,
    /// Grace before a call whose party device disconnected is finished, ms [default: 30000]
    #[arg(long, env = "VCHAT_RECONNECT_GRACE_MS")]
    pub reconnect_grace_ms: Option<u64>,
    /// Close a connection whose writes made no progress this long (client not reading), ms
    /// [default: 20000]
    #[arg(long, env = "VCHAT_SEND_STALL_MS")]
    pub send_stall_ms: Option<u64>,
    /// Longest a call may run before the server finishes it, ms [default: 43200000 (12 h)]
    #[arg(long, env = "VCHAT_MAX_CALL_MS")]
    pub max_call_ms: Option<u64>,
    /// tracing filter [default: info]
    #[arg(long, env = "VCHAT_LOG")]
    pub log: Option<String>,
    /// Log lines as text or json (one object per line, with the call's meet_id and user on call lines) [default: text]
    #[arg(long, env = "VCHAT_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// TURN REST shared secret (coturn static-auth-secret) [default: random per run]
    #[arg(long, env = "VCHAT_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Comma-separated turn:/turns:/stun: URLs for clients [default: the embedded TURN server]
    #[arg(long, env = "VCHAT_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Option<Vec<String>>,
    /// TURN credential lifetime in seconds, at most 86400 [default: 14400]
    #[arg(long, env = "VCHAT_TURN_TTL")]
    pub turn_ttl: Option<u64>,
    /// UDP listen address of the embedded TURN server [default: 127.0.0.1:3478]
    #[arg(long, env = "VCHAT_TURN_LISTEN")]
    pub turn_listen: Option<SocketAddr>,
    /// Realm of the embedded TURN server [default: vchat]
    #[arg(long, env = "VCHAT_TURN_REALM")]
    pub turn_realm: Option<String>,
    /// Address put in relayed candidates by the embedded TURN server [default: the TURN listen IP]
    #[arg(long, env = "VCHAT_TURN_RELAY_IP")]
    pub turn_relay_ip: Option<std::net::IpAddr>,
    /// Relay port range of the embedded TURN server, MIN-MAX [default: 49152-65535]
    #[arg(long, env = "VCHAT_TURN_PORT_RANGE")]
    pub turn_port_range: Option<String>,
    /// Do not start the embedded TURN server (ops run their own coturn)
    #[arg(long, env = "VCHAT_NO_EMBEDDED_TURN", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_embedded_turn: bool,
    /// CIDRs the embedded TURN server may relay to despite refusing private/loopback peers
    #[arg(long, env = "VCHAT_TURN_ALLOWED_PEERS", value_delimiter = ',')]
    pub turn_allowed_peers: Option<Vec<String>>,
    /// Live TURN allocations per user; 0: unlimited [default: 10]
    #[arg(long, env = "VCHAT_TURN_MAX_ALLOCATIONS_PER_USER")]
    pub turn_max_allocations_per_user: Option<usize>,
    /// Live TURN allocations in all; 0: unlimited [default: 10000]
    #[arg(long, env = "VCHAT_TURN_MAX_ALLOCATIONS")]
    pub turn_max_allocations: Option<usize>,
    /// PostgreSQL URL (postgres://user@host/db) [default: SQLite in the data dir]
    #[arg(long, env = "VCHAT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// How long a database write waits for the lock before failing, ms [default: 10000]
    #[arg(long, env = "VCHAT_DB_BUSY_TIMEOUT_MS")]
    pub db_busy_timeout_ms: Option<u64>,
    /// Redis URL: run as one node of a cluster (needs a PostgreSQL database URL, a shared JWT
    /// secret or public key, and a shared TURN secret) [default: single process]
    #[arg(long, env = "VCHAT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This node's id [default: generated at start]
    #[arg(long, env = "VCHAT_NODE_ID")]
    pub node_id: Option<String>,
    /// Prefix of Redis keys and channels [default: vchat]
    #[arg(long, env = "VCHAT_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// A node silent this long is dead and its calls are taken over, ms [default: 3000]
    #[arg(long, env = "VCHAT_NODE_TTL_MS")]
    pub node_ttl_ms: Option<u64>,
    /// Which node runs a new call: caller (the one holding the caller's socket) or request (the one the request reached) [default: caller]
    #[arg(long, env = "VCHAT_CALL_PLACEMENT")]
    pub call_placement: Option<String>,
    /// Audience (`aud`) external tokens must carry [default: not checked]
    #[arg(long, env = "VCHAT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Issuer (`iss`) external tokens must carry [default: not checked]
    #[arg(long, env = "VCHAT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// JWKS URL of an auth server that rotates keys (Firebase Auth, Keycloak, Auth0)
    #[arg(long, env = "VCHAT_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Least seconds between JWKS refetches on unknown key ids [default: 30]
    #[arg(long, env = "VCHAT_JWT_JWKS_MIN_REFRESH_SECS")]
    pub jwt_jwks_min_refresh_secs: Option<u64>,
    /// Shared key of the V Chat SDK's sign-in hash; enables POST auth/connect
    #[arg(long, env = "VCHAT_ENCRYPT_HASH_KEY", hide_env_values = true)]
    pub encrypt_hash_key: Option<String>,
    /// Lifetime of tokens issued by auth/connect: 90d, 12h, 3600 … [default: 90d]
    #[arg(long, env = "VCHAT_SESSION_TTL")]
    pub session_ttl: Option<String>,
    /// Failed sign-ins per identifier in the window before 429 [default: 10]
    #[arg(long, env = "VCHAT_SIGNIN_MAX_FAILURES_PER_IDENTIFIER")]
    pub signin_max_failures_per_identifier: Option<u32>,
    /// Failed sign-ins per client address in the window before 429 [default: 50]
    #[arg(long, env = "VCHAT_SIGNIN_MAX_FAILURES_PER_ADDRESS")]
    pub signin_max_failures_per_address: Option<u32>,
    /// The failed sign-in window, seconds [default: 900]
    #[arg(long, env = "VCHAT_SIGNIN_FAILURE_WINDOW_SECS")]
    pub signin_failure_window_secs: Option<u64>,
    /// Public base URL (e.g. https://chat.example.com) file URLs are built under [default: from the listen address]
    #[arg(long, env = "VCHAT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest profile image accepted, bytes [default: 5242880]
    #[arg(long, env = "VCHAT_MAX_IMAGE_BYTES")]
    pub max_image_bytes: Option<u64>,
    /// Largest file of a media message, bytes [default: 104857600]
    #[arg(long, env = "VCHAT_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Most members a group may have [default: 1024]
    #[arg(long, env = "VCHAT_MAX_GROUP_MEMBERS")]
    pub max_group_members: Option<u64>,
    /// Where uploaded files live: file:///absolute/dir or s3://bucket/prefix (endpoint, region and keys from the standard AWS_* variables) [default: <data dir>/media]
    #[arg(long, env = "VCHAT_MEDIA_STORE")]
    pub media_store: Option<String>,
    /// Provider of device push keys: fcm or onesignal [default: none]
    #[arg(long, env = "VCHAT_PUSH_PROVIDER")]
    pub push_provider: Option<String>,
    /// Google service-account JSON file for FCM HTTP v1
    #[arg(long, env = "VCHAT_FCM_SERVICE_ACCOUNT")]
    pub fcm_service_account: Option<PathBuf>,
    /// FCM API base URL [default: https://fcm.googleapis.com]
    #[arg(long, env = "VCHAT_FCM_ENDPOINT")]
    pub fcm_endpoint: Option<String>,
    /// OAuth2 token URL for FCM [default: the service account's token_uri]
    #[arg(long, env = "VCHAT_FCM_TOKEN_URI")]
    pub fcm_token_uri: Option<String>,
    /// OneSignal app id
    #[arg(long, env = "VCHAT_ONESIGNAL_APP_ID")]
    pub onesignal_app_id: Option<String>,
    /// OneSignal REST API key
    #[arg(long, env = "VCHAT_ONESIGNAL_API_KEY", hide_env_values = true)]
    pub onesignal_api_key: Option<String>,
    /// OneSignal create-notification URL [default: https://api.onesignal.com/notifications]
    #[arg(long, env = "VCHAT_ONESIGNAL_ENDPOINT")]
    pub onesignal_endpoint: Option<String>,
    /// Webhook receiving every push (your own push service)
    #[arg(long, env = "VCHAT_PUSH_WEBHOOK_URL")]
    pub push_webhook_url: Option<String>,
    /// HMAC-SHA256 key signing webhook bodies (header X-VChat-Signature)
    #[arg(long, env = "VCHAT_PUSH_WEBHOOK_SECRET", hide_env_values = true)]
    pub push_webhook_secret: Option<String>,
    /// Agora app id (Gen-B calls through Agora)
    #[arg(long, env = "VCHAT_AGORA_APP_ID")]
    pub agora_app_id: Option<String>,
    /// Agora app certificate
    #[arg(long, env = "VCHAT_AGORA_APP_CERTIFICATE", hide_env_values = true)]
    pub agora_app_certificate: Option<String>,
    /// Agora RTC token lifetime, seconds [default: 86400]
    #[arg(long, env = "VCHAT_AGORA_TOKEN_TTL")]
    pub agora_token_ttl: Option<u64>,
    /// Bearer token required to read /metrics [default: open]
    #[arg(long, env = "VCHAT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Serve /metrics on this address instead of the main one
    #[arg(long, env = "VCHAT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Call creates per caller per minute; 0: off [default: 10]
    #[arg(long, env = "VCHAT_MAX_CALLS_PER_MINUTE")]
    pub max_calls_per_minute: Option<u32>,
    /// Unanswered calls in a row to one callee before a cool-down; 0: off [default: 3]
    #[arg(long, env = "VCHAT_MAX_UNANSWERED_CALLS")]
    pub max_unanswered_calls: Option<u32>,
    /// Cool-down after too many unanswered calls, seconds [default: 600]
    #[arg(long, env = "VCHAT_UNANSWERED_COOL_DOWN_SECS")]
    pub unanswered_cool_down_secs: Option<u64>,
    /// Messages per user per 10 s; 0: off [default: 50]
    #[arg(long, env = "VCHAT_MAX_MESSAGES_PER_10S")]
    pub max_messages_per_10s: Option<u32>,
    /// Socket events per socket per second (bursts of twice that); 0: off [default: 100]
    #[arg(long, env = "VCHAT_MAX_EVENTS_PER_SECOND")]
    pub max_events_per_second: Option<u32>,
    /// REST requests and connects per client address per second; 0: off [default: 100]
    #[arg(long, env = "VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND")]
    pub max_requests_per_address_per_second: Option<u32>,
    /// Live sockets per user; 0: off [default: 20]
    #[arg(long, env = "VCHAT_MAX_SOCKETS_PER_USER")]
    pub max_sockets_per_user: Option<usize>,
    /// Live sockets per client address; 0: off [default: 2000]
    #[arg(long, env = "VCHAT_MAX_SOCKETS_PER_ADDRESS")]
    pub max_sockets_per_address: Option<usize>,
    /// Comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed [default: none]
    #[arg(long, env = "VCHAT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Development mode: anyone can get a token for a name they pick (never in production)
    #[arg(long, env = "VCHAT_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,
    /// Allow --dev even when a JWT secret, public key or JWKS is configured
    #[arg(long, env = "VCHAT_DEV_FORCE", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_force: bool,
    /// Serve the web client from this directory (for working on it) instead of the built-in copy
    #[arg(long, env = "VCHAT_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// Defaults, then the file, then env and flags (clap merged those two already).
    pub fn resolve(&self) -> Result<Config, String> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<Config>(&text)
                    .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field { c.$field = v.clone().into(); }
            )*};
        }
        overlay!(
            listen,
            data_dir,
            db_sync,
            call_timeout_ms,
            caller_grace_ms,
            reconnect_grace_ms,
            send_stall_ms,
            max_call_ms,
            log,
            log_format,
            turn_urls,
            turn_ttl,
            turn_listen,
            turn_realm,
            turn_port_range
        );
        overlay!(
            turn_allowed_peers,
            turn_max_allocations_per_user,
            turn_max_allocations,
            max_calls_per_minute,
            max_unanswered_calls,
            unanswered_cool_down_secs,
            max_messages_per_10s,
            max_events_per_second,
            max_requests_per_address_per_second,
            max_sockets_per_user,
            max_sockets_per_address,
            trusted_proxies,
            db_busy_timeout_ms,
            redis_prefix,
            node_ttl_ms,
            call_placement,
            jwt_jwks_min_refresh_secs,
            signin_max_failures_per_identifier,
            signin_max_failures_per_address,
            signin_failure_window_secs,
            max_image_bytes,
            max_upload_bytes,
            max_group_members
        );
        macro_rules! overlay_opt {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field { c.$field = Some(v.clone()); }
            )*};
        }
        overlay_opt!(
            database_url,
            redis_url,
            node_id,
            turn_relay_ip,
            jwt_audience,
            jwt_issuer,
            jwt_jwks_url,
            encrypt_hash_key,
            public_url,
            media_store,
            push_provider,
            fcm_service_account,
            fcm_endpoint,
            fcm_token_uri,
            onesignal_app_id,
            onesignal_api_key,
            onesignal_endpoint,
            push_webhook_url,
            push_webhook_secret,
            agora_app_id,
            agora_app_certificate,
            metrics_token,
            metrics_listen
        );
        if let Some(v) = &self.session_ttl {
            c.session_ttl_secs = parse_duration_secs(v).map_err(|e| format!("session ttl: {e}"))?;
        }
        if let Some(v) = self.agora_token_ttl {
            c.agora_token_ttl_secs = v;
        }
        if let Some(url) = &mut c.public_url {
            while url.ends_with('/') {
                url.pop();
            }
        }
        if let Some(v) = &self.jwt_secret {
            c.jwt_secret = Some(v.clone());
        }
        if let Some(v) = &self.jwt_public_key {
            c.jwt_public_key = Some(v.clone());
        }
        if let Some(v) = &self.turn_secret {
            c.turn_secret = Some(v.clone());
        }
        if self.no_embedded_turn {
            c.embedded_turn = false;
        }
        if self.dev {
            c.dev = true;
        }
        if self.dev_force {
            c.dev_force = true;
        }
        if let Some(d) = &self.web_dir {
            c.web_dir = Some(d.clone());
        }
        c.turn_urls.retain(|u| !u.trim().is_empty());
        c.trusted_proxies = c
            .trusted_proxies
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_in_order() {
        let dir = std::env::temp_dir().join(format!("vchat-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "call_timeout_ms = 1234\nlog = \"debug\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            log: Some("warn".into()),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.call_timeout_ms, 1234, "file beats default");
        assert_eq!(c.log, "warn", "flag/env beats file");
        assert_eq!(c.listen, Config::default().listen);
    }

    #[test]
    fn bad_values_are_refused() {
        let args = ServeArgs {
            turn_ttl: Some(MAX_TURN_TTL + 1),
            ..Default::default()
        };
        assert!(args.resolve().unwrap_err().contains("turn ttl"));
        let args = ServeArgs {
            turn_urls: Some(vec!["http://x".into()]),
            ..Default::default()
        };
        assert!(args.resolve().unwrap_err().contains("turn url"));
        let args = ServeArgs {
            turn_port_range: Some("9-3".into()),
            ..Default::default()
        };
        assert!(args.resolve().unwrap_err().contains("port range"));
        let args = ServeArgs {
            turn_listen: Some("0.0.0.0:3478".parse().unwrap()),
            ..Default::default()
        };
        assert!(args.resolve().unwrap_err().contains("relay ip"));
    }
}
