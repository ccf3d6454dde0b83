use super::{Store, UserRow};
use crate::calls::machine::Status;
use crate::ids::now_iso;

const COLUMNS: &str = "id, room_id, caller_id, callee_id, caller_device, callee_device, with_video,
    platform, status, payload, answer, rev, created_at, accepted_at, ended_at";

row! {
    /// A call as stored: one row per call, updated on every transition.
    #[derive(Debug, Clone, PartialEq)]
    pub struct CallRecord {
        pub id: String,
        pub room_id: String,
        pub caller_id: String,
        pub callee_id: String,
        pub caller_device: String,
        pub callee_device: Option<String>,
        pub with_video: bool,
        pub platform: String,
        pub status: String,
        /// The offer as received, as JSON text (a JSON string stays a string).
        pub payload: String,
        pub answer: Option<String>,
        /// Increases with each transition, so a late write never overwrites a newer state.
        pub rev: i64,
        pub created_at: String,
        pub accepted_at: Option<String>,
        pub ended_at: Option<String>,
    }
}

#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub call: CallRecord,
    pub peer: UserRow,
}

impl Store {
    /// Stores a new call, owned by `node` (empty when alone).
    pub async fn insert_call(&self, c: &CallRecord, node: &str) -> sqlx::Result<()> {
        let (c, node) = (c.clone(), node.to_string());
        db_commit!(self, |conn, sql| {
            sqlx::query(&sql(&format!(
            "INSERT INTO calls ({COLUMNS}, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        )))
        .bind(&c.id)
        .bind(&c.room_id)
        .bind(&c.caller_id)
        .bind(&c.callee_id)
        .bind(&c.caller_device)
        .bind(&c.callee_device)
        .bind(c.with_video)
        .bind(&c.platform)
        .bind(&c.status)
        .bind(&c.payload)
        .bind(&c.answer)
        .bind(c.rev)
        .bind(&c.created_at)
        .bind(&c.accepted_at)
        .bind(&c.ended_at)
        .bind(&node)
        .execute(conn)
        .await
        .map(|_| ())
        })
    }

    /// A call's status and the node that owns it.
    pub async fn call_node(&self, id: &str) -> sqlx::Result<Option<(Status, String)>> {
        let row: Option<(String, String)> = db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT status, node FROM calls WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        Ok(row.and_then(|(s, n)| Some((Status::parse(&s)?, n))))
    }

    /// Moves a live call from node `from` to node `to`, if it is still `from`'s at revision
    /// `rev`: of several nodes claiming a dead node's call, exactly one wins.
    pub async fn claim_call(&self, id: &str, from: &str, to: &str, rev: i64) -> sqlx::Result<bool> {
        let r = db!(self, |pool, sql| sqlx::query(&sql(
            "UPDATE calls SET node = $1
             WHERE id = $2 AND node = $3 AND rev = $4 AND status IN ('ring', 'inCall')"
        ))
        .bind(to)
        .bind(id)
        .bind(from)
        .bind(rev)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(r == 1)
    }

    /// The live calls owned by `node`.
    pub async fn live_calls_on(&self, node: &str) -> sqlx::Result<Vec<String>> {
        db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT id FROM calls WHERE node = $1 AND status IN ('ring', 'inCall')"
        ))
        .bind(node)
        .fetch_all(pool)
        .await)
    }

    /// Commits a transition: compare-and-swap on the revision, so a write based on a state that
    /// is no longer the stored one changes nothing (false).
    pub async fn save_call(&self, c: &CallRecord, prev_rev: i64) -> sqlx::Result<bool> {
        let c = c.clone();
        let r = db_commit!(self, |conn, sql| sqlx::query(&sql(
            "UPDATE calls SET status = $1, caller_device = $2, callee_device = $3, answer = $4,
                rev = $5, accepted_at = $6, ended_at = $7
             WHERE id = $8 AND rev = $9"
        ))
        .bind(&c.status)
        .bind(&c.caller_device)
        .bind(&c.callee_device)
        .bind(&c.answer)
        .bind(c.rev)
        .bind(&c.accepted_at)
        .bind(&c.ended_at)
        .bind(&c.id)
        .bind(prev_rev)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(r == 1)
    }

    pub async fn call(&self, id: &str) -> sqlx::Result<Option<CallRecord>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(&format!(
            "SELECT {COLUMNS} FROM calls WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await)
    }

    /// After a crash no timer or socket is left to finish live calls: ringing ones time out,
    /// running ones are finished, so they never block new calls. Returns (timed out, finished).
    pub async fn close_stale_calls(&self) -> sqlx::Result<(u64, u64)> {
        let now = now_iso();
        let rung = db!(self, |pool, sql| {
            sqlx::query(&sql("UPDATE calls SET status = 'timeout', ended_at = $1, rev = rev + 1 WHERE status = 'ring'"))
        .bind(&now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        let ran = db!(self, |pool, sql| {
            sqlx::query(&sql("UPDATE calls SET status = 'finished', ended_at = $1, rev = rev + 1 WHERE status = 'inCall'"))
        .bind(&now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok((rung, ran))
    }

    /// The newest call ringing for this user.
    pub async fn ringing_call_for(&self, callee: &str) -> sqlx::Result<Option<CallRecord>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(&format!(
            "SELECT {COLUMNS} FROM calls WHERE callee_id = $1 AND status = 'ring'
             ORDER BY created_at DESC LIMIT 1"
        )))
        .bind(callee)
        .fetch_optional(pool)
        .await)
    }

    /// The user's last calls, newest first, without those they cleared.
    pub async fn call_history(&self, me: &str, limit: i64) -> sqlx::Result<Vec<HistoryRow>> {
        let calls: Vec<CallRecord> = db!(self, |pool, sql| {
            sqlx::query_as(&sql(&format!(
            "SELECT {COLUMNS} FROM calls c
             WHERE (c.caller_id = $1 OR c.callee_id = $1)
               AND NOT EXISTS (SELECT 1 FROM call_hidden h WHERE h.call_id = c.id AND h.user_id = $1)
             ORDER BY c.created_at DESC, c.id DESC LIMIT $2"
        )))
        .bind(me)
        .bind(limit)
        .fetch_all(pool)
        .await
        })?;
        let mut out = Vec::with_capacity(calls.len());
        for call in calls {
            let peer_id = if call.caller_id == me {
                &call.callee_id
            } else {
                &call.caller_id
            };
            let peer = self.user(peer_id).await?.unwrap_or_else(|| UserRow {
                id: peer_id.clone(),
                full_name: peer_id.clone(),
                identifier: peer_id.clone(),
                img: String::new(),
            });
            out.push(HistoryRow { call, peer });
        }
        Ok(out)
    }

    /// Hides one call from the user's history; false if they were not a party to it.
    pub async fn hide_call(&self, id: &str, me: &str) -> sqlx::Result<bool> {
        let r = db!(self, |pool, sql| {
            sqlx::query(&sql("INSERT INTO call_hidden (call_id, user_id)
             SELECT id, $2 FROM calls WHERE id = $1 AND (caller_id = $2 OR callee_id = $2) ON CONFLICT DO NOTHING"))
        .bind(id)
        .bind(me)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        if r == 1 {
            return Ok(true);
        }
        // Already hidden counts as done, but only for a party.
        let party: Option<i32> = db!(self, |pool, sql| sqlx::query_scalar(&sql(
            "SELECT 1 FROM calls WHERE id = $1 AND (caller_id = $2 OR callee_id = $2)"
        ))
        .bind(id)
        .bind(me)
        .fetch_optional(pool)
        .await)?;
        Ok(party.is_some())
    }

    pub async fn hide_all_calls(&self, me: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| {
            sqlx::query(&sql("INSERT INTO call_hidden (call_id, user_id)
             SELECT id, $1 FROM calls WHERE caller_id = $1 OR callee_id = $1 ON CONFLICT DO NOTHING"))
        .bind(me)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}
