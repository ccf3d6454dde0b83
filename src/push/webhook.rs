//! Generic webhook: every notification, for every target, as JSON.
//!
//! `POST <webhook_url>`, `Content-Type: application/json`, and when a secret is set
//! `X-VChat-Signature: sha256=<lowercase hex HMAC-SHA256 of the exact body bytes>`. Body:
//!
//! ```json
//! {"kind": "message" | "call",
//!  "provider": "fcm" | "oneSignal" | null,
//!  "userId": "…", "device": "…", "pushKey": "…",
//!  "title": "…", "body": "…",
//!  "data": {"k": "v"}}
//! ```
//!
//! `provider` is the deployment's configured provider (what `pushKey` is), null when none.
//! Any 2xx is a delivery; 429 and 5xx are retried; other statuses fail.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{network_error, transient, Attempt, Notification, Provider, PushTarget};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-VChat-Signature";

pub(crate) struct Webhook {
    url: reqwest::Url,
    secret: Option<Vec<u8>>,
}

impl Webhook {
    pub(crate) fn new(url: reqwest::Url, secret: Option<&str>) -> Webhook {
        Webhook {
            url,
            secret: secret.map(|s| s.as_bytes().to_vec()),
        }
    }

    pub(crate) async fn send(
        &self,
        http: &reqwest::Client,
        provider: Option<Provider>,
        target: &PushTarget,
        n: &Notification,
    ) -> Attempt {
        let body = body(provider, target, n);
        let mut req = http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            req = req.header(SIGNATURE_HEADER, sign(secret, &body));
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return network_error("webhook", e),
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Sent;
        }
        transient(status, resp.headers())
            .unwrap_or_else(|| Attempt::Fail(format!("webhook HTTP {}", status.as_u16())))
    }
}

/// The exact body bytes (the signature covers these).
pub(crate) fn body(provider: Option<Provider>, target: &PushTarget, n: &Notification) -> Vec<u8> {
    let v = json!({
        "kind": n.kind.as_str(),
        "provider": provider.map(Provider::as_str),
        "userId": target.user_id,
        "device": target.device,
        "pushKey": target.key,
        "title": n.title,
        "body": n.body,
        "data": n.data,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `sha256=<lowercase hex of HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}
