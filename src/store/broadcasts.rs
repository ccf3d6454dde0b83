//! Broadcast rooms: the owner is their only member; recipients are listed apart and get copies
//! of each message in their single room with the owner.

use super::groups::{MemberRow, ReceiptRow};
use super::{RoomRow, Store, UserRow};
use crate::ids::{new_id, now_iso};

impl Store {
    pub async fn create_broadcast(
        &self,
        owner: &str,
        title: &str,
        img: &str,
        recipients: &[String],
    ) -> sqlx::Result<RoomRow> {
        let now = now_iso();
        let room = RoomRow {
            id: new_id(),
            kind: "b".into(),
            title: title.into(),
            img: img.into(),
            created_by: owner.into(),
            created_at: now.clone(),
        };
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            sqlx::query(&sql(
                "INSERT INTO rooms (id, kind, title, img, created_by, created_at)
                 VALUES ($1, 'b', $2, $3, $4, $5)",
            ))
            .bind(&room.id)
            .bind(title)
            .bind(img)
            .bind(owner)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(&sql(
                "INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES ($1, $2, 'admin', $3)",
            ))
            .bind(&room.id)
            .bind(owner)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            for r in recipients.iter().filter(|r| r.as_str() != owner) {
                sqlx::query(&sql(
                    "INSERT INTO broadcast_members (room_id, user_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                ))
                .bind(&room.id)
                .bind(r)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(room)
        })
    }

    /// Adds recipients; returns those who were not recipients before.
    pub async fn add_recipients(&self, room: &str, users: &[String]) -> sqlx::Result<Vec<String>> {
        self.add_each(
            "INSERT INTO broadcast_members (room_id, user_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            room,
            users,
        )
        .await
    }

    pub async fn remove_recipient(&self, room: &str, user: &str) -> sqlx::Result<bool> {
        let n = db!(self, |pool, sql| sqlx::query(&sql(
            "DELETE FROM broadcast_members WHERE room_id = $1 AND user_id = $2"
        ))
        .bind(room)
        .bind(user)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn recipient_ids(&self, room: &str) -> sqlx::Result<Vec<String>> {
        db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT user_id FROM broadcast_members WHERE room_id = $1 ORDER BY created_at, user_id"
        ))
        .bind(room)
        .fetch_all(pool)
        .await)
    }

    /// Recipients by name, with when they were added (as `role`'s place: `created_at`).
    pub async fn recipients_page(
        &self,
        room: &str,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<MemberRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT u.id, u.full_name, u.identifier, u.img, b.created_at AS role
             FROM broadcast_members b JOIN users u ON u.id = b.user_id
             WHERE b.room_id = $1 ORDER BY lower(u.full_name), u.id LIMIT $2 OFFSET $3"
        ))
        .bind(room)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await)
    }

    /// Users who are not recipients of `room`, by name (never `me`).
    pub async fn users_not_recipients(
        &self,
        room: &str,
        me: &str,
        name: &str,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<UserRow>> {
        let pattern = super::like_pattern(name);
        db!(self, |pool, sql| {
            sqlx::query_as(&sql(
            "SELECT u.id, u.full_name, u.identifier, u.img FROM users u
             WHERE u.id <> $2 AND lower(u.full_name) LIKE lower($3) ESCAPE '\\'
               AND NOT EXISTS (SELECT 1 FROM broadcast_members b WHERE b.room_id = $1 AND b.user_id = u.id)
             ORDER BY lower(u.full_name), u.id LIMIT $4 OFFSET $5"
        ))
        .bind(room)
        .bind(me)
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
        })
    }

    /// Recipients whose copy of broadcast message `parent` was delivered (or `seen`).
    pub async fn copy_receipts(
        &self,
        parent: &str,
        seen: bool,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<ReceiptRow>> {
        let mark = if seen { "m.seen_at" } else { "m.delivered_at" };
        let query = format!(
            "SELECT u.id, u.full_name, u.identifier, u.img, m.delivered_at, m.seen_at
             FROM messages m
             JOIN room_members rm ON rm.room_id = m.room_id AND rm.user_id <> m.sender_id
             JOIN users u ON u.id = rm.user_id
             WHERE m.parent_broadcast_id = $1 AND {mark} IS NOT NULL
             ORDER BY lower(u.full_name), u.id LIMIT $2 OFFSET $3"
        );
        db!(self, |pool, sql| sqlx::query_as(&sql(&query))
            .bind(parent)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await)
    }
}
