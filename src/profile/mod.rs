//! Users' profiles: the profile API (`/api/v2/profile/…`): name, image, push key, last seen,
//! user search. The cache every request reads is [`cache`].

pub mod cache;

use serde::Serialize;

use crate::app::App;
use crate::auth::Identity;
use crate::ids::now_iso;
use crate::wire::shapes::{UserData, UserImages};
use crate::wire::ApiError;

/// The longest name accepted.
pub const MAX_NAME_CHARS: usize = 100;

pub fn check_name(name: &str) -> Result<&str, ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad(format!(
            "fullName is required (1 to {MAX_NAME_CHARS} characters)"
        )));
    }
    if n.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "fullName must not contain control characters",
        ));
    }
    Ok(n)
}

/// `PATCH profile/name`.
pub async fn set_name(app: &App, who: &Identity, name: &str) -> Result<(), ApiError> {
    let name = check_name(name)?;
    app.store.set_user_name(&who.user_id, name).await?;
    app.profiles.refresh(&app.store, &who.user_id).await?;
    app.profile_changed(&who.user_id).await;
    Ok(())
}

/// The three image sizes clients read; one stored picture serves all three.
pub fn images(url: &str) -> UserImages {
    UserImages {
        full_image: url.to_string(),
        chat_image: url.to_string(),
        small_image: url.to_string(),
    }
}

/// `PATCH profile/image` (and the avatar of `auth/connect`). Returns the absolute URL.
pub async fn set_image(
    app: &App,
    user_id: &str,
    bytes: &[u8],
    base: &str,
) -> Result<String, ApiError> {
    let path = app.media.save_image("avatars", bytes).await?;
    let url = format!("{base}{path}");
    app.store.set_user_img(user_id, &url).await?;
    app.profiles.refresh(&app.store, user_id).await?;
    app.profile_changed(user_id).await;
    Ok(url)
}

/// The device push keys are kept for: the token's device, or one shared "default" device for
/// tokens that name none.
fn push_device(who: &Identity) -> &str {
    if who.has_device() {
        &who.device
    } else {
        crate::auth::NO_DEVICE
    }
}

/// Longest push key accepted (FCM tokens are about 160 characters).
pub const MAX_PUSH_KEY: usize = 4096;

/// `POST profile/push`.
pub async fn set_push_key(app: &App, who: &Identity, key: &str) -> Result<(), ApiError> {
    let key = key.trim();
    if key.is_empty() || key.len() > MAX_PUSH_KEY {
        return Err(ApiError::bad(format!(
            "pushKey is required (1 to {MAX_PUSH_KEY} characters)"
        )));
    }
    app.store
        .set_push_key(&who.user_id, push_device(who), key)
        .await?;
    Ok(())
}

/// `DELETE profile/push`.
pub async fn clear_push_key(app: &App, who: &Identity) -> Result<(), ApiError> {
    app.store
        .clear_push_key(&who.user_id, push_device(who))
        .await?;
    Ok(())
}

/// `GET profile/users/{identifier}/last-seen`: now for a user online now, else when they were
/// last connected (or first known, if never).
pub async fn last_seen(app: &App, identifier: &str) -> Result<String, ApiError> {
    let user = app
        .store
        .user_by_identifier(identifier)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {identifier:?} not found")))?;
    if !app.presence.sockets(&user.id).is_empty() {
        return Ok(now_iso());
    }
    let (last, created) = app
        .store
        .last_seen(&user.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {identifier:?} not found")))?;
    Ok(last.unwrap_or(created))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub docs: Vec<UserData>,
    pub page: i64,
    pub limit: i64,
    pub next_page: Option<i64>,
}

/// `GET profile/users?limit&page&fullName`.
pub async fn search(
    app: &App,
    who: &Identity,
    name: &str,
    limit: i64,
    page: i64,
) -> Result<UserPage, ApiError> {
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 100"));
    }
    if !(1..=100_000).contains(&page) {
        return Err(ApiError::bad("page must be between 1 and 100000"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad("fullName filter is too long"));
    }
    let mut rows = app
        .store
        .search_users(&who.user_id, name.trim(), limit + 1, (page - 1) * limit)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(UserPage {
        docs: rows.iter().map(UserData::from).collect(),
        page,
        limit,
        next_page: more.then_some(page + 1),
    })
}
