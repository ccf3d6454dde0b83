//! `/api/v2/profile/*`: the user's own profile and finding other users.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use serde::Deserialize;

use super::extract::{Body, Files, Form, Me, Params, PublicBase};
use crate::app::App;
use crate::profile;
use crate::wire::envelope::{ok, ApiResult};
use crate::wire::ApiError;

pub async fn image(
    State(app): State<Arc<App>>,
    Me(who): Me,
    PublicBase(base): PublicBase,
    req: Request,
) -> ApiResult {
    let form = Form::read(req, &app, Files::InMemory(app.config.max_image_bytes)).await?;
    let file = form
        .file("file")
        .ok_or_else(|| ApiError::bad("a file part named \"file\" is required"))?;
    let url = profile::set_image(&app, &who.user_id, &file.bytes, &base).await?;
    Ok(ok(profile::images(&url)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameBody {
    full_name: Option<String>,
}

pub async fn name(State(app): State<Arc<App>>, Me(who): Me, Body(b): Body<NameBody>) -> ApiResult {
    let name = b
        .full_name
        .ok_or_else(|| ApiError::bad("fullName is required"))?;
    profile::set_name(&app, &who, &name).await?;
    Ok(ok("Done"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushBody {
    push_key: Option<String>,
}

pub async fn set_push(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Body(b): Body<PushBody>,
) -> ApiResult {
    let key = b
        .push_key
        .ok_or_else(|| ApiError::bad("pushKey is required"))?;
    profile::set_push_key(&app, &who, &key).await?;
    Ok(ok("Done"))
}

pub async fn clear_push(State(app): State<Arc<App>>, Me(who): Me) -> ApiResult {
    profile::clear_push_key(&app, &who).await?;
    Ok(ok("Done"))
}

pub async fn last_seen(
    State(app): State<Arc<App>>,
    Me(_): Me,
    Path(identifier): Path<String>,
) -> ApiResult {
    Ok(ok(profile::last_seen(&app, &identifier).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersQuery {
    limit: Option<i64>,
    page: Option<i64>,
    full_name: Option<String>,
}

pub async fn users(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Params(q): Params<UsersQuery>,
) -> ApiResult {
    Ok(ok(profile::search(
        &app,
        &who,
        q.full_name.as_deref().unwrap_or(""),
        q.limit.unwrap_or(20),
        q.page.unwrap_or(1),
    )
    .await?))
}
