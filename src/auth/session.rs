//! The server's own access tokens, minted at `auth/connect`: one per device session. They carry
//! the same claims as external tokens (`sub`, `exp`, `name`, `identifier`, `img`, `did` = the
//! session id) plus `iss: "vchat-signal"`, and a header key id that routes them here. A session
//! token is only good while its session is live in the store, so `auth/logout` revokes it.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Claims};

/// Header `kid` of session tokens; nothing else is verified as a session.
pub const SESSION_KID: &str = "vchat-session-1";
pub const SESSION_ISSUER: &str = "vchat-signal";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionClaims {
    #[serde(flatten)]
    pub claims: Claims,
    pub iss: String,
    pub iat: u64,
}

pub struct SessionKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

/// Whether a token claims to be one of ours (by its header; the signature is checked later).
pub fn is_session_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|h| h.kid.as_deref() == Some(SESSION_KID))
}

impl SessionKeys {
    pub fn new(secret: &[u8]) -> SessionKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_aud = false;
        validation.set_issuer(&[SESSION_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        SessionKeys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn mint(&self, claims: Claims, now: u64) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(SESSION_KID.into());
        let c = SessionClaims {
            claims,
            iss: SESSION_ISSUER.into(),
            iat: now,
        };
        jsonwebtoken::encode(&header, &c, &self.enc).expect("HS256 signing cannot fail")
    }

    /// Signature, expiry and issuer; whether the session is still live is the store's to say.
    pub fn verify(&self, token: &str) -> Result<SessionClaims, AuthError> {
        let data = jsonwebtoken::decode::<SessionClaims>(token, &self.dec, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        if data.claims.claims.did.as_deref().unwrap_or("").is_empty() {
            return Err(AuthError::Invalid("session token without a session".into()));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::now_unix;

    #[test]
    fn minted_tokens_verify_and_are_recognised() {
        let k = SessionKeys::new(b"0123456789abcdef0123456789abcdef");
        let claims = Claims {
            sub: "u1".into(),
            exp: now_unix() + 60,
            name: Some("A".into()),
            identifier: Some("a@x".into()),
            img: None,
            did: Some("s1".into()),
        };
        let t = k.mint(claims, now_unix());
        assert!(is_session_token(&t));
        let c = k.verify(&t).unwrap();
        assert_eq!(
            (c.claims.sub.as_str(), c.iss.as_str()),
            ("u1", SESSION_ISSUER)
        );
        let other = SessionKeys::new(b"another-key-another-key-another-");
        assert!(other.verify(&t).is_err(), "signed with another key");
        let plain = crate::auth::mint(b"0123456789abcdef0123456789abcdef", &c.claims);
        assert!(!is_session_token(&plain));
        assert!(k.verify(&plain).is_err(), "no issuer: not a session token");
    }
}
