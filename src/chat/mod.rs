//! Text chat: rooms and membership, messages, receipts and bans. Each function checks who may do
//! what, commits to the store, then announces through `notify`.

pub mod attachments;
pub mod bans;
pub mod broadcasts;
pub mod groups;
pub mod media;
pub mod messages;
pub mod paging;
pub mod post;
pub mod receipts;
pub mod replay;
pub mod rooms;
pub mod settings;

use crate::app::App;
use crate::store::RoomRow;
use crate::wire::ApiError;

/// The room, if it exists and `user` is a member; 404 / 403 otherwise.
pub async fn member_room(app: &App, room_id: &str, user: &str) -> Result<RoomRow, ApiError> {
    let room = app
        .store
        .room(room_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("room {room_id:?} not found")))?;
    if app.store.member_role(room_id, user).await?.is_none() {
        return Err(ApiError::forbidden("you are not a member of this room"));
    }
    Ok(room)
}
