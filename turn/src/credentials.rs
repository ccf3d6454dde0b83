use std::time::Duration;

use base64::prelude::BASE64_STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Time-limited TURN credentials in the coturn `use-auth-secret` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `<unix-expiry-seconds>:<userId>`
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`
    pub password: String,
    /// Unix time (seconds) after which the server refuses the credentials.
    pub expires_at: u64,
}

/// Mints TURN credentials for `user_id`, valid for `ttl` from `now_unix`.
///
/// This is the "TURN REST API" scheme also implemented by coturn's
/// `use-auth-secret`/`static-auth-secret`:
///
/// * `username = "<now_unix + ttl (whole seconds)>:<user_id>"`
/// * `password = base64(HMAC-SHA1(secret, username))` (standard alphabet, padded)
///
/// Pure function: the current time is passed in so callers (and tests) control it.
pub fn mint_credentials(secret: &str, user_id: &str, ttl: Duration, now_unix: u64) -> Credentials {
    let expires_at = now_unix.saturating_add(ttl.as_secs());
    let username = format!("{expires_at}:{user_id}");
    let password = password_for(secret, &username);
    Credentials {
        username,
        password,
        expires_at,
    }
}

/// `base64(HMAC-SHA1(secret, username))` — the password that belongs to `username`.
pub fn password_for(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    BASE64_STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently with Python:
    // base64.b64encode(hmac.new(b"s3cret", b"1700000000:alice", hashlib.sha1).digest())
    #[test]
    fn known_vector() {
        assert_eq!(
            password_for("s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
    }

    #[test]
    fn mint_uses_expiry_and_user() {
        let c = mint_credentials("s3cret", "alice", Duration::from_secs(3600), 1_700_000_000);
        assert_eq!(c.username, "1700003600:alice");
        assert_eq!(c.password, "YAFdW/YDZewZsR1QSgUk2IrfbRI=");
        assert_eq!(c.expires_at, 1_700_003_600);
    }

    #[test]
    fn user_id_may_contain_colons() {
        let c = mint_credentials("k", "a:b", Duration::from_secs(10), 5);
        assert_eq!(c.username, "15:a:b");
    }
}
