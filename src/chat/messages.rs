//! Messages: send (idempotent on localId), page, delete for all / for me, and call notes.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::Identity;
use crate::calls::machine::{Call, CallNote};
use crate::ids::iso;
use crate::store::{MessageFilter, MessageRow, MessageSearch, NewMessage, RoomKind};
use crate::wire::events;
use crate::wire::shapes::MessageOut;
use crate::wire::ApiError;

use super::post::{as_user, commit, message_by};

/// Longest text a message may carry.
pub const MAX_CONTENT_CHARS: usize = 32 * 1024;
const MAX_LOCAL_ID: usize = 128;

/// `POST channel/{roomId}/message/` (JSON, or multipart with the same names as text parts).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub local_id: Option<String>,
    #[serde(default)]
    pub message_type: Option<String>,
    #[serde(default)]
    pub is_encrypted: Option<Value>,
    /// View-once; when absent, the sender's own view-once setting for the room.
    #[serde(default)]
    pub is_one_seen: Option<Value>,
    #[serde(default)]
    pub reply_to_local_id: Option<String>,
    #[serde(default)]
    pub forward_local_id: Option<String>,
    /// `msgAtt` for location / custom / info / call messages: an object, or its JSON text.
    #[serde(default)]
    pub attachment: Option<Value>,
    /// The form's file parts (image, file, video, voice messages), on disk until kept.
    #[serde(skip)]
    pub files: Vec<crate::media::Upload>,
}

fn truthy(v: &Option<Value>) -> Result<bool, ApiError> {
    flag("isEncrypted", v).map(|f| f.unwrap_or(false))
}

/// A `"true"|"false"` (or boolean) form field; `None` when absent.
fn flag(name: &str, v: &Option<Value>) -> Result<Option<bool>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        _ => Err(ApiError::bad(format!("{name} must be true or false"))),
    }
}

fn attachment_of(v: &Option<Value>) -> Result<Option<Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() || s.trim() == "null" => Ok(None),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(Some(v)),
            _ => Err(ApiError::bad("attachment must be a JSON object")),
        },
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::bad("attachment must be a JSON object")),
    }
}

/// `base`: the public base URL the files of a media message are served under.
pub async fn send(
    app: &App,
    who: &Identity,
    room_id: &str,
    mut body: SendMessage,
    base: &str,
) -> Result<MessageOut, ApiError> {
    let room = super::member_room(app, room_id, &who.user_id).await?;
    app.limits
        .check_message(&who.user_id)
        .map_err(ApiError::TooManyRequests)?;
    let kind = body.message_type.clone().unwrap_or_else(|| "text".into());
    let media = super::attachments::is_media(&kind);
    if !media && !body.files.is_empty() {
        return Err(ApiError::bad(format!(
            "{kind} messages carry no file (image, file, video and voice messages do)"
        )));
    }
    let local_id = body.local_id.clone().unwrap_or_default();
    if local_id.trim().is_empty() || local_id.len() > MAX_LOCAL_ID {
        return Err(ApiError::bad(format!(
            "localId is required (1 to {MAX_LOCAL_ID} characters)"
        )));
    }
    let content = body.content.clone().unwrap_or_default();
    if kind == "text" && content.trim().is_empty() {
        return Err(ApiError::bad("content is required for text messages"));
    }
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(ApiError::bad(format!(
            "content is longer than {MAX_CONTENT_CHARS} characters"
        )));
    }
    let is_encrypted = truthy(&body.is_encrypted)?;
    let is_one_seen = match flag("isOneSeen", &body.is_one_seen)? {
        Some(f) => f,
        None => {
            app.store
                .member_settings(room_id, &who.user_id)
                .await?
                .one_seen
        }
    };
    let given = attachment_of(&body.attachment)?;
    let (mut attachment, claims) = if media {
        (None, Some(super::attachments::media_claims(&kind, given)?))
    } else {
        (super::attachments::check(&kind, given)?, None)
    };
    if room.kind() == RoomKind::Single {
        if let Some(peer) = app.store.single_peer(room_id, &who.user_id).await? {
            if app.store.is_blocked(&who.user_id, &peer.id).await? {
                return Err(ApiError::bad(
                    "you can't send messages in this room: a ban is in place",
                ));
            }
        }
    }
    let reply_to = match body.reply_to_local_id.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(l) => {
            let m = app
                .store
                .message_by_local_id(room_id, l)
                .await?
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "replyToLocalId {l:?} names no message in this room"
                    ))
                })?;
            Some(serde_json::to_string(&MessageOut::from(&m)).expect("serializes"))
        }
    };
    let forward_id = match body.forward_local_id.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(l) => {
            // Only among messages the forwarder can see: the one it names, never a stranger's.
            let m = app
                .store
                .message_for_forward(&who.user_id, l)
                .await?
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "forwardLocalId {l:?} names no message in your rooms"
                    ))
                })?;
            // A forwarded media message shows the original's files, never what the forwarder
            // claims (the SDK resends local paths for some types).
            if media {
                if m.kind != kind {
                    return Err(ApiError::bad(format!(
                        "forwardLocalId {l:?} names a {} message, not {kind}",
                        m.kind
                    )));
                }
                if !body.files.is_empty() {
                    return Err(ApiError::bad("a forward carries no file"));
                }
                attachment = m
                    .attachment
                    .as_deref()
                    .and_then(|a| serde_json::from_str(a).ok());
            }
            Some(m.id)
        }
    };
    if let (Some(claims), None) = (&claims, &forward_id) {
        // Last, once everything else is known good: only now are files kept.
        let files = std::mem::take(&mut body.files);
        attachment = Some(super::media::store(app, &kind, claims, files, base).await?);
    }
    let msg = NewMessage {
        is_encrypted,
        is_one_seen,
        attachment: attachment.map(|a| a.to_string()),
        reply_to,
        forward_id,
        platform: who.platform.clone(),
        ..message_by(&as_user(who), room_id, local_id, &kind, content)
    };
    let (row, _) = commit(app, &msg).await?;
    // Only a retry can find its localId in another room; a new message is always here.
    if row.room_id != room_id {
        return Err(ApiError::bad(
            "localId was already used for a message in another room",
        ));
    }
    if room.kind() == RoomKind::Broadcast {
        // On a retry too: copies are idempotent (one localId per recipient), so a fan-out cut
        // short by an error is completed by the client's resend.
        super::broadcasts::fan_out(app, &row, &msg).await?;
    }
    Ok(MessageOut::from(&row))
}

/// `GET channel/{roomId}/message/?limit&lastId&text&filter`: a page as `who` sees it, newest
/// first, with `isStared` for `who`.
pub async fn page(
    app: &App,
    who: &Identity,
    room_id: &str,
    limit: Option<i64>,
    last_id: Option<&str>,
    text: Option<&str>,
    filter: Option<&str>,
) -> Result<Value, ApiError> {
    super::member_room(app, room_id, &who.user_id).await?;
    let limit = limit.unwrap_or(30);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 100"));
    }
    let last_id = last_id.filter(|s| !s.is_empty());
    if let Some(id) = last_id {
        match app.store.message(id).await? {
            Some(m) if m.room_id == room_id => {}
            _ => {
                return Err(ApiError::bad(format!(
                    "lastId {id:?} names no message in this room"
                )))
            }
        }
    }
    let filter = match filter.unwrap_or("all") {
        "all" | "" => MessageFilter::All,
        "media" => MessageFilter::Media,
        "links" => MessageFilter::Links,
        "file" => MessageFilter::File,
        "voice" => MessageFilter::Voice,
        other => {
            return Err(ApiError::bad(format!(
                "filter must be media, links, file, voice or all, not {other:?}"
            )))
        }
    };
    let text = text.unwrap_or_default();
    if text.chars().count() > 200 {
        return Err(ApiError::bad("text filter is longer than 200 characters"));
    }
    let search = MessageSearch {
        text: text.to_string(),
        filter,
    };
    let mut rows = app
        .store
        .messages_page(room_id, &who.user_id, limit + 1, last_id, &search)
        .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let docs = for_viewer(app, who, &rows).await?;
    Ok(json!({ "docs": docs, "limit": limit, "hasNextPage": has_more }))
}

/// Messages as `who` sees them: with their own stars.
async fn for_viewer(
    app: &App,
    who: &Identity,
    rows: &[MessageRow],
) -> Result<Vec<MessageOut>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|m| m.id.clone()).collect();
    let starred = app.store.starred_among(&who.user_id, &ids).await?;
    let opened = app.store.one_seen_among(&who.user_id, &ids).await?;
    Ok(rows
        .iter()
        .map(|m| {
            let mut out = MessageOut::from(m);
            out.is_stared = starred.contains(&m.id);
            out.is_one_seen_by_me = opened.contains(&m.id);
            out
        })
        .collect())
}

/// `PATCH channel/{roomId}/message/{id}/one-seen`: a receiver opened a view-once message. The
/// server keeps who did (`isOneSeenByMe` in their pages); the client stops showing it. Its
/// content is not withheld from later pages: the files are plain URLs the receiver had anyway.
pub async fn one_seen(
    app: &App,
    who: &Identity,
    room_id: &str,
    message_id: &str,
) -> Result<(), ApiError> {
    let m = room_message(app, who, room_id, message_id).await?;
    if !m.is_one_seen {
        return Err(ApiError::bad("this is not a view-once message"));
    }
    if m.sender_id == who.user_id {
        return Err(ApiError::bad(
            "a view-once message is opened by its receivers",
        ));
    }
    app.store.mark_one_seen(&m.id, &who.user_id).await?;
    Ok(())
}

/// `POST channel/{roomId}/message/{id}/star|un-star`: `who`'s own mark.
pub async fn star(
    app: &App,
    who: &Identity,
    room_id: &str,
    message_id: &str,
    on: bool,
) -> Result<(), ApiError> {
    let m = room_message(app, who, room_id, message_id).await?;
    if on {
        if m.deleted_at.is_some() {
            return Err(ApiError::bad(
                "a message deleted for everyone cannot be starred",
            ));
        }
        app.store.star(&m, &who.user_id).await?;
    } else {
        app.store.unstar(&m.id, &who.user_id).await?;
    }
    Ok(())
}

/// `GET channel/{roomId}/message/stars` (`room`) and `GET channel/messages/stars` (every room):
/// `who`'s starred messages, newest star first.
pub async fn stars(
    app: &App,
    who: &Identity,
    room_id: Option<&str>,
    limit: Option<i64>,
    page: Option<i64>,
) -> Result<Value, ApiError> {
    if let Some(r) = room_id {
        super::member_room(app, r, &who.user_id).await?;
    }
    let (limit, page) = super::paging::page_args(limit, page)?;
    let rows = app
        .store
        .starred(&who.user_id, room_id, limit + 1, (page - 1) * limit)
        .await?;
    // One past the page tells `paged` whether there is a next one; it is not shown.
    let docs = for_viewer(app, who, &rows).await?;
    Ok(super::paging::paged(docs, limit, page))
}

async fn room_message(
    app: &App,
    who: &Identity,
    room_id: &str,
    message_id: &str,
) -> Result<MessageRow, ApiError> {
    super::member_room(app, room_id, &who.user_id).await?;
    match app.store.message(message_id).await? {
        Some(m) if m.room_id == room_id => Ok(m),
        _ => Err(ApiError::not_found(format!(
            "message {message_id:?} not found in this room"
        ))),
    }
}

pub async fn delete_for_all(
    app: &App,
    who: &Identity,
    room_id: &str,
    message_id: &str,
) -> Result<MessageOut, ApiError> {
    let m = room_message(app, who, room_id, message_id).await?;
    if m.sender_id != who.user_id {
        return Err(ApiError::forbidden(
            "only the sender can delete a message for everyone",
        ));
    }
    match app.store.delete_for_all(message_id).await? {
        Some(updated) => {
            let out = MessageOut::from(&updated);
            app.notify
                .to_room(room_id, events::ON_DELETE_MESSAGE_FROM_ALL, &out)
                .await;
            Ok(out)
        }
        // Already deleted: a retry; answer the same, announce nothing new.
        None => Ok(MessageOut::from(&m)),
    }
}

pub async fn delete_for_me(
    app: &App,
    who: &Identity,
    room_id: &str,
    message_id: &str,
) -> Result<(), ApiError> {
    room_message(app, who, room_id, message_id).await?;
    app.store.hide_message(message_id, &who.user_id).await?;
    Ok(())
}

/// The chat message a call leaves behind (`mT: "call"`), posted once per call.
pub async fn post_call_note(
    app: &App,
    call: &Call,
    note: CallNote,
    sender_id: &str,
) -> Result<(), ApiError> {
    let sender = app.store.user(sender_id).await?.ok_or_else(|| {
        ApiError::Internal(format!("call party {sender_id:?} is not a known user"))
    })?;
    let caller_name = if sender.id == call.caller {
        sender.full_name.clone()
    } else {
        app.store
            .user(&call.caller)
            .await?
            .map(|u| u.full_name)
            .unwrap_or_default()
    };
    let (status, content, att) = match note {
        CallNote::Missed => (
            "timeout",
            format!("📞 Missed Call from {caller_name}"),
            json!({"callStatus": "timeout", "withVideo": call.with_video,
                   "startAt": iso(call.created_at), "endAt": null}),
        ),
        CallNote::Rejected => (
            "rejected",
            "📞".to_string(),
            json!({"callStatus": "rejected", "withVideo": call.with_video,
                   "startAt": iso(call.created_at), "endAt": call.ended_at.map(iso)}),
        ),
        CallNote::Canceled => (
            "canceled",
            "📞".to_string(),
            json!({"callStatus": "canceled", "withVideo": call.with_video,
                   "startAt": iso(call.created_at), "endAt": call.ended_at.map(iso)}),
        ),
        // The real talk time: from accept to end, not from the first ring (§6.11).
        CallNote::Finished => (
            "finished",
            "📞".to_string(),
            json!({"callStatus": "finished", "withVideo": call.with_video,
                   "startAt": call.accepted_at.map(iso), "endAt": call.ended_at.map(iso)}),
        ),
    };
    let msg = NewMessage {
        attachment: Some(att.to_string()),
        ..message_by(
            &sender,
            &call.room_id,
            format!("call-{}-{status}", call.meet_id),
            "call",
            content,
        )
    };
    commit(app, &msg).await?;
    Ok(())
}
