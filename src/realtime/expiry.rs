//! Closing sockets whose token has expired: one ordered map of (expiry, socket) and one task
//! that wakes each second and closes what is due, instead of a timer task per socket (a task
//! per idle socket cost more than a kilobyte each). Token expiries are whole seconds, so a
//! one-second sweep closes a socket within a second of its token's end, as a timer did.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use socketioxide::socket::Sid;

type SocketRef = socketioxide::extract::SocketRef<crate::cluster::driver::Adapter>;

#[derive(Default)]
pub struct Expiries {
    due: Mutex<BTreeMap<(u64, Sid), SocketRef>>,
}

impl Expiries {
    /// Starts the sweep; it ends once the map is dropped.
    pub fn start() -> Arc<Self> {
        let e = Arc::new(Expiries::default());
        tokio::spawn(sweep(Arc::downgrade(&e)));
        e
    }

    pub fn add(&self, exp: u64, socket: SocketRef) {
        self.lock().insert((exp, socket.id), socket);
    }

    /// The socket went first.
    pub fn remove(&self, exp: u64, sid: Sid) {
        self.lock().remove(&(exp, sid));
    }

    /// Every socket whose token expired at or before `now` (unix seconds), out of the map.
    fn take_due(&self, now: u64) -> Vec<(u64, SocketRef)> {
        let mut due = self.lock();
        let later = due.split_off(&(now + 1, Sid::ZERO));
        std::mem::replace(&mut *due, later)
            .into_iter()
            .map(|((exp, _), s)| (exp, s))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, Sid), SocketRef>> {
        self.due.lock().expect("not poisoned")
    }
}

async fn sweep(expiries: Weak<Expiries>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(e) = expiries.upgrade() else { return };
        for (exp, socket) in e.take_due(crate::auth::now_unix()) {
            tracing::info!(sid = %socket.id, exp, "token expired; closing the socket");
            let _ = socket.disconnect();
        }
    }
}
