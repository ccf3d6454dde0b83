//! The V Chat SDK's sign-in check and the lockout after repeated failures.
//!
//! The SDK's "password" is not a user secret: it is the lowercase hex SHA-512 of
//! `"<encryptHashKey>_<identifier>"`, with a key compiled into the app. It proves the request
//! comes from an app built with the key, not who the user is; the README says so plainly.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// What the SDK sends as `password` for this identifier.
pub fn expected_password(key: &str, identifier: &str) -> String {
    let digest = Sha512::digest(format!("{key}_{identifier}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in constant time (case-insensitive hex, as some clients upper-case it).
pub fn password_matches(key: &str, identifier: &str, given: &str) -> bool {
    let want = expected_password(key, identifier);
    let given = given.trim().to_ascii_lowercase();
    want.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Failures per key (an identifier, or a client address) in a fixed window that opens at the
/// first failure. Past `max`, the key is locked until its window closes.
pub struct Lockout {
    max: u32,
    window: Duration,
    counts: DashMap<String, (Instant, u32)>,
}

/// Entries kept before expired ones are swept, so a flood of distinct keys cannot grow memory
/// without bound.
const SWEEP_ABOVE: usize = 10_000;

impl Lockout {
    pub fn new(max: u32, window: Duration) -> Lockout {
        Lockout {
            max,
            window,
            counts: DashMap::new(),
        }
    }

    /// How long `key` stays locked, if it is.
    pub fn locked_for(&self, key: &str) -> Option<Duration> {
        self.locked_at(key, Instant::now())
    }

    pub fn record_failure(&self, key: &str) {
        self.failure_at(key, Instant::now())
    }

    fn locked_at(&self, key: &str, now: Instant) -> Option<Duration> {
        if self.max == 0 {
            return None;
        }
        let (start, n) = *self.counts.get(key)?;
        let left = self
            .window
            .checked_sub(now.saturating_duration_since(start))?;
        (n >= self.max && !left.is_zero()).then_some(left)
    }

    fn failure_at(&self, key: &str, now: Instant) {
        if self.max == 0 {
            return;
        }
        let window = self.window;
        if self.counts.len() > SWEEP_ABOVE {
            self.counts
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        }
        let mut e = self.counts.entry(key.to_string()).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    pub fn clear(&self, key: &str) {
        self.counts.remove(key);
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_hash() {
        // python3 -c 'import hashlib;print(hashlib.sha512(b"key_alice@example.com").hexdigest())'
        assert_eq!(
            expected_password("key", "alice@example.com"),
            "ad12200793991c3d4dfc49b85a3fd482a86b3c8ebc81656d25838baab6b27734\
             235c02a552c1cb5468fa71aabc349ca4b2dbb3079903478cc287e38b433e4736"
        );
        assert!(password_matches(
            "key",
            "a",
            &expected_password("key", "a").to_uppercase()
        ));
        assert!(!password_matches(
            "key",
            "a",
            &expected_password("key", "b")
        ));
        assert!(!password_matches("key", "a", ""));
    }

    #[test]
    fn locks_after_max_failures_and_unlocks_after_the_window() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            l.failure_at("k", t0);
        }
        assert!(l.locked_at("k", t0).is_none());
        l.failure_at("k", t0);
        assert_eq!(l.locked_at("k", t0), Some(Duration::from_secs(60)));
        assert!(l.locked_at("other", t0).is_none());
        let later = t0 + Duration::from_secs(60);
        assert!(l.locked_at("k", later).is_none(), "window over");
        l.failure_at("k", later);
        assert!(
            l.locked_at("k", later).is_none(),
            "a new window counts from zero"
        );
        let off = Lockout::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            off.failure_at("k", t0);
        }
        assert!(off.locked_at("k", t0).is_none(), "0 turns it off");
    }
}
