//! Call deadlines, the one door for time: the ring timeout, the grace a party's device gets
//! after it drops, the max call duration. Arming returns a [`Timer`] the call keeps; when its
//! deadline passes, a [`Fired`] command goes to the service's queue (the timers never call the
//! service). A fired command counts only if the call still holds that timer (checked under the
//! call's lock), so cancelling, which is dropping the `Timer`, wins even against a deadline that
//! passed a moment earlier.
//!
//! Two implementations behind the one door: in-process alone, and in a cluster also *stored*:
//! every grace deadline is written to a [`Ledger`] (Redis) while armed, so the node that takes a
//! call over after its owner died keeps the grace's original deadline instead of starting it
//! again. Ring timeouts and max durations need no ledger: they follow from the call's stored
//! times (`created_at`, `accepted_at`), written by the same compare-and-swap as its status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::machine::{Action, Role};

/// Which of a call's timers it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// The ring timeout while ringing, the max duration while in a call.
    Deadline,
    /// A party's device is gone; the call waits for it this long.
    Grace(Role),
}

/// Where armed grace deadlines are written down while they are armed (see the module doc).
/// Calls must not block: implementations queue the write.
pub trait Ledger: Send + Sync {
    fn record(&self, meet_id: &str, role: Role, id: u64, due_unix_ms: u64);
    fn erase(&self, meet_id: &str, role: Role, id: u64);
}

/// An armed deadline. Dropping it cancels it (and erases it from the ledger).
pub struct Timer {
    pub id: u64,
    abort: AbortHandle,
    recorded: Option<Recorded>,
}

struct Recorded {
    ledger: Arc<dyn Ledger>,
    meet_id: String,
    role: Role,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("id", &self.id)
            .field("recorded", &self.recorded.is_some())
            .finish()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.abort.abort();
        if let Some(r) = &self.recorded {
            r.ledger.erase(&r.meet_id, r.role, self.id);
        }
    }
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A deadline that passed: the service applies `action` if the call still holds timer `id`.
#[derive(Debug)]
pub struct Fired {
    pub meet_id: String,
    pub id: u64,
    pub kind: TimerKind,
    pub action: Action,
}

pub struct Timers {
    tx: mpsc::UnboundedSender<Fired>,
    next: AtomicU64,
    /// Cluster mode: grace deadlines are stored here too.
    ledger: Option<Arc<dyn Ledger>>,
}

impl Timers {
    pub fn new(ledger: Option<Arc<dyn Ledger>>) -> (Timers, mpsc::UnboundedReceiver<Fired>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Timers {
                tx,
                next: AtomicU64::new(1),
                ledger,
            },
            rx,
        )
    }

    /// Arms a deadline `after` from now.
    pub fn arm(&self, meet_id: &str, kind: TimerKind, after: Duration, action: Action) -> Timer {
        // The wall clock is read only for a deadline that gets recorded.
        let due = || now_unix_ms().saturating_add(after.as_millis() as u64);
        self.start(meet_id, kind, after, due, action)
    }

    /// Arms a deadline at `due_unix_ms` (one already passed fires at once): a deadline taken
    /// over from another node keeps its time.
    pub fn arm_at(
        &self,
        meet_id: &str,
        kind: TimerKind,
        due_unix_ms: u64,
        action: Action,
    ) -> Timer {
        let after = Duration::from_millis(due_unix_ms.saturating_sub(now_unix_ms()));
        self.start(meet_id, kind, after, || due_unix_ms, action)
    }

    fn start(
        &self,
        meet_id: &str,
        kind: TimerKind,
        after: Duration,
        due_unix_ms: impl FnOnce() -> u64,
        action: Action,
    ) -> Timer {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let recorded = match (kind, &self.ledger) {
            (TimerKind::Grace(role), Some(ledger)) => {
                ledger.record(meet_id, role, id, due_unix_ms());
                Some(Recorded {
                    ledger: ledger.clone(),
                    meet_id: meet_id.to_string(),
                    role,
                })
            }
            _ => None,
        };
        let tx = self.tx.clone();
        let meet_id = meet_id.to_string();
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Fired {
                meet_id,
                id,
                kind,
                action,
            });
        });
        Timer {
            id,
            abort: task.abort_handle(),
            recorded,
        }
    }
}
