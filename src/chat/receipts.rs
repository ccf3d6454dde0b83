//! Delivered / seen receipts (protocol §1.4, §2.1). In single rooms the peer is told; in groups
//! the watermark moves silently.

use crate::app::App;
use crate::auth::Identity;
use crate::ids::now_iso;
use crate::wire::events;
use crate::wire::shapes::Receipt;

/// The reader has the room's messages. Returns whether anything changed.
pub async fn deliver(
    app: &App,
    who: &Identity,
    room: &str,
    single: bool,
) -> Result<bool, sqlx::Error> {
    let changed = app.store.mark_delivered(room, &who.user_id).await?;
    if single && changed > 0 {
        tell_peer(app, who, room, events::ON_DELIVER_CHAT_ROOM).await?;
    }
    Ok(changed > 0)
}

/// On connect (protocol §1.4): everything pending is delivered; each single-room peer whose
/// messages changed is told, groups move silently.
pub async fn deliver_on_connect(app: &App, who: &Identity) -> Result<(), sqlx::Error> {
    for (room, peer) in app.store.deliver_all_pending(&who.user_id).await? {
        app.notify.to_user(
            &peer,
            events::ON_DELIVER_CHAT_ROOM,
            &Receipt {
                room_id: &room,
                user_id: &peer,
                date: now_iso(),
            },
        );
    }
    Ok(())
}

/// The reader opened the room: everything the peer sent is seen.
pub async fn enter(app: &App, who: &Identity, room: &str, single: bool) -> Result<(), sqlx::Error> {
    app.store.mark_seen(room, &who.user_id).await?;
    if single {
        tell_peer(app, who, room, events::ON_ENTER_CHAT_ROOM).await?;
    }
    Ok(())
}

/// `userId` is the peer: the sender of the messages that changed, who receives the event.
async fn tell_peer(app: &App, who: &Identity, room: &str, event: &str) -> Result<(), sqlx::Error> {
    if let Some(peer) = app.store.single_peer(room, &who.user_id).await? {
        app.notify.to_user(
            &peer.id,
            event,
            &Receipt {
                room_id: room,
                user_id: &peer.id,
                date: now_iso(),
            },
        );
    }
    Ok(())
}
