//! Live calls: the only shared mutable call state. Each transition runs inside one DashMap entry
//! lock, so racing actions on one call have exactly one winner. No guard is ever held across an
//! `.await` or while another map is locked.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::task::AbortHandle;

use super::machine::Call;

/// A live call plus the handle of its pending timer (shell state the pure machine does not see):
/// the ring timeout while ringing, the max-duration safety net while in a call.
pub struct LiveCall {
    pub call: Call,
    pub timer: Option<AbortHandle>,
}

/// Which side of a new call is already busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    Caller,
    Callee,
}

#[derive(Default)]
pub struct Registry {
    calls: DashMap<String, LiveCall>,
    /// user id → the meetId of their ring/inCall call.
    busy: DashMap<String, String>,
}

impl Registry {
    /// Marks both users busy with `meet_id`, or neither. Users are locked in id order, so two
    /// users calling each other at once (glare) always leave exactly one call standing.
    pub fn reserve(&self, caller: &str, callee: &str, meet_id: &str) -> Result<(), Busy> {
        let (first, second) = if caller <= callee {
            ((caller, Busy::Caller), (callee, Busy::Callee))
        } else {
            ((callee, Busy::Callee), (caller, Busy::Caller))
        };
        self.reserve_one(first.0, meet_id).map_err(|_| first.1)?;
        if self.reserve_one(second.0, meet_id).is_err() {
            self.release(first.0, meet_id);
            return Err(second.1);
        }
        Ok(())
    }

    fn reserve_one(&self, user: &str, meet_id: &str) -> Result<(), ()> {
        match self.busy.entry(user.to_string()) {
            Entry::Occupied(_) => Err(()),
            Entry::Vacant(v) => {
                v.insert(meet_id.to_string());
                Ok(())
            }
        }
    }

    /// Frees a user, but only from this call (a newer call may hold them already).
    pub fn release(&self, user: &str, meet_id: &str) {
        self.busy.remove_if(user, |_, m| m == meet_id);
    }

    pub fn insert(&self, call: Call, timer: Option<AbortHandle>) {
        self.calls
            .insert(call.meet_id.clone(), LiveCall { call, timer });
    }

    /// Arms the call's timer, replacing (and stopping) any earlier one; a call that is already
    /// gone stops the new timer at once.
    pub fn set_timer(&self, meet_id: &str, timer: AbortHandle) {
        match self.calls.get_mut(meet_id) {
            Some(mut live) => {
                if let Some(old) = live.timer.replace(timer) {
                    old.abort();
                }
            }
            None => timer.abort(),
        }
    }

    /// Runs `f` on the live call under its entry lock. `None` if the call is not live.
    pub fn with_call<R>(&self, meet_id: &str, f: impl FnOnce(&mut LiveCall) -> R) -> Option<R> {
        let mut guard = self.calls.get_mut(meet_id)?;
        Some(f(&mut guard))
    }

    /// Drops a finished call and frees its parties. Returns it if it was still here.
    pub fn remove(&self, meet_id: &str) -> Option<LiveCall> {
        let (_, live) = self.calls.remove(meet_id)?;
        self.release(&live.call.caller, meet_id);
        self.release(&live.call.callee, meet_id);
        if let Some(t) = &live.timer {
            t.abort();
        }
        Some(live)
    }

    /// The meetId of the user's live call.
    pub fn call_of(&self, user: &str) -> Option<String> {
        self.busy.get(user).map(|m| m.clone())
    }

    pub fn live_count(&self) -> usize {
        self.calls.len()
    }

    pub fn busy_count(&self) -> usize {
        self.busy.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reserve_is_all_or_nothing() {
        let r = Registry::default();
        r.reserve("a", "b", "m1").unwrap();
        assert_eq!(r.reserve("c", "b", "m2"), Err(Busy::Callee));
        assert_eq!(r.call_of("c"), None, "caller freed when callee busy");
        assert_eq!(r.reserve("a", "c", "m3"), Err(Busy::Caller));
        r.release("a", "m1");
        r.release("b", "m1");
        r.reserve("b", "a", "m4").unwrap();
    }

    #[test]
    fn glare_leaves_exactly_one_call() {
        for _ in 0..500 {
            let r = Arc::new(Registry::default());
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let hs: Vec<_> = [("alice", "bob", "m1"), ("bob", "alice", "m2")]
                .into_iter()
                .map(|(a, b, m)| {
                    let (r, barrier) = (r.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        r.reserve(a, b, m).is_ok()
                    })
                })
                .collect();
            let wins = hs.into_iter().filter(|_| true).map(|h| h.join().unwrap());
            assert_eq!(wins.filter(|w| *w).count(), 1);
            assert_eq!(r.call_of("alice"), r.call_of("bob"));
        }
    }

    /// Accept, reject, cancel and the ring timer on threads, on one ringing call, many times:
    /// one transition wins, everyone else sees a refused action and the call unchanged by them.
    #[test]
    fn racing_actions_on_one_call_have_one_winner() {
        use crate::calls::machine::{apply, sample_call, Action, Actor, Status};
        use chrono::Utc;
        use serde_json::json;
        for round in 0..300 {
            let r = Arc::new(Registry::default());
            r.reserve("alice", "bob", "m").unwrap();
            r.insert(sample_call(Status::Ring), None);
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let contenders: Vec<(Option<&'static str>, Action)> = vec![
                (
                    Some("bob"),
                    Action::Accept {
                        answer: json!("x"),
                        caller_online: true,
                    },
                ),
                (Some("bob"), Action::Reject),
                (Some("alice"), Action::Cancel),
                (None, Action::RingTimeout),
            ];
            let handles: Vec<_> = contenders
                .into_iter()
                .map(|(user, action)| {
                    let (r, barrier) = (r.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let actor = Actor {
                            user,
                            device: "b-phone",
                        };
                        r.with_call("m", |live| {
                            apply(&mut live.call, action, &actor, Utc::now())
                                .map(|_| live.call.status)
                        })
                        .expect("call is registered")
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(wins.len(), 1, "round {round}: {results:?}");
            let final_status = r.with_call("m", |l| (l.call.status, l.call.rev)).unwrap();
            assert_eq!(final_status, (*wins[0], 2), "one transition applied");
        }
    }
}
