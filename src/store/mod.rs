//! The one door to persistence. Services call these methods and never write SQL themselves, so a
//! server database can replace SQLite behind the same methods without touching handlers.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` by default: a write that returned is on disk,
//! which is what "durable before acknowledged" needs (a process kill or a power cut loses nothing
//! acked). `VCHAT_DB_SYNC=normal` trades power-cut safety for latency; a crash still loses nothing.

mod bans;
mod calls;
mod devices;
mod messages;
mod rooms;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use calls::{CallRecord, HistoryRow};
pub use devices::{NewSession, PushDevice};
pub use messages::{Inserted, MessageRow, NewMessage};
pub use rooms::{RoomKind, RoomRow, RoomSummary};
pub use users::{ClaimedProfile, UserRow};

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database file and brings the schema up to date.
    /// `full_sync`: every commit reaches the disk before it returns (survives power loss);
    /// otherwise WAL's NORMAL mode, which survives a process crash but not a power cut.
    pub async fn open(
        path: &Path,
        full_sync: bool,
        busy_timeout: Duration,
    ) -> Result<Store, sqlx::Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .is_ok()
    }

    /// Writes a consistent copy of the database at `path` to `to`, while a server may be using
    /// it: SQLite's `VACUUM INTO` reads one snapshot (WAL readers never block writers) and
    /// writes a compact, self-contained file. Returns its size.
    pub async fn backup(path: &Path, to: &Path) -> Result<u64, String> {
        use sqlx::{ConnectOptions, Connection};
        if !path.exists() {
            return Err(format!("no database at {}", path.display()));
        }
        if to.exists() {
            return Err(format!("{} exists already; pick a new file", to.display()));
        }
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let target = to
            .to_str()
            .ok_or_else(|| format!("{} is not a UTF-8 path", to.display()))?;
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&mut conn)
            .await
            .map_err(|e| format!("backup failed: {e}"))?;
        let _ = conn.close().await;
        std::fs::metadata(to)
            .map(|m| m.len())
            .map_err(|e| format!("backup written but unreadable: {e}"))
    }

    /// Flushes the WAL into the main file and closes every connection (graceful shutdown).
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }
}
