//! What nodes say to each other over Redis pub/sub. Presence changes go to every node; a
//! request about a call goes to the node that owns the call, and its answer back to the asker;
//! an event for a socket goes to the node holding the socket.
//! Everything one node publishes leaves on one connection, in order, and every node reads its
//! channels on one subscriber connection, so a node hears a socket arrive before it hears a
//! request that depends on it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Identity;
use crate::calls::machine::{Action, Status};
use crate::wire::shapes::CreateCall;
use crate::wire::ApiError;

/// What this build's bus carries, as each node announces it beside its heartbeat. A node sends
/// another only what that node's version reads: nodes of an older build drop a message they
/// cannot read, without an answer. 2: [`Request::Create`]. 3: [`Msg::Emit`] and [`Msg::Kick`].
/// 4: room channels ([`Msg::Room`], [`Msg::Member`]).
pub const BUS_VERSION: u32 = 4;
/// The first bus version with [`Request::Create`].
pub const CREATE_SINCE: u32 = 2;
/// The first bus version that carries events for sockets: before it, they go through the
/// Socket.IO adapter's channel, which every node reads.
pub const EMITS_SINCE: u32 = 3;
/// The first bus version whose nodes listen to a channel per chat room (while they hold a
/// member socket of it) and take membership changes as [`Msg::Member`]. Room emits go to room
/// channels once every live node speaks it; before, through the Socket.IO adapter's channel.
pub const ROOMS_SINCE: u32 = 4;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Msg {
    /// A socket joined presence on `node` (the run of the node: `<id>#<random>`).
    Up {
        node: String,
        user: String,
        device: String,
        sid: String,
    },
    /// A socket left presence on `node`.
    Down {
        node: String,
        user: String,
        sid: String,
    },
    /// A node (this run of it) stops: its sockets are gone.
    Gone { node: String },
    /// A user's profile changed on `node`: other nodes drop their cached copy.
    Profile { node: String, user: String },
    /// A request for the owner of a call.
    Ask { id: u64, from: String, req: Request },
    /// The answer to request `id`.
    Answer { id: u64, rep: Reply },
    /// A request for the owner of a call that is not answered (see [`Told`]).
    Tell(Told),
    /// An event for sockets on the node whose channel this is (sent there only).
    Emit {
        sids: Vec<String>,
        event: String,
        text: String,
    },
    /// Close a socket on the node whose channel this is.
    Kick { sid: String },
    /// An event for the member sockets of a chat room, on its room channel: read by the nodes
    /// holding a member socket (`from`: the run that sent it, which does its own part itself).
    Room {
        from: String,
        room: String,
        event: String,
        text: String,
    },
    /// A user's sockets on the node whose channel this is join (or leave) a chat room. With an
    /// `id`, answered ([`Reply::Done`]) once they have and the node listens to the room's
    /// channel, so that what the sender emits after the answer reaches them.
    Member {
        id: Option<u64>,
        from: String,
        user: String,
        room: String,
        join: bool,
    },
}

/// [`Msg::Room`] as it is sent, borrowing what it carries (the same JSON).
#[derive(Serialize)]
#[serde(tag = "t", rename = "Room")]
pub struct RoomOut<'a> {
    pub from: &'a str,
    pub room: &'a str,
    pub event: &'a str,
    pub text: &'a str,
}

/// [`Msg::Emit`] as it is sent, borrowing what it carries (the same JSON).
#[derive(Serialize)]
#[serde(tag = "t", rename = "Emit")]
pub struct EmitOut<'a> {
    pub sids: &'a [String],
    pub event: &'a str,
    pub text: &'a str,
}

/// A request the sender does not wait for: if it fails, the owner tells the socket `sid`
/// that sent it, with `v1OnException`. Only ICE candidates are sent so: a round trip per
/// candidate was what a cluster cost most.
#[derive(Debug, Serialize, Deserialize)]
pub struct Told {
    pub sid: String,
    pub req: Request,
}

/// Work only a call's owner may do: it holds the call's lock, timers and kept events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Request {
    Act {
        meet_id: String,
        user: String,
        device: String,
        action: Action,
    },
    Ice {
        meet_id: String,
        user: String,
        device: String,
        may_bind: bool,
        payload: Value,
    },
    DeviceGone {
        user: String,
        device: String,
    },
    /// A new call, for the node holding the caller's socket to run (bus version 2).
    Create {
        who: Identity,
        device: String,
        room_id: String,
        body: CreateCall,
    },
    DeviceBack {
        user: String,
        device: String,
        sid: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "r")]
pub enum Reply {
    Status {
        ok: Option<Status>,
        err: Option<WireError>,
    },
    Ice {
        err: Option<String>,
    },
    Created {
        meet_id: Option<String>,
        err: Option<WireError>,
    },
    Done,
}

/// An [`ApiError`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireError {
    pub status: u16,
    pub message: String,
}

impl From<&ApiError> for WireError {
    fn from(e: &ApiError) -> Self {
        WireError {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError::from_status(e.status, e.message)
    }
}

impl Reply {
    pub fn of_status(r: &Result<Status, ApiError>) -> Reply {
        match r {
            Ok(s) => Reply::Status {
                ok: Some(*s),
                err: None,
            },
            Err(e) => Reply::Status {
                ok: None,
                err: Some(e.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::machine::Role;

    /// Read back, a message writes the same JSON; returns it.
    fn round_trips(m: &Msg) -> Msg {
        let text = serde_json::to_string(m).unwrap();
        let back: Msg = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        back
    }

    #[test]
    fn requests_round_trip() {
        let m = Msg::Ask {
            id: 7,
            from: "n1".into(),
            req: Request::Act {
                meet_id: "m".into(),
                user: "u".into(),
                device: "d".into(),
                action: Action::DeviceLost { role: Role::Callee },
            },
        };
        round_trips(&m);
        let m = Msg::Tell(Told {
            sid: "s".into(),
            req: Request::Ice {
                meet_id: "m".into(),
                user: "u".into(),
                device: "d".into(),
                may_bind: true,
                payload: serde_json::json!({"meetId": "m", "data": {}}),
            },
        });
        round_trips(&m);
        // A forwarded creation carries the whole identity the asking node verified (the ring
        // shows the caller's name and picture) and the request's body as the client sent it.
        let mut who = Identity::of_user("u", "d");
        who.name = "Ann".into();
        who.img = "a.png".into();
        let m = Msg::Ask {
            id: 8,
            from: "n1".into(),
            req: Request::Create {
                who: who.clone(),
                device: "d".into(),
                room_id: "r".into(),
                body: CreateCall {
                    payload: serde_json::json!({"type": "offer", "sdp": "v=0"}),
                    with_video: true,
                    meet_platform: None,
                },
            },
        };
        let Msg::Ask {
            req: Request::Create { who: got, body, .. },
            ..
        } = round_trips(&m)
        else {
            panic!("not a creation")
        };
        assert_eq!(got, who);
        assert!(body.with_video);
        let r = Reply::of_status(&Err(ApiError::forbidden("no")));
        let Reply::Status { err: Some(e), .. } = r else {
            panic!()
        };
        assert!(matches!(ApiError::from(e), ApiError::Forbidden(m) if m == "no"));
    }

    #[test]
    fn an_emit_sent_borrowed_is_read_as_an_emit() {
        let sids = vec!["s1".to_string(), "s2".to_string()];
        let out = EmitOut {
            sids: &sids,
            event: "v1OnIceCandidate",
            text: "{\"a\":\"\\\"q\"}",
        };
        let text = serde_json::to_string(&out).unwrap();
        let Msg::Emit {
            sids: got,
            event,
            text: body,
        } = serde_json::from_str(&text).unwrap()
        else {
            panic!("{text}")
        };
        assert_eq!(
            (got.as_slice(), event.as_str(), body.as_str()),
            (out.sids, out.event, out.text)
        );
    }

    #[test]
    fn a_room_emit_sent_borrowed_is_read_as_a_room_emit() {
        let out = RoomOut {
            from: "n0#x",
            room: "r1",
            event: "v1OnNewMessage",
            text: "{\"c\":\"\\\"hi\"}",
        };
        let text = serde_json::to_string(&out).unwrap();
        let Msg::Room {
            from,
            room,
            event,
            text: body,
        } = serde_json::from_str(&text).unwrap()
        else {
            panic!("{text}")
        };
        assert_eq!(
            (from.as_str(), room.as_str(), event.as_str(), body.as_str()),
            (out.from, out.room, out.event, out.text)
        );
        let m = Msg::Member {
            id: Some(3),
            from: "n1".into(),
            user: "u".into(),
            room: "r".into(),
            join: false,
        };
        round_trips(&m);
    }
}
