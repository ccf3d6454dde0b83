//! Live calls: the only shared mutable call state. Each call sits behind its own async lock,
//! held for a whole transition (decide → commit to the store → announce), so racing actions on
//! one call have exactly one winner, a failed store write leaves the call as it was, and every
//! event of a call leaves in the order the machine decided it. The busy index is a DashMap whose
//! guards are never held across an `.await`.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use socketioxide::socket::Sid;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::machine::{Call, Role};
use super::timers::{Timer, TimerKind};
use crate::wire::shapes::UserData;

/// A live call plus the shell state the pure machine does not see.
pub struct LiveCall {
    pub call: Call,
    /// Ring timeout while ringing; max duration while in a call.
    pub deadline: Option<Timer>,
    /// Grace timers of the caller's and the callee's call device, while it is gone.
    pub grace: [Option<Timer>; 2],
    /// Callee sockets `v1OnNewCall` reached, so a socket that connects while the call rings is
    /// rung exactly once.
    pub rung: HashSet<Sid>,
    /// Who is calling, as `v1OnNewCall` shows them (taken when the call was placed).
    pub caller_data: UserData,
}

impl LiveCall {
    pub fn new(call: Call, caller_data: UserData) -> LiveCall {
        LiveCall {
            caller_data,
            call,
            deadline: None,
            grace: [None, None],
            rung: HashSet::new(),
        }
    }

    pub fn grace_mut(&mut self, role: Role) -> &mut Option<Timer> {
        &mut self.grace[usize::from(role != Role::Caller)]
    }

    /// Whether timer `id` of this kind is still armed (not cancelled or replaced).
    pub fn holds(&self, kind: TimerKind, id: u64) -> bool {
        let t = match kind {
            TimerKind::Deadline => &self.deadline,
            TimerKind::Grace(role) => &self.grace[usize::from(role != Role::Caller)],
        };
        t.as_ref().is_some_and(|t| t.id == id)
    }
}

/// A call's lock. `None` inside: the call ended while a contender waited.
pub type Slot = Arc<Mutex<Option<LiveCall>>>;
pub type SlotGuard = OwnedMutexGuard<Option<LiveCall>>;

/// What [`Calls::try_lock`] found.
pub enum TryLock {
    Locked(SlotGuard),
    /// Someone holds the call's lock.
    Held,
    NotLive,
}

/// Which side of a new call is already busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    Caller,
    Callee,
}

#[derive(Default)]
pub struct Registry {
    calls: DashMap<String, Slot>,
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

    /// Registers a new call and hands back its lock, already held, so nothing can act on the
    /// call before its creator has announced it.
    pub fn insert(&self, live: LiveCall) -> SlotGuard {
        let meet_id = live.call.meet_id.clone();
        let slot: Slot = Arc::new(Mutex::new(Some(live)));
        let guard = slot.clone().try_lock_owned().expect("a new lock is free");
        self.calls.insert(meet_id, slot);
        guard
    }

    /// As [`Registry::insert`], unless the call is here already (live, or being taken over by
    /// another task of this node): then `None`, and the slot there is left alone.
    pub fn insert_new(&self, live: LiveCall) -> Option<SlotGuard> {
        match self.calls.entry(live.call.meet_id.clone()) {
            Entry::Occupied(_) => None,
            Entry::Vacant(v) => {
                let slot: Slot = Arc::new(Mutex::new(Some(live)));
                let guard = slot.clone().try_lock_owned().expect("a new lock is free");
                v.insert(slot);
                Some(guard)
            }
        }
    }

    /// Marks users busy with a call this node took over (the cluster already holds them).
    pub fn mark_busy(&self, user: &str, meet_id: &str) {
        self.busy.insert(user.to_string(), meet_id.to_string());
    }

    /// Whether the call is live on this node.
    pub fn contains(&self, meet_id: &str) -> bool {
        self.calls.contains_key(meet_id)
    }

    /// The meetIds of the calls live on this node.
    pub fn meet_ids(&self) -> Vec<String> {
        self.calls.iter().map(|e| e.key().clone()).collect()
    }

    /// Drops a call from this node without ending it (another node owns it now): its timers go,
    /// its parties stay busy in the cluster.
    pub fn forget(&self, guard: &mut SlotGuard) {
        // The same removal as an end's; only what it means differs (the call goes on elsewhere).
        self.remove(guard);
    }

    /// Waits for the call's lock. `None` if the call is not live.
    pub async fn lock(&self, meet_id: &str) -> Option<SlotGuard> {
        let slot = self.calls.get(meet_id)?.clone();
        let guard = slot.lock_owned().await;
        guard.is_some().then_some(guard)
    }

    /// The call's lock if nobody holds it now (the caller waits with [`Calls::lock`] when
    /// someone does).
    pub fn try_lock(&self, meet_id: &str) -> TryLock {
        let Some(slot) = self.calls.get(meet_id).map(|s| s.clone()) else {
            return TryLock::NotLive;
        };
        match slot.try_lock_owned() {
            Err(_) => TryLock::Held,
            Ok(guard) if guard.is_some() => TryLock::Locked(guard),
            Ok(_) => TryLock::NotLive,
        }
    }

    /// Ends a call held under `guard`: frees its parties and drops its timers. Contenders
    /// waiting on the lock find it empty.
    pub fn remove(&self, guard: &mut SlotGuard) -> Option<LiveCall> {
        let live = guard.take()?;
        // Only this guard's own slot: the call's id may name another slot by now.
        let own = OwnedMutexGuard::mutex(guard);
        self.calls
            .remove_if(&live.call.meet_id, |_, slot| Arc::ptr_eq(slot, own));
        self.release(&live.call.caller, &live.call.meet_id);
        self.release(&live.call.callee, &live.call.meet_id);
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
            let wins = hs.into_iter().map(|h| h.join().unwrap());
            assert_eq!(wins.filter(|w| *w).count(), 1);
            assert_eq!(r.call_of("alice"), r.call_of("bob"));
        }
    }

    fn ringing_call() -> LiveCall {
        let caller = crate::store::UserRow {
            id: "alice".into(),
            full_name: "Alice".into(),
            identifier: "alice".into(),
            img: String::new(),
        };
        LiveCall::new(
            crate::calls::machine::sample_call(crate::calls::machine::Status::Ring),
            UserData::from(&caller),
        )
    }

    /// Two tasks of one node taking over the same call (the sweep and a request for it): one
    /// slot is registered, and the loser's removal of a slot it lost cannot drop the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_takeovers_of_one_call_register_one_slot() {
        for round in 0..300 {
            let r = Arc::new(Registry::default());
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (r, barrier) = (r.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        r.insert_new(ringing_call()).is_some()
                    })
                })
                .collect();
            let mut won = 0;
            for h in handles {
                won += usize::from(h.await.unwrap());
            }
            assert_eq!(won, 1, "round {round}");
            assert!(r.lock(&ringing_call().call.meet_id).await.is_some());
        }
        // A guard whose slot was replaced removes nothing but its own call.
        let r = Registry::default();
        let id = ringing_call().call.meet_id;
        let mut stale = r.insert(ringing_call());
        let _current = r.insert(ringing_call());
        assert!(r.remove(&mut stale).is_some());
        assert!(r.contains(&id), "the newer slot stays");
    }

    /// Accept, reject, cancel and the ring timer on worker threads, on one ringing call, many
    /// times: one transition wins; the others find the call ended or not ringing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_actions_on_one_call_have_one_winner() {
        use crate::calls::machine::{apply, sample_call, Action, Actor, Status};
        use chrono::Utc;
        use serde_json::json;
        for round in 0..300 {
            let r = Arc::new(Registry::default());
            r.reserve("alice", "bob", "m").unwrap();
            let caller = crate::store::UserRow {
                id: "alice".into(),
                full_name: "Alice".into(),
                identifier: "alice".into(),
                img: String::new(),
            };
            drop(r.insert(LiveCall::new(
                sample_call(Status::Ring),
                UserData::from(&caller),
            )));
            let barrier = Arc::new(tokio::sync::Barrier::new(4));
            let contenders: Vec<(Option<&'static str>, Action)> = vec![
                (Some("bob"), Action::Accept { answer: json!("x") }),
                (Some("bob"), Action::Reject),
                (Some("alice"), Action::Cancel),
                (None, Action::RingTimeout),
            ];
            let handles: Vec<_> = contenders
                .into_iter()
                .map(|(user, action)| {
                    let (r, barrier) = (r.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let actor = Actor {
                            user,
                            device: "b-phone",
                        };
                        let Some(mut g) = r.lock("m").await else {
                            return Err("gone".to_string());
                        };
                        let live = g.as_mut().unwrap();
                        let to = apply(&mut live.call, action, &actor, Utc::now())
                            .map(|_| live.call.status)
                            .map_err(|e| e.to_string())?;
                        if !to.is_live() {
                            r.remove(&mut g);
                        }
                        Ok(to)
                    })
                })
                .collect();
            let mut results = Vec::new();
            for h in handles {
                results.push(h.await.unwrap());
            }
            let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(wins.len(), 1, "round {round}: {results:?}");
            if let Some(mut g) = r.lock("m").await {
                let c = &g.as_mut().unwrap().call;
                assert_eq!((c.status, c.rev), (*wins[0], 2), "one transition applied");
            } else {
                assert!(!wins[0].is_live());
                assert_eq!(r.call_of("alice"), None, "parties freed");
            }
        }
    }
}
