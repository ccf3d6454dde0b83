use super::Store;
use crate::ids::now_iso;

impl Store {
    /// Records that `banner` banned `banned`; false if that ban already existed.
    pub async fn ban(&self, banner: &str, banned: &str, room: &str) -> sqlx::Result<bool> {
        let r = sqlx::query(
            "INSERT OR IGNORE INTO bans (banner_id, banned_id, room_id, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(banner)
        .bind(banned)
        .bind(room)
        .bind(now_iso())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Lifts a ban; only the banner's own ban can be lifted. False if there was none.
    pub async fn unban(&self, banner: &str, banned: &str) -> sqlx::Result<bool> {
        let r = sqlx::query("DELETE FROM bans WHERE banner_id = ? AND banned_id = ?")
            .bind(banner)
            .bind(banned)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// (I banned the peer, the peer banned me).
    pub async fn ban_flags(&self, me: &str, peer: &str) -> sqlx::Result<(bool, bool)> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT banner_id FROM bans WHERE (banner_id = ?1 AND banned_id = ?2)
                OR (banner_id = ?2 AND banned_id = ?1)",
        )
        .bind(me)
        .bind(peer)
        .fetch_all(&self.pool)
        .await?;
        let me_banner = rows.iter().any(|(b,)| b == me);
        let peer_banner = rows.iter().any(|(b,)| b == peer);
        Ok((me_banner, peer_banner))
    }

    pub async fn is_blocked(&self, a: &str, b: &str) -> sqlx::Result<bool> {
        let (x, y) = self.ban_flags(a, b).await?;
        Ok(x || y)
    }
}
