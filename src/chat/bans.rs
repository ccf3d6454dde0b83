//! Bans between two users. Each user is told the state from their own point of view (the
//! original sent the banner's view to both, §6.16). The event goes out before sockets leave the
//! room on ban, and after they rejoin on unban, as the original ordered it.

use crate::app::App;
use crate::auth::Identity;
use crate::store::UserRow;
use crate::wire::events;
use crate::wire::shapes::BanState;
use crate::wire::ApiError;

async fn peer(app: &App, who: &Identity, identifier: &str) -> Result<UserRow, ApiError> {
    let peer = app
        .store
        .user_by_identifier(identifier)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {identifier:?} not found")))?;
    if peer.id == who.user_id {
        return Err(ApiError::bad("you cannot ban or unban yourself"));
    }
    Ok(peer)
}

async fn state(app: &App, me: &str, peer: &str, room_id: &str) -> Result<BanState, ApiError> {
    let (is_me_banner, is_peer_banner) = app.store.ban_flags(me, peer).await?;
    Ok(BanState {
        is_me_banner,
        is_peer_banner,
        room_id: room_id.to_string(),
    })
}

async fn announce(app: &App, me: &str, peer: &str, room_id: &str) -> Result<BanState, ApiError> {
    let mine = state(app, me, peer, room_id).await?;
    let theirs = BanState {
        is_me_banner: mine.is_peer_banner,
        is_peer_banner: mine.is_me_banner,
        room_id: room_id.to_string(),
    };
    app.notify.to_user(me, events::ON_BAN_USER_CHAT, &mine);
    app.notify.to_user(peer, events::ON_BAN_USER_CHAT, &theirs);
    Ok(mine)
}

/// `POST user-ban/{identifier}/ban`.
pub async fn ban(app: &App, who: &Identity, identifier: &str) -> Result<BanState, ApiError> {
    let peer = peer(app, who, identifier).await?;
    let room = app
        .store
        .find_single_room(&who.user_id, &peer.id)
        .await?
        .ok_or_else(|| ApiError::forbidden("you have no chat with this user to ban them from"))?;
    app.store.ban(&who.user_id, &peer.id, &room.id).await?;
    let mine = announce(app, &who.user_id, &peer.id, &room.id).await?;
    app.notify
        .leave_room_all(&[&who.user_id, &peer.id], &room.id)
        .await;
    Ok(mine)
}

/// `POST user-ban/{identifier}/un-ban`: only the banner lifts their ban.
pub async fn unban(app: &App, who: &Identity, identifier: &str) -> Result<BanState, ApiError> {
    let peer = peer(app, who, identifier).await?;
    if !app.store.unban(&who.user_id, &peer.id).await? {
        return Err(ApiError::bad("you have not banned this user"));
    }
    let room = app
        .store
        .find_single_room(&who.user_id, &peer.id)
        .await?
        .ok_or_else(|| ApiError::Internal("banned pair has no room".into()))?;
    if !app.store.is_blocked(&who.user_id, &peer.id).await? {
        app.notify
            .join_room_all(&[&who.user_id, &peer.id], &room.id)
            .await;
    }
    announce(app, &who.user_id, &peer.id, &room.id).await
}

/// `GET user-ban/{identifier}/ban`.
pub async fn get(app: &App, who: &Identity, identifier: &str) -> Result<BanState, ApiError> {
    let peer = peer(app, who, identifier).await?;
    let room_id = app
        .store
        .find_single_room(&who.user_id, &peer.id)
        .await?
        .map(|r| r.id)
        .unwrap_or_default();
    state(app, &who.user_id, &peer.id, &room_id).await
}
