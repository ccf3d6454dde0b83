//! Access tokens: verify JWTs into an [`Identity`], and mint development tokens.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The device a token has no `did` for: all such sockets and requests count as one device.
pub const DEFAULT_DEVICE: &str = "default";

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

/// Who is acting, from which device. Built from verified claims only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub device: String,
    pub name: String,
    pub identifier: String,
    pub img: String,
}

impl From<Claims> for Identity {
    fn from(c: Claims) -> Self {
        Identity {
            name: c.name.unwrap_or_else(|| c.sub.clone()),
            identifier: c.identifier.unwrap_or_else(|| c.sub.clone()),
            img: c.img.unwrap_or_default(),
            device: c
                .did
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| DEFAULT_DEVICE.into()),
            user_id: c.sub,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing access token")]
    Missing,
    #[error("invalid access token: {0}")]
    Invalid(String),
}

/// Verifies tokens with either an HS256 secret or an RS/ES public key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(DecodingKey::from_secret(secret), &[Algorithm::HS256])
    }

    /// An RSA or EC public key in PEM form, as an existing auth server publishes it.
    pub fn from_public_pem(path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read JWT public key {}: {e}", path.display()))?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self::new(key, &[Algorithm::RS256]));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            return Ok(Self::new(key, &[Algorithm::ES256]));
        }
        Err(format!(
            "JWT public key {} is neither an RSA nor an EC PEM public key",
            path.display()
        ))
    }

    fn new(key: DecodingKey, algs: &[Algorithm]) -> Self {
        let mut validation = Validation::new(algs[0]);
        validation.algorithms = algs.to_vec();
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Verifier { key, validation }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = strip_bearer(token);
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        if data.claims.sub.trim().is_empty() {
            return Err(AuthError::Invalid("empty sub claim".into()));
        }
        Ok(data.claims.into())
    }
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

/// Signs an HS256 token (the `token` subcommand and tests).
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}

/// The development secret: read from the data dir, or generated there once.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            name: Some("Alice".into()),
            identifier: None,
            img: None,
            did: Some("phone".into()),
        }
    }

    #[test]
    fn round_trip_and_defaults() {
        let v = Verifier::hs256(b"k");
        let t = mint(b"k", &claims(now_unix() + 60));
        let id = v.verify(&format!("Bearer {t}")).unwrap();
        assert_eq!(id.user_id, "alice");
        assert_eq!(id.identifier, "alice", "identifier defaults to sub");
        assert_eq!(id.device, "phone");
        assert_eq!(id.name, "Alice");
    }

    #[test]
    fn refuses_expired_wrong_key_and_garbage() {
        let v = Verifier::hs256(b"k");
        assert!(v.verify(&mint(b"k", &claims(now_unix() - 3600))).is_err());
        assert!(v.verify(&mint(b"other", &claims(now_unix() + 60))).is_err());
        assert!(v.verify("not.a.jwt").is_err());
        assert!(matches!(v.verify("Bearer "), Err(AuthError::Missing)));
    }
}
