//! Call deadlines, the one door for time: the ring timeout, the grace a party's device gets
//! after it drops, the max call duration. Arming returns a [`Timer`] the call keeps; when its
//! deadline passes, a [`Fired`] command goes to the service's queue (the timers never call the
//! service). A fired command counts only if the call still holds that timer (checked under the
//! call's lock), so cancelling, which is dropping the `Timer`, wins even against a deadline that
//! passed a moment earlier.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// An armed deadline. Dropping it cancels it.
#[derive(Debug)]
pub struct Timer {
    pub id: u64,
    abort: AbortHandle,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.abort.abort();
    }
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
}

impl Timers {
    pub fn new() -> (Timers, mpsc::UnboundedReceiver<Fired>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Timers {
                tx,
                next: AtomicU64::new(1),
            },
            rx,
        )
    }

    pub fn arm(&self, meet_id: &str, kind: TimerKind, after: Duration, action: Action) -> Timer {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
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
        }
    }
}
