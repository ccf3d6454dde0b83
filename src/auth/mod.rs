//! Who is calling. Two kinds of access token reach us:
//! - **session tokens** the server mints itself at `auth/connect` (the V Chat SDK's sign-in), one
//!   per device session, revocable by `auth/logout` ([`session`]);
//! - **external tokens** from your own auth server: an HS256 secret, a PEM public key, or a JSON
//!   Web Key Set that rotates ([`verify`], [`jwks`]).
//!
//! Both become an [`Identity`]: the user and the device acting.

pub mod jwks;
pub mod session;
pub mod signin;
pub mod verify;

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

pub use verify::{AuthError, Verifier};

/// Claims we read. `sub` and `exp` are required; the rest describe the user to their peers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
}

/// The device push keys of tokens without a `did` are kept under.
pub const NO_DEVICE: &str = "default";

/// Whose token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    /// Minted by `auth/connect`; `device` is the server-made session id.
    Session,
    /// From the operator's auth server (or `vchat-signal token`).
    External,
}

/// Who is acting, from which device. Built from verified tokens only (a node forwarding a
/// request sends the identity it verified: nodes of a cluster trust each other's bus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user_id: String,
    /// The device: the token's `did`, or the session id of a sign-in. Empty when the token names
    /// none; sockets of such tokens each count as their own device (see `realtime::gateway`).
    pub device: String,
    pub name: String,
    pub identifier: String,
    pub img: String,
    pub kind: TokenKind,
    /// The device's platform (`android`, `ios`, `web`, …) as its sign-in said; `other` when
    /// unknown (external tokens).
    pub platform: String,
    /// Token expiry, unix seconds: a socket is closed when its token runs out.
    pub exp: u64,
}

impl Identity {
    /// Whether the token named a device (a `did` claim, or a sign-in session).
    pub fn has_device(&self) -> bool {
        !self.device.is_empty()
    }

    /// A user acting from a device, as another node vouched for them (cluster requests carry
    /// only what the call service reads).
    pub fn of_user(user: &str, device: &str) -> Identity {
        Identity {
            user_id: user.to_string(),
            device: device.to_string(),
            name: String::new(),
            identifier: String::new(),
            img: String::new(),
            kind: TokenKind::External,
            platform: "other".into(),
            exp: u64::MAX,
        }
    }
}

/// Signs an HS256 token (the `token` subcommand and tests).
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}

/// V Chat clients send `Bearer <jwt>`; some send the bare token.
pub fn strip_bearer(value: &str) -> &str {
    let v = value.trim();
    match v.get(..6) {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("bearer")
                && v[6..].chars().next().is_none_or(char::is_whitespace) =>
        {
            v[6..].trim()
        }
        _ => v,
    }
}

/// The development secret: read from the data dir, or generated there once. It also signs the
/// server's own session tokens when no `VCHAT_JWT_SECRET` is set.
pub fn dev_secret(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("dev-jwt-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = crate::ids::random_hex(32);
    std::fs::write(&path, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secret)
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
