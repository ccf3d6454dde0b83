use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use turn::auth::{generate_auth_key, AuthHandler};

use crate::credentials::password_for;

/// [`AuthHandler`] for `<unix-expiry>:<userId>` usernames whose password is
/// `base64(HMAC-SHA1(secret, username))` (coturn `use-auth-secret`).
///
/// The turn crate's own `LongTermAuthHandler` parses the whole username as a
/// number, so it cannot accept the `expiry:user` form; this one splits at the
/// first `:`, refuses malformed or expired usernames and otherwise returns the
/// long-term key `MD5(username:realm:password)`.
pub struct SecretAuthHandler {
    secret: String,
}

impl SecretAuthHandler {
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// Returns the expiry (unix seconds) and user id of a well-formed username.
    pub fn parse_username(username: &str) -> Option<(u64, &str)> {
        let (expiry, user) = username.split_once(':')?;
        let expiry = expiry.parse::<u64>().ok()?;
        Some((expiry, user))
    }
}

impl AuthHandler for SecretAuthHandler {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        let refuse = |why: &str| {
            tracing::debug!(%username, %src_addr, "TURN auth refused: {why}");
            Err(turn::Error::Other(format!("TURN auth refused: {why}")))
        };
        let Some((expiry, _user)) = Self::parse_username(username) else {
            return refuse("malformed username (want <unix-expiry>:<userId>)");
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if expiry < now {
            return refuse("credentials expired");
        }
        let password = password_for(&self.secret, username);
        Ok(generate_auth_key(username, realm, &password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(
            SecretAuthHandler::parse_username("12:bob"),
            Some((12, "bob"))
        );
        assert_eq!(SecretAuthHandler::parse_username("bob"), None);
        assert_eq!(SecretAuthHandler::parse_username("x1:bob"), None);
        assert_eq!(SecretAuthHandler::parse_username(":bob"), None);
    }

    #[test]
    fn refuses_expired_and_accepts_future() {
        let h = SecretAuthHandler::new("s");
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(h.auth_handle("1:bob", "vchat", addr).is_err());
        let u = "99999999999:bob";
        let key = h.auth_handle(u, "vchat", addr).unwrap();
        assert_eq!(key, generate_auth_key(u, "vchat", &password_for("s", u)));
    }
}
