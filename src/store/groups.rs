//! Group settings, member lists and roles, and per-member receipts of group messages.

use super::{Store, UserRow};

row! {
    /// A group's settings beyond title and image.
    #[derive(Debug, Clone, Default)]
    pub struct GroupDetails {
        pub description: String,
        /// A JSON object, as text.
        pub extra_data: Option<String>,
    }
}

row! {
    /// A member and their role (`admin` or `member`).
    #[derive(Debug, Clone)]
    pub struct MemberRow {
        pub id: String,
        pub full_name: String,
        pub identifier: String,
        pub img: String,
        pub role: String,
    }
}

impl MemberRow {
    pub fn user(&self) -> UserRow {
        UserRow {
            id: self.id.clone(),
            full_name: self.full_name.clone(),
            identifier: self.identifier.clone(),
            img: self.img.clone(),
        }
    }
}

row! {
    /// A member's receipt of one message: when their watermark last moved past it.
    #[derive(Debug, Clone)]
    pub struct ReceiptRow {
        pub id: String,
        pub full_name: String,
        pub identifier: String,
        pub img: String,
        pub delivered_at: Option<String>,
        pub seen_at: Option<String>,
    }
}

impl ReceiptRow {
    pub fn user(&self) -> UserRow {
        UserRow {
            id: self.id.clone(),
            full_name: self.full_name.clone(),
            identifier: self.identifier.clone(),
            img: self.img.clone(),
        }
    }
}

impl Store {
    /// Sets one of a room's text settings: `title`, `img` or `description`.
    pub async fn set_room_text(&self, room: &str, field: &str, value: &str) -> sqlx::Result<()> {
        let column = match field {
            "title" => "title",
            "img" => "img",
            "description" => "description",
            _ => unreachable!("not a room text field: {field}"),
        };
        let query = format!("UPDATE rooms SET {column} = $1 WHERE id = $2");
        db!(self, |pool, sql| sqlx::query(&sql(&query))
            .bind(value)
            .bind(room)
            .execute(pool)
            .await
            .map(|_| ()))
    }

    pub async fn set_room_extra(&self, room: &str, json: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| sqlx::query(&sql(
            "UPDATE rooms SET extra_data = $1 WHERE id = $2"
        ))
        .bind(json)
        .bind(room)
        .execute(pool)
        .await
        .map(|_| ()))
    }

    pub async fn group_details(&self, room: &str) -> sqlx::Result<GroupDetails> {
        let d: Option<GroupDetails> = db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT description, extra_data FROM rooms WHERE id = $1"
        ))
        .bind(room)
        .fetch_optional(pool)
        .await)?;
        Ok(d.unwrap_or_default())
    }

    pub async fn member_count(&self, room: &str) -> sqlx::Result<i64> {
        db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT COUNT(*) FROM room_members WHERE room_id = $1"
        ))
        .bind(room)
        .fetch_one(pool)
        .await)
    }

    /// Members whose name contains `name`: admins first, then by name.
    pub async fn members_page(
        &self,
        room: &str,
        name: &str,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<MemberRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT u.id, u.full_name, u.identifier, u.img, m.role
             FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = $1 AND lower(u.full_name) LIKE lower($2) ESCAPE '\\'
             ORDER BY CASE WHEN m.role = 'admin' THEN 0 ELSE 1 END, lower(u.full_name), u.id
             LIMIT $3 OFFSET $4"
        ))
        .bind(room)
        .bind(super::like_pattern(name))
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await)
    }

    /// Sets a member's role; false when they are not a member or already have it.
    pub async fn set_member_role(&self, room: &str, user: &str, role: &str) -> sqlx::Result<bool> {
        let n = db!(self, |pool, sql| {
            sqlx::query(&sql(
            "UPDATE room_members SET role = $3 WHERE room_id = $1 AND user_id = $2 AND role <> $3"
        ))
        .bind(room)
        .bind(user)
        .bind(role)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Users not in `room` whose name contains `name`, by name (never `me`).
    pub async fn users_not_in(
        &self,
        room: &str,
        me: &str,
        name: &str,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<UserRow>> {
        db!(self, |pool, sql| {
            sqlx::query_as(&sql(
            "SELECT u.id, u.full_name, u.identifier, u.img FROM users u
             WHERE u.id <> $2 AND lower(u.full_name) LIKE lower($3) ESCAPE '\\'
               AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = $1 AND m.user_id = u.id)
             ORDER BY lower(u.full_name), u.id LIMIT $4 OFFSET $5"
        ))
        .bind(room)
        .bind(me)
        .bind(super::like_pattern(name))
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
        })
    }

    /// Members other than the sender whose watermark covers message `seq`: `seen` or delivered.
    pub async fn message_receipts(
        &self,
        room: &str,
        seq: i64,
        sender: &str,
        seen: bool,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<ReceiptRow>> {
        let mark = if seen {
            "m.seen_seq"
        } else {
            "m.delivered_seq"
        };
        let query = format!(
            "SELECT u.id, u.full_name, u.identifier, u.img, m.delivered_at, m.seen_at
             FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = $1 AND m.user_id <> $2 AND {mark} >= $3
             ORDER BY lower(u.full_name), u.id LIMIT $4 OFFSET $5"
        );
        db!(self, |pool, sql| sqlx::query_as(&sql(&query))
            .bind(room)
            .bind(sender)
            .bind(seq)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await)
    }
}
