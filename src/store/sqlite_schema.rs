//! Schema changes SQLite can only make outside a transaction, so not as sqlx migrations: run
//! at open, after the migrations, each idempotent and atomic (a crash mid-way leaves the old
//! table; the next start does it again).

use sqlx::{Connection, SqlitePool};

/// The rooms table as it is now: its `kind` also allows broadcast rooms (`'b'`).
const ROOMS: &str = "CREATE TABLE rooms_next (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('s', 'g', 'b')),
    title       TEXT NOT NULL DEFAULT '',
    img         TEXT NOT NULL DEFAULT '',
    pair_key    TEXT UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    extra_data  TEXT
)";

/// Widens `rooms.kind` to broadcast rooms, with SQLite's documented table rebuild (foreign keys
/// off, copy, drop, rename, check, foreign keys on) on one connection.
pub async fn allow_broadcast_rooms(pool: &SqlitePool) -> sqlx::Result<()> {
    let schema: Option<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'rooms'")
            .fetch_optional(pool)
            .await?;
    if schema.is_none_or(|s| s.contains("'b'")) {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *conn)
        .await?;
    let rebuilt = async {
        let mut tx = conn.begin().await?;
        sqlx::query(ROOMS).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO rooms_next (id, kind, title, img, pair_key, created_by, created_at,
                                     description, extra_data)
             SELECT id, kind, title, img, pair_key, created_by, created_at, description, extra_data
             FROM rooms",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DROP TABLE rooms").execute(&mut *tx).await?;
        sqlx::query("ALTER TABLE rooms_next RENAME TO rooms")
            .execute(&mut *tx)
            .await?;
        // Rows of foreign_key_check name the table holding a key with no parent.
        let broken: Vec<String> = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                use sqlx::Row;
                r.try_get::<String, _>(0).unwrap_or_default()
            })
            .collect();
        if !broken.is_empty() {
            return Err(sqlx::Error::Protocol(format!(
                "rooms rebuild would break foreign keys in {broken:?}"
            )));
        }
        tx.commit().await
    }
    .await;
    // Back on, whatever happened: the pool reuses this connection.
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut *conn)
        .await?;
    rebuilt
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use std::str::FromStr;

    #[tokio::test]
    async fn rooms_rebuild_keeps_rows_and_foreign_keys() {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")
            .unwrap()
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        for q in [
            "CREATE TABLE rooms (id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('s', 'g')),
                title TEXT NOT NULL DEFAULT '', img TEXT NOT NULL DEFAULT '', pair_key TEXT UNIQUE,
                created_by TEXT NOT NULL, created_at TEXT NOT NULL,
                description TEXT NOT NULL DEFAULT '', extra_data TEXT)",
            "CREATE TABLE room_members (room_id TEXT NOT NULL REFERENCES rooms (id), user_id TEXT)",
            "INSERT INTO rooms (id, kind, title, created_by, created_at) VALUES ('r1', 'g', 'T', 'u', 't')",
            "INSERT INTO room_members VALUES ('r1', 'u')",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        assert!(sqlx::query(
            "INSERT INTO rooms (id, kind, created_by, created_at) VALUES ('x', 'b', 'u', 't')"
        )
        .execute(&pool)
        .await
        .is_err());
        allow_broadcast_rooms(&pool).await.unwrap();
        allow_broadcast_rooms(&pool).await.unwrap();
        let title: String = sqlx::query_scalar("SELECT title FROM rooms WHERE id = 'r1'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(title, "T");
        sqlx::query(
            "INSERT INTO rooms (id, kind, created_by, created_at) VALUES ('r2', 'b', 'u', 't')",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO room_members VALUES ('r2', 'u')")
            .execute(&pool)
            .await
            .unwrap();
        // Foreign keys still point at the rebuilt table, and are on.
        assert!(sqlx::query("INSERT INTO room_members VALUES ('nope', 'u')")
            .execute(&pool)
            .await
            .is_err());
        let child: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'room_members'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(child.contains("REFERENCES rooms"), "{child}");
    }
}
