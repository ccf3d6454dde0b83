//! Group commit for SQLite: the writes clients wait on (call transitions, messages) go to one
//! writer, which runs everything that queued up while its last commit was reaching the disk as
//! one transaction, so concurrent writes share one fsync. Each write still answers only after
//! the commit that holds it is on disk, and each keeps its own outcome: it runs in a savepoint,
//! so a write that fails (a constraint, a lost compare-and-swap) is rolled back alone and the
//! others commit. A commit that fails fails every write of its batch; none of them happened.
//!
//! One writer also means these writes never wait on each other for SQLite's write lock (whose
//! busy handler sleeps in steps of milliseconds, the long tail of time to ring under load).
//! PostgreSQL needs none of this: its WAL writer already flushes concurrent commits together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::sync::{mpsc, oneshot};

/// At most this many writes in one transaction (a bound on how long a batch holds the lock).
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer beyond this make their senders wait (backpressure).
const QUEUE: usize = 4096;

/// The sending side: cheap to clone, one per store handle.
#[derive(Clone)]
pub struct Committer {
    writes: mpsc::Sender<Box<dyn Pending>>,
    batch_sizes: Histogram,
    /// Writes sent and not yet taken into a batch.
    waiting: Arc<AtomicUsize>,
}

/// A write as the writer sees it, whatever it returns.
trait Pending: Send {
    /// Runs the write on the writer's connection, inside the batch's transaction.
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Box<dyn Ran>>;
    /// The batch failed before this write ran.
    fn fail(self: Box<Self>, why: &str);
}

/// A write that ran and waits for its batch's commit.
trait Ran: Send {
    fn succeeded(&self) -> bool;
    /// `failed`: why the batch did not commit, if it did not.
    fn answer(self: Box<Self>, failed: Option<&str>);
}

struct Write<F, T> {
    op: F,
    reply: oneshot::Sender<sqlx::Result<T>>,
}

struct Outcome<T> {
    result: sqlx::Result<T>,
    reply: oneshot::Sender<sqlx::Result<T>>,
}

fn batch_failed(why: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("the store did not commit: {why}"))
}

impl<F, T> Pending for Write<F, T>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, sqlx::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Box<dyn Ran>> {
        let Write { op, reply } = *self;
        Box::pin(async move {
            let result = op(conn).await;
            Box::new(Outcome { result, reply }) as Box<dyn Ran>
        })
    }

    fn fail(self: Box<Self>, why: &str) {
        let _ = self.reply.send(Err(batch_failed(why)));
    }
}

impl<T: Send + 'static> Ran for Outcome<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn answer(self: Box<Self>, failed: Option<&str>) {
        let result = match failed {
            None => self.result,
            Some(why) => Err(batch_failed(why)),
        };
        let _ = self.reply.send(result);
    }
}

impl Committer {
    /// Opens the writer's own connection with `opts` (the pool's: WAL, the sync mode, the busy
    /// timeout) and starts it.
    pub async fn start(opts: &SqliteConnectOptions) -> sqlx::Result<Committer> {
        let conn = opts.connect().await?;
        let (writes, queued) = mpsc::channel(QUEUE);
        // 1 to 256 writes per commit.
        let batch_sizes = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 9),
        );
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_loop(
            conn,
            queued,
            batch_sizes.clone(),
            waiting.clone(),
        ));
        Ok(Committer {
            writes,
            batch_sizes,
            waiting,
        })
    }

    /// Writes queued for the next commit (not yet in one).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// How many writes each commit carried.
    pub fn batch_sizes(&self) -> Histogram {
        self.batch_sizes.clone()
    }

    /// Runs `op` in the next group commit; answers once that commit is on disk.
    pub async fn write<T, F>(&self, op: F) -> sqlx::Result<T>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, sqlx::Result<T>>
            + Send
            + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self
            .writes
            .send(Box::new(Write { op, reply }))
            .await
            .is_err()
        {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(batch_failed("the writer has stopped"));
        }
        answer
            .await
            .map_err(|_| batch_failed("the writer has stopped"))?
    }
}

async fn write_loop(
    mut conn: SqliteConnection,
    mut queued: mpsc::Receiver<Box<dyn Pending>>,
    batch_sizes: Histogram,
    waiting: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queued.recv_many(&mut batch, MAX_BATCH).await > 0 {
        waiting.fetch_sub(batch.len(), Ordering::Relaxed);
        batch_sizes.observe(batch.len() as f64);
        commit(&mut conn, std::mem::take(&mut batch)).await;
    }
    let _ = conn.close().await;
}

/// One transaction for `batch`, each write in a savepoint of its own (a lone write needs none).
async fn commit(conn: &mut SqliteConnection, mut batch: Vec<Box<dyn Pending>>) {
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        let why = e.to_string();
        for w in batch {
            w.fail(&why);
        }
        return;
    }
    if batch.len() == 1 {
        // Alone (the usual case below full load) the transaction is the write's savepoint.
        let outcome = batch.pop().expect("one write").run(conn).await;
        let failed = if outcome.succeeded() {
            conn.execute("COMMIT").await.err().map(|e| e.to_string())
        } else {
            None
        };
        if failed.is_some() || !outcome.succeeded() {
            let _ = conn.execute("ROLLBACK").await;
        }
        outcome.answer(failed.as_deref());
        return;
    }
    let mut ran: Vec<Box<dyn Ran>> = Vec::with_capacity(batch.len());
    let mut broken: Option<String> = None;
    for w in batch {
        if let Some(why) = &broken {
            w.fail(why);
            continue;
        }
        if let Err(e) = conn.execute("SAVEPOINT w").await {
            broken = Some(e.to_string());
            w.fail(&e.to_string());
            continue;
        }
        let outcome = w.run(conn).await;
        // A failed write is undone alone. If SQLite already rolled the whole transaction back
        // (a full disk, an I/O error), the savepoint is gone too: the batch is lost, and every
        // write in it fails, including those that ran.
        let undo = if outcome.succeeded() {
            conn.execute("RELEASE w").await
        } else {
            match conn.execute("ROLLBACK TO w").await {
                Ok(_) => conn.execute("RELEASE w").await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = undo {
            broken = Some(e.to_string());
        }
        ran.push(outcome);
    }
    let failed = match broken {
        Some(why) => Some(why),
        None => conn.execute("COMMIT").await.err().map(|e| e.to_string()),
    };
    if failed.is_some() {
        let _ = conn.execute("ROLLBACK").await;
    }
    for outcome in ran {
        outcome.answer(failed.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::Executor;

    use super::*;

    /// A database file of its own, in WAL mode with FULL sync as the server runs it, with a
    /// table `t`, a writer on it, and a connection of the test's own.
    async fn fresh(
        name: &str,
        busy: Duration,
    ) -> (SqliteConnectOptions, sqlx::SqliteConnection, Committer) {
        let dir =
            std::env::temp_dir().join(format!("vchat-commit-{name}-{}", crate::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let opts =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("t.db").display()))
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(busy);
        let mut own = opts.connect().await.unwrap();
        own.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        let c = Committer::start(&opts).await.unwrap();
        (opts, own, c)
    }

    fn insert(c: &Committer, id: i64) -> tokio::task::JoinHandle<sqlx::Result<u64>> {
        let c = c.clone();
        tokio::spawn(async move {
            c.write(move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (id) VALUES (?1)")
                        .bind(id)
                        .execute(conn)
                        .await
                        .map(|r| r.rows_affected())
                })
            })
            .await
        })
    }

    /// Holds SQLite's write lock from another connection; the writer's next `BEGIN IMMEDIATE`
    /// waits on it (up to the busy timeout) while writes queue up behind it.
    async fn hold_lock(opts: &SqliteConnectOptions) -> sqlx::SqliteConnection {
        let mut c = opts.connect().await.unwrap();
        c.execute("BEGIN IMMEDIATE").await.unwrap();
        c
    }

    async fn wait_until(what: &str, ok: impl Fn() -> bool) {
        for _ in 0..1000 {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never: {what}");
    }

    /// Writes queued while a commit waits go out together in the next one, and each keeps its
    /// own outcome: a write that breaks a constraint fails alone, the others commit.
    #[tokio::test]
    async fn queued_writes_share_a_commit_and_keep_their_own_outcome() {
        let (opts, mut setup, c) = fresh("share", Duration::from_secs(30)).await;
        setup
            .execute("INSERT INTO t (id) VALUES (100)")
            .await
            .unwrap();
        let mut lock = hold_lock(&opts).await;
        // The first write is taken at once and waits for the lock; the next ten queue.
        let first = insert(&c, 1);
        wait_until("the first write taken", || {
            render(&c).contains("batch_count 1\n")
        })
        .await;
        let rest: Vec<_> = (2..=11)
            .map(|id| insert(&c, if id == 6 { 100 } else { id }))
            .collect();
        wait_until("ten writes queued", || c.waiting() == 10).await;
        lock.execute("COMMIT").await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        for (i, w) in rest.into_iter().enumerate() {
            let id = i + 2;
            match w.await.unwrap() {
                Ok(n) => assert!(id != 6 && n == 1, "write {id}: {n} rows"),
                Err(e) => assert!(
                    id == 6 && e.to_string().contains("UNIQUE"),
                    "write {id}: {e}"
                ),
            }
        }
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
            .fetch_all(&mut setup)
            .await
            .unwrap();
        assert_eq!(ids, [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 100]);
        // Two commits: the first write alone, then the ten together.
        let text = render(&c);
        assert!(text.contains("batch_count 2\n"), "{text}");
        assert!(text.contains("batch_sum 11.0\n"), "{text}");
        // Alone, a failing write fails with its own error, and the next commits.
        let e = insert(&c, 100).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("UNIQUE"), "{e}");
        assert_eq!(insert(&c, 12).await.unwrap().unwrap(), 1);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut setup)
            .await
            .unwrap();
        assert_eq!(n, 12);
    }

    /// A batch that cannot begin (the lock is held past the busy timeout) fails every write in
    /// it and stores none; the writer goes on with the next.
    #[tokio::test]
    async fn a_batch_that_cannot_commit_fails_all_its_writes_and_the_writer_goes_on() {
        let (opts, mut setup, c) = fresh("fail", Duration::from_millis(300)).await;
        let mut lock = hold_lock(&opts).await;
        let doomed: Vec<_> = (1..=3).map(|id| insert(&c, id)).collect();
        for w in doomed {
            let e = w.await.unwrap().unwrap_err().to_string();
            assert!(e.contains("did not commit"), "{e}");
        }
        lock.execute("COMMIT").await.unwrap();
        assert_eq!(insert(&c, 4).await.unwrap().unwrap(), 1);
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM t")
            .fetch_all(&mut setup)
            .await
            .unwrap();
        assert_eq!(ids, [4]);
    }

    fn render(c: &Committer) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("batch", "", c.batch_sizes());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }
}
