//! Which node owns a live call, as last read from the store. Without it, every ICE candidate
//! sent from a node that does not own its call read the owner from the database first: one
//! query per candidate, on the one database every node shares. A read is trusted for a short
//! while ([`Owners::TRUST`]); an owner that stops answering, or a read that finds no other
//! owner, forgets it at once. Ownership moves only when an owner dies (see `takeover`), and a
//! dead owner is noticed by the alive check the caller makes, by its ask failing or by a
//! candidate told to it finding no listener, so the only staleness the window adds is a node
//! that lost its call while still alive (cut off from Redis long enough to be declared dead):
//! candidates for that call go to it for at most that long, and it sends them on to the call's
//! new owner.

use std::time::{Duration, Instant};

use dashmap::DashMap;

#[derive(Default)]
pub struct Owners {
    read: DashMap<String, (String, Instant)>,
}

/// Entries beyond this many are swept of stale ones on the next write, so calls that ended
/// without being looked up again do not pile up.
const SWEEP_ABOVE: usize = 4096;

impl Owners {
    pub const TRUST: Duration = Duration::from_secs(1);

    /// The owner of `meet_id` read less than [`Self::TRUST`] before `now`.
    pub fn get(&self, meet_id: &str, now: Instant) -> Option<String> {
        let e = self.read.get(meet_id)?;
        let (node, at) = e.value();
        (now.saturating_duration_since(*at) < Self::TRUST).then(|| node.clone())
    }

    /// The store said `node` owns `meet_id` at `now`.
    pub fn put(&self, meet_id: &str, node: &str, now: Instant) {
        if self.read.len() > SWEEP_ABOVE {
            self.read
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < Self::TRUST);
        }
        self.read
            .insert(meet_id.to_string(), (node.to_string(), now));
    }

    pub fn forget(&self, meet_id: &str) {
        self.read.remove(meet_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_trusted_for_a_while_then_read_again() {
        let o = Owners::default();
        let t0 = Instant::now();
        assert_eq!(o.get("m1", t0), None);
        o.put("m1", "n2", t0);
        assert_eq!(o.get("m1", t0 + Owners::TRUST / 2).as_deref(), Some("n2"));
        assert_eq!(o.get("m1", t0 + Owners::TRUST), None, "stale");
        o.put("m1", "n3", t0 + Owners::TRUST);
        assert_eq!(o.get("m1", t0 + Owners::TRUST).as_deref(), Some("n3"));
        o.forget("m1");
        assert_eq!(o.get("m1", t0 + Owners::TRUST), None, "forgotten");
    }

    #[test]
    fn stale_entries_are_swept_once_there_are_many() {
        let o = Owners::default();
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE {
            o.put(&format!("old{i}"), "n2", t0);
        }
        assert_eq!(o.read.len(), SWEEP_ABOVE + 1);
        let later = t0 + Owners::TRUST * 2;
        o.put("new", "n2", later);
        assert_eq!(o.read.len(), 1, "only the fresh one is left");
        assert_eq!(o.get("new", later).as_deref(), Some("n2"));
    }
}
