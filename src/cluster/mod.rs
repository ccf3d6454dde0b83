//! Cluster mode (`VCHAT_REDIS_URL`): several identical nodes behind a load balancer.
//!
//! What is shared, and where:
//! - Socket.IO rooms and emits: socketioxide-redis ([`driver`]); every socket also sits in a
//!   room of its own (`k:<sid>`), so a node can reach one remote socket.
//! - Presence: each node keeps a replica of everyone's sockets, fed by `Up`/`Down` messages
//!   and, at start, by the per-node hashes in Redis. A node's hash expires with its heartbeat,
//!   and a node whose heartbeat lapsed is purged from every replica.
//! - Busy users: `busy:<user>` keys set with NX, so glare across nodes leaves one call.
//! - Calls: each live call is owned by one node (the `node` column), which holds its lock, its
//!   timers and its kept events. Requests about a call go to its owner ([`wire::Request`]); ICE
//!   candidates go without waiting for an answer, in order per call ([`lanes`]); a
//!   call whose owner is dead is claimed by a live node with a compare-and-swap in the store
//!   ([`takeover`]): its ring timeout or max duration follows from the call's stored times,
//!   and its graces keep the deadlines their last owner stored ([`graces`]).

pub mod driver;
pub mod graces;
pub mod lanes;
pub mod link;
pub mod node;
pub mod owners;
pub mod takeover;
pub mod wire;
