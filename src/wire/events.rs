//! Socket.IO event names (protocol §2). Clients match them exactly.

// client → server
pub const MY_ONLINE: &str = "v1MyOnline";
pub const ROOM_STATUS_CHANGE: &str = "v1RoomStatusChange";
pub const DELIVER_CHAT_ROOM: &str = "v1DeliverChatRoom";
pub const ENTER_CHAT_ROOM: &str = "v1EnterChatRoom";
pub const ICE_CANDIDATE: &str = "v1IceCandidate";

// server → client
pub const ON_NEW_MESSAGE: &str = "v1OnNewMessage";
pub const ON_DELETE_MESSAGE_FROM_ALL: &str = "v1OnDeleteMessageFromAll";
pub const ON_BAN_USER_CHAT: &str = "v1OnBanUserChat";
pub const ON_KICK_GROUP_MEMBER: &str = "v1OnKickGroupMember";
pub const ON_MY_ONLINE: &str = "v1OnMyOnline";
pub const ON_ROOM_STATUS_CHANGE: &str = "v1OnRoomStatusChange";
pub const ON_DELIVER_CHAT_ROOM: &str = "v1OnDeliverChatRoom";
pub const ON_ENTER_CHAT_ROOM: &str = "v1OnEnterChatRoom";
pub const ON_EXCEPTION: &str = "v1OnException";
pub const ON_NEW_CALL: &str = "v1OnNewCall";
pub const ON_CALL_ACCEPTED: &str = "v1OnCallAccepted";
pub const ON_CALL_REJECTED: &str = "v1OnCallRejected";
pub const ON_CALL_CANCELED: &str = "v1OnCallCanceled";
pub const ON_CALL_TIMEOUT: &str = "v1OnCallTimeout";
pub const ON_CALL_ENDED: &str = "v1OnCallEnded";
pub const ON_ICE_CANDIDATE: &str = "v1OnIceCandidate";
