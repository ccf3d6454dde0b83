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
