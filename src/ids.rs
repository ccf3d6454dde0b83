//! Identifiers and timestamps in the shapes V Chat clients expect.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A MongoDB-ObjectId-shaped id (24 hex chars: seconds, random, counter). Clients treat ids as
/// opaque strings, but some log or sort them, and the original server used ObjectIds.
pub fn new_id() -> String {
    let secs = Utc::now().timestamp() as u32;
    let mut rnd = [0u8; 5];
    rand::thread_rng().fill_bytes(&mut rnd);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let mut out = String::with_capacity(24);
    out.push_str(&format!("{secs:08x}"));
    for b in rnd {
        out.push_str(&format!("{b:02x}"));
    }
    out.push_str(&format!("{n:06x}"));
    out
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// ISO-8601 with milliseconds and `Z`, the form JavaScript's `toISOString` gives.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_iso() -> String {
    iso(Utc::now())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_shaped() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
