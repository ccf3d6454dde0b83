//! Cluster mode: the chat messages a node's sockets missed while it was cut off from Redis (both
//! of its subscriber connections down), sent to them once it is subscribed again. A room emit
//! published meanwhile reached no socket here, and the store has every message: those stored
//! since a little before the break that no socket here got are sent, as `v1OnNewMessage`, to
//! the member sockets here of their rooms whose connect was done before the message was stored
//! (a socket that connected later had its client read the room over REST).
//!
//! A client takes a message by its `lId` only when it sent it, and counts any other as one more
//! unread, so the messages the node's sockets got before the break, or get since it is
//! subscribed again, are not sent twice: the node remembers them (`realtime::delivered`) from
//! some seconds before the break until this is done. Other events sent meanwhile (receipts,
//! deletes, typing, call events) are not sent again.
//!
//! Not while a node of a build before [`ROOMS_SINCE`] is live (at the break or now): room emits
//! then come through the Socket.IO adapter, which this node does not note, so it could not tell
//! what its sockets got.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::App;
use crate::cluster::wire::ROOMS_SINCE;
use crate::realtime::delivered::Hold;
use crate::wire::events;
use crate::wire::shapes::MessageOut;

/// Taken off the moment the break was seen: messages in flight when the connection died, and
/// other nodes' clocks somewhat behind this one's (a message's id holds its node's second).
/// Nodes' clocks are taken to agree within this.
pub const BEFORE_THE_BREAK: Duration = Duration::from_secs(10);

/// Messages read per store round trip.
const PAGE: i64 = 1_000;

/// A read that failed is tried again after this, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The break being made up for: when it was seen, and whether every live node sent room emits
/// on room channels then.
pub struct Break {
    pub at: SystemTime,
    pub rooms_on_channels: bool,
    /// The node's list of messages its sockets got, held from the break until this is done.
    pub held: Hold,
}

/// Sends the messages stored since the break (less [`BEFORE_THE_BREAK`]) that no socket here
/// got to the member sockets here of their rooms. Run once the sockets sit in their rooms again
/// and the node listens to those rooms (see `realtime::membership::reread_all`): a member
/// added meanwhile gets the room's messages, one removed does not, and what is stored after
/// this has read the store arrives by the room's channel.
pub async fn since(app: &App, broke: Break) {
    let on_channels = app
        .cluster
        .as_ref()
        .is_some_and(|c| c.all_speak(ROOMS_SINCE));
    if !broke.rooms_on_channels || !on_channels {
        tracing::warn!(
            "messages missed while cut off from Redis not sent: a node of an older build was live"
        );
        return;
    }
    let from = broke
        .at
        .checked_sub(BEFORE_THE_BREAK)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Ids begin with their second as 8 hex digits, so this is the first id of that second.
    let floor = format!("{:08x}", from as u32);
    let Some((first, last)) = retried(|| app.store.seqs_since(&floor)).await else {
        return;
    };
    let (mut after, mut sent) = (first - 1, 0u64);
    while after < last {
        let rows = retried(|| async move {
            app.store
                .messages_in_seqs(after, last, PAGE)
                .await
                .map(Some)
        })
        .await;
        let Some(rows) = rows.filter(|r| !r.is_empty()) else {
            break;
        };
        after = rows.last().map_or(last, |r| r.seq);
        // Stored after `first` by seq, but before the floor by its node's clock: sent before
        // the break, as far as can be told.
        for row in rows.iter().filter(|r| r.id.as_str() >= floor.as_str()) {
            let sockets = app
                .notify
                .room_sockets_before(&row.room_id, &row.created_at);
            if sockets.is_empty() || !app.notify.delivered.claim(&row.room_id, &row.local_id) {
                continue;
            }
            let text = crate::realtime::notify::encode(&MessageOut::from(row));
            app.notify.emit_to(&sockets, events::ON_NEW_MESSAGE, &text);
            sent += 1;
        }
    }
    app.notify.messages_replayed.inc_by(sent);
    if sent > 0 {
        tracing::warn!(
            messages = sent,
            "messages stored while this node was cut off from Redis sent to its sockets"
        );
    }
    drop(broke.held);
}

/// Runs a store read until it succeeds (the sockets wait for their messages meanwhile);
/// `None` when there is nothing to read.
async fn retried<T, F, Fut>(read: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<Option<T>>>,
{
    let mut wait = RETRY_FIRST;
    loop {
        match read().await {
            Ok(found) => return found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the messages missed while cut off from Redis; trying later");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}
