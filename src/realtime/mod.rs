//! The Socket.IO gateway: authentication at the handshake, rooms joined on connect, a per-socket
//! inbox that runs each socket's events in the order they arrived (`inbox`), sockets closed when
//! their token expires (`expiry`), and disconnect cleanup.
//!
//! Event handlers live in [`handlers`], one function per client event.

pub mod delivered;
pub mod expiry;
pub mod gateway;
pub mod handlers;
pub mod inbox;
pub mod listening;
pub mod membership;
pub mod notify;
pub mod outbox;
pub mod presence;
pub mod remote;
pub mod room_names;

pub use gateway::register;
