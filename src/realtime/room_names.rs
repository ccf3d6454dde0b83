//! The Socket.IO rooms sockets sit in, by name. Prefixed so that a user id, a chat room id and
//! a socket id can never collide.

use socketioxide::socket::Sid;

/// Socket.IO room holding every socket of a user (all devices).
pub fn user_room(user: &str) -> String {
    format!("u:{user}")
}

/// The user a Socket.IO room holds the sockets of, if it is a user's room.
pub fn user_of(socket_room: &str) -> Option<&str> {
    socket_room.strip_prefix("u:")
}

/// Socket.IO room holding the member sockets of a chat room.
pub fn chat_room(room: &str) -> String {
    format!("r:{room}")
}

/// The chat room a Socket.IO room holds the members of, if it is one.
pub fn room_of(socket_room: &str) -> Option<&str> {
    socket_room.strip_prefix("r:")
}

/// Socket.IO room of one socket, so another node can reach it (cluster mode).
pub fn socket_room(sid: Sid) -> String {
    format!("k:{sid}")
}
