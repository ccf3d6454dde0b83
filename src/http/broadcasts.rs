//! `/api/v2/channel/broadcast` and `/api/v2/channel/{roomId}/broadcast/*`. The rules live in
//! `chat::broadcasts`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use serde::Deserialize;

use super::extract::{Body, Files, Form, Me, Params, PublicBase};
use crate::app::App;
use crate::chat::broadcasts::{self, NewBroadcast};
use crate::chat::rooms::NewMembers;
use crate::wire::envelope::{ok, ApiResult};
use crate::wire::ApiError;

#[derive(Debug, Deserialize)]
pub struct Title {
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    page: Option<i64>,
    name: Option<String>,
}

pub async fn create(
    State(app): State<Arc<App>>,
    Me(who): Me,
    PublicBase(base): PublicBase,
    req: Request,
) -> ApiResult {
    let f = Form::read(req, &app, Files::InMemory(app.config.max_image_bytes)).await?;
    let body: NewBroadcast = f.parse()?;
    let image = f.file("file").map(|p| p.bytes.as_ref());
    Ok(ok(broadcasts::create(&app, &who, body, image, &base).await?))
}

pub async fn title(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<Title>,
) -> ApiResult {
    let title = b.title.ok_or_else(|| ApiError::bad("title is required"))?;
    broadcasts::set_title(&app, &who, &room, &title).await?;
    Ok(ok("Done"))
}

pub async fn image(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    PublicBase(base): PublicBase,
    req: Request,
) -> ApiResult {
    let form = Form::read(req, &app, Files::InMemory(app.config.max_image_bytes)).await?;
    let file = form
        .file("file")
        .ok_or_else(|| ApiError::bad("the image must be a multipart part named file"))?;
    Ok(ok(broadcasts::set_image(
        &app,
        &who,
        &room,
        &file.bytes,
        &base,
    )
    .await?))
}

pub async fn members(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Params(q): Params<ListQuery>,
) -> ApiResult {
    Ok(ok(
        broadcasts::members(&app, &who, &room, q.limit, q.page).await?
    ))
}

pub async fn add(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<NewMembers>,
) -> ApiResult {
    Ok(ok(broadcasts::add(&app, &who, &room, b.identifiers).await?))
}

pub async fn kick(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, identifier)): Path<(String, String)>,
) -> ApiResult {
    broadcasts::kick(&app, &who, &room, &identifier).await?;
    Ok(ok("Done"))
}

pub async fn my_info(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    Ok(ok(broadcasts::my_info(&app, &who, &room).await?))
}

pub async fn available(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Params(q): Params<ListQuery>,
) -> ApiResult {
    let name = q.name.unwrap_or_default();
    Ok(ok(broadcasts::available(
        &app, &who, &room, &name, q.limit, q.page,
    )
    .await?))
}

pub async fn message_status(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, message, kind)): Path<(String, String, String)>,
    Params(q): Params<ListQuery>,
) -> ApiResult {
    Ok(ok(broadcasts::message_status(
        &app, &who, &room, &message, &kind, q.limit, q.page,
    )
    .await?))
}
