//! Group screens: settings (title, image, description, extra data), my info and status, the
//! member list and roles, users who could be added, and who has delivered or seen a message.
//! Only admins change settings and members; only the creator (`superAdmin`) demotes admins.
//! Every change posts its `info` message (protocol §5.1) to the room.

use serde_json::{json, Value};

use crate::app::App;
use crate::auth::Identity;
use crate::store::{RoomKind, RoomRow};
use crate::wire::shapes::UserData;
use crate::wire::ApiError;

use super::paging::{page_args, paged};

/// Longest group title and description.
const MAX_TITLE_CHARS: usize = 100;
const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Largest `extra-data` object, as JSON text.
const MAX_EXTRA_BYTES: usize = 16 * 1024;

/// A member's role as the SDK names it: the creator is `superAdmin` while a member.
fn role_name(room: &RoomRow, user: &str, role: &str) -> &'static str {
    match role {
        "admin" if room.created_by == user => "superAdmin",
        "admin" => "admin",
        _ => "member",
    }
}

/// The group, if `who` is a member of it (403 / 404 / 400 otherwise), and `who`'s role.
async fn member_group(
    app: &App,
    who: &Identity,
    room_id: &str,
) -> Result<(RoomRow, String), ApiError> {
    let room = super::member_room(app, room_id, &who.user_id).await?;
    if room.kind() != RoomKind::Group {
        return Err(ApiError::bad("this is not a group room"));
    }
    let role = app
        .store
        .member_role(room_id, &who.user_id)
        .await?
        .unwrap_or_default();
    Ok((room, role))
}

/// The group, if `who` is one of its admins.
pub async fn admin_group(app: &App, who: &Identity, room_id: &str) -> Result<RoomRow, ApiError> {
    let (room, role) = member_group(app, who, room_id).await?;
    if role != "admin" {
        return Err(ApiError::forbidden("only group admins can do this"));
    }
    Ok(room)
}

/// `PATCH {roomId}/group/title {title}`.
pub async fn set_title(
    app: &App,
    who: &Identity,
    room_id: &str,
    title: &str,
) -> Result<(), ApiError> {
    admin_group(app, who, room_id).await?;
    let title = title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::bad(format!(
            "title is required (1 to {MAX_TITLE_CHARS} characters)"
        )));
    }
    app.store.set_room_text(room_id, "title", title).await?;
    super::post::post_info(
        app,
        room_id,
        who,
        "updateTitle",
        room_id,
        title,
        format!("{} changed the group title to {title}", who.name),
    )
    .await
}

/// `PATCH {roomId}/group/image` (multipart `file`): answers the image's URL.
pub async fn set_image(
    app: &App,
    who: &Identity,
    room_id: &str,
    bytes: &[u8],
    base: &str,
) -> Result<String, ApiError> {
    admin_group(app, who, room_id).await?;
    let url = format!("{base}{}", app.media.save_image("groups", bytes).await?);
    app.store.set_room_text(room_id, "img", &url).await?;
    super::post::post_info(
        app,
        room_id,
        who,
        "updateImage",
        room_id,
        &url,
        format!("{} changed the group image", who.name),
    )
    .await?;
    Ok(url)
}

/// `PATCH {roomId}/group/description {description}`.
pub async fn set_description(
    app: &App,
    who: &Identity,
    room_id: &str,
    description: &str,
) -> Result<(), ApiError> {
    admin_group(app, who, room_id).await?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::bad(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    app.store
        .set_room_text(room_id, "description", description.trim())
        .await?;
    Ok(())
}

/// `PATCH {roomId}/group/extra-data {…}`: any JSON object the app keeps with the group.
pub async fn set_extra(
    app: &App,
    who: &Identity,
    room_id: &str,
    data: Value,
) -> Result<(), ApiError> {
    admin_group(app, who, room_id).await?;
    if !data.is_object() {
        return Err(ApiError::bad("extra data must be a JSON object"));
    }
    let text = data.to_string();
    if text.len() > MAX_EXTRA_BYTES {
        return Err(ApiError::bad(format!(
            "extra data is larger than {MAX_EXTRA_BYTES} bytes"
        )));
    }
    app.store.set_room_extra(room_id, &text).await?;
    Ok(())
}

/// `GET {roomId}/group/my-status`: whether `who` is out of the group (left or removed).
pub async fn my_status(app: &App, who: &Identity, room_id: &str) -> Result<Value, ApiError> {
    let room = app
        .store
        .room(room_id)
        .await?
        .filter(|r| r.kind() == RoomKind::Group)
        .ok_or_else(|| ApiError::not_found(format!("group {room_id:?} not found")))?;
    let role = app.store.member_role(&room.id, &who.user_id).await?;
    Ok(json!({ "isMeOut": role.is_none() }))
}

/// `GET {roomId}/group/my-info`.
pub async fn my_info(app: &App, who: &Identity, room_id: &str) -> Result<Value, ApiError> {
    let (room, role) = member_group(app, who, room_id).await?;
    let members = app.store.room_member_ids(room_id).await?;
    let online = members
        .iter()
        .filter(|m| !app.presence.sockets(m).is_empty())
        .count();
    let details = app.store.group_details(room_id).await?;
    let extra: Value = details
        .extra_data
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    Ok(json!({
        "isMeOut": false,
        "membersCount": members.len(),
        "totalOnline": online,
        "myRole": role_name(&room, &who.user_id, &role),
        "groupSettings": {
            "cId": room.created_by,
            "createdAt": room.created_at,
            "pinMsg": Value::Null,
            "extraData": extra,
            "desc": details.description,
        },
    }))
}

/// `GET {roomId}/group/members?limit&page&name`: `docs: [{userData, gR}]`.
pub async fn members(
    app: &App,
    who: &Identity,
    room_id: &str,
    name: &str,
    limit: Option<i64>,
    page: Option<i64>,
) -> Result<Value, ApiError> {
    let (room, _) = member_group(app, who, room_id).await?;
    let (limit, page) = page_args(limit, page)?;
    let rows = app
        .store
        .members_page(room_id, name.trim(), limit + 1, (page - 1) * limit)
        .await?;
    let docs: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "userData": UserData::from(&m.user()),
                "gR": role_name(&room, &m.id, &m.role),
            })
        })
        .collect();
    Ok(paged(docs, limit, page))
}

/// `PATCH {roomId}/group/members/{identifier}/{role}`: `admin` promotes (any admin may),
/// `member` demotes (the creator only; the creator cannot be demoted).
pub async fn set_role(
    app: &App,
    who: &Identity,
    room_id: &str,
    identifier: &str,
    role: &str,
) -> Result<(), ApiError> {
    let room = admin_group(app, who, room_id).await?;
    let target = app
        .store
        .user_by_identifier(identifier)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {identifier:?} not found")))?;
    if app.store.member_role(room_id, &target.id).await?.is_none() {
        return Err(ApiError::bad("that user is not a member of this group"));
    }
    let (role, action, verb) = match role {
        "admin" => ("admin", "upAdmin", "made an admin"),
        "member" => {
            if room.created_by != who.user_id {
                return Err(ApiError::forbidden(
                    "only the group's creator can demote admins",
                ));
            }
            if target.id == room.created_by {
                return Err(ApiError::bad("the group's creator cannot be demoted"));
            }
            ("member", "downMember", "made a member")
        }
        other => {
            return Err(ApiError::bad(format!(
                "role must be admin or member, not {other:?}"
            )))
        }
    };
    if !app.store.set_member_role(room_id, &target.id, role).await? {
        return Err(ApiError::bad(format!("that user is already {role}")));
    }
    super::post::post_info(
        app,
        room_id,
        who,
        action,
        &target.id,
        &target.full_name,
        format!("{} {verb} {}", who.name, target.full_name),
    )
    .await
}

/// `GET {roomId}/group/available-users-to-add?limit&page&name`: users not in the group.
pub async fn available(
    app: &App,
    who: &Identity,
    room_id: &str,
    name: &str,
    limit: Option<i64>,
    page: Option<i64>,
) -> Result<Value, ApiError> {
    member_group(app, who, room_id).await?;
    let (limit, page) = page_args(limit, page)?;
    let rows = app
        .store
        .users_not_in(
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

/// `GET {roomId}/group/message/{mId}/status/seen|deliver`: `docs: [{dAt, sAt?, userData}]`. A
/// member's times are when their receipt watermark last moved past the message (receipts are
/// kept per member, not per message, so a group of thousands costs one row per member).
pub async fn message_status(
    app: &App,
    who: &Identity,
    room_id: &str,
    message_id: &str,
    kind: &str,
    limit: Option<i64>,
    page: Option<i64>,
) -> Result<Value, ApiError> {
    member_group(app, who, room_id).await?;
    message_status_of(
        app,
        room_id,
        message_id,
        kind,
        limit,
        page,
        Receipts::Watermarks,
    )
    .await
}

/// Where a message's receipts come from.
pub(super) enum Receipts {
    /// Group members' receipt watermarks.
    Watermarks,
    /// The copies a broadcast message left in each recipient's single room.
    BroadcastCopies,
}

/// Who delivered (`deliver`) or saw (`seen`) message `message_id` of `room_id`, once the
/// caller's access is checked: `docs: [{dAt, sAt?, userData}]`, paged.
pub(super) async fn message_status_of(
    app: &App,
    room_id: &str,
    message_id: &str,
    kind: &str,
    limit: Option<i64>,
    page: Option<i64>,
    from: Receipts,
) -> Result<Value, ApiError> {
    let seen = match kind {
        "seen" => true,
        "deliver" => false,
        other => {
            return Err(ApiError::bad(format!(
                "status must be seen or deliver, not {other:?}"
            )))
        }
    };
    let (limit, page) = page_args(limit, page)?;
    let msg = app
        .store
        .message(message_id)
        .await?
        .filter(|m| m.room_id == room_id)
        .ok_or_else(|| ApiError::not_found(format!("message {message_id:?} not found")))?;
    let (take, skip) = (limit + 1, (page - 1) * limit);
    let rows = match from {
        Receipts::Watermarks => {
            app.store
                .message_receipts(room_id, msg.seq, &msg.sender_id, seen, take, skip)
                .await?
        }
        Receipts::BroadcastCopies => app.store.copy_receipts(&msg.id, seen, take, skip).await?,
    };
    let docs: Vec<Value> = rows
        .iter()
        .map(|r| {
            let delivered = r.delivered_at.as_ref().or(r.seen_at.as_ref());
            json!({
                "dAt": delivered.unwrap_or(&msg.created_at),
                "sAt": if seen { r.seen_at.as_deref() } else { None },
                "userData": UserData::from(&r.user()),
            })
        })
        .collect();
    Ok(paged(docs, limit, page))
}
