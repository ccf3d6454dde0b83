//! The one door out to sockets. Every payload leaves as a single JSON *string* argument, as
//! V Chat clients `jsonDecode` what they receive. Call events go through the `call_*` methods,
//! which keep events for a call device that is within its grace (see [`Outboxes`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use socketioxide::socket::Sid;

use super::delivered::{ConnectedAt, Delivered};
use super::listening::Listening;
use super::outbox::{Offer, Outboxes};
use super::presence::{is_socket_device, Presence};
use super::remote::{self, count_full, move_here, Reach, Remote};
use super::room_names::chat_room;
use crate::cluster::driver::{Adapter, Io};
use crate::cluster::link::Cluster;

#[derive(Clone)]
pub struct Notifier {
    io: Io,
    pub presence: Arc<Presence>,
    pub outbox: Arc<Outboxes>,
    /// Cluster mode: the queue to the task that reaches other nodes.
    remote: Option<remote::Queue>,
    /// Events not sent because the socket's send buffer was full (a client not reading).
    pub dropped: Counter,
    /// Bus messages from other nodes for sockets here (events, closes).
    pub peer_emits: Counter,
    /// Cluster mode: whether Redis answers, and what was not sent while it did not.
    pub reach: Reach,
    /// Cluster mode: the chat rooms' channels this node listens to.
    pub listening: Option<Listening>,
    /// Room emits other nodes sent on room channels, read here (cluster mode).
    pub room_emits: Counter,
    /// Cluster mode: times this node's sockets' rooms were read from the store again, once its
    /// subscription to the other nodes was back (or it was back from being taken for dead).
    pub rooms_reread: Counter,
    /// Cluster mode: chat messages sent again to this node's sockets after it was cut off from
    /// Redis (see `chat::replay`).
    pub messages_replayed: Counter,
    /// Cluster mode: the chat messages this node's sockets got lately.
    pub delivered: Arc<Delivered>,
    cluster: Option<Arc<Cluster>>,
    /// Membership changes seen here, counted by user (in stripes: two users may share one),
    /// so that a read of a user's rooms (a connect's, a reread's) can tell whether one raced it.
    changes: Arc<[AtomicU64]>,
    /// Rereads of every user's rooms begun (see `membership::reread_all`): a change for any
    /// user, as far as a read racing one can tell.
    rereads: Arc<AtomicU64>,
}

type SocketRef = socketioxide::extract::SocketRef<Adapter>;

/// Stripes of [`Notifier::changes`]: a shared stripe costs a connect one more store read.
const CHANGE_STRIPES: usize = 1024;

fn stripe(user: &str) -> usize {
    let h = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % CHANGE_STRIPES as u64) as usize
}

pub fn encode<T: Serialize + ?Sized>(payload: &T) -> String {
    serde_json::to_string(payload).expect("wire types serialize")
}

impl Notifier {
    pub fn new(
        io: Io,
        presence: Arc<Presence>,
        outbox: Arc<Outboxes>,
        cluster: Option<Arc<Cluster>>,
        adapter: Option<redis::aio::ConnectionManager>,
    ) -> Self {
        let dropped = Counter::default();
        let reach = Reach::default();
        let remote = cluster.clone().map(|cluster| {
            remote::start(io.clone(), cluster, adapter, dropped.clone(), reach.clone())
        });
        let listening = cluster
            .clone()
            .map(|cluster| Listening::start(io.clone(), cluster, reach.clone()));
        Notifier {
            io,
            presence,
            outbox,
            remote,
            dropped,
            peer_emits: Counter::default(),
            reach,
            listening,
            room_emits: Counter::default(),
            rooms_reread: Counter::default(),
            messages_replayed: Counter::default(),
            delivered: Arc::default(),
            cluster,
            changes: (0..CHANGE_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            rereads: Arc::default(),
        }
    }

    pub fn io(&self) -> &Io {
        &self.io
    }

    /// Sends already-encoded text to each socket that is still there (on this node, or, in a
    /// cluster, on whichever node holds it).
    pub fn send_text(&self, sids: &[Sid], event: &str, text: &str) {
        if self.remote.is_none() {
            for sid in sids {
                if let Some(s) = self.io.get_socket(*sid) {
                    count_full(s.emit(event, text), &self.dropped);
                }
            }
            return;
        }
        let (here, elsewhere): (Vec<Sid>, Vec<Sid>) = sids
            .iter()
            .partition(|sid| self.io.get_socket(**sid).is_some());
        if !here.is_empty() {
            self.send_remote(Remote::Local {
                sids: here,
                event: event.to_string(),
                text: text.to_string(),
            });
        }
        if !elsewhere.is_empty() {
            self.send_remote(Remote::Elsewhere {
                sids: elsewhere
                    .into_iter()
                    .map(|sid| (sid, self.presence.run_of(sid)))
                    .collect(),
                event: event.to_string(),
                text: text.to_string(),
            });
        }
    }

    fn send_remote(&self, r: Remote) {
        if let Some(queue) = &self.remote {
            queue.send(r);
        }
    }

    /// Encodes once, sends to each socket that is still there.
    pub fn to_sockets<T: Serialize + ?Sized>(&self, sids: &[Sid], event: &str, payload: &T) {
        if sids.is_empty() {
            return;
        }
        self.send_text(sids, event, &encode(payload));
    }

    pub fn to_socket<T: Serialize + ?Sized>(&self, sid: Sid, event: &str, payload: &T) {
        self.to_sockets(&[sid], event, payload)
    }

    /// Every device of the user.
    pub fn to_user<T: Serialize + ?Sized>(&self, user: &str, event: &str, payload: &T) {
        self.to_sockets(&self.presence.sockets(user), event, payload)
    }

    /// A call event for every device of the user; a device within its grace keeps it.
    pub fn call_to_user<T: Serialize + ?Sized>(
        &self,
        user: &str,
        event: &'static str,
        payload: &T,
    ) {
        let text = encode(payload);
        let held = self.outbox.offer_user(user, event, &text);
        let sids = if held.is_empty() {
            self.presence.sockets(user)
        } else {
            self.presence
                .sockets_where(user, |d| !held.iter().any(|h| h == d))
        };
        self.send_text(&sids, event, &text);
    }

    /// A call event for one device (`UNBOUND`: every socket of the user without a `did`); a
    /// device within its grace keeps it.
    pub fn call_to_device<T: Serialize + ?Sized>(
        &self,
        user: &str,
        device: &str,
        event: &'static str,
        payload: &T,
    ) {
        let text = encode(payload);
        if device.is_empty() {
            let sids = self.presence.sockets_where(user, is_socket_device);
            self.send_text(&sids, event, &text);
            return;
        }
        if self.outbox.offer(user, device, event, &text) == Offer::SendNow {
            let sids = self.presence.sockets_where(user, |d| d == device);
            self.send_text(&sids, event, &text);
        }
    }

    /// Every device of the user but the one that acted (`UNBOUND`: every device that has a
    /// `did`; the user's own sockets without one wait until one of them claims the call).
    pub fn to_other_devices<T: Serialize + ?Sized>(
        &self,
        user: &str,
        device: &str,
        event: &str,
        payload: &T,
    ) {
        let sids = if device.is_empty() {
            self.presence.sockets_where(user, |d| !is_socket_device(d))
        } else {
            self.presence.sockets_where(user, |d| d != device)
        };
        self.to_sockets(&sids, event, payload)
    }

    /// The user's other sockets without a `did`, once one of them claimed the call.
    pub fn to_other_socket_devices<T: Serialize + ?Sized>(
        &self,
        user: &str,
        device: &str,
        event: &str,
        payload: &T,
    ) {
        let sids = self
            .presence
            .sockets_where(user, |d| is_socket_device(d) && d != device);
        self.to_sockets(&sids, event, payload)
    }

    /// Every member socket of a chat room (on every node).
    pub async fn to_room<T: Serialize + ?Sized>(&self, room: &str, event: &str, payload: &T) {
        let text = encode(payload);
        if self.remote.is_some() {
            self.send_remote(Remote::Emit {
                room: room.to_string(),
                event: event.to_string(),
                text,
            });
            return;
        }
        let _ = self.io.local().to(chat_room(room)).emit(event, &text).await;
    }

    /// A chat message is being posted on this node, to be stored and then announced to its
    /// room (cluster mode: remembered, so that a replay does not send it again; see
    /// [`Delivered`]).
    pub fn posting_message(&self, room: &str, local_id: &str) {
        if self.remote.is_some() {
            self.delivered.posting(room, local_id);
        }
    }

    /// The post stored the message (its emit follows), or not (a retry).
    pub fn posted_message(&self, room: &str, local_id: &str, stored: bool) {
        if self.remote.is_some() {
            self.delivered.posted(room, local_id, stored);
        }
    }

    /// The member sockets of a chat room on this node whose connect was done before `at` (an
    /// `ids::now_iso` time).
    pub fn room_sockets_before(&self, room: &str, at: &str) -> Vec<SocketRef> {
        let Some(here) = remote::here(&self.io) else {
            return Vec::new();
        };
        let mut sockets = here.to(chat_room(room)).sockets();
        sockets.retain(|s| {
            s.extensions
                .get::<ConnectedAt>()
                .is_some_and(|c| c.0.as_str() < at)
        });
        sockets
    }

    /// Sends already-encoded text to these sockets of this node.
    pub fn emit_to(&self, sockets: &[SocketRef], event: &str, text: &str) {
        for s in sockets {
            count_full(s.emit(event, text), &self.dropped);
        }
    }

    /// Membership gained: the user's live sockets join the room at once.
    pub async fn join_room(&self, user: &str, room: &str) {
        self.memberships(&[user], room, true).await
    }

    /// Membership gained by several users at once (a group made, members added): their changes
    /// go out back to back, and the other nodes' answers are waited for together.
    pub async fn join_room_all(&self, users: &[&str], room: &str) {
        self.memberships(users, room, true).await
    }

    /// Membership lost (or closed by a ban): the user's live sockets leave the room at once.
    pub async fn leave_room(&self, user: &str, room: &str) {
        self.memberships(&[user], room, false).await
    }

    /// Membership lost by several users at once.
    pub async fn leave_room_all(&self, users: &[&str], room: &str) {
        self.memberships(users, room, false).await
    }

    /// Addressed to each user's own room, which every socket joins before its client hears it
    /// is connected, rather than to the sockets presence knows: presence learns of a socket
    /// only after that (and, in a cluster, of a socket on another node later still), so a
    /// member who left right after connecting would otherwise keep hearing the room. Returns
    /// once the changes are made here and, in a cluster, on every node that answers (each
    /// listening to the room's channel by then, for a join), so a room emit sent after it
    /// reaches (or no longer reaches) the users' sockets everywhere.
    async fn memberships(&self, users: &[&str], room: &str, join: bool) {
        for user in users {
            self.changed(user);
        }
        let Some(tx) = &self.remote else {
            for user in users {
                move_here(&self.io, user, room, join);
            }
            return;
        };
        let mut moving = Vec::with_capacity(users.len());
        for user in users {
            let (done, moved) = tokio::sync::oneshot::channel();
            tx.send(Remote::Membership {
                user: user.to_string(),
                room: room.to_string(),
                join,
                done,
            });
            moving.push(moved);
        }
        let (mut here, mut awaited) = (false, Vec::new());
        for moved in moving {
            if let Ok(m) = moved.await {
                here |= m.here;
                awaited.extend(m.awaited);
            }
        }
        if let Some(listening) = &self.listening {
            if join && here {
                listening.ensure(vec![room.to_string()]).await;
            } else if !join {
                listening.maybe_unused(vec![room.to_string()]);
            }
        }
        if let Some(cluster) = &self.cluster {
            let silent = cluster.answered(awaited).await;
            if !silent.is_empty() {
                tracing::warn!(
                    ?silent,
                    room,
                    users = users.len(),
                    join,
                    "nodes did not confirm a room membership change"
                );
            }
        }
    }

    /// How many membership changes of this user (or of a user sharing its stripe) this node
    /// has seen, plus the rereads of every user's rooms begun. Counted after the change is
    /// stored and before sockets are moved: a read of the user's rooms that sees this move
    /// between its start and the moment its result is applied may have raced a change (or a
    /// reread's fresher read), and reads the rooms again.
    pub fn membership_changes(&self, user: &str) -> u64 {
        self.changes[stripe(user)].load(Ordering::SeqCst) + self.rereads.load(Ordering::SeqCst)
    }

    /// A reread of every user's rooms begins: reads under way are read again.
    pub fn rereading(&self) {
        self.rereads.fetch_add(1, Ordering::SeqCst);
    }

    fn changed(&self, user: &str) {
        self.changes[stripe(user)].fetch_add(1, Ordering::SeqCst);
    }

    /// Whether this socket currently sits in the chat room (membership as the gateway knows it).
    pub fn socket_in_room(&self, sid: Sid, room: &str) -> bool {
        let name = chat_room(room);
        self.io
            .get_socket(sid)
            .is_some_and(|s| s.rooms().iter().any(|r| *r == name))
    }

    /// Closes the sockets of one device (logout, or its token expired).
    pub fn disconnect_device(&self, user: &str, device: &str) -> usize {
        let sids = self.presence.sockets_where(user, |d| d == device);
        for sid in &sids {
            if self.remote.is_some() {
                self.send_remote(Remote::Disconnect(*sid, self.presence.run_of(*sid)));
            } else if let Some(s) = self.io.get_socket(*sid) {
                let _ = s.disconnect();
            }
        }
        sids.len()
    }
}

/// What other nodes send over the bus for sockets here (cluster mode). Called in the order
/// the bus delivers, so one node's events for a socket arrive in the order it sent them.
impl Notifier {
    /// An event for sockets on this node.
    pub fn from_peer(&self, sids: &[String], event: &str, text: &str) {
        self.peer_emits.inc();
        for s in sids.iter().filter_map(|sid| self.socket_named(sid)) {
            count_full(s.emit(event, text), &self.dropped);
        }
    }

    /// A room emit another node sent on the room's channel: for the room's sockets here.
    pub fn from_peer_room(&self, room: &str, event: &str, text: &str) {
        self.room_emits.inc();
        if event == crate::wire::events::ON_NEW_MESSAGE {
            #[derive(serde::Deserialize)]
            struct LocalId<'a> {
                #[serde(rename = "lId", borrow)]
                local_id: std::borrow::Cow<'a, str>,
            }
            // Sent already by a replay after a break (see `Delivered`).
            if let Ok(m) = serde_json::from_str::<LocalId>(text) {
                if !self.delivered.arrives(room, &m.local_id) {
                    return;
                }
            }
        }
        let Some(here) = remote::here(&self.io) else {
            return;
        };
        for s in here.to(chat_room(room)).sockets() {
            count_full(s.emit(event, text), &self.dropped);
        }
    }

    /// Another node changed a user's membership of a chat room: the user's sockets here join
    /// or leave it now, in the order the bus delivers (before the room emits sent after it).
    /// Returns whether this node now has to listen to the room's channel.
    pub fn member_from_peer(&self, user: &str, room: &str, join: bool) -> bool {
        self.changed(user);
        let here = move_here(&self.io, user, room, join);
        if !join {
            if let Some(listening) = &self.listening {
                listening.maybe_unused(vec![room.to_string()]);
            }
        }
        join && here
    }

    /// Closes a socket on this node.
    pub fn from_peer_kick(&self, sid: &str) {
        self.peer_emits.inc();
        if let Some(s) = self.socket_named(sid) {
            let _ = s.disconnect();
        }
    }

    /// A socket of this node by the id another node wrote.
    fn socket_named(&self, sid: &str) -> Option<socketioxide::extract::SocketRef<Adapter>> {
        self.io.get_socket(sid.parse().ok()?)
    }
}
