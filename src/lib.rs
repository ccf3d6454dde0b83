//! vchat-signal: call signaling and text chat for V Chat SDK clients.
//!
//! [`start`] builds the whole server from a [`Config`] and runs it on its listen address (port 0
//! picks a free one, which is how the tests run it).

pub mod app;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod config;
pub mod http;
pub mod ice;
pub mod ids;
pub mod metrics;
pub mod realtime;
pub mod store;
pub mod wire;

pub use app::{start, App, Server};
pub use config::Config;

/// The embedded TURN server crate, re-exported for tools and tests.
pub use vchat_turn;
