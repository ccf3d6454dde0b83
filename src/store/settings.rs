//! A member's own settings of a room: mute, archive, view-once mode, nickname, translation, and
//! "delete for me" (a watermark: messages up to it are gone for that member only).

use super::Store;

row! {
    /// One member's settings of one room.
    #[derive(Debug, Clone, Default)]
    pub struct MemberSettings {
        pub muted: bool,
        pub archived: bool,
        pub one_seen: bool,
        pub nick_name: Option<String>,
        pub trans_to: Option<String>,
        pub cleared_seq: i64,
    }
}

/// A boolean setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Muted,
    Archived,
    OneSeen,
}

impl Flag {
    fn column(self) -> &'static str {
        match self {
            Flag::Muted => "muted",
            Flag::Archived => "archived",
            Flag::OneSeen => "one_seen",
        }
    }
}

impl Store {
    pub async fn member_settings(&self, room: &str, user: &str) -> sqlx::Result<MemberSettings> {
        let s: Option<MemberSettings> = db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT muted, archived, one_seen, nick_name, trans_to, cleared_seq
             FROM room_members WHERE room_id = $1 AND user_id = $2"
        ))
        .bind(room)
        .bind(user)
        .fetch_optional(pool)
        .await)?;
        Ok(s.unwrap_or_default())
    }

    pub async fn set_member_flag(
        &self,
        room: &str,
        user: &str,
        flag: Flag,
        on: bool,
    ) -> sqlx::Result<()> {
        let query = format!(
            "UPDATE room_members SET {} = $3 WHERE room_id = $1 AND user_id = $2",
            flag.column()
        );
        db!(self, |pool, sql| sqlx::query(&sql(&query))
            .bind(room)
            .bind(user)
            .bind(on)
            .execute(pool)
            .await
            .map(|_| ()))
    }

    /// Sets (`Some`) or clears a member's nickname (`nick`) or translation language (`trans`).
    pub async fn set_member_text(
        &self,
        room: &str,
        user: &str,
        field: &str,
        value: Option<&str>,
    ) -> sqlx::Result<()> {
        let column = match field {
            "nick" => "nick_name",
            "trans" => "trans_to",
            _ => unreachable!("not a member text setting: {field}"),
        };
        let query =
            format!("UPDATE room_members SET {column} = $3 WHERE room_id = $1 AND user_id = $2");
        db!(self, |pool, sql| sqlx::query(&sql(&query))
            .bind(room)
            .bind(user)
            .bind(value)
            .execute(pool)
            .await
            .map(|_| ()))
    }

    /// "Delete for me": every message so far is gone for `user` (and counts as seen); the room
    /// leaves their list until a newer message arrives.
    pub async fn clear_room_for(&self, room: &str, user: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| sqlx::query(&sql(
            "UPDATE room_members SET cleared_seq = x.top, seen_seq = x.top,
                delivered_seq = CASE WHEN delivered_seq < x.top THEN x.top ELSE delivered_seq END
             FROM (SELECT COALESCE(MAX(seq), 0) AS top FROM messages WHERE room_id = $1) AS x
             WHERE room_id = $1 AND user_id = $2"
        ))
        .bind(room)
        .bind(user)
        .execute(pool)
        .await
        .map(|_| ()))
    }

    /// How many messages others sent that `user` has not seen.
    pub async fn unread_count(&self, room: &str, user: &str) -> sqlx::Result<i64> {
        db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT COUNT(*) FROM messages m JOIN room_members rm
               ON rm.room_id = m.room_id AND rm.user_id = $2
             WHERE m.room_id = $1 AND m.sender_id <> $2 AND m.seq > rm.seen_seq
               AND m.seq > rm.cleared_seq"
        ))
        .bind(room)
        .bind(user)
        .fetch_one(pool)
        .await)
    }

    /// Members of a room who did not mute it (who may be pushed for its messages).
    pub async fn unmuted_member_ids(&self, room: &str) -> sqlx::Result<Vec<String>> {
        db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT user_id FROM room_members WHERE room_id = $1 AND muted = FALSE"
        ))
        .bind(room)
        .fetch_all(pool)
        .await)
    }
}
