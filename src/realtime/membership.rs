//! Which chat rooms a user's sockets sit in, as read from the store: at connect, and, in a
//! cluster, again for every user with a socket here once this node's subscription to the other
//! nodes is back. While it was not subscribed, a membership change made on another node reached
//! neither its bus channel nor the Socket.IO adapter's, and was lost here; the store has it
//! (every change is stored before it is sent).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use super::remote::{here, named_rooms_here};
use super::room_names::{chat_room, room_of, user_of, user_room};
use crate::app::App;
use crate::cluster::driver::Io;
use crate::store::JOINABLE_MAX;

/// Users whose rooms are read at once in a reread: enough to be quick with many users here,
/// few enough to leave the store's pool to requests.
const READS_AT_ONCE: usize = 8;

/// A reread whose store reads failed tries those users again after this, doubling up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Reads the user's rooms and hands them to `sit` (with the previous read's, none at first);
/// reads them again (up to three more times) while a membership change for the user, or a
/// reread of every user, was seen here meanwhile, as it may have raced the read. A change
/// committed after the last read is seen after it, and moves the sockets itself.
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

/// Cluster mode, once this node is subscribed to the other nodes again (or back from being
/// taken for dead): the sockets of every user here are put in the rooms the store has for the
/// user, and the node listens to those rooms' channels. Users whose read fails, or whose rooms
/// are not listened to yet (Redis not answering again), are tried again until both are done;
/// `vchat_cluster_rooms_reread_total` counts rereads done for every user.
///
/// It runs beside the bus, not before it is read: a change heard meanwhile is seen by
/// [`settle`]. Reads under way when it begins (a connect's, an earlier reread's) read again, so
/// none of them applies what it read before the subscription was back after this reread.
pub async fn reread_all(app: Arc<App>) {
    app.notify.rereading();
    let mut users = users_here(app.notify.io()).await;
    let mut wait = RETRY_FIRST;
    let (mut joined, mut left) = (HashSet::new(), HashSet::new());
    loop {
        let read: Vec<(String, Result<Moves, String>)> = futures_util::stream::iter(users)
            .map(|user| {
                let app = app.clone();
                async move {
                    let moved = reread(&app, &user).await;
                    (user, moved)
                }
            })
            .buffer_unordered(READS_AT_ONCE)
            .collect()
            .await;
        let mut failed = Vec::new();
        for (user, moved) in read {
            match moved {
                Ok(m) => {
                    joined.extend(m.joined);
                    left.extend(m.left);
                }
                Err(e) => {
                    tracing::warn!(user, error = %e, "a user's rooms not read again yet; trying later");
                    failed.push(user);
                }
            }
        }
        if failed.is_empty() {
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
        let still = users_here(app.notify.io()).await;
        users = failed.into_iter().filter(|u| still.contains(u)).collect();
    }
    if !joined.is_empty() || !left.is_empty() {
        tracing::warn!(
            joined = joined.len(),
            left = left.len(),
            "rooms changed unheard while this node was not subscribed; its sockets moved now"
        );
    }
    app.notify.rooms_reread.inc();
}

/// The users with a socket here: every user's room in the adapter's lists, so also those whose
/// socket's connect is still under way (a socket joins its user's room first).
async fn users_here(io: &Io) -> HashSet<String> {
    named_rooms_here(io, user_of).await
}

/// Chat rooms (ids) a reread moved a user's sockets into and out of.
#[derive(Default)]
struct Moves {
    joined: HashSet<String>,
    left: HashSet<String>,
}

/// One user's sockets here, put in the rooms the store has for the user; the node listens to
/// those rooms before this returns, or it fails (to be tried again: what is sent to a room not
/// listened to yet would be lost, and a replay after this relies on it).
async fn reread(app: &App, user: &str) -> Result<Moves, String> {
    let mut moves = Moves::default();
    let rooms = settle(app, user, |_, rooms| {
        move_to(app.notify.io(), user, rooms, &mut moves)
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Some(listening) = &app.notify.listening {
        let listened = listening.ensure(rooms).await;
        listening.maybe_unused(moves.left.iter().cloned().collect());
        if !listened {
            return Err("its rooms' channels are not subscribed yet".into());
        }
    }
    Ok(moves)
}

/// Every socket of the user here (a connecting one too: the adapter's room lists, as
/// `remote::move_here`) sits in exactly these chat rooms afterwards. Unlike a connect, this
/// also takes the sockets out of a room that an uncounted change (one through the adapter's
/// channel) put them in after the read: right only for a reread, whose reads follow every
/// change sent that way because this node was not subscribed. (While a node of a build before
/// [`crate::cluster::wire::ROOMS_SINCE`] is live, it sends every change that way; in that
/// window a reread can undo one until the user's sockets reconnect.) A read cut at
/// [`JOINABLE_MAX`] leaves no room: which rooms it holds is not set.
fn move_to(io: &Io, user: &str, rooms: &[String], moves: &mut Moves) {
    let sockets = || here(io).map(|h| h.to(user_room(user)));
    let Some(sits) = sockets().and_then(|s| s.rooms().now_or_never()) else {
        return;
    };
    let sits: HashSet<String> = sits
        .unwrap_or_default()
        .iter()
        .filter_map(|r| room_of(r).map(str::to_string))
        .collect();
    let wanted: HashSet<&str> = rooms.iter().map(String::as_str).collect();
    let gone: Vec<String> = sits
        .iter()
        .filter(|r| !wanted.contains(r.as_str()))
        .cloned()
        .collect();
    if !gone.is_empty() && rooms.len() < JOINABLE_MAX {
        if let Some(s) = sockets() {
            let out: Vec<String> = gone.iter().map(|r| chat_room(r)).collect();
            let _ = s.leave(out).now_or_never();
        }
        moves.left.extend(gone);
    }
    // Every room, also those some socket of the user sits in already: another may not.
    if let Some(s) = sockets() {
        let all: Vec<String> = rooms.iter().map(|r| chat_room(r)).collect();
        let _ = s.join(all).now_or_never();
    }
    moves
        .joined
        .extend(rooms.iter().filter(|r| !sits.contains(*r)).cloned());
}
