//! Each member's own marks on messages: stars, and the view-once messages they opened.

use std::collections::HashSet;

use super::{MessageRow, Store};
use crate::ids::now_iso;

const COLUMNS: &str = "m.seq, m.id, m.room_id, m.sender_id, m.sender_name, m.sender_identifier,
    m.sender_img, m.platform, m.local_id, m.kind, m.content, m.is_encrypted, m.attachment,
    m.reply_to, m.forward_id, m.created_at, m.updated_at, m.delivered_at, m.seen_at, m.deleted_at,
    m.parent_broadcast_id, m.is_one_seen";

impl Store {
    /// `user` opened view-once message `message` (again: no change).
    pub async fn mark_one_seen(&self, message: &str, user: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| sqlx::query(&sql(
            "INSERT INTO message_one_seen (message_id, user_id, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING"
        ))
        .bind(message)
        .bind(user)
        .bind(now_iso())
        .execute(pool)
        .await
        .map(|_| ()))
    }

    /// Which of `ids` `user` has opened (view-once).
    pub async fn one_seen_among(
        &self,
        user: &str,
        ids: &[String],
    ) -> sqlx::Result<HashSet<String>> {
        self.marked_among("message_one_seen", user, ids).await
    }

    /// Stars a message for `user` (again: no change).
    pub async fn star(&self, message: &MessageRow, user: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| sqlx::query(&sql(
            "INSERT INTO message_stars (message_id, user_id, room_id, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        ))
        .bind(&message.id)
        .bind(user)
        .bind(&message.room_id)
        .bind(now_iso())
        .execute(pool)
        .await
        .map(|_| ()))
    }

    pub async fn unstar(&self, message: &str, user: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| sqlx::query(&sql(
            "DELETE FROM message_stars WHERE message_id = $1 AND user_id = $2"
        ))
        .bind(message)
        .bind(user)
        .execute(pool)
        .await
        .map(|_| ()))
    }

    /// `user`'s starred messages, newest star first: in `room`, or in every room they are still a
    /// member of. Messages deleted for everyone or hidden by the user are left out.
    pub async fn starred(
        &self,
        user: &str,
        room: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<MessageRow>> {
        let query = format!(
            "SELECT {COLUMNS} FROM message_stars s
             JOIN messages m ON m.id = s.message_id
             JOIN room_members rm ON rm.room_id = s.room_id AND rm.user_id = s.user_id
             WHERE s.user_id = $1 AND ($2 IS NULL OR s.room_id = $2)
               AND m.deleted_at IS NULL AND m.seq > rm.cleared_seq
               AND NOT EXISTS (SELECT 1 FROM message_hidden h
                               WHERE h.message_id = m.id AND h.user_id = $1)
             ORDER BY s.created_at DESC, m.seq DESC LIMIT $3 OFFSET $4"
        );
        db!(self, |pool, sql| sqlx::query_as(&sql(&query))
            .bind(user)
            .bind(room)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await)
    }

    /// Which of `ids` `user` starred.
    pub async fn starred_among(&self, user: &str, ids: &[String]) -> sqlx::Result<HashSet<String>> {
        self.marked_among("message_stars", user, ids).await
    }

    /// Which of `ids` have a row of `user` in `marks` (a per-user message mark table).
    async fn marked_among(
        &self,
        marks: &str,
        user: &str,
        ids: &[String],
    ) -> sqlx::Result<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
        let query = format!(
            "SELECT message_id FROM {marks} WHERE user_id = $1 AND message_id IN ({})",
            list.join(", ")
        );
        let rows: Vec<String> = db!(self, |pool, sql| {
            let q = sql(&query);
            let mut q = sqlx::query_scalar(&q).bind(user);
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(pool).await
        })?;
        Ok(rows.into_iter().collect())
    }
}
