//! Calls: the pure state machine ([`machine`]), the live-call registry ([`registry`]) and the
//! service that drives both from REST, sockets and timers ([`service`]).

pub mod busy;
pub mod machine;
pub mod registry;
pub mod route;
pub mod service;
pub mod timers;
