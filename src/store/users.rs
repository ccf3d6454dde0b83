use super::Store;
use crate::ids::{new_id, now_iso};

row! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct UserRow {
        pub id: String,
        pub full_name: String,
        pub identifier: String,
        pub img: String,
    }
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
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "INSERT INTO users (id, full_name, identifier, img, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (id) DO UPDATE SET
                full_name = CASE WHEN users.name_from_profile THEN users.full_name ELSE $2 END,
                img = CASE WHEN users.img_from_profile THEN users.img ELSE $4 END,
                identifier = $3, updated_at = $5
             RETURNING id, full_name, identifier, img"
        ))
        .bind(who.id)
        .bind(who.full_name)
        .bind(who.identifier)
        .bind(who.img)
        .bind(&now)
        .fetch_one(pool)
        .await)
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
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            sqlx::query(&sql(
                "INSERT INTO signin_identifiers (identifier, user_id)
             VALUES ($1, COALESCE((SELECT id FROM users WHERE identifier = $1
                                   ORDER BY updated_at DESC LIMIT 1), $2)) ON CONFLICT DO NOTHING",
            ))
            .bind(identifier)
            .bind(&fresh_id)
            .execute(&mut *tx)
            .await?;
            let user_id: String = sqlx::query_scalar(&sql(
                "SELECT user_id FROM signin_identifiers WHERE identifier = $1",
            ))
            .bind(identifier)
            .fetch_one(&mut *tx)
            .await?;
            let created = sqlx::query(&sql(
                "INSERT INTO users (id, full_name, identifier, img, created_at, updated_at)
             VALUES ($1, $2, $3, '', $4, $5) ON CONFLICT DO NOTHING",
            ))
            .bind(&user_id)
            .bind(new_name)
            .bind(identifier)
            .bind(&now)
            .bind(&now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let row: UserRow = sqlx::query_as(&sql(
                "SELECT id, full_name, identifier, img FROM users WHERE id = $1",
            ))
            .bind(&user_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok((row, created))
        })
    }

    /// A name the user chose; token claims no longer override it.
    pub async fn set_user_name(&self, id: &str, name: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| {
            sqlx::query(&sql("UPDATE users SET full_name = $1, name_from_profile = TRUE, updated_at = $2 WHERE id = $3"))
        .bind(name)
        .bind(now_iso())
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// An image the user uploaded; token claims no longer override it.
    pub async fn set_user_img(&self, id: &str, img: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| sqlx::query(&sql(
            "UPDATE users SET img = $1, img_from_profile = TRUE, updated_at = $2 WHERE id = $3"
        ))
        .bind(img)
        .bind(now_iso())
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn user(&self, id: &str) -> sqlx::Result<Option<UserRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT id, full_name, identifier, img FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)
    }

    /// The user an app identifier names: the one that signed in with it, else the most recent
    /// token that claimed it.
    pub async fn user_by_identifier(&self, identifier: &str) -> sqlx::Result<Option<UserRow>> {
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT id, full_name, identifier, img FROM users
             WHERE id = COALESCE(
                (SELECT user_id FROM signin_identifiers WHERE identifier = $1),
                (SELECT id FROM users WHERE identifier = $1 ORDER BY updated_at DESC LIMIT 1))"
        ))
        .bind(identifier)
        .fetch_optional(pool)
        .await)
    }

    /// (last seen, first seen) of a user.
    pub async fn last_seen(&self, id: &str) -> sqlx::Result<Option<(Option<String>, String)>> {
        // The pending time first: one leaves `pending` only once committed, so when none is
        // pending, the row read next holds every time recorded before.
        let pending = self.seen.pending(id);
        let stored: Option<(Option<String>, String)> = db!(self, |pool, sql| sqlx::query_as(
            &sql("SELECT last_seen_at, created_at FROM users WHERE id = $1")
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        Ok(stored.map(|(last, created)| (pending.or(last), created)))
    }

    /// Users whose name contains `name` (any when empty), by name, without `me`.
    pub async fn search_users(
        &self,
        me: &str,
        name: &str,
        limit: i64,
        offset: i64,
    ) -> sqlx::Result<Vec<UserRow>> {
        let pattern = super::like_pattern(name);
        db!(self, |pool, sql| sqlx::query_as(&sql(
            "SELECT id, full_name, identifier, img FROM users
             WHERE id <> $1 AND lower(full_name) LIKE lower($2) ESCAPE '\\'
             ORDER BY lower(full_name), id LIMIT $3 OFFSET $4"
        ))
        .bind(me)
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await)
    }

    /// The user was last seen now. Written in a batch with others' (see `seen`); reads see it
    /// at once.
    pub fn touch_last_seen(&self, id: &str) {
        self.seen.record(id, now_iso());
    }
}
