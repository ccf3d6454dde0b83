//! Waking phones that are asleep: what to push, to whom, for a new message or an incoming call.
//! Only users with no live socket are pushed (a connected app gets the socket event); delivery
//! itself is the [`crate::push`] queue's, which never blocks the request that caused it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::app::App;
use crate::auth::Identity;
use crate::push::{Notification, PushKind, PushTarget};
use crate::store::{MessageRow, RoomKind};
use crate::wire::shapes::MessageOut;

/// FCM refuses data payloads over 4 KB; the message copy in a push stays under this, with its
/// text shortened (the app fetches the full message when opened).
const MAX_PUSHED_MESSAGE_BYTES: usize = 3000;

/// Queues `n` for every device of these users that has a push key.
async fn push_to(app: &App, users: Vec<String>, n: Notification) {
    if users.is_empty() {
        return;
    }
    let devices = match app.store.push_devices(&users).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read push keys");
            return;
        }
    };
    if devices.is_empty() {
        return;
    }
    app.metrics.push_enqueued.inc_by(devices.len() as u64);
    let targets = devices
        .into_iter()
        .map(|d| PushTarget {
            user_id: d.user_id,
            device: d.device,
            key: d.push_key,
        })
        .collect();
    let dropped = app.push.enqueue(targets, Arc::new(n));
    if dropped > 0 {
        tracing::warn!(dropped, "push queue full");
    }
}

/// What a notification says about a message: its text, or the summary clients show for media.
fn body_of(m: &MessageRow) -> String {
    if m.is_encrypted {
        return "New message".into();
    }
    let text = m.content.trim();
    let summary = match m.kind.as_str() {
        "image" => "📷 Photo",
        "video" => "🎥 Video",
        "voice" => "🎤 Voice message",
        "file" => "📁 File",
        "location" => "📍 Location",
        _ => "New message",
    };
    if text.is_empty() {
        summary.into()
    } else {
        text.chars().take(200).collect()
    }
}

/// The message as the SDK reads it from a push: `vMessage`, the full message as a JSON string.
fn pushed_message(m: &MessageRow) -> String {
    let mut out = MessageOut::from(m);
    let mut text = serde_json::to_string(&out).expect("serializes");
    if text.len() > MAX_PUSHED_MESSAGE_BYTES {
        out.reply_to = serde_json::Value::Null;
        text = serde_json::to_string(&out).expect("serializes");
        while text.len() > MAX_PUSHED_MESSAGE_BYTES && !out.c.is_empty() {
            let keep = out.c.chars().count() * 3 / 4;
            out.c = out.c.chars().take(keep).collect();
            text = serde_json::to_string(&out).expect("serializes");
        }
    }
    text
}

/// A message was committed: its room's members with no live socket get a push.
pub async fn new_message(app: &App, m: &MessageRow) {
    if !app.push.enabled() {
        return;
    }
    let (room, members) = match (
        app.store.room(&m.room_id).await,
        // Members who muted the room get no push for it.
        app.store.unmuted_member_ids(&m.room_id).await,
    ) {
        (Ok(Some(room)), Ok(members)) => (room, members),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot read the room to push to");
            return;
        }
        _ => return,
    };
    let asleep: Vec<String> = members
        .into_iter()
        .filter(|u| *u != m.sender_id && app.presence.sockets(u).is_empty())
        .collect();
    let title = match room.kind() {
        RoomKind::Single => m.sender_name.clone(),
        RoomKind::Group | RoomKind::Broadcast => room.title.clone(),
    };
    let mut data = BTreeMap::new();
    data.insert("fromVChat".to_string(), "1".to_string());
    data.insert("vMessage".to_string(), pushed_message(m));
    data.insert("roomId".to_string(), m.room_id.clone());
    push_to(
        app,
        asleep,
        Notification {
            kind: PushKind::Message,
            title,
            body: body_of(m),
            data,
        },
    )
    .await;
}

/// A call rings for a callee with no live socket: a visible "incoming call" notification. The
/// data has no `fromVChat` (the SDK would parse it as a message); the app reads `call/active`.
pub async fn incoming_call(
    app: &App,
    callee: &str,
    caller: &Identity,
    room_id: &str,
    meet_id: &str,
) {
    if !app.push.enabled() {
        return;
    }
    let mut data = BTreeMap::new();
    data.insert("type".to_string(), "vchatCall".to_string());
    data.insert("meetId".to_string(), meet_id.to_string());
    data.insert("roomId".to_string(), room_id.to_string());
    data.insert("callerId".to_string(), caller.user_id.clone());
    data.insert("callerName".to_string(), caller.name.clone());
    push_to(
        app,
        vec![callee.to_string()],
        Notification {
            kind: PushKind::Call,
            title: caller.name.clone(),
            body: "📞 Incoming call".into(),
            data,
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(content: &str) -> MessageRow {
        MessageRow {
            seq: 1,
            id: "m".into(),
            room_id: "r".into(),
            sender_id: "a".into(),
            sender_name: "A".into(),
            sender_identifier: "a".into(),
            sender_img: String::new(),
            platform: "other".into(),
            local_id: "l".into(),
            kind: "text".into(),
            content: content.into(),
            is_encrypted: false,
            attachment: None,
            reply_to: None,
            forward_id: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            delivered_at: None,
            seen_at: None,
            deleted_at: None,
            parent_broadcast_id: None,
            is_one_seen: false,
        }
    }

    #[test]
    fn pushed_messages_fit_the_provider_limit_and_stay_parsable() {
        let long = "ü".repeat(20_000);
        let text = pushed_message(&row(&long));
        assert!(text.len() <= MAX_PUSHED_MESSAGE_BYTES, "{}", text.len());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["lId"], "l");
        assert_eq!(
            pushed_message(&row("hi")),
            serde_json::to_string(&MessageOut::from(&row("hi"))).unwrap()
        );
        let mut secret = row("ciphertext");
        secret.is_encrypted = true;
        assert_eq!(body_of(&secret), "New message");
    }
}
