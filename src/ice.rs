//! TURN credentials (coturn `use-auth-secret` scheme) and the ICE server list handed to clients.

use std::time::Duration;

use serde::Serialize;

use crate::auth::now_unix;
use crate::config::Config;

/// Mints short-lived TURN credentials for users.
pub struct IceIssuer {
    /// `None`: no TURN configured; clients get STUN-less, credential-less lists (empty).
    secret: Option<String>,
    urls: Vec<String>,
    ttl: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
    pub ttl: u64,
}

impl IceIssuer {
    pub fn new(secret: Option<String>, urls: Vec<String>, ttl: Duration) -> Self {
        IceIssuer { secret, urls, ttl }
    }

    pub fn for_user(&self, user_id: &str) -> IceServers {
        let mut servers = Vec::new();
        let (turn, stun): (Vec<_>, Vec<_>) = self
            .urls
            .iter()
            .cloned()
            .partition(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        if let (Some(secret), false) = (&self.secret, turn.is_empty()) {
            let c = vchat_turn::mint_credentials(secret, user_id, self.ttl, now_unix());
            servers.push(IceServer {
                urls: turn,
                username: Some(c.username),
                credential: Some(c.password),
            });
        }
        if !stun.is_empty() {
            servers.push(IceServer {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        IceServers {
            ice_servers: servers,
            ttl: self.ttl.as_secs(),
        }
    }
}

/// Starts the embedded TURN server when configured, and decides what clients are told.
pub async fn start_turn(
    config: &Config,
) -> Result<(IceIssuer, Option<vchat_turn::TurnServer>), String> {
    let ttl = Duration::from_secs(config.turn_ttl);
    if !config.embedded_turn {
        if config.turn_secret.is_none() && config.turn_urls.iter().any(|u| !u.starts_with("stun:"))
        {
            tracing::warn!(
                "TURN URLs configured without VCHAT_TURN_SECRET: clients get no TURN credentials"
            );
        }
        return Ok((
            IceIssuer::new(config.turn_secret.clone(), config.turn_urls.clone(), ttl),
            None,
        ));
    }
    let secret = config
        .turn_secret
        .clone()
        .unwrap_or_else(|| crate::ids::random_hex(24));
    let (relay_port_min, relay_port_max) = vchat_turn::parse_port_range(&config.turn_port_range)?;
    let turn_cfg = vchat_turn::TurnConfig {
        listen: config.turn_listen,
        relay_ip: config.turn_relay_ip.unwrap_or(config.turn_listen.ip()),
        realm: config.turn_realm.clone(),
        secret: secret.clone(),
        relay_port_min,
        relay_port_max,
        allowed_peers: vchat_turn::parse_allowed_peers(&config.turn_allowed_peers.join(","))?,
        // Loopback peers only in the laptop setup (TURN listening on loopback).
        allow_loopback_peers: None,
        max_allocations_per_user: config.turn_max_allocations_per_user,
        max_allocations: config.turn_max_allocations,
    };
    let server = vchat_turn::start(turn_cfg).await.map_err(|e| {
        format!(
            "cannot start the embedded TURN server on {}: {e}",
            config.turn_listen
        )
    })?;
    let urls = if config.turn_urls.is_empty() {
        // The embedded server answers STUN too: clients behind NAT learn their public address
        // from it without spending a relay.
        let a = server.local_addr();
        let host = config.turn_relay_ip.unwrap_or(a.ip());
        vec![
            format!("stun:{}:{}", host, a.port()),
            format!("turn:{}:{}?transport=udp", host, a.port()),
        ]
    } else {
        config.turn_urls.clone()
    };
    Ok((IceIssuer::new(Some(secret), urls, ttl), Some(server)))
}
