//! Last-seen times, written in batches. A socket's disconnect records its user's time here and
//! returns; a writer commits what has gathered, many users per transaction. One fsync'd
//! transaction per disconnect made a mass disconnect (a network drop, clients restarting) a
//! queue of thousands of writes that kept the pool busy for tens of seconds, so connects that
//! write a profile timed out behind it. Until a time is committed, reads find it here.
//!
//! A crash loses the times not yet committed (at most one batch, which is what a crash a few
//! milliseconds earlier would have lost): last-seen is not a write anyone was told had
//! happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Pool;

/// Users per transaction: a batch holds the write lock about as long as a few ordinary writes.
const BATCH: usize = 500;
/// Between two batches other writers get the lock.
const GAP: Duration = Duration::from_millis(20);

#[derive(Default)]
pub(super) struct SeenWrites {
    /// user → time not committed yet (the newest one recorded).
    pending: Mutex<HashMap<String, String>>,
    wake: Notify,
}

/// `db!` reaches the pool through a `.pool` field.
struct Db {
    pool: Pool,
}

impl SeenWrites {
    /// Starts the writer for `pool`; it ends with the runtime.
    pub fn start(pool: Pool) -> Arc<Self> {
        let seen = Arc::new(SeenWrites::default());
        let writer = seen.clone();
        tokio::spawn(async move {
            let db = Db { pool };
            loop {
                writer.wake.notified().await;
                loop {
                    match writer.write_batch(&db).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "last-seen times not written yet; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    tokio::time::sleep(GAP).await;
                }
            }
        });
        seen
    }

    pub fn record(&self, user: &str, at: String) {
        self.pending
            .lock()
            .expect("not poisoned")
            .insert(user.to_string(), at);
        self.wake.notify_one();
    }

    /// A time recorded for `user` and not committed yet.
    pub fn pending(&self, user: &str) -> Option<String> {
        self.pending
            .lock()
            .expect("not poisoned")
            .get(user)
            .cloned()
    }

    /// Writes everything recorded so far (at shutdown).
    pub async fn write_all(&self, pool: &Pool) -> sqlx::Result<()> {
        let db = Db { pool: pool.clone() };
        while self.write_batch(&db).await? > 0 {}
        Ok(())
    }

    /// Commits up to [`BATCH`] pending times in one transaction; how many it wrote. A time
    /// stays readable here until its commit is done, and one recorded again meanwhile (a newer
    /// one) stays pending.
    async fn write_batch(&self, db: &Db) -> sqlx::Result<usize> {
        let mut batch: Vec<(String, String)> = {
            let pending = self.pending.lock().expect("not poisoned");
            pending
                .iter()
                .take(BATCH)
                .map(|(u, t)| (u.clone(), t.clone()))
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        // Rows locked in one order by every writer: two nodes' writers (one per node, on one
        // PostgreSQL) updating the same users in their maps' orders deadlocked, and connects
        // writing those users' profiles waited behind the deadlock for seconds.
        batch.sort_unstable();
        db!(db, |pool, sql| {
            let mut tx = pool.begin().await?;
            for (user, at) in &batch {
                sqlx::query(&sql("UPDATE users SET last_seen_at = $1 WHERE id = $2"))
                    .bind(at)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })?;
        let mut pending = self.pending.lock().expect("not poisoned");
        for (user, at) in &batch {
            if pending.get(user) == Some(at) {
                pending.remove(user);
            }
        }
        Ok(batch.len())
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    /// A database file of its own with `n` users, in WAL mode as the server runs it.
    async fn users(n: usize) -> Pool {
        let dir = std::env::temp_dir().join(format!("vchat-seen-{}", crate::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let opts =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("t.db").display()))
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new().connect_with(opts).await.unwrap();
        sqlx::query("CREATE TABLE users (id TEXT PRIMARY KEY, last_seen_at TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        for i in 0..n {
            sqlx::query("INSERT INTO users (id) VALUES (?1)")
                .bind(format!("u{i}"))
                .execute(&pool)
                .await
                .unwrap();
        }
        Pool::Sqlite(pool)
    }

    async fn stored(pool: &Pool, user: &str) -> Option<String> {
        let Pool::Sqlite(p) = pool else {
            unreachable!()
        };
        sqlx::query_scalar("SELECT last_seen_at FROM users WHERE id = ?1")
            .bind(user)
            .fetch_one(p)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_time_is_written_in_batches_and_readable_until_then() {
        let pool = users(1200).await;
        let seen = SeenWrites::default();
        for i in 0..1200 {
            seen.record(&format!("u{i}"), format!("t{i}"));
        }
        assert_eq!(seen.pending("u7").as_deref(), Some("t7"));
        assert_eq!(stored(&pool, "u7").await, None);
        let db = Db { pool: pool.clone() };
        assert_eq!(seen.write_batch(&db).await.unwrap(), BATCH);
        assert_eq!(seen.pending.lock().unwrap().len(), 1200 - BATCH);
        seen.write_all(&pool).await.unwrap();
        assert!(seen.pending.lock().unwrap().is_empty());
        for i in [0, 499, 500, 1199] {
            assert_eq!(stored(&pool, &format!("u{i}")).await, Some(format!("t{i}")));
        }
    }

    #[tokio::test]
    async fn a_newer_time_waits_for_its_own_commit() {
        let pool = users(1).await;
        let seen = SeenWrites::default();
        seen.record("u0", "t1".into());
        seen.write_all(&pool).await.unwrap();
        seen.record("u0", "t2".into());
        assert_eq!(seen.pending("u0").as_deref(), Some("t2"));
        assert_eq!(stored(&pool, "u0").await.as_deref(), Some("t1"));
        seen.write_all(&pool).await.unwrap();
        assert_eq!(stored(&pool, "u0").await.as_deref(), Some("t2"));
        assert_eq!(seen.pending("u0"), None);
    }

    /// Two nodes' writers on one PostgreSQL, the same users pending on both (in their maps'
    /// different orders): every batch commits, none is chosen as a deadlock's victim.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_on_one_postgresql_never_deadlock() {
        use sqlx::{Connection, Executor};
        let admin = std::env::var("VCHAT_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let Ok(mut c) = sqlx::PgConnection::connect(&admin).await else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no PostgreSQL at {admin} (CI must provide it)"
            );
            eprintln!("SKIPPED: no PostgreSQL at {admin}");
            return;
        };
        let name = format!("vchat_seen_{}", crate::ids::random_hex(6));
        c.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let pg = sqlx::PgPool::connect(&format!("{base}/{name}"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE users (id TEXT PRIMARY KEY, last_seen_at TEXT)")
            .execute(&pg)
            .await
            .unwrap();
        sqlx::query("INSERT INTO users (id) SELECT 'u' || g FROM generate_series(0, 299) g")
            .execute(&pg)
            .await
            .unwrap();
        let pool = Pool::Postgres(pg.clone());
        for round in 0..20 {
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    let seen = SeenWrites::default();
                    for i in 0..300 {
                        seen.record(&format!("u{i}"), format!("r{round}w{w}"));
                    }
                    let db = Db { pool: pool.clone() };
                    tokio::spawn(async move { seen.write_batch(&db).await.map(|_| ()) })
                })
                .collect();
            for w in writers {
                let done = w.await.unwrap();
                assert!(done.is_ok(), "round {round}: {done:?}");
            }
        }
        pg.close().await;
        let _ = c
            .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await;
    }

    #[tokio::test]
    async fn the_writer_drains_what_is_recorded() {
        let pool = users(700).await;
        let seen = SeenWrites::start(pool.clone());
        for i in 0..700 {
            seen.record(&format!("u{i}"), format!("t{i}"));
        }
        // Waits for the writer (two batches), however slow the machine; fails only if it
        // never drains.
        tokio::time::timeout(Duration::from_secs(30), async {
            while !seen.pending.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the writer drains the pending times");
        assert_eq!(stored(&pool, "u699").await.as_deref(), Some("t699"));
    }
}
