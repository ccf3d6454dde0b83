//! Cluster mode: the chat messages this node's sockets got lately, so that the messages sent
//! again after a break in its subscription (`chat::replay`) are exactly those they missed. A
//! V Chat client counts every `v1OnNewMessage` of another sender as one more unread message,
//! so one it has must not come twice.
//!
//! A message is known by its room and its sender's `localId` (unique in a room), which a node
//! posting one knows before it stores it. A message posted here is noted before it is stored, so
//! a replay, which reads the store, never sends it again; one from another node is noted as it
//! arrives, and a replay claims what it sends under the same lock, so that whichever comes
//! second of the two (a replay of a message still on its way, and its arrival) is not sent.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a message is remembered while nothing holds the list: longer than what a replay
/// reads from before the break (`chat::replay`), which keeps this list from the break on.
const KEPT: Duration = Duration::from_secs(15);

#[derive(Default)]
pub struct Delivered {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Messages remembered: whether a replay sent it (rather than its own emit).
    known: HashMap<String, bool>,
    /// The same, in the order they were noted, with when.
    order: VecDeque<(Instant, String)>,
    /// Holds under way: while any is, nothing is forgotten.
    holds: usize,
}

fn key(room: &str, local_id: &str) -> String {
    format!("{room}\u{0}{local_id}")
}

impl Inner {
    fn remember(&mut self, key: String, replayed: bool) {
        let now = Instant::now();
        self.known.insert(key.clone(), replayed);
        self.order.push_back((now, key));
        if self.holds > 0 {
            return;
        }
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= KEPT {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
    }
}

impl Delivered {
    /// A message is posted on this node (before it is stored): its emit reaches the sockets
    /// here.
    pub fn posting(&self, room: &str, local_id: &str) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.remember(key(room, local_id), false);
    }

    /// A message from another node arrives: whether to send it to the sockets here (not when a
    /// replay sent it already).
    pub fn arrives(&self, room: &str, local_id: &str) -> bool {
        let k = key(room, local_id);
        let mut inner = self.inner.lock().expect("not poisoned");
        if inner.known.get(&k) == Some(&true) {
            return false;
        }
        inner.remember(k, false);
        true
    }

    /// A replay would send this message: whether to (not when the sockets here got it).
    pub fn claim(&self, room: &str, local_id: &str) -> bool {
        let k = key(room, local_id);
        let mut inner = self.inner.lock().expect("not poisoned");
        if let Entry::Occupied(_) = inner.known.entry(k.clone()) {
            return false;
        }
        inner.remember(k, true);
        true
    }

    /// Nothing is forgotten until the hold is dropped: from a break until its replay is done.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.inner.lock().expect("not poisoned").holds += 1;
        Hold(self.clone())
    }
}

/// See [`Delivered::hold`].
pub struct Hold(Arc<Delivered>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.inner.lock().expect("not poisoned").holds -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_once_whichever_of_its_arrival_and_its_replay_comes_first() {
        let d = Delivered::default();
        assert!(d.arrives("r", "a"));
        assert!(!d.claim("r", "a"), "arrived: not replayed");
        assert!(d.claim("r", "b"));
        assert!(!d.arrives("r", "b"), "replayed: its arrival is not sent");
        d.posting("r", "c");
        assert!(!d.claim("r", "c"), "posted here: not replayed");
        assert!(
            d.arrives("s", "a"),
            "another room's message of the same localId"
        );
    }

    #[test]
    fn a_hold_keeps_what_would_be_forgotten_and_its_end_lets_it_go() {
        let d = Arc::new(Delivered::default());
        d.posting("r", "a");
        let hold = d.hold();
        // Backdate "a" past KEPT: only the hold keeps it.
        d.inner.lock().unwrap().order[0].0 -= KEPT * 2;
        d.posting("r", "b");
        assert!(!d.claim("r", "a"));
        drop(hold);
        d.posting("r", "c");
        assert!(d.claim("r", "a"), "forgotten once the hold ended");
        assert!(!d.claim("r", "b"));
    }
}
