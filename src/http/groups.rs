//! `/api/v2/channel/{roomId}/group/*`: group settings, my info, members and roles, message
//! status. The rules live in `chat::groups`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{Body, Files, Form, Me, Params, PublicBase};
use crate::app::App;
use crate::chat::groups;
use crate::wire::envelope::{ok, ApiResult};
use crate::wire::ApiError;

#[derive(Debug, Deserialize)]
pub struct Title {
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Description {
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    page: Option<i64>,
    name: Option<String>,
}

pub async fn title(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<Title>,
) -> ApiResult {
    let title = b.title.ok_or_else(|| ApiError::bad("title is required"))?;
    groups::set_title(&app, &who, &room, &title).await?;
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
    Ok(ok(
        groups::set_image(&app, &who, &room, &file.bytes, &base).await?
    ))
}

pub async fn description(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<Description>,
) -> ApiResult {
    let text = b
        .description
        .ok_or_else(|| ApiError::bad("description is required"))?;
    groups::set_description(&app, &who, &room, &text).await?;
    Ok(ok("Done"))
}

pub async fn extra_data(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Body(b): Body<Value>,
) -> ApiResult {
    groups::set_extra(&app, &who, &room, b).await?;
    Ok(ok("Done"))
}

pub async fn my_info(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    Ok(ok(groups::my_info(&app, &who, &room).await?))
}

pub async fn my_status(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    Ok(ok(groups::my_status(&app, &who, &room).await?))
}

pub async fn members(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Params(q): Params<ListQuery>,
) -> ApiResult {
    let name = q.name.unwrap_or_default();
    Ok(ok(groups::members(
        &app, &who, &room, &name, q.limit, q.page,
    )
    .await?))
}

pub async fn set_role(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path((room, identifier, role)): Path<(String, String, String)>,
) -> ApiResult {
    groups::set_role(&app, &who, &room, &identifier, &role).await?;
    Ok(ok("Done"))
}

pub async fn available(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Params(q): Params<ListQuery>,
) -> ApiResult {
    let name = q.name.unwrap_or_default();
    Ok(ok(groups::available(
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
    Ok(ok(groups::message_status(
        &app, &who, &room, &message, &kind, q.limit, q.page,
    )
    .await?))
}
