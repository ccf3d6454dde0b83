//! Cluster mode: the chat messages a node's sockets missed while it was cut off from Redis (both
//! of its subscriber connections down), sent to them once it is subscribed again. A room emit
//! published meanwhile reached no socket here, and the store has every message: those stored
//! since a little before the break that no socket here got are sent, as `v1OnNewMessage`, to
//! the member sockets here of their rooms. A client takes a message by its `lId` only when it
//! sent it, and counts any other as one more unread, so the messages the node's sockets got
//! before the break, or get since it is subscribed again, are not sent twice: the node
//! remembers them (`realtime::delivered`) from some seconds before the break until this is
//! done. Other events sent meanwhile (receipts, deletes, call events) are not sent again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::App;
use crate::realtime::delivered::Hold;
use crate::wire::events;
use crate::wire::shapes::MessageOut;

/// Taken off the moment the break was seen: messages in flight when the connection died, and
/// other nodes' clocks a little behind this one's (a message's id holds its node's second).
const BEFORE_THE_BREAK: Duration = Duration::from_secs(5);

/// Messages read at most; a longer break (its node taken for dead long before) leaves the
/// rest to the clients' next fetch.
const AT_MOST: i64 = 10_000;

/// Sends the messages stored since `broke` (less [`BEFORE_THE_BREAK`]) to the member sockets
/// here of their rooms. Run once the sockets sit in their rooms again (see
/// `realtime::membership::reread_all`), so a member added meanwhile gets the room's messages and
/// one removed does not.
///
/// `_held`: the hold on the node's list of messages got, taken at the break, let go once this
/// is done.
pub async fn since(app: &App, broke: SystemTime, _held: Hold) {
    let from = broke
        .checked_sub(BEFORE_THE_BREAK)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Ids begin with their second as 8 hex digits, so this is the first id of that second.
    let floor = format!("{:08x}", from as u32);
    let rows = match app.store.messages_since(&floor, AT_MOST).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the messages missed while cut off from Redis");
            return;
        }
    };
    if rows.len() as i64 == AT_MOST {
        tracing::warn!(
            at_most = AT_MOST,
            "more messages were stored while this node was cut off than it sends again"
        );
    }
    let mut sent = 0u64;
    for row in &rows {
        if !app.notify.delivered.claim(&row.room_id, &row.local_id) {
            continue;
        }
        let text = crate::realtime::notify::encode(&MessageOut::from(row));
        if app
            .notify
            .to_room_here(&row.room_id, events::ON_NEW_MESSAGE, &text)
        {
            sent += 1;
        }
    }
    app.notify.messages_replayed.inc_by(sent);
    if sent > 0 {
        tracing::warn!(
            messages = sent,
            "messages stored while this node was cut off from Redis sent again to its sockets"
        );
    }
}
