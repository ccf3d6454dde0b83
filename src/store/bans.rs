use super::Store;
use crate::ids::now_iso;

impl Store {
    /// Records that `banner` banned `banned`; false if that ban already existed.
    pub async fn ban(&self, banner: &str, banned: &str, room: &str) -> sqlx::Result<bool> {
        let r = db!(self, |pool, sql| {
            sqlx::query(&sql("INSERT INTO bans (banner_id, banned_id, room_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"))
        .bind(banner)
        .bind(banned)
        .bind(room)
        .bind(now_iso())
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(r == 1)
    }

    /// Lifts a ban; only the banner's own ban can be lifted. False if there was none.
    pub async fn unban(&self, banner: &str, banned: &str) -> sqlx::Result<bool> {
        let r = db!(self, |pool, sql| sqlx::query(&sql(
            "DELETE FROM bans WHERE banner_id = $1 AND banned_id = $2"
        ))
        .bind(banner)
        .bind(banned)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(r == 1)
    }

    /// (I banned the peer, the peer banned me).
    pub async fn ban_flags(&self, me: &str, peer: &str) -> sqlx::Result<(bool, bool)> {
        let rows: Vec<(String,)> = db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT banner_id FROM bans WHERE (banner_id = $1 AND banned_id = $2)
                OR (banner_id = $2 AND banned_id = $1)"
        ))
        .bind(me)
        .bind(peer)
        .fetch_all(pool)
        .await)?;
        let me_banner = rows.iter().any(|(b,)| b == me);
        let peer_banner = rows.iter().any(|(b,)| b == peer);
        Ok((me_banner, peer_banner))
    }

    pub async fn is_blocked(&self, a: &str, b: &str) -> sqlx::Result<bool> {
        let (x, y) = self.ban_flags(a, b).await?;
        Ok(x || y)
    }
}
