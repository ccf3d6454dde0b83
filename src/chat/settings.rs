//! A member's own settings of a room (mute, archive, view-once mode, nickname, translation),
//! "delete for me", and the unread count. None of them changes what others see.

use crate::app::App;
use crate::auth::Identity;
use crate::store::Flag;
use crate::wire::ApiError;

/// Longest nickname.
const MAX_NICK_CHARS: usize = 100;
/// Longest translation language tag.
const MAX_LANG_CHARS: usize = 16;

/// Turns a flag on or off; answers its new value.
pub async fn set_flag(
    app: &App,
    who: &Identity,
    room_id: &str,
    flag: Flag,
    on: bool,
) -> Result<bool, ApiError> {
    super::member_room(app, room_id, &who.user_id).await?;
    app.store
        .set_member_flag(room_id, &who.user_id, flag, on)
        .await?;
    Ok(on)
}

/// `PATCH {roomId}/nick-name {name}`: an empty or missing name clears it.
pub async fn set_nick_name(
    app: &App,
    who: &Identity,
    room_id: &str,
    name: Option<&str>,
) -> Result<(), ApiError> {
    super::member_room(app, room_id, &who.user_id).await?;
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > MAX_NICK_CHARS) {
        return Err(ApiError::bad(format!(
            "name is longer than {MAX_NICK_CHARS} characters"
        )));
    }
    app.store
        .set_member_text(room_id, &who.user_id, "nick", name)
        .await?;
    Ok(())
}

/// `PATCH {roomId}/translate {transTo}` (`None`: `translate/stop`).
pub async fn set_translation(
    app: &App,
    who: &Identity,
    room_id: &str,
    lang: Option<&str>,
) -> Result<(), ApiError> {
    super::member_room(app, room_id, &who.user_id).await?;
    if let Some(l) = lang {
        let ok = !l.is_empty()
            && l.len() <= MAX_LANG_CHARS
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ApiError::bad(
                "transTo must be a language tag such as en or pt-BR",
            ));
        }
    }
    app.store
        .set_member_text(room_id, &who.user_id, "trans", lang)
        .await?;
    Ok(())
}

/// `DELETE channel/{roomId}`: the room's messages so far are gone for `who` only, and the room
/// leaves their list until a newer message comes.
pub async fn delete_for_me(app: &App, who: &Identity, room_id: &str) -> Result<(), ApiError> {
    super::member_room(app, room_id, &who.user_id).await?;
    app.store.clear_room_for(room_id, &who.user_id).await?;
    Ok(())
}

/// `GET {roomId}/un-read-count`.
pub async fn unread_count(app: &App, who: &Identity, room_id: &str) -> Result<i64, ApiError> {
    super::member_room(app, room_id, &who.user_id).await?;
    Ok(app.store.unread_count(room_id, &who.user_id).await?)
}
