//! Payload shapes, field for field as V Chat clients parse them (protocol §2.2, §3, §5.1).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{MessageRow, RoomKind, RoomSummary, UserRow};

// ---------- calls ----------

/// `POST call/create/{roomId}` body. Gen-A sends `payload` as a JSON string and no platform.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCall {
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub with_video: bool,
    #[serde(default)]
    pub meet_platform: Option<String>,
}

// ---------- users ----------

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserImages {
    pub full_image: String,
    pub chat_image: String,
    pub small_image: String,
}

/// `userData` / `peerUser`: clients require `userImages` as a map and `identifier` (§6.4).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    #[serde(rename = "_id")]
    pub id: String,
    pub full_name: String,
    pub user_images: UserImages,
    pub identifier: String,
}

impl From<&UserRow> for UserData {
    fn from(u: &UserRow) -> Self {
        UserData {
            id: u.id.clone(),
            full_name: u.full_name.clone(),
            user_images: UserImages {
                full_image: u.img.clone(),
                chat_image: u.img.clone(),
                small_image: u.img.clone(),
            },
            identifier: u.identifier.clone(),
        }
    }
}

// ---------- client → server ----------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineQuery {
    pub peer_id: String,
    #[serde(default)]
    pub extra: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomStatusIn {
    pub room_id: String,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRef {
    pub room_id: String,
}

// ---------- server → client ----------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineState {
    pub peer_id: String,
    pub is_online: bool,
    pub extra: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomStatusOut<'a> {
    pub room_id: &'a str,
    pub status: &'a str,
    pub name: &'a str,
    pub user_id: &'a str,
}

/// `v1OnDeliverChatRoom` / `v1OnEnterChatRoom`: `userId` is the sender of the messages that
/// changed, i.e. the user who receives the event (protocol §2.2).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
    pub date: String,
}

#[derive(Debug, Serialize)]
pub struct Exception<'a> {
    pub error: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BanState {
    pub is_me_banner: bool,
    pub is_peer_banner: bool,
    pub room_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kicked<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCall<'a> {
    pub meet_id: &'a str,
    pub room_id: &'a str,
    pub with_video: bool,
    pub payload: &'a Value,
    pub user_data: UserData,
    /// Extra: rebuilt clients may use it; existing ones ignore unknown keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallAccepted<'a> {
    pub meet_id: &'a str,
    pub room_id: &'a str,
    pub peer_answer: &'a Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRef<'a> {
    pub meet_id: &'a str,
    pub room_id: &'a str,
}

// ---------- messages (§5.1) ----------

#[derive(Debug, Clone, Serialize)]
pub struct MessageOut {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "sId")]
    pub sender_id: String,
    #[serde(rename = "sIdentifier")]
    pub sender_identifier: String,
    #[serde(rename = "sName")]
    pub sender_name: String,
    #[serde(rename = "sImg")]
    pub sender_img: String,
    pub plm: String,
    #[serde(rename = "rId")]
    pub room_id: String,
    pub c: String,
    #[serde(rename = "isEncrypted")]
    pub is_encrypted: bool,
    #[serde(rename = "mT")]
    pub kind: String,
    #[serde(rename = "msgAtt")]
    pub attachment: Value,
    #[serde(rename = "rTo")]
    pub reply_to: Value,
    #[serde(rename = "sAt")]
    pub seen_at: Option<String>,
    #[serde(rename = "dAt")]
    pub delivered_at: Option<String>,
    #[serde(rename = "forId")]
    pub forward_id: Option<String>,
    #[serde(rename = "dltAt")]
    pub deleted_at: Option<String>,
    #[serde(rename = "pBId")]
    pub parent_broadcast_id: Option<String>,
    #[serde(rename = "dF")]
    pub deleted_for: Vec<String>,
    pub stars: Vec<String>,
    #[serde(rename = "isStared")]
    pub is_stared: bool,
    /// View-once: receivers may open it once.
    #[serde(rename = "isOneSeen")]
    pub is_one_seen: bool,
    /// The viewer opened this view-once message already.
    #[serde(rename = "isOneSeenByMe")]
    pub is_one_seen_by_me: bool,
    #[serde(rename = "lId")]
    pub local_id: String,
    #[serde(rename = "linkAtt")]
    pub link_attachment: Value,
    #[serde(rename = "peerData")]
    pub peer_data: Value,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

fn json_or_null(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

impl From<&MessageRow> for MessageOut {
    fn from(m: &MessageRow) -> Self {
        MessageOut {
            id: m.id.clone(),
            sender_id: m.sender_id.clone(),
            sender_identifier: m.sender_identifier.clone(),
            sender_name: m.sender_name.clone(),
            sender_img: m.sender_img.clone(),
            plm: m.platform.clone(),
            room_id: m.room_id.clone(),
            c: m.content.clone(),
            is_encrypted: m.is_encrypted,
            kind: m.kind.clone(),
            attachment: json_or_null(&m.attachment),
            reply_to: json_or_null(&m.reply_to),
            seen_at: m.seen_at.clone(),
            delivered_at: m.delivered_at.clone(),
            forward_id: m.forward_id.clone(),
            deleted_at: m.deleted_at.clone(),
            parent_broadcast_id: m.parent_broadcast_id.clone(),
            deleted_for: vec![],
            stars: vec![],
            is_stared: false,
            is_one_seen: m.is_one_seen,
            is_one_seen_by_me: false,
            local_id: m.local_id.clone(),
            link_attachment: Value::Null,
            peer_data: Value::Null,
            created_at: m.created_at.clone(),
            updated_at: m.updated_at.clone(),
        }
    }
}

// ---------- rooms (§5.1 room list items) ----------

#[derive(Debug, Serialize)]
pub struct RoomOut {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "rId")]
    pub room_id: String,
    #[serde(rename = "rT")]
    pub kind: &'static str,
    pub t: String,
    pub img: String,
    #[serde(rename = "uC")]
    pub unread: i64,
    #[serde(rename = "isA")]
    pub is_archived: bool,
    #[serde(rename = "isM")]
    pub is_muted: bool,
    #[serde(rename = "isD")]
    pub is_deleted: bool,
    #[serde(rename = "pId")]
    pub peer_id: Option<String>,
    #[serde(rename = "pIdentifier")]
    pub peer_identifier: Option<String>,
    /// The member's translation language (`translate {transTo}`).
    #[serde(rename = "tTo")]
    pub trans_to: Option<String>,
    /// The member's own name for the room (it is also the title they see).
    #[serde(rename = "nickName")]
    pub nick_name: Option<String>,
    /// The member's view-once mode for the room.
    #[serde(rename = "isOneSeen")]
    pub is_one_seen: bool,
    #[serde(rename = "lastMessage")]
    pub last_message: Option<MessageOut>,
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

impl From<&RoomSummary> for RoomOut {
    fn from(s: &RoomSummary) -> Self {
        let single = s.room.kind() == RoomKind::Single;
        RoomOut {
            id: s.room.id.clone(),
            room_id: s.room.id.clone(),
            kind: s.room.kind().code(),
            // A single room is titled and pictured by the peer, as the client shows it, unless
            // the member gave it a nickname.
            t: match (&s.settings.nick_name, &s.peer, single) {
                (Some(nick), _, _) => nick.clone(),
                (None, Some(p), true) => p.full_name.clone(),
                _ => s.room.title.clone(),
            },
            img: match (&s.peer, single) {
                (Some(p), true) => p.img.clone(),
                _ => s.room.img.clone(),
            },
            unread: s.unread,
            is_archived: s.settings.archived,
            is_muted: s.settings.muted,
            is_deleted: s.deleted,
            peer_id: s.peer.as_ref().map(|p| p.id.clone()),
            peer_identifier: s.peer.as_ref().map(|p| p.identifier.clone()),
            trans_to: s.settings.trans_to.clone(),
            nick_name: s.settings.nick_name.clone(),
            is_one_seen: s.settings.one_seen,
            last_message: s.last_message.as_ref().map(MessageOut::from),
            created_at: s.room.created_at.clone(),
        }
    }
}
