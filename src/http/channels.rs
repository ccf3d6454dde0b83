//! `/api/v2/channel/*`: rooms, members, messages, receipts.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::extract::{parse_json, Body, Me, Params};
use crate::app::App;
use crate::chat::messages::{self, SendMessage};
use crate::chat::rooms::{self, NewGroup, NewMembers};
use crate::wire::envelope::{ok, ApiResult};
use crate::wire::ApiError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    limit: Option<i64>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Params(q): Params<ListQuery>,
) -> ApiResult {
    Ok(ok(rooms::list(&app, &who, q.limit).await?))
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

pub async fn create_group(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Form(body): Form<NewGroup>,
) -> ApiResult {
    Ok(ok(rooms::create_group(&app, &who, body).await?))
}

pub async fn add_members(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    Form(body): Form<NewMembers>,
) -> ApiResult {
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

pub async fn send(
    State(app): State<Arc<App>>,
    Me(who): Me,
    Path(room): Path<String>,
    form: FormWithFiles<SendMessage>,
) -> ApiResult {
    let mut body = form.value;
    body.has_file = form.had_file;
    Ok(ok(messages::send(&app, &who, &room, body).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    limit: Option<i64>,
    last_id: Option<String>,
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
    )
    .await?))
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

/// A body sent as JSON or as multipart form fields (V Chat clients send multipart for messages
/// and groups). Text parts become string fields; file parts are noted, not stored.
pub struct FormWithFiles<T> {
    value: T,
    had_file: bool,
}

pub struct Form<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<App>> for Form<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        Ok(Form(
            FormWithFiles::<T>::from_request(req, app).await?.value,
        ))
    }
}

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<App>> for FormWithFiles<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let multipart = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let Body(value) = Body::<T>::from_request(req, app).await?;
            return Ok(FormWithFiles {
                value,
                had_file: false,
            });
        }
        let mut form = Multipart::from_request(req, app)
            .await
            .map_err(|e| ApiError::bad(format!("invalid multipart body: {e}")))?;
        let mut fields = Map::new();
        let mut had_file = false;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad(format!("invalid multipart body: {e}")))?
        {
            let name = field.name().unwrap_or_default().to_string();
            if field.file_name().is_some() {
                had_file = true;
                continue;
            }
            let text = field
                .text()
                .await
                .map_err(|e| ApiError::bad(format!("invalid multipart field {name:?}: {e}")))?;
            fields.insert(name, Value::String(text));
        }
        let value = parse_json(&serde_json::to_vec(&Value::Object(fields)).expect("serializes"))?;
        Ok(FormWithFiles { value, had_file })
    }
}
