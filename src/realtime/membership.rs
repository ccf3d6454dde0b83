//! Which chat rooms a socket sits in, as read from the store: at connect, and, in a cluster,
//! again for every socket here once this node's subscription to the other nodes is back. While
//! it was not subscribed, a membership change made on another node reached neither its bus
//! channel nor the Socket.IO adapter's, and was lost here; the store has it.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;

use super::remote::here;
use super::room_names::{chat_room, room_of, user_room};
use crate::app::App;
use crate::cluster::driver::Adapter;

type SocketRef = socketioxide::extract::SocketRef<Adapter>;

/// Users whose rooms are read at once after a resubscription: enough to be quick with many
/// users here, few enough to leave the store's pool to requests.
const READS_AT_ONCE: usize = 8;

/// Reads the user's rooms and hands them to `sit` (with the previous read's, none at first);
/// reads them again (up to three more times) while a membership change for the user was seen
/// here meanwhile, as it may have raced the read. A change committed after the last read is
/// seen after it, and moves the sockets itself.
pub async fn settle(
    app: &App,
    user: &str,
    mut sit: impl FnMut(&[String], &[String]),
) -> sqlx::Result<Vec<String>> {
    let mut changes = app.notify.membership_changes(user);
    let mut rooms = app.store.joinable_rooms(user).await?;
    sit(&[], &rooms);
    for _ in 0..3 {
        let seen = app.notify.membership_changes(user);
        if seen == changes {
            break;
        }
        changes = seen;
        let now = app.store.joinable_rooms(user).await?;
        sit(&rooms, &now);
        rooms = now;
    }
    Ok(rooms)
}

/// What [`sit_in`] changed: chat rooms joined and left.
#[derive(Default)]
pub struct Moved {
    pub joined: HashSet<String>,
    pub left: HashSet<String>,
}

/// Puts the socket in exactly these chat rooms (its other Socket.IO rooms stay). It also takes
/// the socket out of a room that an uncounted change (one through the adapter's channel) put it
/// in after the read: right only for [`reread_all`], whose reads follow every change sent
/// that way because this node was not subscribed (a node of a build before 12-08 sends every
/// change that way; in that rolling-upgrade window a reread may undo one until the next).
pub fn sit_in(s: &SocketRef, rooms: &[String], moved: &mut Moved) {
    let wanted: HashSet<&str> = rooms.iter().map(String::as_str).collect();
    let now = s.rooms();
    let sits: HashSet<&str> = now.iter().filter_map(|r| room_of(r)).collect();
    let gone: Vec<&str> = sits.difference(&wanted).copied().collect();
    let new: Vec<&str> = wanted.difference(&sits).copied().collect();
    if !gone.is_empty() {
        s.leave(gone.iter().map(|r| chat_room(r)).collect::<Vec<_>>());
        moved.left.extend(gone.into_iter().map(str::to_string));
    }
    if !new.is_empty() {
        s.join(new.iter().map(|r| chat_room(r)).collect::<Vec<_>>());
        moved.joined.extend(new.into_iter().map(str::to_string));
    }
}

/// Cluster mode, once this node is subscribed to the other nodes again: every socket here is
/// put in the rooms the store has for its user, and the node listens to those rooms' channels
/// before this returns. Run beside the bus, not before it is read: a change heard meanwhile is
/// seen by [`settle`].
pub async fn reread_all(app: Arc<App>) {
    let users: HashSet<String> = app
        .presence
        .local_sockets()
        .into_iter()
        .map(|(user, _, _)| user)
        .collect();
    let read: Vec<(Moved, Vec<String>)> = futures_util::stream::iter(users)
        .map(|user| {
            let app = app.clone();
            async move { reread(&app, &user).await }
        })
        .buffer_unordered(READS_AT_ONCE)
        .collect()
        .await;
    let (mut joined, mut left, mut rooms) = (0, HashSet::new(), HashSet::new());
    for (moved, sits) in read {
        joined += moved.joined.len();
        left.extend(moved.left);
        rooms.extend(sits);
    }
    if joined > 0 || !left.is_empty() {
        tracing::warn!(
            joined,
            left = left.len(),
            "rooms changed unheard while this node was not subscribed; its sockets moved now"
        );
    }
    if let Some(listening) = &app.notify.listening {
        // Every room, not only those joined: the new connection's own subscribes (asked for
        // before this) are then done too.
        listening.ensure(rooms.into_iter().collect()).await;
        listening.maybe_unused(left.into_iter().collect());
    }
    app.notify.rooms_reread.inc();
}

/// One user's sockets here, put in the user's rooms: what moved, and the rooms.
async fn reread(app: &App, user: &str) -> (Moved, Vec<String>) {
    let mut moved = Moved::default();
    let read = settle(app, user, |_, rooms| {
        let sockets = here(app.notify.io()).map(|h| h.to(user_room(user)).sockets());
        for s in sockets.unwrap_or_default() {
            sit_in(&s, rooms, &mut moved);
        }
    })
    .await;
    match read {
        Ok(rooms) => (moved, rooms),
        Err(e) => {
            // The sockets keep the rooms they had; a reconnect reads them again.
            tracing::warn!(user, error = %e, "cannot read a user's rooms again");
            (moved, Vec::new())
        }
    }
}
