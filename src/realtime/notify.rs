//! The one door out to sockets. Every payload leaves as a single JSON *string* argument, as
//! V Chat clients `jsonDecode` what they receive.

use std::sync::Arc;

use serde::Serialize;
use socketioxide::socket::Sid;
use socketioxide::SocketIo;

use super::presence::Presence;

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
}

fn encode<T: Serialize + ?Sized>(payload: &T) -> String {
    serde_json::to_string(payload).expect("wire types serialize")
}

impl Notifier {
    pub fn new(io: SocketIo, presence: Arc<Presence>) -> Self {
        Notifier { io, presence }
    }

    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Encodes once, sends to each socket that is still there.
    pub fn to_sockets<T: Serialize + ?Sized>(&self, sids: &[Sid], event: &str, payload: &T) {
        if sids.is_empty() {
            return;
        }
        let text = encode(payload);
        for sid in sids {
            if let Some(s) = self.io.get_socket(*sid) {
                let _ = s.emit(event, &text);
            }
        }
    }

    pub fn to_socket<T: Serialize + ?Sized>(&self, sid: Sid, event: &str, payload: &T) {
        self.to_sockets(&[sid], event, payload)
    }

    /// Every device of the user.
    pub fn to_user<T: Serialize + ?Sized>(&self, user: &str, event: &str, payload: &T) {
        self.to_sockets(&self.presence.sockets(user), event, payload)
    }

    /// One device of the user (every socket it has open).
    pub fn to_device<T: Serialize + ?Sized>(
        &self,
        user: &str,
        device: &str,
        event: &str,
        payload: &T,
    ) {
        self.to_sockets(
            &self.presence.device_sockets(user, device, true),
            event,
            payload,
        )
    }

    /// Every device of the user but one.
    pub fn to_other_devices<T: Serialize + ?Sized>(
        &self,
        user: &str,
        device: &str,
        event: &str,
        payload: &T,
    ) {
        self.to_sockets(
            &self.presence.device_sockets(user, device, false),
            event,
            payload,
        )
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
}
