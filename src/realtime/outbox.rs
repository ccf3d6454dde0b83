//! Call events for a device that dropped for a moment. Phones lose their connection for a second
//! all the time (tunnels, Wi-Fi to LTE); while a call device is within its grace, every call event
//! and relayed ICE candidate meant for it is kept here, in order, and handed to the first socket
//! of that device that comes back (same `did`), before anything newer reaches it. An outbox is
//! bounded (events and bytes) and lives until its deadline, the end of the grace: past it, the
//! call ends as usual and what was kept is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;

/// Most events kept for one device.
pub const MAX_EVENTS: usize = 512;
/// Most payload bytes kept for one device.
pub const MAX_BYTES: usize = 512 * 1024;

struct Outbox {
    until: Instant,
    events: VecDeque<(&'static str, String)>,
    bytes: usize,
}

/// What happened to an event offered for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Kept for the device's return.
    Kept,
    /// The device is in its grace but its outbox is full: the event is lost (and counted).
    Dropped,
    /// The device is not in a grace: send it now.
    SendNow,
}

#[derive(Default)]
pub struct Outboxes {
    /// user → device → its outbox. Most users have none, so the common path is one failed
    /// lookup.
    by_user: DashMap<String, HashMap<String, Outbox>>,
    kept: AtomicU64,
    dropped: AtomicU64,
}

impl Outboxes {
    /// The device went into a grace ending at `until`: keep its call events until then.
    pub fn open(&self, user: &str, device: &str, until: Instant) {
        let mut boxes = self.by_user.entry(user.to_string()).or_default();
        let b = boxes.entry(device.to_string()).or_insert_with(|| Outbox {
            until,
            events: VecDeque::new(),
            bytes: 0,
        });
        b.until = b.until.max(until);
    }

    /// The grace is over (the device is back, or the call ended for it): stop keeping.
    pub fn close(&self, user: &str, device: &str) {
        if let Some(mut boxes) = self.by_user.get_mut(user) {
            boxes.remove(device);
        }
        self.by_user.remove_if(user, |_, b| b.is_empty());
    }

    pub fn is_open(&self, user: &str, device: &str) -> bool {
        self.by_user
            .get(user)
            .is_some_and(|b| b.get(device).is_some_and(|o| o.until > Instant::now()))
    }

    /// Offers an event for one device.
    pub fn offer(&self, user: &str, device: &str, event: &'static str, text: &str) -> Offer {
        let Some(mut boxes) = self.by_user.get_mut(user) else {
            return Offer::SendNow;
        };
        match boxes.get_mut(device) {
            Some(b) if b.until > Instant::now() => keep(b, event, text, &self.kept, &self.dropped),
            _ => Offer::SendNow,
        }
    }

    /// Offers an event for every device of a user: devices in a grace keep it; the returned
    /// list names them, so the caller sends to every *other* device now.
    pub fn offer_user(&self, user: &str, event: &'static str, text: &str) -> Vec<String> {
        let Some(mut boxes) = self.by_user.get_mut(user) else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut held = Vec::new();
        for (device, b) in boxes.iter_mut() {
            if b.until > now {
                keep(b, event, text, &self.kept, &self.dropped);
                held.push(device.clone());
            }
        }
        held
    }

    /// The device is back: `send` gets every kept event in order, while offers for this user
    /// wait, so nothing newer overtakes them. Returns how many were sent.
    pub fn flush(&self, user: &str, device: &str, mut send: impl FnMut(&str, &str)) -> usize {
        let mut n = 0;
        if let Some(mut boxes) = self.by_user.get_mut(user) {
            if let Some(b) = boxes.remove(device) {
                if b.until > Instant::now() {
                    for (event, text) in &b.events {
                        send(event, text);
                        n += 1;
                    }
                }
            }
        }
        self.by_user.remove_if(user, |_, b| b.is_empty());
        n
    }

    /// Forgets outboxes whose grace is over.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.by_user.retain(|_, boxes| {
            boxes.retain(|_, b| b.until > now);
            !boxes.is_empty()
        });
    }

    /// (devices with an outbox, events kept in them).
    pub fn size(&self) -> (usize, usize) {
        self.by_user.iter().fold((0, 0), |(d, e), b| {
            (
                d + b.len(),
                e + b.values().map(|o| o.events.len()).sum::<usize>(),
            )
        })
    }

    pub fn kept_total(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn keep(
    b: &mut Outbox,
    event: &'static str,
    text: &str,
    kept: &AtomicU64,
    dropped: &AtomicU64,
) -> Offer {
    if b.events.len() >= MAX_EVENTS || b.bytes + text.len() > MAX_BYTES {
        dropped.fetch_add(1, Ordering::Relaxed);
        return Offer::Dropped;
    }
    b.bytes += text.len();
    b.events.push_back((event, text.to_string()));
    kept.fetch_add(1, Ordering::Relaxed);
    Offer::Kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_in_order_until_flushed_then_sends_now() {
        let o = Outboxes::default();
        assert_eq!(o.offer("u", "d", "e", "0"), Offer::SendNow);
        o.open("u", "d", Instant::now() + Duration::from_secs(60));
        for i in 1..=3 {
            assert_eq!(o.offer("u", "d", "e", &i.to_string()), Offer::Kept);
        }
        assert_eq!(o.offer("u", "other", "e", "x"), Offer::SendNow);
        assert_eq!(o.offer_user("u", "e", "4"), vec!["d".to_string()]);
        let mut got = Vec::new();
        assert_eq!(o.flush("u", "d", |_, t| got.push(t.to_string())), 4);
        assert_eq!(got, ["1", "2", "3", "4"]);
        assert_eq!(o.offer("u", "d", "e", "5"), Offer::SendNow);
        assert_eq!(o.size(), (0, 0), "nothing left behind");
    }

    #[test]
    fn bounded_and_expiring() {
        let o = Outboxes::default();
        o.open("u", "d", Instant::now() + Duration::from_secs(60));
        for _ in 0..MAX_EVENTS {
            assert_eq!(o.offer("u", "d", "e", "x"), Offer::Kept);
        }
        assert_eq!(o.offer("u", "d", "e", "x"), Offer::Dropped);
        assert_eq!(o.dropped_total(), 1);
        o.open("v", "d", Instant::now());
        assert_eq!(o.offer("v", "d", "e", "x"), Offer::SendNow, "grace over");
        o.sweep();
        assert_eq!(o.size().0, 1, "the expired one is gone");
        o.close("u", "d");
        assert_eq!(o.size(), (0, 0));
    }
}
