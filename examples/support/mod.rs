//! Client and server plumbing shared by `examples/bench.rs` and `examples/soak.rs`: the raw
//! Socket.IO client, the REST client, starting vchat-signal, and /proc readings. Each example
//! uses part of it.
#![allow(dead_code)]

pub mod api;
pub mod ceiling;
pub mod nginx;
pub mod plot;
pub mod procfs;
pub mod server;
pub mod sio;
