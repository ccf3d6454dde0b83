use super::Store;
use crate::auth::Identity;
use crate::ids::now_iso;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub full_name: String,
    pub identifier: String,
    pub img: String,
}

impl Store {
    /// Users are known from the claims they present; the newest claims win.
    pub async fn upsert_user(&self, who: &Identity) -> sqlx::Result<()> {
        let now = now_iso();
        sqlx::query(
            "INSERT INTO users (id, full_name, identifier, img, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET full_name = ?2, identifier = ?3, img = ?4, updated_at = ?5
             WHERE full_name <> ?2 OR identifier <> ?3 OR img <> ?4",
        )
        .bind(&who.user_id)
        .bind(&who.name)
        .bind(&who.identifier)
        .bind(&who.img)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn user(&self, id: &str) -> sqlx::Result<Option<UserRow>> {
        sqlx::query_as("SELECT id, full_name, identifier, img FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The user an app identifier names; if several tokens claimed it, the most recent one.
    pub async fn user_by_identifier(&self, identifier: &str) -> sqlx::Result<Option<UserRow>> {
        sqlx::query_as(
            "SELECT id, full_name, identifier, img FROM users WHERE identifier = ?
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn touch_last_seen(&self, id: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET last_seen_at = ? WHERE id = ?")
            .bind(now_iso())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
