//! Rooms and membership. Every membership change moves the affected users' live sockets into
//! or out of the room at once, so room broadcasts are never missed or leaked.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::Identity;
use crate::store::{RoomFilter, RoomKind, RoomRow, UserRow};

use super::groups::admin_group;
use crate::wire::events;
use crate::wire::shapes::{Kicked, RoomOut};
use crate::wire::ApiError;

/// Most users named in one request.
const MAX_NAMED: usize = 1024;

async fn out(app: &App, room: RoomRow, me: &str) -> Result<RoomOut, ApiError> {
    Ok(RoomOut::from(&app.store.room_summary(room, me).await?))
}

async fn user_by_identifier(app: &App, identifier: &str) -> Result<UserRow, ApiError> {
    app.store
        .user_by_identifier(identifier)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {identifier:?} not found")))
}

/// `POST channel/peer-room/{identifier}`: the single room with that user, created on first use.
pub async fn peer_room(app: &App, who: &Identity, identifier: &str) -> Result<RoomOut, ApiError> {
    let peer = user_by_identifier(app, identifier).await?;
    if peer.id == who.user_id {
        return Err(ApiError::bad("you cannot open a chat with yourself"));
    }
    let (room, created) = app.store.single_room(&who.user_id, &peer.id).await?;
    if created {
        app.notify
            .join_room_all(&[&who.user_id, &peer.id], &room.id)
            .await;
    }
    out(app, room, &who.user_id).await
}

/// Identifiers arrive as a JSON array, or (multipart) as its JSON text or a comma list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Identifiers {
    List(Vec<String>),
    Text(String),
}

impl Identifiers {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Identifiers::List(v) => v,
            Identifiers::Text(t) => serde_json::from_str::<Vec<String>>(&t).unwrap_or_else(|_| {
                t.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewGroup {
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default)]
    pub identifiers: Option<Identifiers>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMembers {
    #[serde(default)]
    pub identifiers: Option<Identifiers>,
}

pub(super) async fn resolve(app: &App, ids: Option<Identifiers>) -> Result<Vec<UserRow>, ApiError> {
    let ids = ids.map(Identifiers::into_vec).unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::bad("identifiers must name at least one user"));
    }
    if ids.len() > MAX_NAMED {
        return Err(ApiError::bad(format!("at most {MAX_NAMED} users at once")));
    }
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        users.push(user_by_identifier(app, &id).await?);
    }
    Ok(users)
}

/// Refuses more than `VCHAT_MAX_GROUP_MEMBERS` people in a group (`"a group", "members"`) or
/// a broadcast (`"a broadcast", "recipients"`).
pub(super) fn within_cap(app: &App, count: usize, what: &str, who: &str) -> Result<(), ApiError> {
    let cap = app.config.max_group_members;
    if count as u64 > cap {
        return Err(ApiError::bad(format!(
            "{what} has at most {cap} {who} (VCHAT_MAX_GROUP_MEMBERS)"
        )));
    }
    Ok(())
}

/// `POST channel/group` (multipart: `identifiers`, `groupName`, optional image `file`).
pub async fn create_group(
    app: &App,
    who: &Identity,
    body: NewGroup,
    image: Option<&[u8]>,
    base: &str,
) -> Result<RoomOut, ApiError> {
    let name = body.group_name.unwrap_or_default();
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad("groupName is required (1 to 100 characters)"));
    }
    let members = resolve(app, body.identifiers).await?;
    let ids: Vec<String> = members.iter().map(|u| u.id.clone()).collect();
    let count = ids.iter().filter(|i| **i != who.user_id).count() + 1;
    within_cap(app, count, "a group", "members")?;
    let img = match image {
        Some(bytes) => format!("{base}{}", app.media.save_image("groups", bytes).await?),
        None => String::new(),
    };
    let mut room = app
        .store
        .create_group(&who.user_id, name.trim(), &ids)
        .await?;
    if !img.is_empty() {
        app.store.set_room_text(&room.id, "img", &img).await?;
        room.img = img;
    }
    let joining: Vec<&str> = std::iter::once(who.user_id.as_str())
        .chain(ids.iter().map(String::as_str))
        .collect();
    app.notify.join_room_all(&joining, &room.id).await;
    super::post::post_info(
        app,
        &room.id,
        who,
        "createGroup",
        &room.id,
        name.trim(),
        format!("{} created the group {}", who.name, name.trim()),
    )
    .await?;
    out(app, room, &who.user_id).await
}

/// `POST channel/{roomId}/group/members`.
pub async fn add_members(
    app: &App,
    who: &Identity,
    room_id: &str,
    body: NewMembers,
) -> Result<Value, ApiError> {
    admin_group(app, who, room_id).await?;
    let users = resolve(app, body.identifiers).await?;
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let have = app.store.member_count(room_id).await? as usize;
    within_cap(app, have + ids.len(), "a group", "members")?;
    let added = app.store.add_members(room_id, &ids).await?;
    let joining: Vec<&str> = added.iter().map(String::as_str).collect();
    app.notify.join_room_all(&joining, room_id).await;
    for u in users.iter().filter(|u| added.contains(&u.id)) {
        super::post::post_info(
            app,
            room_id,
            who,
            "addGroupMember",
            &u.id,
            &u.full_name,
            format!("{} added {}", who.name, u.full_name),
        )
        .await?;
    }
    Ok(json!({ "added": added }))
}

/// `DELETE channel/{roomId}/group/members/{identifier}`: the kicked user hears it, then leaves.
pub async fn kick(
    app: &App,
    who: &Identity,
    room_id: &str,
    identifier: &str,
) -> Result<(), ApiError> {
    admin_group(app, who, room_id).await?;
    let target = user_by_identifier(app, identifier).await?;
    if target.id == who.user_id {
        return Err(ApiError::bad(
            "you cannot kick yourself; leave the group instead",
        ));
    }
    if !app.store.remove_member(room_id, &target.id).await? {
        return Err(ApiError::bad("that user is not a member of this group"));
    }
    app.notify
        .to_room(
            room_id,
            events::ON_KICK_GROUP_MEMBER,
            &Kicked {
                room_id,
                user_id: &target.id,
            },
        )
        .await;
    app.notify.leave_room(&target.id, room_id).await;
    super::post::post_info(
        app,
        room_id,
        who,
        "kick",
        &target.id,
        &target.full_name,
        format!("{} removed {}", who.name, target.full_name),
    )
    .await
}

/// `POST channel/{roomId}/group/leave`.
pub async fn leave(app: &App, who: &Identity, room_id: &str) -> Result<(), ApiError> {
    let room = super::member_room(app, room_id, &who.user_id).await?;
    if room.kind() != RoomKind::Group {
        return Err(ApiError::bad("only group rooms can be left"));
    }
    app.store.remove_member(room_id, &who.user_id).await?;
    app.notify.leave_room(&who.user_id, room_id).await;
    super::post::post_info(
        app,
        room_id,
        who,
        "leave",
        &who.user_id,
        &who.name,
        format!("{} left", who.name),
    )
    .await?;
    // The last admin leaving must not orphan the group.
    if let Some(new_admin) = app.store.ensure_admin(room_id).await? {
        if let Some(u) = app.store.user(&new_admin).await? {
            super::post::post_info(
                app,
                room_id,
                who,
                "upAdmin",
                &u.id,
                &u.full_name,
                format!("{} is now an admin", u.full_name),
            )
            .await?;
        }
    }
    Ok(())
}

/// `GET channel/?limit&page&title&roomType&mutedOnly&archiveOnly&deletedOnly`: newest activity
/// first, `{docs, page, limit, nextPage}` as the SDK parses it (page and limit are required ints;
/// nextPage is null on the last page).
pub async fn list(app: &App, who: &Identity, q: ListQuery) -> Result<Value, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=700).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 700"));
    }
    let page = q.page.unwrap_or(1);
    if !(1..=100_000).contains(&page) {
        return Err(ApiError::bad("page must be between 1 and 100000"));
    }
    let kind = match q.room_type.as_deref().unwrap_or("") {
        "" => None,
        "s" => Some("s"),
        "g" => Some("g"),
        "b" => Some("b"),
        // V Chat's "o" rooms do not exist here: nothing matches.
        "o" => {
            return Ok(json!({"docs": [], "page": page, "limit": limit, "nextPage": Value::Null}))
        }
        other => {
            return Err(ApiError::bad(format!(
                "roomType must be s, g, b or o, not {other:?}"
            )))
        }
    };
    let title = q.title.unwrap_or_default();
    if title.chars().count() > 100 {
        return Err(ApiError::bad("title filter is too long"));
    }
    let filter = RoomFilter {
        title,
        kind,
        muted_only: q.muted_only.unwrap_or(false),
        archived_only: q.archive_only.unwrap_or(false),
        deleted_only: q.deleted_only.unwrap_or(false),
    };
    let mut rooms = app
        .store
        .rooms_of(&who.user_id, &filter, limit + 1, (page - 1) * limit)
        .await?;
    let more = rooms.len() as i64 > limit;
    rooms.truncate(limit as usize);
    let docs: Vec<RoomOut> = rooms.iter().map(RoomOut::from).collect();
    Ok(json!({
        "docs": docs,
        "page": page,
        "limit": limit,
        "nextPage": if more { Value::from(page + 1) } else { Value::Null },
    }))
}

/// The room list's query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub page: Option<i64>,
    pub title: Option<String>,
    pub room_type: Option<String>,
    pub muted_only: Option<bool>,
    pub archive_only: Option<bool>,
    pub deleted_only: Option<bool>,
}

/// `GET channel/{roomId}`.
pub async fn get(app: &App, who: &Identity, room_id: &str) -> Result<RoomOut, ApiError> {
    let room = super::member_room(app, room_id, &who.user_id).await?;
    out(app, room, &who.user_id).await
}
