//! `vchat-turn`: an embedded TURN server for vchat, built on the webrtc-rs
//! [`turn`] crate.
//!
//! * [`mint_credentials`] creates coturn-compatible time-limited TURN
//!   credentials (the "TURN REST API" / `use-auth-secret` scheme).
//! * [`SecretAuthHandler`] validates such credentials inside the server.
//! * [`start`] runs a UDP TURN server and returns a [`TurnServer`] handle that
//!   exposes the bound address, relay statistics, refusal counters
//!   ([`TurnServer::stats`]) and a graceful `close`.
//! * The relay is not an open proxy: peers on loopback (unless allowed),
//!   private, link-local, multicast, broadcast, reserved and unspecified
//!   addresses, this server's own addresses and its listen port are refused
//!   unless [`TurnConfig::allowed_peers`] lists them, and allocations are
//!   capped per user and in total (see [`TurnConfig`]).
//!
//! The same credentials are accepted by coturn configured with
//! `use-auth-secret` + `static-auth-secret` (see `coturn/turnserver.conf`).

mod auth;
mod credentials;
mod guard;
mod policy;
mod server;

pub use auth::SecretAuthHandler;
pub use credentials::{mint_credentials, password_for, Credentials};
pub use guard::TurnStats;
/// Re-exported so callers can build [`TurnConfig::allowed_peers`] without
/// depending on `ipnet` themselves.
pub use ipnet;
pub use policy::{parse_allowed_peers, DenyCounts, DenyReason};
pub use server::{
    start, AllocationStat, Error, TurnConfig, TurnServer, DEFAULT_MAX_ALLOCATIONS,
    DEFAULT_MAX_ALLOCATIONS_PER_USER,
};

/// Parses a relay port range written `MIN-MAX` (inclusive), as flags and config files give it.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let min: u16 = a.trim().parse().map_err(|e| format!("bad MIN: {e}"))?;
    let max: u16 = b.trim().parse().map_err(|e| format!("bad MAX: {e}"))?;
    if min == 0 || min > max {
        return Err(format!("need 1 <= MIN <= MAX, got {min}-{max}"));
    }
    Ok((min, max))
}
