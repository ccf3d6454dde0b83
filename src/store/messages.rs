use super::Store;
use crate::ids::{new_id, now_iso};

const COLUMNS: &str = "seq, id, room_id, sender_id, sender_name, sender_identifier, sender_img,
    platform, local_id, kind, content, is_encrypted, attachment, reply_to, forward_id,
    created_at, updated_at, delivered_at, seen_at, deleted_at, parent_broadcast_id, is_one_seen";

row! {
    #[derive(Debug, Clone)]
    pub struct MessageRow {
        pub seq: i64,
        pub id: String,
        pub room_id: String,
        pub sender_id: String,
        pub sender_name: String,
        pub sender_identifier: String,
        pub sender_img: String,
        pub platform: String,
        pub local_id: String,
        pub kind: String,
        pub content: String,
        pub is_encrypted: bool,
        pub attachment: Option<String>,
        pub reply_to: Option<String>,
        pub forward_id: Option<String>,
        pub created_at: String,
        pub updated_at: String,
        pub delivered_at: Option<String>,
        pub seen_at: Option<String>,
        pub deleted_at: Option<String>,
        /// A copy of a broadcast message: the broadcast message's id.
        pub parent_broadcast_id: Option<String>,
        /// View-once: receivers may open it once.
        pub is_one_seen: bool,
    }
}

/// What committing a message did.
#[derive(Debug, Clone)]
pub enum Inserted {
    Created(MessageRow),
    /// The sender's retry of a message already stored.
    Existing(MessageRow),
    /// Someone else's message in this room has that localId.
    LocalIdTaken,
}

/// What `GET channel/{roomId}/message/?text&filter` narrows a page to.
#[derive(Debug, Clone, Default)]
pub struct MessageSearch {
    /// Part of the content (any case); empty: no text condition.
    pub text: String,
    pub filter: MessageFilter,
}

/// The SDK's `VMessagesFilter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageFilter {
    #[default]
    All,
    /// Images and videos.
    Media,
    /// Text messages with a web link.
    Links,
    File,
    Voice,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    /// `plm`: the platform the sender sent it from.
    pub platform: String,
    pub room_id: String,
    pub sender_id: String,
    pub sender_name: String,
    pub sender_identifier: String,
    pub sender_img: String,
    pub local_id: String,
    pub kind: String,
    pub content: String,
    pub is_encrypted: bool,
    pub attachment: Option<String>,
    pub reply_to: Option<String>,
    pub forward_id: Option<String>,
    /// A copy of a broadcast message: the broadcast message's id.
    pub parent_broadcast_id: Option<String>,
    /// View-once: receivers may open it once.
    pub is_one_seen: bool,
}

impl Store {
    /// Commits a message, idempotent on (sender, localId): a retry gets the stored message back
    /// as `Existing`, so the caller emits nothing new. A localId another sender already used in
    /// the room is refused: replies and forwards name messages by it.
    pub async fn insert_message(&self, m: &NewMessage) -> sqlx::Result<Inserted> {
        let (m, id, now) = (m.clone(), new_id(), now_iso());
        // The insert and the read of what the (sender, localId) pair now holds commit together.
        let (created, row): (bool, Option<MessageRow>) = db_commit!(self, |conn, sql| {
            let created = sqlx::query(&sql(
                "INSERT INTO messages (id, room_id, sender_id, sender_name, sender_identifier,
                sender_img, local_id, kind, content, is_encrypted, attachment, reply_to,
                forward_id, created_at, updated_at, platform, parent_broadcast_id, is_one_seen)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT DO NOTHING",
            ))
            .bind(&id)
            .bind(&m.room_id)
            .bind(&m.sender_id)
            .bind(&m.sender_name)
            .bind(&m.sender_identifier)
            .bind(&m.sender_img)
            .bind(&m.local_id)
            .bind(&m.kind)
            .bind(&m.content)
            .bind(m.is_encrypted)
            .bind(&m.attachment)
            .bind(&m.reply_to)
            .bind(&m.forward_id)
            .bind(&now)
            .bind(&now)
            .bind(&m.platform)
            .bind(&m.parent_broadcast_id)
            .bind(m.is_one_seen)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1;
            let row = sqlx::query_as(&sql(&format!(
                "SELECT {COLUMNS} FROM messages WHERE sender_id = $1 AND local_id = $2"
            )))
            .bind(&m.sender_id)
            .bind(&m.local_id)
            .fetch_optional(&mut *conn)
            .await?;
            Ok((created, row))
        })?;
        Ok(match (row, created) {
            (Some(r), true) => Inserted::Created(r),
            (Some(r), false) => Inserted::Existing(r),
            (None, _) => Inserted::LocalIdTaken,
        })
    }

    /// The store order (`seq`) of the first message whose id is at or after `floor` (ids begin
    /// with their second, in hex: see `ids::new_id`), and of the last message; `None` when there
    /// is no such message.
    pub async fn seqs_since(&self, floor: &str) -> sqlx::Result<Option<(i64, i64)>> {
        let row: (Option<i64>, Option<i64>) = db!(self, |pool, sql| {
            sqlx::query_as(&sql(
            "SELECT (SELECT MIN(seq) FROM messages WHERE id >= $1), (SELECT MAX(seq) FROM messages)"
        ))
        .bind(floor)
        .fetch_one(pool)
        .await
        })?;
        Ok(row.0.zip(row.1))
    }

    /// Messages stored after `after` and up to `last` (by `seq`), in that order; at most `limit`.
    pub async fn messages_in_seqs(
        &self,
        after: i64,
        last: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<MessageRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(&format!(
            "SELECT {COLUMNS} FROM messages WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
        )))
        .bind(after)
        .bind(last)
        .bind(limit)
        .fetch_all(pool)
        .await)
    }

    pub async fn message(&self, id: &str) -> sqlx::Result<Option<MessageRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(&format!(
            "SELECT {COLUMNS} FROM messages WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await)
    }

    /// A message of a room by the localId its sender gave it (replies and forwards name these).
    pub async fn message_by_local_id(
        &self,
        room: &str,
        local_id: &str,
    ) -> sqlx::Result<Option<MessageRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(&format!(
            "SELECT {COLUMNS} FROM messages WHERE room_id = $1 AND local_id = $2 LIMIT 1"
        )))
        .bind(room)
        .bind(local_id)
        .fetch_optional(pool)
        .await)
    }

    /// The message a forward names by localId, among those `viewer` can see (rooms they are a
    /// member of): their own first, then the newest. A localId is unique within a room, not
    /// across rooms, so a stranger's message can never be picked.
    pub async fn message_for_forward(
        &self,
        viewer: &str,
        local_id: &str,
    ) -> sqlx::Result<Option<MessageRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(&format!(
            "SELECT {COLUMNS} FROM messages m
             WHERE m.local_id = $1 AND m.deleted_at IS NULL
               AND EXISTS (SELECT 1 FROM room_members rm
                           WHERE rm.room_id = m.room_id AND rm.user_id = $2)
             ORDER BY (m.sender_id = $2) DESC, m.seq DESC LIMIT 1"
        )))
        .bind(local_id)
        .bind(viewer)
        .fetch_optional(pool)
        .await)
    }

    /// Newest first; `before` (a message id) pages to older messages. Hides what the viewer
    /// deleted for themselves.
    /// A page of a room as `viewer` sees it (not hidden by them, not deleted by them), newest
    /// first, before message `before`; `search` narrows it.
    pub async fn messages_page(
        &self,
        room: &str,
        viewer: &str,
        limit: i64,
        before: Option<&str>,
        search: &MessageSearch,
    ) -> sqlx::Result<Vec<MessageRow>> {
        let mut narrow = String::new();
        match search.filter {
            MessageFilter::All => {}
            MessageFilter::Media => narrow.push_str(" AND m.kind IN ('image', 'video')"),
            MessageFilter::File => narrow.push_str(" AND m.kind = 'file'"),
            MessageFilter::Voice => narrow.push_str(" AND m.kind = 'voice'"),
            MessageFilter::Links => narrow.push_str(
                " AND m.kind = 'text' AND (lower(m.content) LIKE '%http://%'
                   OR lower(m.content) LIKE '%https://%')",
            ),
        }
        if search.filter != MessageFilter::All || !search.text.is_empty() {
            narrow.push_str(" AND m.deleted_at IS NULL");
        }
        let query = format!(
            "SELECT {COLUMNS} FROM messages m
             WHERE m.room_id = $1
               AND NOT EXISTS (SELECT 1 FROM message_hidden h WHERE h.message_id = m.id AND h.user_id = $2)
               AND m.seq > COALESCE((SELECT cleared_seq FROM room_members c
                                     WHERE c.room_id = $1 AND c.user_id = $2), 0)
               AND ($3 IS NULL OR m.seq < (SELECT seq FROM messages WHERE id = $3))
               AND ($5 = '' OR lower(m.content) LIKE lower($6) ESCAPE '\\'){narrow}
             ORDER BY m.seq DESC LIMIT $4"
        );
        let text = search.text.trim().to_string();
        let pattern = super::like_pattern(&text);
        db!(self, |pool, sql| {
            sqlx::query_as(&sql(&query))
                .bind(room)
                .bind(viewer)
                .bind(before)
                .bind(limit)
                .bind(&text)
                .bind(&pattern)
                .fetch_all(pool)
                .await
        })
    }

    pub async fn last_message(&self, room: &str, viewer: &str) -> sqlx::Result<Option<MessageRow>> {
        Ok(self
            .messages_page(room, viewer, 1, None, &MessageSearch::default())
            .await?
            .into_iter()
            .next())
    }

    /// Blanks a message for everyone; `None` if it was already deleted.
    pub async fn delete_for_all(&self, id: &str) -> sqlx::Result<Option<MessageRow>> {
        let now = now_iso();
        let r = db!(self, |pool, sql| {
            sqlx::query(&sql(
            "UPDATE messages SET content = '', attachment = NULL, deleted_at = $1, updated_at = $1
             WHERE id = $2 AND deleted_at IS NULL"
        ))
        .bind(&now)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        if r == 0 {
            return Ok(None);
        }
        self.message(id).await
    }

    pub async fn hide_message(&self, id: &str, user: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| {
            sqlx::query(&sql("INSERT INTO message_hidden (message_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"))
            .bind(id)
            .bind(user)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// The reader got the room's messages: moves the reader's watermark and, in a single room,
    /// stamps the peer's undelivered messages. A group message's `dAt` is shared by every member,
    /// so one member's receipt must not flip it: group receipts live in the per-member watermarks.
    /// Returns how many messages were newly stamped.
    pub async fn mark_delivered(&self, room: &str, reader: &str) -> sqlx::Result<u64> {
        let now = now_iso();
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(&sql("UPDATE messages SET delivered_at = $1
             WHERE room_id = $2 AND sender_id <> $3 AND delivered_at IS NULL AND deleted_at IS NULL
               AND EXISTS (SELECT 1 FROM rooms r WHERE r.id = $2 AND r.kind = 's')"))
            .bind(&now)
            .bind(room)
            .bind(reader)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(&sql(
                "UPDATE room_members SET delivered_seq = x.top, delivered_at = $3
             FROM (SELECT COALESCE(MAX(seq), 0) AS top FROM messages WHERE room_id = $1) AS x
             WHERE room_id = $1 AND user_id = $2 AND delivered_seq < x.top",
            ))
            .bind(room)
            .bind(reader)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    /// A user connected: everything waiting for them anywhere is delivered, in one transaction.
    /// Returns the single rooms whose messages changed, with the peer who sent them.
    pub async fn deliver_all_pending(&self, reader: &str) -> sqlx::Result<Vec<(String, String)>> {
        let now = now_iso();
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let changed: Vec<(String, String)> =
                sqlx::query_as(&sql("UPDATE messages SET delivered_at = $1
             WHERE delivered_at IS NULL AND deleted_at IS NULL AND sender_id <> $2
               AND room_id IN (SELECT m.room_id FROM room_members m JOIN rooms r ON r.id = m.room_id
                               WHERE m.user_id = $2 AND r.kind = 's')
             RETURNING room_id, sender_id"))
                .bind(&now)
                .bind(reader)
                .fetch_all(&mut *tx)
                .await?;
            sqlx::query(&sql(
                "UPDATE room_members AS rm SET delivered_seq = x.top, delivered_at = $2
             FROM (SELECT room_id, MAX(seq) AS top FROM messages
                   WHERE room_id IN (SELECT room_id FROM room_members WHERE user_id = $1)
                   GROUP BY room_id) AS x
             WHERE rm.user_id = $1 AND rm.room_id = x.room_id AND rm.delivered_seq < x.top",
            ))
            .bind(reader)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            let mut rooms = changed;
            rooms.sort();
            rooms.dedup();
            Ok(rooms)
        })
    }

    /// The reader opened the room: everything the others sent is seen (and so delivered). As with
    /// delivery, only single rooms stamp the messages themselves.
    pub async fn mark_seen(&self, room: &str, reader: &str) -> sqlx::Result<u64> {
        let now = now_iso();
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(&sql(
                "UPDATE messages SET seen_at = $1, delivered_at = COALESCE(delivered_at, $1)
             WHERE room_id = $2 AND sender_id <> $3 AND seen_at IS NULL AND deleted_at IS NULL
               AND EXISTS (SELECT 1 FROM rooms r WHERE r.id = $2 AND r.kind = 's')",
            ))
            .bind(&now)
            .bind(room)
            .bind(reader)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(&sql(
                "UPDATE room_members SET seen_seq = x.top, seen_at = $3,
                delivered_at = CASE WHEN delivered_seq < x.top THEN $3 ELSE delivered_at END,
                delivered_seq = x.top
             FROM (SELECT COALESCE(MAX(seq), 0) AS top FROM messages WHERE room_id = $1) AS x
             WHERE room_id = $1 AND user_id = $2 AND seen_seq < x.top",
            ))
            .bind(room)
            .bind(reader)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(n)
        })
    }
}
