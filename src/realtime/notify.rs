//! The one door out to sockets. Every payload leaves as a single JSON *string* argument, as
//! V Chat clients `jsonDecode` what they receive. Call events go through the `call_*` methods,
//! which keep events for a call device that is within its grace (see [`Outboxes`]).

use std::sync::Arc;

use serde::Serialize;
use socketioxide::socket::Sid;
use socketioxide::SocketIo;

use super::outbox::{Offer, Outboxes};
use super::presence::{is_socket_device, Presence};

/// Socket.IO room holding every socket of a user (all devices).
pub fn user_room(user: &str) -> String {
    format!("u:{user}")
}

/// Socket.IO room holding the member sockets of a chat room. Prefixed so a user id can never
/// collide with a room id.
pub fn chat_room(room: &str) -> String {
    format!("r:{room}")
}

#[derive(Clone)]
pub struct Notifier {
    io: SocketIo,
    pub presence: Arc<Presence>,
    pub outbox: Arc<Outboxes>,
}

pub fn encode<T: Serialize + ?Sized>(payload: &T) -> String {
    serde_json::to_string(payload).expect("wire types serialize")
}

impl Notifier {
    pub fn new(io: SocketIo, presence: Arc<Presence>, outbox: Arc<Outboxes>) -> Self {
        Notifier {
            io,
            presence,
            outbox,
        }
    }

    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Sends already-encoded text to each socket that is still there.
    pub fn send_text(&self, sids: &[Sid], event: &str, text: &str) {
        for sid in sids {
            if let Some(s) = self.io.get_socket(*sid) {
                let _ = s.emit(event, text);
            }
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

    /// Every member socket of a chat room.
    pub async fn to_room<T: Serialize + ?Sized>(&self, room: &str, event: &str, payload: &T) {
        let _ = self
            .io
            .to(chat_room(room))
            .emit(event, &encode(payload))
            .await;
    }

    /// Membership gained: the user's live sockets join the room at once.
    pub fn join_room(&self, user: &str, room: &str) {
        for sid in self.presence.sockets(user) {
            if let Some(s) = self.io.get_socket(sid) {
                s.join(chat_room(room));
            }
        }
    }

    /// Membership lost (or closed by a ban): the user's live sockets leave the room at once.
    pub fn leave_room(&self, user: &str, room: &str) {
        for sid in self.presence.sockets(user) {
            if let Some(s) = self.io.get_socket(sid) {
                s.leave(chat_room(room));
            }
        }
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
            if let Some(s) = self.io.get_socket(*sid) {
                let _ = s.disconnect();
            }
        }
        sids.len()
    }
}
