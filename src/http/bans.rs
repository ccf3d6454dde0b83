//! `/api/v2/user-ban/*`.

use std::sync::Arc;

use axum::extract::{Path, State};

use super::extract::Me;
use crate::app::App;
use crate::chat::bans;
use crate::wire::envelope::{ok, ApiResult};

pub async fn ban(State(app): State<Arc<App>>, Me(who): Me, Path(id): Path<String>) -> ApiResult {
    Ok(ok(bans::ban(&app, &who, &id).await?))
}

pub async fn unban(State(app): State<Arc<App>>, Me(who): Me, Path(id): Path<String>) -> ApiResult {
    Ok(ok(bans::unban(&app, &who, &id).await?))
}

pub async fn get(State(app): State<Arc<App>>, Me(who): Me, Path(id): Path<String>) -> ApiResult {
    Ok(ok(bans::get(&app, &who, &id).await?))
}
