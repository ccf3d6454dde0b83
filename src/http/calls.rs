//! `/api/v2/call/*`.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{Body, Me, SocketHint};
use crate::app::App;
use crate::calls::machine::Action;
use crate::calls::service::{self, acting_device};
use crate::wire::envelope::{ok, ApiResult};
use crate::wire::shapes::CreateCall;

pub async fn create(
    State(app): State<Arc<App>>,
    Me(who): Me,
    SocketHint(hint): SocketHint,
    Path(room_id): Path<String>,
    Body(body): Body<CreateCall>,
) -> ApiResult {
    let device = acting_device(&app, &who, hint.as_deref());
    let created = crate::calls::route::create(&app, &who, device, &room_id, body).await?;
    Ok(ok(created))
}

#[derive(Debug, Default, Deserialize)]
pub struct AcceptBody {
    #[serde(default)]
    payload: Value,
}

pub async fn accept(
    State(app): State<Arc<App>>,
    Me(who): Me,
    SocketHint(hint): SocketHint,
    Path(meet_id): Path<String>,
    Body(body): Body<AcceptBody>,
) -> ApiResult {
    let action = Action::Accept {
        answer: body.payload,
    };
    let device = acting_device(&app, &who, hint.as_deref());
    crate::calls::route::act(&app, &who, &device, &meet_id, action).await?;
    Ok(ok(meet_id))
}

async fn simple(
    app: Arc<App>,
    who: crate::auth::Identity,
    hint: Option<String>,
    meet_id: String,
    action: Action,
) -> ApiResult {
    let device = acting_device(&app, &who, hint.as_deref());
    let status = crate::calls::route::act(&app, &who, &device, &meet_id, action).await?;
    Ok(ok(format!("call {}", status.as_str())))
}

pub async fn reject(
    State(app): State<Arc<App>>,
    Me(who): Me,
    SocketHint(h): SocketHint,
    Path(id): Path<String>,
) -> ApiResult {
    simple(app, who, h, id, Action::Reject).await
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    Me(who): Me,
    SocketHint(h): SocketHint,
    Path(id): Path<String>,
) -> ApiResult {
    simple(app, who, h, id, Action::Cancel).await
}

pub async fn end(
    State(app): State<Arc<App>>,
    Me(who): Me,
    SocketHint(h): SocketHint,
    Path(id): Path<String>,
) -> ApiResult {
    simple(app, who, h, id, Action::End).await
}

pub async fn end_v2(
    State(app): State<Arc<App>>,
    Me(who): Me,
    SocketHint(h): SocketHint,
    Path(id): Path<String>,
) -> ApiResult {
    simple(app, who, h, id, Action::Hangup).await
}

pub async fn active(State(app): State<Arc<App>>, Me(who): Me) -> ApiResult {
    Ok(ok(service::active(&app, &who).await?))
}

pub async fn history(State(app): State<Arc<App>>, Me(who): Me) -> ApiResult {
    Ok(ok(service::history(&app, &who).await?))
}

pub async fn clear_history(State(app): State<Arc<App>>, Me(who): Me) -> ApiResult {
    app.store.hide_all_calls(&who.user_id).await?;
    Ok(ok("Done"))
}

pub async fn clear_one(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(id): Path<String>,
) -> ApiResult {
    if !app.store.hide_call(&id, &who.user_id).await? {
        return Err(crate::wire::ApiError::not_found(format!(
            "call {id:?} not found in your history"
        )));
    }
    Ok(ok("Done"))
}

/// Gen-B clients join the Agora channel named by the room id with a token from here.
pub async fn agora_access(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
) -> ApiResult {
    Ok(ok(service::agora_access(&app, &who, &room).await?))
}

pub async fn ice_servers(State(app): State<Arc<App>>, Me(who): Me) -> ApiResult {
    Ok(ok(app.ice.for_user(&who.user_id)))
}
