use super::{Store, UserRow};
use crate::ids::now_iso;

/// A device session created by `auth/connect`.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub client_device_id: &'a str,
    pub platform: &'a str,
    pub language: Option<&'a str>,
    pub push_key: Option<&'a str>,
    pub expires_at: String,
}

row! {
    /// Where a push for a user goes: one device with a key.
    #[derive(Debug, Clone)]
    pub struct PushDevice {
        pub user_id: String,
        pub device: String,
        pub push_key: String,
    }
}

impl Store {
    pub async fn create_session(&self, s: &NewSession<'_>) -> sqlx::Result<()> {
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            if let Some(key) = s.push_key {
                sqlx::query(&sql(RELEASE_PUSH_KEY))
                    .bind(key)
                    .bind(s.user_id)
                    .bind(s.session_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(&sql(
                "INSERT INTO devices (user_id, device, session, client_device_id, platform,
                    language, push_key, created_at, expires_at)
                 VALUES ($1, $2, TRUE, $3, $4, $5, $6, $7, $8)",
            ))
            .bind(s.user_id)
            .bind(s.session_id)
            .bind(s.client_device_id)
            .bind(s.platform)
            .bind(s.language)
            .bind(s.push_key)
            .bind(now_iso())
            .bind(&s.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
    }

    /// The user of a live (not logged out) session, and the session's platform.
    pub async fn session_user(
        &self,
        user: &str,
        session: &str,
    ) -> sqlx::Result<Option<(UserRow, String)>> {
        let row: Option<(String, String, String, String, Option<String>)> =
            db!(self, |pool, sql| sqlx::query_as(&sql(
                "SELECT u.id, u.full_name, u.identifier, u.img, d.platform FROM devices d
             JOIN users u ON u.id = d.user_id
             WHERE d.user_id = $1 AND d.device = $2 AND d.session = TRUE AND d.ended_at IS NULL"
            ))
            .bind(user)
            .bind(session)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|(id, full_name, identifier, img, platform)| {
            (
                UserRow {
                    id,
                    full_name,
                    identifier,
                    img,
                },
                platform.unwrap_or_else(|| "other".into()),
            )
        }))
    }

    /// Logs a session out and forgets its push key. False if it was not live.
    pub async fn end_session(&self, user: &str, session: &str) -> sqlx::Result<bool> {
        let r = db!(self, |pool, sql| sqlx::query(&sql(
            "UPDATE devices SET ended_at = $1, push_key = NULL
             WHERE user_id = $2 AND device = $3 AND session = TRUE AND ended_at IS NULL"
        ))
        .bind(now_iso())
        .bind(user)
        .bind(session)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(r == 1)
    }

    /// Sets the push key of a device (creating the device row for external tokens). A key
    /// belongs to one physical device: whoever held it before (another account signed in on the
    /// same phone) loses it, so their messages never wake this phone.
    pub async fn set_push_key(&self, user: &str, device: &str, key: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            sqlx::query(&sql(RELEASE_PUSH_KEY))
                .bind(key)
                .bind(user)
                .bind(device)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&sql(
                "INSERT INTO devices (user_id, device, push_key, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, device) DO UPDATE SET push_key = $3",
            ))
            .bind(user)
            .bind(device)
            .bind(key)
            .bind(now_iso())
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
    }

    pub async fn clear_push_key(&self, user: &str, device: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| sqlx::query(&sql(
            "UPDATE devices SET push_key = NULL WHERE user_id = $1 AND device = $2"
        ))
        .bind(user)
        .bind(device)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A provider said this key is dead.
    pub async fn drop_push_key(&self, user: &str, device: &str, key: &str) -> sqlx::Result<()> {
        db!(self, |pool, sql| {
            sqlx::query(&sql("UPDATE devices SET push_key = NULL WHERE user_id = $1 AND device = $2 AND push_key = $3"))
        .bind(user)
        .bind(device)
        .bind(key)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Devices of these users that can be woken up (live sessions and external-token devices).
    pub async fn push_devices(&self, users: &[String]) -> sqlx::Result<Vec<PushDevice>> {
        let mut out = Vec::new();
        for chunk in users.chunks(200) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let q = format!(
                "SELECT user_id, device, push_key FROM devices
                 WHERE push_key IS NOT NULL AND ended_at IS NULL AND user_id IN ({})",
                marks.join(",")
            );
            let rows = db!(self, |pool, sql| {
                let sql = sql(&q);
                let mut query = sqlx::query_as::<_, PushDevice>(&sql);
                for u in chunk {
                    query = query.bind(u);
                }
                query.fetch_all(pool).await
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The push key a device holds (tests and diagnostics).
    pub async fn push_key_of(&self, user: &str, device: &str) -> sqlx::Result<Option<String>> {
        Ok(
            db!(self, |pool, sql| sqlx::query_scalar::<_, Option<String>>(
                &sql("SELECT push_key FROM devices WHERE user_id = $1 AND device = $2")
            )
            .bind(user)
            .bind(device)
            .fetch_optional(pool)
            .await)?
            .flatten(),
        )
    }
}

/// A push key belongs to one device: whoever else held it loses it ($1 key, $2/$3 the device
/// that takes it).
const RELEASE_PUSH_KEY: &str = "UPDATE devices SET push_key = NULL
     WHERE push_key = $1 AND NOT (user_id = $2 AND device = $3)";
