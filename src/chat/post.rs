//! Posting a message: commit it (idempotent on the sender's localId), then announce it to the
//! room and wake members who are asleep. Shared by user messages, call notes, group and
//! broadcast `info` messages and broadcast copies.

use serde_json::json;

use crate::app::App;
use crate::auth::Identity;
use crate::store::{Inserted, MessageRow, NewMessage, UserRow};
use crate::wire::events;
use crate::wire::shapes::MessageOut;
use crate::wire::ApiError;

/// Commits a message, then announces it to the room and wakes members who are asleep, if it
/// is new (a retry announces nothing).
pub async fn commit(app: &App, msg: &NewMessage) -> Result<(MessageRow, bool), ApiError> {
    let writing = std::time::Instant::now();
    app.notify.posting_message(&msg.room_id, &msg.local_id);
    let inserted = app.store.insert_message(msg).await;
    let stored = matches!(inserted, Ok(Inserted::Created(_)));
    app.notify
        .posted_message(&msg.room_id, &msg.local_id, stored);
    app.metrics
        .committed(crate::metrics::Commit::Message, writing);
    match inserted? {
        Inserted::Created(row) => {
            app.metrics.inc(|m| &m.messages_sent);
            app.notify
                .to_room(
                    &row.room_id,
                    events::ON_NEW_MESSAGE,
                    &MessageOut::from(&row),
                )
                .await;
            crate::wake::new_message(app, &row).await;
            Ok((row, true))
        }
        Inserted::Existing(row) => Ok((row, false)),
        Inserted::LocalIdTaken => Err(ApiError::bad(format!(
            "localId {:?} is already used by another message in this room",
            msg.local_id
        ))),
    }
}

/// A message from `sender` with no extras; callers fill in what differs.
pub fn message_by(
    sender: &UserRow,
    room_id: &str,
    local_id: String,
    kind: &str,
    content: String,
) -> NewMessage {
    NewMessage {
        platform: "other".into(),
        room_id: room_id.into(),
        sender_id: sender.id.clone(),
        sender_name: sender.full_name.clone(),
        sender_identifier: sender.identifier.clone(),
        sender_img: sender.img.clone(),
        local_id,
        kind: kind.into(),
        content,
        is_encrypted: false,
        attachment: None,
        reply_to: None,
        forward_id: None,
        parent_broadcast_id: None,
        is_one_seen: false,
    }
}

pub fn as_user(who: &Identity) -> UserRow {
    UserRow {
        id: who.user_id.clone(),
        full_name: who.name.clone(),
        identifier: who.identifier.clone(),
        img: who.img.clone(),
    }
}

/// Posts a group `info` message (`msgAtt.action`: kick, leave, addGroupMember, createGroup).
pub async fn post_info(
    app: &App,
    room_id: &str,
    admin: &Identity,
    action: &str,
    target_id: &str,
    target_name: &str,
    content: String,
) -> Result<(), ApiError> {
    let msg = NewMessage {
        attachment: Some(
            json!({
                "action": action,
                "targetName": target_name,
                "adminName": admin.name,
                "targetId": target_id,
            })
            .to_string(),
        ),
        ..message_by(
            &as_user(admin),
            room_id,
            crate::ids::new_id(),
            "info",
            content,
        )
    };
    commit(app, &msg).await?;
    Ok(())
}
