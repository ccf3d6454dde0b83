//! Broadcasts (V Chat's "broadcast list"): the owner writes in the broadcast room, and each
//! recipient gets a copy in their single room with the owner (`pBId` = the original's id), as if
//! sent there, so replies come back privately. Recipients are not members of the broadcast room.
//! Only the owner sees and changes it.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::Identity;
use crate::store::{MessageRow, NewMessage, RoomKind, RoomRow};
use crate::wire::shapes::{RoomOut, UserData};
use crate::wire::ApiError;

use super::paging::{page_args, paged};
use super::rooms::{within_cap, Identifiers};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewBroadcast {
    #[serde(default)]
    pub broadcast_name: Option<String>,
    #[serde(default)]
    pub identifiers: Option<Identifiers>,
}

/// The broadcast, if `who` owns it.
async fn owned(app: &App, who: &Identity, room_id: &str) -> Result<RoomRow, ApiError> {
    let room = super::member_room(app, room_id, &who.user_id).await?;
    if room.kind() != RoomKind::Broadcast {
        return Err(ApiError::bad("this is not a broadcast room"));
    }
    if room.created_by != who.user_id {
        return Err(ApiError::forbidden(
            "only the broadcast's owner can do this",
        ));
    }
    Ok(room)
}

/// The users `ids` names, without `who` and without repeats.
async fn recipients(
    app: &App,
    who: &Identity,
    ids: Option<Identifiers>,
) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for u in super::rooms::resolve(app, ids).await? {
        if u.id != who.user_id && !out.contains(&u.id) {
            out.push(u.id);
        }
    }
    Ok(out)
}

/// `POST channel/broadcast` (multipart: `identifiers`, `broadcastName`, optional image `file`).
pub async fn create(
    app: &App,
    who: &Identity,
    body: NewBroadcast,
    image: Option<&[u8]>,
    base: &str,
) -> Result<RoomOut, ApiError> {
    let name = body.broadcast_name.unwrap_or_default();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad(
            "broadcastName is required (1 to 100 characters)",
        ));
    }
    let recipients = recipients(app, who, body.identifiers).await?;
    within_cap(app, recipients.len(), "a broadcast", "recipients")?;
    let img = match image {
        Some(bytes) => format!("{base}{}", app.media.save_image("groups", bytes).await?),
        None => String::new(),
    };
    let room = app
        .store
        .create_broadcast(&who.user_id, name, &img, &recipients)
        .await?;
    app.notify.join_room(&who.user_id, &room.id).await;
    Ok(RoomOut::from(
        &app.store.room_summary(room, &who.user_id).await?,
    ))
}

/// `PATCH {roomId}/broadcast/title {title}`.
pub async fn set_title(
    app: &App,
    who: &Identity,
    room_id: &str,
    title: &str,
) -> Result<(), ApiError> {
    owned(app, who, room_id).await?;
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 100 {
        return Err(ApiError::bad("title is required (1 to 100 characters)"));
    }
    app.store.set_room_text(room_id, "title", title).await?;
    Ok(())
}

/// `PATCH {roomId}/broadcast/image`: answers the URL.
pub async fn set_image(
    app: &App,
    who: &Identity,
    room_id: &str,
    bytes: &[u8],
    base: &str,
) -> Result<String, ApiError> {
    owned(app, who, room_id).await?;
    let url = format!("{base}{}", app.media.save_image("groups", bytes).await?);
    app.store.set_room_text(room_id, "img", &url).await?;
    Ok(url)
}

/// `GET {roomId}/broadcast/members`: `docs: [{userData, createdAt}]`.
pub async fn members(
    app: &App,
    who: &Identity,
    room_id: &str,
    limit: Option<i64>,
    page: Option<i64>,
) -> Result<Value, ApiError> {
    owned(app, who, room_id).await?;
    let (limit, page) = page_args(limit, page)?;
    let rows = app
        .store
        .recipients_page(room_id, limit + 1, (page - 1) * limit)
        .await?;
    let docs: Vec<Value> = rows
        .iter()
        .map(|r| json!({"userData": UserData::from(&r.user()), "createdAt": r.role}))
        .collect();
    Ok(paged(docs, limit, page))
}

/// `POST {roomId}/broadcast/members {identifiers}`.
pub async fn add(
    app: &App,
    who: &Identity,
    room_id: &str,
    ids: Option<Identifiers>,
) -> Result<Value, ApiError> {
    owned(app, who, room_id).await?;
    let new = recipients(app, who, ids).await?;
    let have = app.store.recipient_ids(room_id).await?.len();
    within_cap(app, have + new.len(), "a broadcast", "recipients")?;
    let added = app.store.add_recipients(room_id, &new).await?;
    for id in &added {
        if let Some(u) = app.store.user(id).await? {
            super::post::post_info(
                app,
                room_id,
                who,
                "addToBroadcast",
                &u.id,
                &u.full_name,
                format!("{} added {}", who.name, u.full_name),
            )
            .await?;
        }
    }
    Ok(json!({ "added": added }))
}

/// `DELETE {roomId}/broadcast/members/{identifier}`.
pub async fn kick(
    app: &App,
    who: &Identity,
    room_id: &str,
    identifier: &str,
) -> Result<(), ApiError> {
    owned(app, who, room_id).await?;
    let u = app
        .store
        .user_by_identifier(identifier)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {identifier:?} not found")))?;
    if !app.store.remove_recipient(room_id, &u.id).await? {
        return Err(ApiError::bad(
            "that user is not a recipient of this broadcast",
        ));
    }
    Ok(())
}

/// `GET {roomId}/broadcast/my-info`.
pub async fn my_info(app: &App, who: &Identity, room_id: &str) -> Result<Value, ApiError> {
    owned(app, who, room_id).await?;
    Ok(json!({ "totalUsers": app.store.recipient_ids(room_id).await?.len() }))
}

/// `GET {roomId}/broadcast/available-users-to-add?limit&page&name`.
pub async fn available(
    app: &App,
    who: &Identity,
    room_id: &str,
    name: &str,
    limit: Option<i64>,
    page: Option<i64>,
) -> Result<Value, ApiError> {
    owned(app, who, room_id).await?;
    let (limit, page) = page_args(limit, page)?;
    let rows = app
        .store
        .users_not_recipients(
            room_id,
            &who.user_id,
            name.trim(),
            limit + 1,
            (page - 1) * limit,
        )
        .await?;
    let docs: Vec<UserData> = rows.iter().map(UserData::from).collect();
    Ok(paged(docs, limit, page))
}

/// `GET {roomId}/broadcast/message/{mId}/status/seen|deliver`: from each recipient's copy.
pub async fn message_status(
    app: &App,
    who: &Identity,
    room_id: &str,
    message_id: &str,
    kind: &str,
    limit: Option<i64>,
    page: Option<i64>,
) -> Result<Value, ApiError> {
    owned(app, who, room_id).await?;
    super::groups::message_status_of(
        app,
        room_id,
        message_id,
        kind,
        limit,
        page,
        super::groups::Receipts::BroadcastCopies,
    )
    .await
}

/// A new message in a broadcast room: a copy for each recipient, in their single room with the
/// owner (made on first use), announced and pushed there like any message. A recipient the owner
/// is banned with (either way) gets none.
pub async fn fan_out(
    app: &App,
    original: &MessageRow,
    template: &NewMessage,
) -> Result<(), ApiError> {
    for r in app.store.recipient_ids(&original.room_id).await? {
        if app.store.is_blocked(&original.sender_id, &r).await? {
            continue;
        }
        let (room, created) = app.store.single_room(&original.sender_id, &r).await?;
        if created {
            app.notify
                .join_room_all(&[&original.sender_id, &r], &room.id)
                .await;
        }
        let copy = NewMessage {
            room_id: room.id.clone(),
            local_id: format!("b:{}:{r}", original.id),
            parent_broadcast_id: Some(original.id.clone()),
            reply_to: None,
            forward_id: None,
            ..template.clone()
        };
        super::post::commit(app, &copy).await?;
    }
    Ok(())
}
