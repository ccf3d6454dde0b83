//! OneSignal, Create message API (push channel).
//!
//! `POST https://api.onesignal.com/notifications` (configurable), `Authorization: Key <App API
//! key>`, `Content-Type: application/json`, `Accept: application/json`, body:
//!
//! ```json
//! {"app_id": "<app id>",
//!  "include_subscription_ids": ["<push key>"],
//!  "headings": {"en": "<title>"},
//!  "contents": {"en": "<body, or the title when the body is empty>"},
//!  "data": {"k": "v"},
//!  "priority": 10}
//! ```
//!
//! Why these choices: OneSignal's current docs ("Push notification" / "Sending messages with the
//! OneSignal API" reference pages) target single devices with `include_subscription_ids`;
//! `include_player_ids` is the legacy name of the same thing (SDK 5 subscription ids are the old
//! player ids), so new apps and migrated ones both work with it. Current API keys use the `Key`
//! scheme (the legacy REST API keys used `Basic`). `contents` must not be empty, hence the title
//! fallback. `priority: 10` asks for high priority delivery (as the FCM path does), which calls
//! need to wake a phone.
//!
//! Dead keys: OneSignal answers (200, or 400 on older API versions) with `errors` either as an
//! object listing ids (`invalid_player_ids` in the legacy shape, `invalid_subscription_ids` is
//! accepted too) or as an array of strings such as "All included players are not subscribed"
//! with an empty `id` (no notification created). Either naming our one subscription id is
//! reported as a dead key. A 200 with a non-empty `id` is a send; a 200 without one is a failure.

use serde_json::{json, Value};

use super::{
    clip, network_error, parse_url, read_body, transient, Attempt, Notification, PushTarget,
};

pub(crate) struct OneSignal {
    app_id: String,
    auth: String,
    endpoint: reqwest::Url,
}

impl OneSignal {
    pub(crate) fn new(app_id: &str, api_key: &str, endpoint: &str) -> Result<OneSignal, String> {
        Ok(OneSignal {
            app_id: app_id.to_string(),
            auth: format!("Key {api_key}"),
            endpoint: parse_url("onesignal_endpoint", endpoint)?,
        })
    }

    /// The Create message request body.
    pub(crate) fn message_body(&self, target: &PushTarget, n: &Notification) -> Value {
        let contents = if n.body.is_empty() { &n.title } else { &n.body };
        json!({
            "app_id": self.app_id,
            "include_subscription_ids": [target.key],
            "headings": { "en": n.title },
            "contents": { "en": contents },
            "data": n.data,
            "priority": 10
        })
    }

    pub(crate) async fn send(
        &self,
        http: &reqwest::Client,
        target: &PushTarget,
        n: &Notification,
    ) -> Attempt {
        let resp = match http
            .post(self.endpoint.clone())
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&self.message_body(target, n))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return network_error("OneSignal send", e),
        };
        let status = resp.status();
        if let Some(retry) = transient(status, resp.headers()) {
            return retry;
        }
        let body = read_body(resp).await;
        classify(status.as_u16(), &body, &target.key)
    }
}

/// A OneSignal answer (not 429/5xx): sent, dead key, or failure.
pub(crate) fn classify(status: u16, body: &[u8], key: &str) -> Attempt {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = v["id"].as_str().unwrap_or("");
    if let Some(why) = dead_reason(&v, key, id) {
        return Attempt::DeadKey(why);
    }
    if (200..300).contains(&status) {
        if !id.is_empty() {
            return Attempt::Sent;
        }
        return Attempt::Fail(format!(
            "OneSignal HTTP {status}: no notification created: {}",
            errors_summary(&v["errors"])
        ));
    }
    Attempt::Fail(format!(
        "OneSignal HTTP {status}: {}",
        errors_summary(&v["errors"])
    ))
}

fn dead_reason(v: &Value, key: &str, id: &str) -> Option<String> {
    let errors = &v["errors"];
    for field in ["invalid_subscription_ids", "invalid_player_ids"] {
        if errors[field]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|x| x == key))
        {
            return Some(format!("OneSignal {field}"));
        }
    }
    if id.is_empty() {
        if let Some(list) = errors.as_array() {
            if list.iter().filter_map(Value::as_str).any(|s| {
                let s = s.to_ascii_lowercase();
                s.contains("not subscribed")
                    || s.contains("invalid player")
                    || s.contains("invalid subscription")
            }) {
                return Some("OneSignal: subscription not subscribed".into());
            }
        }
    }
    None
}

/// For logs: error strings, or just the field names of an errors object (its values are ids).
fn errors_summary(errors: &Value) -> String {
    match errors {
        Value::Array(list) => clip(
            &list
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("; "),
            300,
        ),
        Value::Object(map) => map.keys().cloned().collect::<Vec<_>>().join(", "),
        Value::Null => "no errors given".into(),
        other => clip(&other.to_string(), 300),
    }
}
