//! A socket's inbox: its events, run one after another in the order they arrived, by a task
//! that exists only while there is something to run. An idle socket holds an empty queue and
//! no task: a task parked on a channel for every socket cost several KiB each, most of the
//! memory of an idle connection.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::Value;

/// One client event, as it arrived.
pub struct Inbound {
    pub event: String,
    pub payload: Value,
}

/// What [`Inbox::push`] did with an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued behind events a runner is already working through.
    Queued,
    /// Queued, and nothing is running this inbox: the caller starts a runner.
    StartRunner,
    /// Not queued: `depth` events are already waiting.
    Full,
}

pub struct Inbox {
    depth: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Inbound>,
    /// A runner is working through the queue (set by `push`, cleared by `next` when it
    /// finds the queue empty; both under the lock, so exactly one runner at a time).
    running: bool,
}

/// A queue that held a burst keeps at most this much room once it is empty again.
const KEEP_EMPTY: usize = 8;

impl Inbox {
    pub fn new(depth: usize) -> Self {
        Inbox {
            depth,
            state: Mutex::new(State::default()),
        }
    }

    pub fn push(&self, ev: Inbound) -> Pushed {
        let mut s = self.state.lock().expect("not poisoned");
        if s.queue.len() >= self.depth {
            return Pushed::Full;
        }
        s.queue.push_back(ev);
        if s.running {
            Pushed::Queued
        } else {
            s.running = true;
            Pushed::StartRunner
        }
    }

    /// Nothing waits and no runner is on: an event arriving now may be handled where it
    /// arrives without overtaking any (only the socket's reader pushes, so this stays true
    /// until it pushes again).
    pub fn is_idle(&self) -> bool {
        let s = self.state.lock().expect("not poisoned");
        !s.running && s.queue.is_empty()
    }

    /// The next event for the runner; `None` ends the runner, and the next push starts one.
    pub fn next(&self) -> Option<Inbound> {
        let mut s = self.state.lock().expect("not poisoned");
        let ev = s.queue.pop_front();
        if ev.is_none() {
            s.running = false;
            if s.queue.capacity() > KEEP_EMPTY {
                s.queue.shrink_to(KEEP_EMPTY);
            }
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> Inbound {
        Inbound {
            event: "e".into(),
            payload: Value::from(n),
        }
    }

    #[test]
    fn one_runner_at_a_time_in_arrival_order() {
        let inbox = Inbox::new(3);
        assert_eq!(inbox.push(ev(1)), Pushed::StartRunner);
        assert_eq!(inbox.push(ev(2)), Pushed::Queued);
        assert_eq!(inbox.push(ev(3)), Pushed::Queued);
        assert_eq!(inbox.push(ev(4)), Pushed::Full, "depth 3");
        assert_eq!(inbox.next().unwrap().payload, 1);
        assert_eq!(
            inbox.push(ev(5)),
            Pushed::Queued,
            "room again, runner still on"
        );
        let rest: Vec<Value> = std::iter::from_fn(|| inbox.next())
            .map(|e| e.payload)
            .collect();
        assert_eq!(rest, [2, 3, 5]);
        // The runner saw the queue empty and ended: the next push starts a new one.
        assert_eq!(inbox.push(ev(6)), Pushed::StartRunner);
    }

    #[test]
    fn idle_only_with_nothing_queued_and_no_runner() {
        let inbox = Inbox::new(4);
        assert!(inbox.is_idle());
        assert_eq!(inbox.push(ev(1)), Pushed::StartRunner);
        assert!(!inbox.is_idle(), "an event waits");
        assert_eq!(inbox.next().unwrap().payload, 1);
        assert!(
            !inbox.is_idle(),
            "the runner has not seen the queue empty yet"
        );
        assert!(inbox.next().is_none());
        assert!(inbox.is_idle(), "the runner ended");
    }

    #[test]
    fn an_emptied_queue_gives_its_room_back() {
        let inbox = Inbox::new(1000);
        for n in 0..500 {
            inbox.push(ev(n));
        }
        while inbox.next().is_some() {}
        assert!(inbox.state.lock().unwrap().queue.capacity() <= KEEP_EMPTY);
    }

    #[test]
    fn concurrent_pushers_and_runners_lose_and_repeat_nothing() {
        // Pushers on several threads; whoever is told to start a runner runs it on a thread
        // of its own. Every event must run exactly once, no two runners may work at once, and
        // each pusher's events must run in the order it pushed them.
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let inbox = Arc::new(Inbox::new(usize::MAX));
        let working = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let runners = Arc::new(Mutex::new(Vec::new()));
        let pushers: Vec<_> = (0..4u64)
            .map(|t| {
                let (inbox, working, log, runners) =
                    (inbox.clone(), working.clone(), log.clone(), runners.clone());
                std::thread::spawn(move || {
                    for n in 0..2000 {
                        if inbox.push(ev(t * 10_000 + n)) == Pushed::StartRunner {
                            let (inbox, working, log) =
                                (inbox.clone(), working.clone(), log.clone());
                            runners.lock().unwrap().push(std::thread::spawn(move || {
                                while let Some(e) = inbox.next() {
                                    assert_eq!(
                                        working.fetch_add(1, Ordering::SeqCst),
                                        0,
                                        "two runners at once"
                                    );
                                    log.lock().unwrap().push(e.payload.as_u64().unwrap());
                                    working.fetch_sub(1, Ordering::SeqCst);
                                }
                            }));
                        }
                    }
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        loop {
            let r = runners.lock().unwrap().pop();
            match r {
                Some(r) => r.join().unwrap(),
                None => break,
            }
        }
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 8000, "each event ran");
        for t in 0..4u64 {
            let mine: Vec<u64> = log.iter().copied().filter(|v| v / 10_000 == t).collect();
            let want: Vec<u64> = (0..2000).map(|n| t * 10_000 + n).collect();
            assert_eq!(mine, want, "pusher {t}: once each, in order");
        }
    }
}
