//! Cluster mode: the chat messages this node's sockets got lately, so that the messages sent
//! again after a break in its subscription (`chat::replay`) are exactly those they missed. A
//! V Chat client counts every `v1OnNewMessage` of another sender as one more unread message,
//! so one it has must not come twice.
//!
//! A message is known by its room and its sender's `localId` (unique in a room), which a node
//! posting one knows before it stores it. A message posted here is noted before it is stored, so
//! a replay, which reads the store, never sends it again (a post that stored nothing, a retry,
//! is forgotten again); one from another node is noted as it arrives, and a replay claims what
//! it sends under the same lock, so that whichever comes second of the two (a replay of a
//! message still on its way, and its arrival) is not sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a message is remembered while nothing holds the list. A replay reads from
/// `chat::replay::BEFORE_THE_BREAK` before the break, by the second in the message's id, which
/// the posting node's clock wrote: this covers that and a clock up to as much ahead.
const KEPT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Delivered {
    inner: Mutex<Inner>,
}

/// How a message came to be remembered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Known {
    /// Being posted here; stored and emitted next, unless it turns out a retry.
    Posting,
    /// Its emit reached the sockets here.
    Got,
    /// A replay sent it.
    Replayed,
}

#[derive(Default)]
struct Inner {
    /// Messages remembered, with when they were last noted.
    known: HashMap<String, (Known, Instant)>,
    /// The same, in the order they were noted (a key noted twice is here twice; only the
    /// entry matching its last note forgets it).
    order: VecDeque<(Instant, String)>,
    /// Holds under way: while any is, nothing is forgotten.
    holds: usize,
}

fn key(room: &str, local_id: &str) -> String {
    format!("{room}\u{0}{local_id}")
}

impl Inner {
    fn remember(&mut self, key: String, how: Known) {
        let now = Instant::now();
        self.known.insert(key.clone(), (how, now));
        self.order.push_back((now, key));
        if self.holds > 0 {
            return;
        }
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= KEPT {
                break;
            }
            if let Some((at, old)) = self.order.pop_front() {
                if self.known.get(&old).is_some_and(|(_, last)| *last == at) {
                    self.known.remove(&old);
                }
            }
        }
    }
}

impl Delivered {
    /// A message is being posted on this node, before it is stored: if it is stored, its emit
    /// reaches the sockets here, and a replay must not send it too.
    pub fn posting(&self, room: &str, local_id: &str) {
        let mut inner = self.inner.lock().expect("not poisoned");
        let k = key(room, local_id);
        if inner
            .known
            .get(&k)
            .is_none_or(|(how, _)| *how == Known::Posting)
        {
            inner.remember(k, Known::Posting);
        }
    }

    /// How the post went: stored now (its emit follows), or not (a retry of a message stored
    /// before, on any node: a replay may have to send it).
    pub fn posted(&self, room: &str, local_id: &str, stored: bool) {
        let mut inner = self.inner.lock().expect("not poisoned");
        let k = key(room, local_id);
        if inner
            .known
            .get(&k)
            .is_some_and(|(how, _)| *how == Known::Posting)
        {
            if stored {
                inner.remember(k, Known::Got);
            } else {
                inner.known.remove(&k);
            }
        }
    }

    /// A message from another node arrives: whether to send it to the sockets here (not when a
    /// replay sent it already).
    pub fn arrives(&self, room: &str, local_id: &str) -> bool {
        let k = key(room, local_id);
        let mut inner = self.inner.lock().expect("not poisoned");
        if inner
            .known
            .get(&k)
            .is_some_and(|(how, _)| *how == Known::Replayed)
        {
            return false;
        }
        inner.remember(k, Known::Got);
        true
    }

    /// A replay would send this message: whether to (not when the sockets here got it, or are
    /// about to: one being posted here).
    pub fn claim(&self, room: &str, local_id: &str) -> bool {
        let k = key(room, local_id);
        let mut inner = self.inner.lock().expect("not poisoned");
        if inner.known.contains_key(&k) {
            return false;
        }
        inner.remember(k, Known::Replayed);
        true
    }

    /// Nothing is forgotten until the hold is dropped: from a break until its replay is done.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.inner.lock().expect("not poisoned").holds += 1;
        Hold(self.clone())
    }
}

/// When a socket's connect was done (as `ids::now_iso` writes it; in the socket's
/// extensions): a replay of missed messages (`chat::replay`) sends it only those stored after,
/// as its client read the room's earlier messages over REST.
#[derive(Clone)]
pub struct ConnectedAt(pub String);

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
        assert!(!d.claim("r", "c"), "being posted here: not replayed");
        d.posted("r", "c", true);
        assert!(!d.claim("r", "c"), "posted here: not replayed");
        d.posting("r", "d");
        d.posted("r", "d", false);
        assert!(
            d.claim("r", "d"),
            "a retry of a message stored elsewhere: replayed"
        );
        d.posting("r", "d");
        assert!(!d.arrives("r", "d"), "a retry does not undo a replay");
        assert!(
            d.arrives("s", "a"),
            "another room's message of the same localId"
        );
    }

    #[test]
    fn a_hold_keeps_what_would_be_forgotten_and_its_end_lets_it_go() {
        let d = Arc::new(Delivered::default());
        assert!(d.arrives("r", "a"));
        let hold = d.hold();
        // Backdate "a" past KEPT: only the hold keeps it.
        {
            let mut inner = d.inner.lock().unwrap();
            let old = inner.order[0].0 - KEPT * 2;
            inner.order[0].0 = old;
            inner.known.get_mut(&key("r", "a")).unwrap().1 = old;
        }
        assert!(d.arrives("r", "b"));
        assert!(!d.claim("r", "a"));
        drop(hold);
        assert!(d.arrives("r", "c"));
        assert!(d.claim("r", "a"), "forgotten once the hold ended");
        assert!(!d.claim("r", "b"));
    }
}
