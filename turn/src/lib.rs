//! `vchat-turn`: an embedded TURN server for vchat, built on the webrtc-rs
//! [`turn`] crate.
//!
//! * [`mint_credentials`] creates coturn-compatible time-limited TURN
//!   credentials (the "TURN REST API" / `use-auth-secret` scheme).
//! * [`SecretAuthHandler`] validates such credentials inside the server.
//! * [`start`] runs a UDP TURN server and returns a [`TurnServer`] handle that
//!   exposes the bound address, relay statistics and a graceful `close`.
//!
//! The same credentials are accepted by coturn configured with
//! `use-auth-secret` + `static-auth-secret` (see `coturn/turnserver.conf`).

mod auth;
mod credentials;
mod server;

pub use auth::SecretAuthHandler;
pub use credentials::{mint_credentials, password_for, Credentials};
pub use server::{start, AllocationStat, Error, TurnConfig, TurnServer};

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
