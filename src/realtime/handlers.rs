//! One function per client → server event (protocol §2.1). Each decodes, checks, and hands the
//! work to a service; an `Err` becomes `v1OnException {error}` to the sending socket only.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::gateway::SocketCtx;
use super::room_names::chat_room;
use crate::app::App;
use crate::auth::Identity;
use crate::wire::decode;
use crate::wire::events;
use crate::wire::shapes::{OnlineQuery, OnlineState, RoomRef, RoomStatusIn, RoomStatusOut};

/// A presence poll asks about at most this many peers.
const MAX_PRESENCE_QUERY: usize = 2000;

pub async fn dispatch(
    app: &Arc<App>,
    ctx: &Arc<SocketCtx>,
    event: &str,
    payload: &Value,
) -> Result<(), String> {
    match event {
        events::MY_ONLINE => my_online(app, ctx, payload).await,
        events::ROOM_STATUS_CHANGE => room_status_change(app, ctx, payload).await,
        events::DELIVER_CHAT_ROOM => deliver_chat_room(app, ctx, payload).await,
        events::ENTER_CHAT_ROOM => enter_chat_room(app, ctx, payload).await,
        events::ICE_CANDIDATE => ice_candidate(app, ctx, payload).await,
        other => Err(format!("unknown event {other:?}")),
    }
}

/// `v1MyOnline`: who of these peers is online. Only peers sharing a room with the asker can read
/// as online, so presence does not leak to strangers. Peers with a socket here are checked by
/// the sockets' rooms; peers whose sockets are all on other nodes, by the store (one query).
async fn my_online(app: &App, ctx: &SocketCtx, payload: &Value) -> Result<(), String> {
    let queries: Vec<OnlineQuery> = decode(events::MY_ONLINE, payload)?;
    if queries.len() > MAX_PRESENCE_QUERY {
        return Err(format!(
            "{}: at most {MAX_PRESENCE_QUERY} peers per query",
            events::MY_ONLINE
        ));
    }
    let mut elsewhere = Vec::new();
    let online: Vec<bool> = {
        let io = app.notify.io();
        // The asker's rooms, only if some entry needs the slow path.
        let mine = std::cell::OnceCell::<HashSet<String>>::new();
        let my_rooms = || {
            mine.get_or_init(|| {
                io.get_socket(ctx.sid)
                    .map(|s| {
                        s.rooms()
                            .into_iter()
                            .filter(|r| r.starts_with("r:"))
                            .map(|r| r.to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
        };
        let mut shares_room = |peer: &str, extra: &Value| {
            let peer_sids = app.presence.sockets(peer);
            if peer_sids.is_empty() {
                return false;
            }
            if !peer_sids
                .iter()
                .any(|sid| app.presence.is_local(peer, *sid))
            {
                elsewhere.push(peer.to_string());
                return false;
            }
            // V Chat clients put the single room they share with the peer in `extra`: if both
            // the asker's socket and one of the peer's sit in that room, that settles it cheaply.
            if let Some(room) = extra.as_str() {
                let in_room = io.local().to(chat_room(room)).sockets();
                if in_room.iter().any(|s| s.id == ctx.sid)
                    && in_room.iter().any(|s| peer_sids.contains(&s.id))
                {
                    return true;
                }
            }
            let mine = my_rooms();
            peer_sids.into_iter().any(|sid| {
                io.get_socket(sid)
                    .is_some_and(|s| s.rooms().iter().any(|r| mine.contains(r.as_ref())))
            })
        };
        queries
            .iter()
            .map(|q| shares_room(&q.peer_id, &q.extra))
            .collect()
    };
    let remote_sharing = if elsewhere.is_empty() {
        HashSet::new()
    } else {
        app.store
            .sharing_peers(&ctx.who.user_id, &elsewhere)
            .await
            .map_err(|_| "presence is unavailable: the store cannot answer".to_string())?
    };
    let answer: Vec<OnlineState> = queries
        .into_iter()
        .zip(online)
        .map(|(q, here)| OnlineState {
            is_online: here || remote_sharing.contains(&q.peer_id),
            extra: match q.extra {
                Value::Null => Value::String(String::new()),
                v => v,
            },
            peer_id: q.peer_id,
        })
        .collect();
    app.notify.to_socket(ctx.sid, events::ON_MY_ONLINE, &answer);
    Ok(())
}

/// `v1RoomStatusChange`: typing / recording / stop, relayed to the room's members.
async fn room_status_change(app: &App, ctx: &SocketCtx, payload: &Value) -> Result<(), String> {
    let p: RoomStatusIn = decode(events::ROOM_STATUS_CHANGE, payload)?;
    if !matches!(p.status.as_str(), "stop" | "typing" | "recording") {
        return Err(format!(
            "{}: status must be one of stop, typing, recording (got {:?})",
            events::ROOM_STATUS_CHANGE,
            p.status
        ));
    }
    if !app.notify.socket_in_room(ctx.sid, &p.room_id) {
        return Err(format!(
            "{}: you are not a member of room {:?}",
            events::ROOM_STATUS_CHANGE,
            p.room_id
        ));
    }
    {
        let mut typing = ctx.typing_to.lock().expect("not poisoned");
        if p.status == "stop" {
            *typing = None;
        } else {
            *typing = Some(p.room_id.clone());
        }
    }
    broadcast_status(app, &ctx.who, &p.room_id, &p.status).await;
    Ok(())
}

pub async fn broadcast_status(app: &App, who: &Identity, room: &str, status: &str) {
    // The name as it is now (the user may have renamed themselves since this socket connected).
    let current = app.profiles.get(&who.user_id);
    let name = current.as_ref().map_or(who.name.as_str(), |u| &u.full_name);
    app.notify
        .to_room(
            room,
            events::ON_ROOM_STATUS_CHANGE,
            &RoomStatusOut {
                room_id: room,
                status,
                name,
                user_id: &who.user_id,
            },
        )
        .await;
}

async fn member_room(
    app: &App,
    who: &Identity,
    event: &str,
    payload: &Value,
) -> Result<(String, bool), String> {
    let p: RoomRef = decode(event, payload)?;
    let room = app
        .store
        .room(&p.room_id)
        .await
        .map_err(|_| format!("{event}: storage error"))?;
    let member = app
        .store
        .member_role(&p.room_id, &who.user_id)
        .await
        .map_err(|_| format!("{event}: storage error"))?
        .is_some();
    match room {
        Some(r) if member => Ok((p.room_id, r.kind() == crate::store::RoomKind::Single)),
        _ => Err(format!(
            "{event}: you are not a member of room {:?}",
            p.room_id
        )),
    }
}

/// `v1DeliverChatRoom`: the client has the room's messages.
async fn deliver_chat_room(app: &App, ctx: &SocketCtx, payload: &Value) -> Result<(), String> {
    let (room, single) = member_room(app, &ctx.who, events::DELIVER_CHAT_ROOM, payload).await?;
    crate::chat::receipts::deliver(app, &ctx.who, &room, single)
        .await
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", events::DELIVER_CHAT_ROOM))
}

/// `v1EnterChatRoom`: the client opened the room; everything in it is seen.
async fn enter_chat_room(app: &App, ctx: &SocketCtx, payload: &Value) -> Result<(), String> {
    let (room, single) = member_room(app, &ctx.who, events::ENTER_CHAT_ROOM, payload).await?;
    crate::chat::receipts::enter(app, &ctx.who, &room, single)
        .await
        .map_err(|e| format!("{}: {e}", events::ENTER_CHAT_ROOM))
}

/// `v1IceCandidate`: relayed to the other party of the call only.
async fn ice_candidate(app: &Arc<App>, ctx: &SocketCtx, payload: &Value) -> Result<(), String> {
    let (meet_id, whole) = ice_checked(payload)?;
    crate::calls::route::relay_ice(app, &ctx.who, Some(ctx.sid), ctx.scoped, &meet_id, whole)
        .await
        .map_err(|e| format!("{}: {e}", events::ICE_CANDIDATE))
}

/// [`ice_candidate`] there and then, where the socket's events arrive, when nothing has to be
/// waited for (the call is here and its lock is free): no task is spawned and none woken, which
/// is most of a relayed candidate's cost at low rates. `None`: queue it as any other event.
pub fn ice_candidate_now(
    app: &Arc<App>,
    ctx: &SocketCtx,
    payload: &Value,
) -> Option<Result<(), String>> {
    let (meet_id, whole) = match ice_checked(payload) {
        Ok(checked) => checked,
        Err(e) => return Some(Err(e)),
    };
    crate::calls::route::try_relay_ice(app, &ctx.who, ctx.scoped, &meet_id, whole)
        .ok()
        .map(|done| done.map_err(|e| format!("{}: {e}", events::ICE_CANDIDATE)))
}

/// The candidate's meetId, and the payload as the JSON to relay (parsed once, checked in
/// place, relayed with its keys in their order).
fn ice_checked(payload: &Value) -> Result<(String, Value), String> {
    let whole = crate::wire::decode::to_value(events::ICE_CANDIDATE, payload)?;
    let Some(meet_id) = whole.get("meetId").and_then(Value::as_str) else {
        return Err(format!(
            "{}: invalid payload (meetId must be a string)",
            events::ICE_CANDIDATE
        ));
    };
    if !whole.get("data").is_some_and(Value::is_object) {
        return Err(format!(
            "{}: data must be an object {{candidate, sdpMid, sdpMLineIndex}}",
            events::ICE_CANDIDATE
        ));
    }
    Ok((meet_id.to_string(), whole))
}
