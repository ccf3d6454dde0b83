//! vchat-signal: call signaling and text chat for V Chat SDK clients.
//!
//! [`start`] builds the whole server from a [`Config`] and runs it on its listen address (port 0
//! picks a free one, which is how the tests run it).

pub mod account;
pub mod agora;
pub mod app;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod ice;
pub mod ids;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod profile;
pub mod push;
pub mod realtime;
pub mod server;
pub mod store;
pub mod wake;
pub mod wire;

pub use app::App;
pub use config::Config;
pub use server::{start, Server};

/// The embedded TURN server crate, re-exported for tools and tests.
pub use vchat_turn;
