//! `/api/v2/channel/*`: rooms, members, messages, receipts.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use serde::Deserialize;

use super::extract::{Body, Files, Form, Me, Params, PublicBase};
use crate::app::{App, MAX_BODY_BYTES};
use crate::chat::messages::{self, SendMessage};
use crate::chat::rooms::{self, NewGroup, NewMembers};
use crate::chat::settings;
use crate::store::Flag;
use crate::wire::envelope::{ok, ApiResult};

pub async fn list(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Params(q): Params<rooms::ListQuery>,
) -> ApiResult {
    Ok(ok(rooms::list(&app, &who, q).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Muting {
    is_muted: Option<bool>,
}

/// `PATCH {roomId}/notification {isMuted}` (SDK 2.x): answers the new value.
pub async fn notification(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<Muting>,
) -> ApiResult {
    let on = b
        .is_muted
        .ok_or_else(|| crate::wire::ApiError::bad("isMuted (true or false) is required"))?;
    Ok(ok(
        settings::set_flag(&app, &who, &room, Flag::Muted, on).await?
    ))
}

/// `PATCH {roomId}/notification/mute|un-mute`, `archive|un-archive`, `one-seen/on|off`.
pub async fn flag(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, what)): Path<(String, String)>,
) -> ApiResult {
    let (flag, on) = match what.as_str() {
        "mute" => (Flag::Muted, true),
        "un-mute" => (Flag::Muted, false),
        "archive" => (Flag::Archived, true),
        "un-archive" => (Flag::Archived, false),
        "on" => (Flag::OneSeen, true),
        "off" => (Flag::OneSeen, false),
        _ => return Err(crate::wire::ApiError::not_found("no such route")),
    };
    Ok(ok(settings::set_flag(&app, &who, &room, flag, on).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NickName {
    name: Option<String>,
}

pub async fn nick_name(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<NickName>,
) -> ApiResult {
    settings::set_nick_name(&app, &who, &room, b.name.as_deref()).await?;
    Ok(ok("Done"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Translate {
    trans_to: Option<String>,
}

pub async fn translate(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<Translate>,
) -> ApiResult {
    let lang = b
        .trans_to
        .ok_or_else(|| crate::wire::ApiError::bad("transTo is required"))?;
    settings::set_translation(&app, &who, &room, Some(&lang)).await?;
    Ok(ok("Done"))
}

pub async fn translate_stop(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    settings::set_translation(&app, &who, &room, None).await?;
    Ok(ok("Done"))
}

pub async fn delete_room(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    settings::delete_for_me(&app, &who, &room).await?;
    Ok(ok("Done"))
}

pub async fn unread_count(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    Ok(ok(settings::unread_count(&app, &who, &room).await?))
}

pub async fn get(State(app): State<Arc<App>>, Me(who): Me, Path(room): Path<String>) -> ApiResult {
    Ok(ok(rooms::get(&app, &who, &room).await?))
}

pub async fn peer_room(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(identifier): Path<String>,
) -> ApiResult {
    Ok(ok(rooms::peer_room(&app, &who, &identifier).await?))
}

/// Forms of these routes carry no files yet (group images come later).
async fn form(req: Request, app: &Arc<App>) -> Result<Form, crate::wire::ApiError> {
    Form::read(req, app, Files::InMemory(MAX_BODY_BYTES as u64)).await
}

pub async fn create_group(
    State(app): State<Arc<App>>,
    Me(who): Me,
    PublicBase(base): PublicBase,
    req: Request,
) -> ApiResult {
    let f = Form::read(req, &app, Files::InMemory(app.config.max_image_bytes)).await?;
    let body: NewGroup = f.parse()?;
    let image = f.file("file").map(|p| p.bytes.as_ref());
    Ok(ok(
        rooms::create_group(&app, &who, body, image, &base).await?
    ))
}

pub async fn add_members(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    req: Request,
) -> ApiResult {
    let body: NewMembers = form(req, &app).await?.parse()?;
    Ok(ok(rooms::add_members(&app, &who, &room, body).await?))
}

pub async fn kick(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, identifier)): Path<(String, String)>,
) -> ApiResult {
    rooms::kick(&app, &who, &room, &identifier).await?;
    Ok(ok("Done"))
}

pub async fn leave(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    rooms::leave(&app, &who, &room).await?;
    Ok(ok("Done"))
}

/// Text, location and custom messages as JSON or multipart; image, file, video and voice
/// messages as multipart with their files, which stream to disk as they arrive.
pub async fn send(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    PublicBase(base): PublicBase,
    req: Request,
) -> ApiResult {
    let f = Form::read(req, &app, Files::Spooled(app.config.max_upload_bytes)).await?;
    let mut body: SendMessage = f.parse()?;
    body.files = f.uploads;
    Ok(ok(messages::send(&app, &who, &room, body, &base).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    limit: Option<i64>,
    last_id: Option<String>,
    text: Option<String>,
    filter: Option<String>,
    page: Option<i64>,
}

pub async fn messages(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Params(q): Params<PageQuery>,
) -> ApiResult {
    Ok(ok(messages::page(
        &app,
        &who,
        &room,
        q.limit,
        q.last_id.as_deref(),
        q.text.as_deref(),
        q.filter.as_deref(),
    )
    .await?))
}

pub async fn star(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, message, what)): Path<(String, String, String)>,
) -> ApiResult {
    let on = match what.as_str() {
        "star" => true,
        "un-star" => false,
        _ => return Err(crate::wire::ApiError::not_found("no such route")),
    };
    messages::star(&app, &who, &room, &message, on).await?;
    Ok(ok("Done"))
}

pub async fn one_seen(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, message)): Path<(String, String)>,
) -> ApiResult {
    messages::one_seen(&app, &who, &room, &message).await?;
    Ok(ok("Done"))
}

pub async fn room_stars(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Params(q): Params<PageQuery>,
) -> ApiResult {
    Ok(ok(messages::stars(
        &app,
        &who,
        Some(&room),
        q.limit,
        q.page,
    )
    .await?))
}

pub async fn all_stars(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Params(q): Params<PageQuery>,
) -> ApiResult {
    Ok(ok(messages::stars(&app, &who, None, q.limit, q.page).await?))
}

pub async fn delete_all(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, message)): Path<(String, String)>,
) -> ApiResult {
    Ok(ok(
        messages::delete_for_all(&app, &who, &room, &message).await?
    ))
}

pub async fn delete_me(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, message)): Path<(String, String)>,
) -> ApiResult {
    messages::delete_for_me(&app, &who, &room, &message).await?;
    Ok(ok("Done"))
}

pub async fn deliver(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    let room = crate::chat::member_room(&app, &room, &who.user_id).await?;
    let single = room.kind() == crate::store::RoomKind::Single;
    crate::chat::receipts::deliver(&app, &who, &room.id, single).await?;
    Ok(ok("Done"))
}
