use super::Store;
use crate::ids::{new_id, now_iso};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub full_name: String,
    pub identifier: String,
    pub img: String,
}

/// The profile fields an external token's claims describe.
#[derive(Debug, Clone)]
pub struct ClaimedProfile<'a> {
    pub id: &'a str,
    pub full_name: &'a str,
    pub identifier: &'a str,
    pub img: &'a str,
}

impl Store {
    /// Users of external tokens are known from their claims; the newest claims win, except for
    /// a name or image the user set through the profile API. Returns the stored profile.
    pub async fn upsert_user(&self, who: &ClaimedProfile<'_>) -> sqlx::Result<UserRow> {
        let now = now_iso();
        sqlx::query_as(
            "INSERT INTO users (id, full_name, identifier, img, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET
                full_name = CASE WHEN name_from_profile = 1 THEN full_name ELSE ?2 END,
                img = CASE WHEN img_from_profile = 1 THEN img ELSE ?4 END,
                identifier = ?3, updated_at = ?5
             RETURNING id, full_name, identifier, img",
        )
        .bind(who.id)
        .bind(who.full_name)
        .bind(who.identifier)
        .bind(who.img)
        .bind(&now)
        .fetch_one(&self.pool)
        .await
    }

    /// Register-or-login by identifier, atomically: the first sign-in of an identifier claims
    /// it (taking over a user external tokens already made known under it); later ones find it.
    /// Returns the user and whether it was created now.
    pub async fn signin_user(
        &self,
        identifier: &str,
        new_name: &str,
    ) -> sqlx::Result<(UserRow, bool)> {
        let now = now_iso();
        let fresh_id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR IGNORE INTO signin_identifiers (identifier, user_id)
             VALUES (?1, COALESCE((SELECT id FROM users WHERE identifier = ?1
                                   ORDER BY updated_at DESC LIMIT 1), ?2))",
        )
        .bind(identifier)
        .bind(&fresh_id)
        .execute(&mut *tx)
        .await?;
        let user_id: String =
            sqlx::query_scalar("SELECT user_id FROM signin_identifiers WHERE identifier = ?")
                .bind(identifier)
                .fetch_one(&mut *tx)
                .await?;
        let created = sqlx::query(
            "INSERT OR IGNORE INTO users (id, full_name, identifier, img, created_at, updated_at)
             VALUES (?, ?, ?, '', ?, ?)",
        )
        .bind(&user_id)
        .bind(new_name)
        .bind(identifier)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row: UserRow =
            sqlx::query_as("SELECT id, full_name, identifier, img FROM users WHERE id = ?")
                .bind(&user_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((row, created))
    }

    /// A name the user chose; token claims no longer override it.
    pub async fn set_user_name(&self, id: &str, name: &str) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE users SET full_name = ?, name_from_profile = 1, updated_at = ? WHERE id = ?",
        )
        .bind(name)
        .bind(now_iso())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An image the user uploaded; token claims no longer override it.
    pub async fn set_user_img(&self, id: &str, img: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET img = ?, img_from_profile = 1, updated_at = ? WHERE id = ?")
            .bind(img)
            .bind(now_iso())
            .bind(id)
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

    /// The user an app identifier names: the one that signed in with it, else the most recent
    /// token that claimed it.
    pub async fn user_by_identifier(&self, identifier: &str) -> sqlx::Result<Option<UserRow>> {
        sqlx::query_as(
            "SELECT id, full_name, identifier, img FROM users
             WHERE id = COALESCE(
                (SELECT user_id FROM signin_identifiers WHERE identifier = ?1),
                (SELECT id FROM users WHERE identifier = ?1 ORDER BY updated_at DESC LIMIT 1))",
        )
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await
    }

    /// (last seen, first seen) of a user.
    pub async fn last_seen(&self, id: &str) -> sqlx::Result<Option<(Option<String>, String)>> {
        sqlx::query_as("SELECT last_seen_at, created_at FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Users whose name contains `name` (any when empty), by name, without `me`.
    pub async fn search_users(
        &self,
        me: &str,
        name: &str,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<UserRow>> {
        let pattern = format!(
            "%{}%",
            name.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        sqlx::query_as(
            "SELECT id, full_name, identifier, img FROM users
             WHERE id <> ? AND full_name LIKE ? ESCAPE '\\'
             ORDER BY full_name COLLATE NOCASE, id LIMIT ? OFFSET ?",
        )
        .bind(me)
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
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
