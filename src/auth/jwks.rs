//! A JSON Web Key Set from an auth server that rotates its keys (Firebase Auth, Keycloak, Auth0).
//!
//! Keys are cached by key id. A token naming an unknown `kid` triggers a refetch, at most once per
//! `min_refresh` (so a flood of made-up key ids cannot hammer the key server); the set is also
//! refetched when it is older than [`MAX_AGE`]. A fetch replaces the set, so retired keys stop
//! working.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthError;

/// Keys older than this are refreshed on the next lookup even when the kid is known.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

type Keys = HashMap<String, (DecodingKey, Algorithm)>;

pub struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<(Keys, Option<Instant>)>,
    /// Serialises fetches; holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    fetches: AtomicU64,
}

impl Jwks {
    pub fn new(url: &str, min_refresh: Duration) -> Result<Jwks, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("JWKS url {url:?} must be http(s)"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("JWKS client: {e}"))?;
        Ok(Jwks {
            url: url.to_string(),
            http,
            keys: RwLock::new((HashMap::new(), None)),
            fetching: tokio::sync::Mutex::new(None),
            min_refresh,
            fetches: AtomicU64::new(0),
        })
    }

    /// How many times the set was fetched (for `/metrics`).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn cached(&self, kid: &str) -> Option<(DecodingKey, Algorithm, bool)> {
        let guard = self.keys.read().expect("not poisoned");
        let fresh = guard.1.is_some_and(|t| t.elapsed() < MAX_AGE);
        guard.0.get(kid).map(|(k, a)| (k.clone(), *a, fresh))
    }

    pub async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some((key, alg, true)) = self.cached(kid) {
            return Ok((key, alg));
        }
        let mut last = self.fetching.lock().await;
        // Another lookup may have fetched while we waited.
        let cached = self.cached(kid);
        if let Some((key, alg, true)) = &cached {
            return Ok((key.clone(), *alg));
        }
        let stale = cached.map(|(k, a, _)| (k, a));
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return stale.ok_or_else(|| AuthError::Invalid(format!("unknown key id {kid:?}")));
        }
        *last = Some(Instant::now());
        if let Err(e) = self.fetch().await {
            tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed");
            // A known key keeps working through a key-server outage; an unknown one cannot be
            // checked, which is not the client's fault.
            return stale.ok_or(AuthError::Unavailable(e));
        }
        self.cached(kid)
            .map(|(k, a, _)| (k, a))
            .ok_or_else(|| AuthError::Invalid(format!("unknown key id {kid:?}")))
    }

    /// Fetches the set now (at startup, so the first token does not wait).
    pub async fn prefetch(&self) {
        let mut last = self.fetching.lock().await;
        *last = Some(Instant::now());
        if let Err(e) = self.fetch().await {
            tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed");
        }
    }

    async fn fetch(&self) -> Result<(), String> {
        let result = self.fetch_set().await;
        // Counted once the fetch is over, so the count never runs ahead of what the key server saw.
        self.fetches.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn fetch_set(&self) -> Result<(), String> {
        let resp = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let set: JwkSet = resp.json().await.map_err(|e| e.to_string())?;
        let keys = parse(&set);
        if keys.is_empty() {
            return Err("the key set has no usable signing keys".into());
        }
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
        *self.keys.write().expect("not poisoned") = (keys, Some(Instant::now()));
        Ok(())
    }
}

/// The signing keys of a set, by kid, each with the one algorithm it may verify.
fn parse(set: &JwkSet) -> Keys {
    let mut out = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        let declared = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        let alg = match (&jwk.algorithm, declared) {
            (_, Some(a)) => a,
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => continue,
            },
            (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
            // Symmetric keys have no business in a public key set.
            (AlgorithmParameters::OctetKey(_), None) => continue,
        };
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            out.insert(kid.clone(), (key, alg));
        }
    }
    out
}
