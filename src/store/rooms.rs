use super::Store;
use crate::ids::{new_id, now_iso};

/// Rooms a user's sockets sit in at most (a read of them stops there, in no set order).
pub const JOINABLE_MAX: usize = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    Single,
    Group,
    /// Its owner's messages are copied to each recipient's single room with the owner.
    Broadcast,
}

impl RoomKind {
    pub fn code(self) -> &'static str {
        match self {
            RoomKind::Single => "s",
            RoomKind::Group => "g",
            RoomKind::Broadcast => "b",
        }
    }
}

row! {
    #[derive(Debug, Clone)]
    pub struct RoomRow {
        pub id: String,
        pub kind: String,
        pub title: String,
        pub img: String,
        pub created_by: String,
        pub created_at: String,
    }
}

impl RoomRow {
    pub fn kind(&self) -> RoomKind {
        match self.kind.as_str() {
            "s" => RoomKind::Single,
            "b" => RoomKind::Broadcast,
            _ => RoomKind::Group,
        }
    }
}

/// A room as one member sees it in their list.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    pub room: RoomRow,
    /// Single rooms: the other member.
    pub peer: Option<super::UserRow>,
    pub unread: i64,
    pub last_message: Option<super::MessageRow>,
    /// The member's own settings of the room.
    pub settings: super::MemberSettings,
    /// Deleted for this member, and nothing newer since.
    pub deleted: bool,
}

/// Which of a member's rooms a list shows (`GET channel/?title&roomType&…Only`).
#[derive(Debug, Clone, Default)]
pub struct RoomFilter {
    /// Part of the title (a single room's: the peer's name, or the member's nickname for it).
    pub title: String,
    /// `s` or `g`.
    pub kind: Option<&'static str>,
    pub muted_only: bool,
    pub archived_only: bool,
    /// Only rooms deleted for the member; without it, those are left out.
    pub deleted_only: bool,
}

fn pair_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}\n{b}")
    } else {
        format!("{b}\n{a}")
    }
}

impl Store {
    pub async fn room(&self, id: &str) -> sqlx::Result<Option<RoomRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT id, kind, title, img, created_by, created_at FROM rooms WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)
    }

    /// The single room of two users, created on first use. Returns whether it was created.
    /// Starts with the write so two concurrent first calls cannot both create a room.
    pub async fn single_room(&self, me: &str, peer: &str) -> sqlx::Result<(RoomRow, bool)> {
        let key = pair_key(me, peer);
        let now = now_iso();
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let created = sqlx::query(&sql(
                "INSERT INTO rooms (id, kind, pair_key, created_by, created_at)
             VALUES ($1, 's', $2, $3, $4) ON CONFLICT DO NOTHING",
            ))
            .bind(new_id())
            .bind(&key)
            .bind(me)
            .bind(&now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let room: RoomRow = sqlx::query_as(&sql("SELECT id, kind, title, img, created_by, created_at FROM rooms WHERE pair_key = $1"))
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?;
            if created {
                for user in [me, peer] {
                    sqlx::query(&sql("INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)"))
                .bind(&room.id)
                .bind(user)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                }
            }
            tx.commit().await?;
            Ok((room, created))
        })
    }

    /// The single room of two users, if they have one.
    pub async fn find_single_room(&self, a: &str, b: &str) -> sqlx::Result<Option<RoomRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT id, kind, title, img, created_by, created_at FROM rooms WHERE pair_key = $1"
        ))
        .bind(pair_key(a, b))
        .fetch_optional(pool)
        .await)
    }

    pub async fn create_group(
        &self,
        creator: &str,
        title: &str,
        members: &[String],
    ) -> sqlx::Result<RoomRow> {
        let now = now_iso();
        let room = RoomRow {
            id: new_id(),
            kind: "g".into(),
            title: title.into(),
            img: String::new(),
            created_by: creator.into(),
            created_at: now.clone(),
        };
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            sqlx::query(&sql("INSERT INTO rooms (id, kind, title, created_by, created_at) VALUES ($1, 'g', $2, $3, $4)"))
        .bind(&room.id)
        .bind(title)
        .bind(creator)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
            sqlx::query(&sql("INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES ($1, $2, 'admin', $3)"))
        .bind(&room.id)
        .bind(creator)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
            for m in members.iter().filter(|m| m.as_str() != creator) {
                sqlx::query(&sql("INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"))
            .bind(&room.id)
            .bind(m)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            }
            tx.commit().await?;
            Ok(room)
        })
    }

    /// Adds members; returns those who were not members before.
    pub async fn add_members(&self, room: &str, users: &[String]) -> sqlx::Result<Vec<String>> {
        self.add_each(
            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            room,
            users,
        )
        .await
    }

    /// Runs `insert` (`$1` room, `$2` user, `$3` now; `ON CONFLICT DO NOTHING`) for each user in
    /// one transaction; returns the users it added.
    pub(super) async fn add_each(
        &self,
        insert: &str,
        room: &str,
        users: &[String],
    ) -> sqlx::Result<Vec<String>> {
        let now = now_iso();
        let mut added = Vec::new();
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            for u in users {
                let r = sqlx::query(&sql(insert))
                    .bind(room)
                    .bind(u)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() == 1 {
                    added.push(u.clone());
                }
            }
            tx.commit().await?;
            Ok(added)
        })
    }

    /// Removes a member; false if they were not one.
    pub async fn remove_member(&self, room: &str, user: &str) -> sqlx::Result<bool> {
        let r = db!(self, |pool, sql| sqlx::query(&sql(
            "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2"
        ))
        .bind(room)
        .bind(user)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(r == 1)
    }

    /// A group left without an admin gets one: its longest-standing member. Returns who.
    pub async fn ensure_admin(&self, room: &str) -> sqlx::Result<Option<String>> {
        let promoted: Option<String> = db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "UPDATE room_members SET role = 'admin'
             WHERE room_id = $1
               AND NOT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND role = 'admin')
               AND user_id = (SELECT user_id FROM room_members WHERE room_id = $1
                              ORDER BY joined_at, user_id LIMIT 1)
             RETURNING user_id"
        ))
        .bind(room)
        .fetch_optional(pool)
        .await)?;
        Ok(promoted)
    }

    /// `Some(role)` when the user is a member.
    pub async fn member_role(&self, room: &str, user: &str) -> sqlx::Result<Option<String>> {
        db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2"
        ))
        .bind(room)
        .bind(user)
        .fetch_optional(pool)
        .await)
    }

    /// The rooms a user's sockets join on connect: every membership, except single rooms closed
    /// by a ban; at most [`JOINABLE_MAX`] of them.
    pub async fn joinable_rooms(&self, user: &str) -> sqlx::Result<Vec<String>> {
        let query = format!(
            "SELECT m.room_id FROM room_members m
             WHERE m.user_id = $1
               AND NOT EXISTS (SELECT 1 FROM bans b WHERE b.room_id = m.room_id)
             LIMIT {JOINABLE_MAX}"
        );
        db!(self, |pool, sql| sqlx::query_scalar(&sql(&query))
            .bind(user)
            .fetch_all(pool)
            .await)
    }

    /// Which of `peers` share a room with `me` that their sockets would sit in (a membership of
    /// both, not closed by a ban): presence for peers whose sockets are on other nodes.
    pub async fn sharing_peers(
        &self,
        me: &str,
        peers: &[String],
    ) -> sqlx::Result<std::collections::HashSet<String>> {
        if peers.is_empty() {
            return Ok(Default::default());
        }
        let list: Vec<String> = (0..peers.len()).map(|i| format!("${}", i + 2)).collect();
        let query = format!(
            "SELECT DISTINCT b.user_id FROM room_members a
             JOIN room_members b ON b.room_id = a.room_id
             WHERE a.user_id = $1 AND b.user_id IN ({})
               AND NOT EXISTS (SELECT 1 FROM bans x WHERE x.room_id = a.room_id)",
            list.join(", ")
        );
        let rows: Vec<String> = db!(self, |pool, sql| {
            let q = sql(&query);
            let mut q = sqlx::query_scalar(&q).bind(me);
            for p in peers {
                q = q.bind(p);
            }
            q.fetch_all(pool).await
        })?;
        Ok(rows.into_iter().collect())
    }

    /// Every member of a room.
    pub async fn room_member_ids(&self, room: &str) -> sqlx::Result<Vec<String>> {
        db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT user_id FROM room_members WHERE room_id = $1"
        ))
        .bind(room)
        .fetch_all(pool)
        .await)
    }

    /// The other member of a single room.
    pub async fn single_peer(&self, room: &str, me: &str) -> sqlx::Result<Option<super::UserRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT u.id, u.full_name, u.identifier, u.img FROM room_members m
             JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 AND m.user_id <> $2 LIMIT 1"
        ))
        .bind(room)
        .bind(me)
        .fetch_optional(pool)
        .await)
    }

    /// One room as a member sees it.
    pub async fn room_summary(&self, room: RoomRow, me: &str) -> sqlx::Result<RoomSummary> {
        let peer = if room.kind() == RoomKind::Single {
            self.single_peer(&room.id, me).await?
        } else {
            None
        };
        let unread = self.unread_count(&room.id, me).await?;
        let last_message = self.last_message(&room.id, me).await?;
        let settings = self.member_settings(&room.id, me).await?;
        Ok(RoomSummary {
            deleted: settings.cleared_seq > 0 && last_message.is_none(),
            room,
            peer,
            unread,
            last_message,
            settings,
        })
    }

    /// A user's rooms that pass `filter`, most recently active first.
    pub async fn rooms_of(
        &self,
        me: &str,
        filter: &RoomFilter,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<RoomSummary>> {
        let mut conditions = String::new();
        if let Some(kind) = filter.kind {
            conditions.push_str(&format!(" AND r.kind = '{kind}'"));
        }
        if filter.muted_only {
            conditions.push_str(" AND m.muted = TRUE");
        }
        if filter.archived_only {
            conditions.push_str(" AND m.archived = TRUE");
        }
        let deleted = "(m.cleared_seq > 0 AND COALESCE((SELECT MAX(seq) FROM messages x
                         WHERE x.room_id = r.id), 0) <= m.cleared_seq)";
        if filter.deleted_only {
            conditions.push_str(&format!(" AND {deleted}"));
        } else {
            conditions.push_str(&format!(" AND NOT {deleted}"));
        }
        let query = format!(
            "SELECT r.id, r.kind, r.title, r.img, r.created_by, r.created_at
             FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = $1 {conditions}
               AND ($4 = '' OR lower(r.title) LIKE lower($5) ESCAPE '\\'
                    OR lower(COALESCE(m.nick_name, '')) LIKE lower($5) ESCAPE '\\'
                    OR (r.kind = 's' AND EXISTS (
                        SELECT 1 FROM room_members pm JOIN users u ON u.id = pm.user_id
                        WHERE pm.room_id = r.id AND pm.user_id <> $1
                          AND lower(u.full_name) LIKE lower($5) ESCAPE '\\')))
             ORDER BY COALESCE((SELECT MAX(seq) FROM messages x WHERE x.room_id = r.id), 0) DESC,
                      r.created_at DESC, r.id
             LIMIT $2 OFFSET $3"
        );
        let title = filter.title.trim().to_string();
        let pattern = super::like_pattern(&title);
        let rooms: Vec<RoomRow> = db!(self, |pool, sql| sqlx::query_as(&sql(&query))
            .bind(me)
            .bind(limit)
            .bind(offset)
            .bind(&title)
            .bind(&pattern)
            .fetch_all(pool)
            .await)?;
        let mut out = Vec::with_capacity(rooms.len());
        for r in rooms {
            out.push(self.room_summary(r, me).await?);
        }
        Ok(out)
    }
}
