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
    /// A call still running after this long is finished by the server.
    pub max_call_ms: u64,
    /// tracing filter, e.g. `info` or `vchat_signal=debug`.
    pub log: String,
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
            max_call_ms: 12 * 3600 * 1000,
            log: "info".into(),
            turn_secret: None,
            turn_urls: Vec::new(),
            turn_ttl: 4 * 3600,
            embedded_turn: true,
            turn_listen: "127.0.0.1:3478".parse().expect("valid default"),
            turn_realm: "vchat".into(),
            turn_relay_ip: None,
            turn_port_range: "49152-65535".into(),
        }
    }
}

/// Longest TURN credential lifetime we mint; longer-lived secrets leak for longer.
pub const MAX_TURN_TTL: u64 = 24 * 3600;

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
    /// Longest a call may run before the server finishes it, ms [default: 43200000 (12 h)]
    #[arg(long, env = "VCHAT_MAX_CALL_MS")]
    pub max_call_ms: Option<u64>,
    /// tracing filter [default: info]
    #[arg(long, env = "VCHAT_LOG")]
    pub log: Option<String>,
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
            max_call_ms,
            log,
            turn_urls,
            turn_ttl,
            turn_listen,
            turn_realm,
            turn_port_range
        );
        if let Some(v) = self.turn_relay_ip {
            c.turn_relay_ip = Some(v);
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
        c.turn_urls.retain(|u| !u.trim().is_empty());
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
