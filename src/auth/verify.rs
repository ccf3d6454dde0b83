//! External tokens: from the operator's auth server (HS256 secret, RS/ES public key in PEM, or a
//! rotating JSON Web Key Set), with `aud` and `iss` enforced when configured.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::jwks::Jwks;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing access token")]
    Missing,
    #[error("invalid access token: {0}")]
    Invalid(String),
    #[error("this session was logged out")]
    LoggedOut,
    /// We could not check the token (key server or store down): not the client's fault, so it
    /// must not read as "log out" (450).
    #[error("cannot verify the access token now: {0}")]
    Unavailable(String),
}

/// The claims of an external token, as auth servers spell them.
#[derive(Debug, Clone, Deserialize)]
pub struct ExternalClaims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub img: Option<String>,
    /// Firebase Auth and OpenID Connect name the avatar `picture`.
    #[serde(default)]
    pub picture: Option<String>,
    #[serde(default)]
    pub did: Option<String>,
}

/// Verifies external tokens.
pub struct Verifier {
    secret: Option<DecodingKey>,
    public: Option<(DecodingKey, Algorithm)>,
    jwks: Option<Jwks>,
    audience: Option<String>,
    issuer: Option<String>,
}

impl Verifier {
    /// From the config; `hs_secret` is the HS256 secret to accept (the configured one, or the
    /// development secret when no key of any kind is configured).
    pub fn new(config: &Config, hs_secret: Option<&str>) -> Result<Verifier, String> {
        let public = match &config.jwt_public_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read JWT public key {}: {e}", path.display()))?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    Some((key, Algorithm::RS256))
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    Some((key, Algorithm::ES256))
                } else {
                    return Err(format!(
                        "JWT public key {} is neither an RSA nor an EC PEM public key",
                        path.display()
                    ));
                }
            }
        };
        let jwks = match &config.jwt_jwks_url {
            None => None,
            Some(url) => Some(Jwks::new(
                url,
                std::time::Duration::from_secs(config.jwt_jwks_min_refresh_secs),
            )?),
        };
        Ok(Verifier {
            secret: hs_secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            public,
            jwks,
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
        })
    }

    /// An HS256-only verifier (tests and tools).
    pub fn hs256(secret: &str) -> Verifier {
        Verifier {
            secret: Some(DecodingKey::from_secret(secret.as_bytes())),
            public: None,
            jwks: None,
            audience: None,
            issuer: None,
        }
    }

    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_ref()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = 5;
        let mut required = vec!["exp", "sub"];
        // Tokens from auth servers carry `aud`; it is checked only when the operator names one.
        match &self.audience {
            Some(a) => {
                v.set_audience(&[a]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Picks the key the token's header asks for; the token's `alg` must match the key's, so a
    /// public key can never be used as an HMAC secret.
    async fn key_for(&self, header: &jsonwebtoken::Header) -> Result<DecodingKey, AuthError> {
        if let (Some(kid), Some(jwks)) = (&header.kid, &self.jwks) {
            let (key, alg) = jwks.key(kid).await?;
            if alg != header.alg {
                return Err(AuthError::Invalid(format!(
                    "token alg {:?} does not match key {kid:?} ({alg:?})",
                    header.alg
                )));
            }
            return Ok(key);
        }
        match header.alg {
            Algorithm::HS256 => self
                .secret
                .clone()
                .ok_or_else(|| AuthError::Invalid("HS256 tokens are not accepted here".into())),
            alg => match &self.public {
                Some((key, a)) if *a == alg => Ok(key.clone()),
                _ if self.jwks.is_some() => Err(AuthError::Invalid(
                    "token has no key id (kid) to look up in the JWKS".into(),
                )),
                _ => Err(AuthError::Invalid(format!(
                    "{alg:?} tokens are not accepted here"
                ))),
            },
        }
    }

    pub async fn verify(&self, token: &str) -> Result<ExternalClaims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = self.key_for(&header).await?;
        let data =
            jsonwebtoken::decode::<ExternalClaims>(token, &key, &self.validation(header.alg))
                .map_err(|e| AuthError::Invalid(e.to_string()))?;
        if data.claims.sub.trim().is_empty() {
            return Err(AuthError::Invalid("empty sub claim".into()));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{mint, now_unix, Claims};
    use serde_json::json;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

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

    fn mint_json(v: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &v,
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn round_trip_expired_wrong_key_and_garbage() {
        let v = Verifier::hs256(KEY);
        let c = v
            .verify(&mint(KEY.as_bytes(), &claims(now_unix() + 60)))
            .await;
        assert_eq!(c.unwrap().sub, "alice");
        for bad in [
            mint(KEY.as_bytes(), &claims(now_unix() - 3600)),
            mint(
                b"another-secret-another-secret-xx",
                &claims(now_unix() + 60),
            ),
            "not.a.jwt".to_string(),
        ] {
            assert!(matches!(v.verify(&bad).await, Err(AuthError::Invalid(_))));
        }
    }

    #[tokio::test]
    async fn aud_is_accepted_unless_an_audience_is_required() {
        let exp = now_unix() + 60;
        let with_aud = mint_json(json!({"sub": "a", "exp": exp, "aud": "my-firebase-project"}));
        assert!(Verifier::hs256(KEY).verify(&with_aud).await.is_ok());

        let mut strict = Verifier::hs256(KEY);
        strict.audience = Some("vchat".into());
        strict.issuer = Some("https://auth.example".into());
        assert!(strict.verify(&with_aud).await.is_err(), "wrong aud");
        let right = mint_json(
            json!({"sub": "a", "exp": exp, "aud": "vchat", "iss": "https://auth.example"}),
        );
        assert!(strict.verify(&right).await.is_ok());
        let no_iss = mint_json(json!({"sub": "a", "exp": exp, "aud": "vchat"}));
        assert!(strict.verify(&no_iss).await.is_err(), "iss required");
        let wrong_iss =
            mint_json(json!({"sub": "a", "exp": exp, "aud": "vchat", "iss": "https://evil"}));
        assert!(strict.verify(&wrong_iss).await.is_err());
    }
}
