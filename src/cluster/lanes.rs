//! ICE candidates other nodes sent to this node's calls without waiting for an answer, kept in
//! the order they arrived, one lane per call. A candidate whose call's lock is free is relayed
//! at once by the subscriber that read it; one that must wait files into its call's lane, and
//! every later candidate of that call files in behind it, so none overtakes another. A lane
//! exists only while something is queued or running in it: its drainer removes it when it finds
//! it empty, under the same lock the filing takes, so a candidate is never filed into a lane
//! nobody drains.

use std::collections::VecDeque;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use serde_json::Value;

use crate::auth::Identity;

/// A candidate another node told this node, as it waits in its call's lane.
pub struct Candidate {
    /// The socket that sent it, told if it fails.
    pub sid: String,
    pub who: Identity,
    pub may_bind: bool,
    pub payload: Value,
}

/// Candidates one call's lane holds before it refuses more: a sender whose candidates pile up
/// that far is far faster than the call's lock is ever held.
pub const LANE_DEPTH: usize = 1024;

pub struct Lanes<T> {
    lanes: DashMap<String, VecDeque<T>>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            lanes: DashMap::new(),
        }
    }
}

/// Where [`Lanes::file`] put a candidate.
#[derive(Debug, PartialEq, Eq)]
pub enum Filed<T> {
    /// The call has no lane: nothing of it is queued or running, so the candidate may run now.
    Free(T),
    /// Behind the call's earlier candidates; the lane's drainer will run it.
    Queued,
    /// The lane is full; the candidate was not kept.
    Full(T),
}

impl<T> Lanes<T> {
    /// Files `item` behind whatever `key`'s lane holds; hands it back when there is no lane.
    pub fn file(&self, key: &str, item: T) -> Filed<T> {
        match self.lanes.get_mut(key) {
            Some(lane) if lane.len() >= LANE_DEPTH => Filed::Full(item),
            Some(mut lane) => {
                lane.push_back(item);
                Filed::Queued
            }
            None => Filed::Free(item),
        }
    }

    /// Opens `key`'s lane with `item` at its head. The caller then drains it (see
    /// [`Lanes::next`]). Returns false, keeping nothing, if a lane is already open: only the
    /// one that found the call [`Filed::Free`] may open it.
    pub fn open(&self, key: &str, item: T) -> bool {
        match self.lanes.entry(key.to_string()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(VecDeque::from([item]));
                true
            }
        }
    }

    /// The next candidate of `key`'s lane for its drainer; `None` when the lane was empty, which
    /// closes it (the drainer stops).
    pub fn next(&self, key: &str) -> Option<T> {
        match self.lanes.entry(key.to_string()) {
            Entry::Occupied(mut o) => match o.get_mut().pop_front() {
                Some(item) => Some(item),
                None => {
                    o.remove();
                    None
                }
            },
            Entry::Vacant(_) => None,
        }
    }

    /// Calls with an open lane.
    pub fn open_count(&self) -> usize {
        self.lanes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lane_keeps_order_and_closes_when_drained() {
        let l = Lanes::default();
        assert_eq!(l.file("m", 1), Filed::Free(1));
        assert!(l.open("m", 1));
        assert!(
            !l.open("m", 9),
            "a second opener would run candidates twice"
        );
        assert_eq!(l.file("m", 2), Filed::Queued);
        assert_eq!(l.next("m"), Some(1));
        // The head is taken while it runs; later ones still file behind it.
        assert_eq!(l.file("m", 3), Filed::Queued);
        assert_eq!(l.next("m"), Some(2));
        assert_eq!(l.next("m"), Some(3));
        assert_eq!(l.open_count(), 1);
        assert_eq!(l.next("m"), None);
        assert_eq!(l.open_count(), 0);
        assert_eq!(l.file("m", 4), Filed::Free(4));
        assert_eq!(l.file("other", 5), Filed::Free(5));
    }

    #[test]
    fn a_full_lane_refuses_and_hands_the_candidate_back() {
        let l = Lanes::default();
        assert!(l.open("m", 0));
        for i in 1..LANE_DEPTH {
            assert_eq!(l.file("m", i), Filed::Queued);
        }
        assert_eq!(l.file("m", LANE_DEPTH), Filed::Full(LANE_DEPTH));
        assert_eq!(l.next("m"), Some(0));
        assert_eq!(l.file("m", LANE_DEPTH), Filed::Queued);
    }

    /// One filer (the subscriber) against drainers that close the lane whenever they find it
    /// empty, started on a pool of running threads as tokio starts a task on an idle worker:
    /// every item runs exactly once, in order, whatever the interleaving.
    #[test]
    fn a_filer_racing_the_drainer_loses_nothing_and_reorders_nothing() {
        use std::sync::mpsc;
        for _ in 0..20 {
            let lanes = Arc::new(Lanes::default());
            let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
            let (start, starts) = mpsc::channel::<()>();
            let starts = Arc::new(std::sync::Mutex::new(starts));
            let pool: Vec<_> = (0..3)
                .map(|_| {
                    let (lanes, ran, starts) = (lanes.clone(), ran.clone(), starts.clone());
                    std::thread::spawn(move || loop {
                        let started = starts.lock().unwrap().recv();
                        if started.is_err() {
                            return;
                        }
                        while let Some(i) = lanes.next("m") {
                            // The candidate's relay takes a while: a lane closed before its
                            // last candidate had run would let the next drainer overtake it.
                            for _ in 0..200 {
                                std::hint::spin_loop();
                            }
                            ran.lock().unwrap().push(i);
                        }
                    })
                })
                .collect();
            let mut seed = 0x2545_f491_u32;
            for i in 0..5_000u32 {
                // Candidates arrive unevenly, so the lane empties and opens again often.
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                for _ in 0..(seed >> 23) {
                    std::hint::spin_loop();
                }
                let mut item = i;
                loop {
                    match lanes.file("m", item) {
                        Filed::Queued => break,
                        Filed::Free(i) => {
                            // As the subscriber does when the call's lock is held.
                            assert!(lanes.open("m", i));
                            start.send(()).unwrap();
                            break;
                        }
                        // The filer outran the drainers: wait for them, as a refused candidate
                        // would. They may empty and close the lane meanwhile (then it is free).
                        Filed::Full(i) => {
                            item = i;
                            std::thread::yield_now();
                        }
                    }
                }
            }
            drop(start);
            for t in pool {
                t.join().unwrap();
            }
            let ran = ran.lock().unwrap();
            assert_eq!(*ran, (0..5_000).collect::<Vec<_>>());
            assert_eq!(lanes.open_count(), 0);
        }
    }
}
