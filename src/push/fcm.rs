//! Firebase Cloud Messaging, HTTP v1 API.
//!
//! Authorization (Google's "OAuth 2.0 for server to server applications", service accounts):
//! an RS256 JWT signed with the service account's `private_key`, header `kid` = its
//! `private_key_id`, claims `iss` = `client_email`, `scope` =
//! `https://www.googleapis.com/auth/firebase.messaging`, `aud` = `token_uri`, `iat` = now,
//! `exp` = now + 1 h, is POSTed to `token_uri` as `application/x-www-form-urlencoded`
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`; the JSON answer's
//! `access_token` is cached until a minute before its `expires_in`, and dropped and fetched
//! again once when a send answers 401.
//!
//! Send (`projects.messages.send`): `POST {endpoint}/v1/projects/{project_id}/messages:send`,
//! `Authorization: Bearer <access token>`, `Content-Type: application/json`, body:
//!
//! ```json
//! {"message": {"token": "<registration token>",
//!              "notification": {"title": "…", "body": "…"},
//!              "data": {"k": "v"},
//!              "android": {"priority": "high"},
//!              "apns": {"headers": {"apns-priority": "10"},
//!                       "payload": {"aps": {"sound": "default"}}}}}
//! ```
//!
//! Errors (FCM `ErrorCode`): `UNREGISTERED` (404) in `error.details[].errorCode` → dead key;
//! 400 `INVALID_ARGUMENT` whose message names the registration token (or whose field violation is
//! `message.token`) → dead key; 429 `QUOTA_EXCEEDED`, 500 `INTERNAL`, 503 `UNAVAILABLE` → retry
//! (honouring `Retry-After`); anything else (`SENDER_ID_MISMATCH`, `THIRD_PARTY_AUTH_ERROR`,
//! other `INVALID_ARGUMENT`s…) → failed.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{
    clip, network_error, parse_url, read_body, transient, Attempt, Notification, PushTarget,
};

/// The OAuth scope `projects.messages.send` needs.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Assertion lifetime; Google accepts at most one hour.
const ASSERTION_LIFETIME_S: u64 = 3600;
/// Access tokens are refreshed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The fields of a Google service-account key file this module uses.
#[derive(Deserialize)]
struct ServiceAccountFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    project_id: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

pub(crate) struct Fcm {
    client_email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_uri: String,
    send_url: String,
    /// Held across a token request, so concurrent sends wait for one exchange.
    token: Mutex<Option<CachedToken>>,
}

fn required(v: Option<String>, field: &str, path: &Path) -> Result<String, String> {
    v.map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("FCM service account {} has no {field}", path.display()))
}

impl Fcm {
    /// Reads and checks the service-account file; signs one throwaway JWT so a bad key fails
    /// here rather than on every send.
    pub(crate) fn load(
        path: &Path,
        endpoint: &str,
        token_uri_override: Option<&str>,
    ) -> Result<Fcm, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read FCM service account {}: {e}", path.display()))?;
        let file: ServiceAccountFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "FCM service account {} is not a service-account JSON file: {e}",
                path.display()
            )
        })?;
        if let Some(kind) = file.kind.as_deref() {
            if kind != "service_account" {
                return Err(format!(
                    "FCM service account {} has type {kind:?}, expected \"service_account\"",
                    path.display()
                ));
            }
        }
        let project_id = required(file.project_id, "project_id", path)?;
        if !project_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'))
        {
            return Err(format!(
                "FCM service account {} has an invalid project_id",
                path.display()
            ));
        }
        let client_email = required(file.client_email, "client_email", path)?;
        let private_key = required(file.private_key, "private_key", path)?;
        let token_uri = match token_uri_override {
            Some(uri) => uri.trim().to_string(),
            None => required(file.token_uri, "token_uri", path)?,
        };
        parse_url("FCM token_uri", &token_uri)?;
        let endpoint = parse_url("fcm_endpoint", endpoint)?;
        let send_url = format!(
            "{}/v1/projects/{project_id}/messages:send",
            endpoint.as_str().trim_end_matches('/')
        );
        let key = EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|_| {
            format!(
                "FCM service account {}: private_key is not an RSA private key in PEM form",
                path.display()
            )
        })?;
        let fcm = Fcm {
            client_email,
            key_id: file.private_key_id.filter(|s| !s.is_empty()),
            key,
            token_uri,
            send_url,
            token: Mutex::new(None),
        };
        fcm.assertion().map_err(|e| {
            format!(
                "FCM service account {}: cannot sign with private_key: {e}",
                path.display()
            )
        })?;
        Ok(fcm)
    }

    /// The signed JWT for the token request.
    fn assertion(&self) -> Result<String, String> {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_S,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| e.to_string())
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    async fn access_token(&self, http: &reqwest::Client) -> Result<String, Attempt> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.fetch_token(http).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets `stale` (unless another send already replaced it).
    async fn invalidate(&self, stale: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == stale) {
            *cached = None;
        }
    }

    async fn fetch_token(&self, http: &reqwest::Client) -> Result<CachedToken, Attempt> {
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            expires_in: Option<u64>,
        }
        let assertion = self.assertion().map_err(Attempt::Fail)?;
        let resp = http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| network_error("FCM token request", e))?;
        let status = resp.status();
        if let Some(retry) = transient(status, resp.headers()) {
            return Err(match retry {
                Attempt::Retry { after, why } => Attempt::Retry {
                    after,
                    why: format!("FCM token request: {why}"),
                },
                other => other,
            });
        }
        let body = read_body(resp).await;
        if !status.is_success() {
            // {"error": "invalid_grant", "error_description": "…"}
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(Attempt::Fail(format!(
                "FCM token request refused: HTTP {} {} {}",
                status.as_u16(),
                v["error"].as_str().unwrap_or(""),
                clip(v["error_description"].as_str().unwrap_or(""), 200)
            )));
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| Attempt::Fail("FCM token response has no access_token".to_string()))?;
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(CachedToken {
            value: t.access_token,
            refresh_at: Instant::now() + (lifetime - margin),
        })
    }

    /// The `projects.messages.send` request body.
    pub(crate) fn message_body(target: &PushTarget, n: &Notification) -> Value {
        json!({
            "message": {
                "token": target.key,
                "notification": { "title": n.title, "body": n.body },
                "data": n.data,
                "android": { "priority": "high" },
                "apns": {
                    "headers": { "apns-priority": "10" },
                    "payload": { "aps": { "sound": "default" } }
                }
            }
        })
    }

    pub(crate) async fn send(
        &self,
        http: &reqwest::Client,
        target: &PushTarget,
        n: &Notification,
    ) -> Attempt {
        let body = Self::message_body(target, n);
        let mut refreshed = false;
        loop {
            let token = match self.access_token(http).await {
                Ok(t) => t,
                Err(a) => return a,
            };
            let resp = match http
                .post(&self.send_url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return network_error("FCM send", e),
            };
            let status = resp.status();
            if status.is_success() {
                return Attempt::Sent;
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && !refreshed {
                self.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            if let Some(retry) = transient(status, resp.headers()) {
                return retry;
            }
            let body = read_body(resp).await;
            return classify_error(status.as_u16(), &body);
        }
    }
}

/// A non-retryable FCM error answer: dead key or plain failure.
pub(crate) fn classify_error(status: u16, body: &[u8]) -> Attempt {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let grpc_status = err["status"].as_str().unwrap_or("");
    let message = err["message"].as_str().unwrap_or("");
    let details = err["details"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let codes: Vec<&str> = details
        .iter()
        .filter_map(|d| d["errorCode"].as_str())
        .collect();
    let token_field = details.iter().any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|fv| fv.iter().any(|f| f["field"] == "message.token"))
    });
    if codes.contains(&"UNREGISTERED") {
        return Attempt::DeadKey(format!("FCM HTTP {status} UNREGISTERED"));
    }
    let invalid_argument = grpc_status == "INVALID_ARGUMENT" || codes.contains(&"INVALID_ARGUMENT");
    if status == 400
        && invalid_argument
        && (token_field || message.to_ascii_lowercase().contains("registration token"))
    {
        return Attempt::DeadKey(format!(
            "FCM HTTP 400 INVALID_ARGUMENT: {}",
            clip(message, 200)
        ));
    }
    let code = codes.first().copied().unwrap_or(grpc_status);
    Attempt::Fail(format!("FCM HTTP {status} {code}: {}", clip(message, 200)))
}
