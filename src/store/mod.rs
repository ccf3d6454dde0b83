//! The one door to persistence. Services call these methods and never write SQL themselves.
//! Two databases sit behind the same methods: SQLite (the default, one file in the data dir) and
//! PostgreSQL (`VCHAT_DATABASE_URL`, for clusters). Each method's SQL is written once, in the
//! dialect both share (`$1` placeholders, `ON CONFLICT DO NOTHING`, `TRUE`/`FALSE`), and
//! [`db!`] compiles its body once per database; `sql(…)` turns the placeholders into SQLite's
//! `?1` where needed. Each database has its own migrations (`migrations/sqlite`,
//! `migrations/postgres`) with the same tables.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` by default: a write that returned is on disk,
//! which is what "durable before acknowledged" needs (a process kill or a power cut loses nothing
//! acked). `VCHAT_DB_SYNC=normal` trades power-cut safety for latency; a crash still loses nothing.

/// A struct read from a row (`query_as`), column by field name: what `#[derive(sqlx::FromRow)]`
/// does, without sqlx's macro crate (which builds sqlx and SQLite a second time for the
/// compiler: see `migrations`).
macro_rules! row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field : $ty ),*
        }

        impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for $name
        where
            &'static str: sqlx::ColumnIndex<R>,
            $( $ty: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>, )*
        {
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                Ok($name {
                    $( $field: row.try_get(stringify!($field))?, )*
                })
            }
        }
    };
}

/// Runs `$body` against the store's database: compiled once per database, with `$pool` its pool
/// and `$sql` the function that puts SQL into its dialect.
macro_rules! db {
    ($store:expr, |$pool:ident, $sql:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $sql = $crate::store::dialect::sqlite;
                $body
            }
            $crate::store::Pool::Postgres($pool) => {
                #[allow(unused_variables)]
                let $sql = $crate::store::dialect::postgres;
                $body
            }
        }
    };
}

/// Runs a write a client waits on (a call transition, a message): on SQLite in the writer's
/// next group commit (see [`commit`]), on PostgreSQL on one pooled connection. `$conn` is a
/// `&mut` connection either way. The body runs on another task on SQLite, so it owns (moves)
/// what it binds; it evaluates to a `sqlx::Result`.
macro_rules! db_commit {
    ($store:expr, |$conn:ident, $sql:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(_) => {
                $store
                    .commits
                    .as_ref()
                    .expect("a SQLite store has a writer")
                    .write(move |$conn| {
                        Box::pin(async move {
                            #[allow(unused_variables)]
                            let $sql = $crate::store::dialect::sqlite;
                            $body
                        })
                    })
                    .await
            }
            $crate::store::Pool::Postgres(pool) => {
                let mut held = pool.acquire().await?;
                let $conn = &mut *held;
                #[allow(unused_variables)]
                let $sql = $crate::store::dialect::postgres;
                async move { $body }.await
            }
        }
    };
}

mod bans;
mod broadcasts;
mod calls;
mod commit;
mod devices;
pub(crate) mod groups;
mod messages;
mod migrations;
mod rooms;
mod seen;
mod settings;
mod sqlite_schema;
mod stars;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use calls::{CallRecord, HistoryRow};
pub use devices::{NewSession, PushDevice};
pub use groups::{GroupDetails, MemberRow, ReceiptRow};
pub use messages::{Inserted, MessageFilter, MessageRow, MessageSearch, NewMessage};
pub use rooms::{RoomFilter, RoomKind, RoomRow, RoomSummary, JOINABLE_MAX};
pub use settings::{Flag, MemberSettings};
pub use users::{ClaimedProfile, UserRow};

/// The SQL dialects: statements are written with PostgreSQL's `$N` placeholders, which SQLite
/// reads as `?N` (the same numbered parameter, wherever it appears).
/// `%text%` for `LIKE … ESCAPE '\\'`, with the pattern characters in `text` escaped.
fn like_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

pub mod dialect {
    use std::borrow::Cow;

    pub fn postgres(sql: &str) -> Cow<'_, str> {
        Cow::Borrowed(sql)
    }

    pub fn sqlite(sql: &str) -> Cow<'_, str> {
        if !sql.contains('$') {
            return Cow::Borrowed(sql);
        }
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('?');
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn placeholders() {
            assert_eq!(
                super::sqlite("a = $1 AND b = $12 OR c = $1"),
                "a = ?1 AND b = ?12 OR c = ?1"
            );
            assert_eq!(super::sqlite("SELECT 1"), "SELECT 1");
        }
    }
}

#[derive(Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite's group commit (none on PostgreSQL).
    commits: Option<commit::Committer>,
    /// Last-seen times on their way to the database.
    seen: std::sync::Arc<seen::SeenWrites>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database file and brings the schema up to date.
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
            .connect_with(opts.clone())
            .await?;
        migrations::migrator(migrations::SQLITE)
            .await?
            .run(&pool)
            .await?;
        sqlite_schema::allow_broadcast_rooms(&pool).await?;
        let pool = Pool::Sqlite(pool);
        Ok(Store {
            seen: seen::SeenWrites::start(pool.clone()),
            pool,
            commits: Some(commit::Committer::start(&opts).await?),
        })
    }

    /// Connects to PostgreSQL at `url` and brings the schema up to date. `lock_timeout`: how
    /// long a write waits for a row or table lock before it fails (as SQLite's busy timeout).
    pub async fn open_postgres(url: &str, lock_timeout: Duration) -> Result<Store, sqlx::Error> {
        let opts = PgConnectOptions::from_str(url)?.options([(
            "lock_timeout",
            format!("{}ms", lock_timeout.as_millis().max(1)),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        migrations::migrator(migrations::POSTGRES)
            .await?
            .run(&pool)
            .await?;
        let pool = Pool::Postgres(pool);
        Ok(Store {
            seen: seen::SeenWrites::start(pool.clone()),
            pool,
            commits: None,
        })
    }

    /// Which database this is (`sqlite` or `postgres`), for logs and `/metrics`.
    pub fn kind(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// How many writes each group commit carried (SQLite), for `/metrics`.
    pub fn commit_batch_sizes(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        self.commits.as_ref().map(commit::Committer::batch_sizes)
    }

    /// Writes queued for the next group commit (SQLite).
    pub fn writes_waiting(&self) -> Option<usize> {
        self.commits.as_ref().map(commit::Committer::waiting)
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> bool {
        db!(self, |pool, sql| sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(pool)
            .await
            .is_ok())
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

    /// Flushes SQLite's WAL into the main file and closes every connection (graceful shutdown).
    pub async fn close(&self) {
        if let Err(e) = self.seen.write_all(&self.pool).await {
            tracing::warn!(error = %e, "last-seen times lost at shutdown");
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await;
                pool.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}
