//! Push notifications: wake phones that have no live socket, for a new chat message or an
//! incoming call.
//!
//! The SDK registers one push key per device. Nothing in the key says which service issued it, so
//! the deployment picks one [`Provider`] for all of them (`VCHAT_PUSH_PROVIDER`):
//!
//! - **FCM** (`fcm.rs`): the key is an FCM registration token, sent through the HTTP v1 API
//!   (`POST {fcm_endpoint}/v1/projects/{project_id}/messages:send`) with an OAuth2 access token
//!   obtained from the service account's key by the JWT-bearer grant.
//! - **OneSignal** (`onesignal.rs`): the key is a OneSignal subscription id (what SDK 5 calls the
//!   push subscription id; the same UUID as the legacy "player id" of older SDKs), sent through
//!   OneSignal's Create message API (`POST https://api.onesignal.com/notifications`).
//!
//! On top of (or instead of) a provider, a **webhook** (`webhook.rs`) receives every notification
//! for every target as JSON, for operators who run their own push service. When
//! `webhook_secret` is set each request carries
//!
//! ```text
//! X-VChat-Signature: sha256=<lowercase hex of HMAC-SHA256(webhook_secret, raw request body)>
//! ```
//!
//! computed over the exact body bytes sent. Receivers should recompute it over the raw body
//! (before any JSON parsing) and compare in constant time.
//!
//! # Delivery
//!
//! [`Pusher::enqueue`] never blocks: each (target, path) pair becomes one job in a bounded queue
//! (`queue_capacity`); when it is full the job is dropped and counted. A dispatcher hands jobs to
//! delivery tasks; at most `concurrency` HTTP requests are in flight, and at most
//! `queue_capacity` jobs are being delivered or waiting out a retry at once (past that the queue
//! fills up and new work is dropped, rather than memory growing without bound).
//!
//! Retry policy, per delivery:
//! - network errors, timeouts, HTTP 429 and 5xx are retried, up to `max_attempts` attempts in all;
//!   the wait is the response's `Retry-After` (seconds or HTTP date) when it has one, else
//!   exponential backoff from `retry_base` (doubling, capped at 60 s) with jitter (a random point
//!   in the upper half of the step). A `Retry-After` beyond 5 minutes is not waited for: a push
//!   that late is stale, so the delivery counts as failed;
//! - any other 4xx is permanent: counted failed, not retried;
//! - a key the provider calls dead (FCM `UNREGISTERED`, or `INVALID_ARGUMENT` about the
//!   registration token; OneSignal invalid or unsubscribed ids) is reported once on the
//!   `dead_keys` channel, counted in `dead_keys`, and not retried.
//!
//! Every queued delivery ends in exactly one of `sent`, `failed`, `dead_keys` or `dropped`;
//! `retried` counts attempts beyond the first. Deliveries still unfinished when
//! [`Pusher::shutdown`]'s grace runs out (or whose task panicked) are counted failed.
//!
//! Logs never carry a whole push key or access token: keys appear as their first 8 characters.

mod fcm;
mod onesignal;
mod webhook;

#[cfg(test)]
mod tests;

pub use webhook::{sign as webhook_signature, SIGNATURE_HEADER as WEBHOOK_SIGNATURE_HEADER};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};

/// Which service the devices' push keys belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Fcm,
    OneSignal,
}

impl Provider {
    /// The name used in the webhook body: `fcm` or `oneSignal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Fcm => "fcm",
            Provider::OneSignal => "oneSignal",
        }
    }
}

impl FromStr for Provider {
    type Err = String;

    /// `fcm`, or `onesignal` (also `oneSignal`, `one_signal`, `one-signal`); case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fcm" => Ok(Provider::Fcm),
            "onesignal" | "one_signal" | "one-signal" => Ok(Provider::OneSignal),
            other => Err(format!(
                "unknown push provider {other:?} (expected fcm or onesignal)"
            )),
        }
    }
}

/// Push settings. `Debug` leaves out the OneSignal API key and the webhook secret.
#[derive(Clone)]
pub struct PushConfig {
    /// Which provider device push keys belong to (VCHAT_PUSH_PROVIDER). None: no provider
    /// (webhook only, or push off).
    pub provider: Option<Provider>,
    /// FCM HTTP v1: path to the Google service-account JSON (VCHAT_FCM_SERVICE_ACCOUNT). Its
    /// `project_id`, `client_email`, `private_key` (PEM, RS256) and `token_uri` are used.
    pub fcm_service_account: Option<PathBuf>,
    /// Base URL of the FCM API; default `https://fcm.googleapis.com` →
    /// POST {base}/v1/projects/{project_id}/messages:send
    pub fcm_endpoint: String,
    /// Overrides the service account's `token_uri` when set.
    pub fcm_token_uri: Option<String>,
    pub onesignal_app_id: Option<String>,
    pub onesignal_api_key: Option<String>,
    /// OneSignal Create message endpoint; default `https://api.onesignal.com/notifications`.
    pub onesignal_endpoint: String,
    /// Generic webhook: receives every notification (for every target, whatever the provider).
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key; the signature of the exact body bytes goes in header
    /// `X-VChat-Signature: sha256=<lowercase hex>`.
    pub webhook_secret: Option<String>,
    /// Bounded queue size (deliveries); default 10 000.
    pub queue_capacity: usize,
    /// Attempts per delivery, the first included; default 5.
    pub max_attempts: u32,
    /// First backoff step; default 1 s, doubling, capped at 60 s, with jitter.
    pub retry_base: Duration,
    /// HTTP requests in flight at most; default 16.
    pub concurrency: usize,
    /// Whole-request timeout (connect, send, response); default 10 s.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("PushConfig")
            .field("provider", &self.provider)
            .field("fcm_service_account", &self.fcm_service_account)
            .field("fcm_endpoint", &self.fcm_endpoint)
            .field("fcm_token_uri", &self.fcm_token_uri)
            .field("onesignal_app_id", &self.onesignal_app_id)
            .field("onesignal_api_key", &redacted(&self.onesignal_api_key))
            .field("onesignal_endpoint", &self.onesignal_endpoint)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &redacted(&self.webhook_secret))
            .field("queue_capacity", &self.queue_capacity)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base", &self.retry_base)
            .field("concurrency", &self.concurrency)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            provider: None,
            fcm_service_account: None,
            fcm_endpoint: "https://fcm.googleapis.com".into(),
            fcm_token_uri: None,
            onesignal_app_id: None,
            onesignal_api_key: None,
            onesignal_endpoint: "https://api.onesignal.com/notifications".into(),
            webhook_url: None,
            webhook_secret: None,
            queue_capacity: 10_000,
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            concurrency: 16,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// One device to notify.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PushTarget {
    pub user_id: String,
    pub device: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    Message,
    Call,
}

impl PushKind {
    /// `message` or `call`, as in the webhook body.
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Message => "message",
            PushKind::Call => "call",
        }
    }
}

/// What to show and what to hand the app. `data` values are strings (FCM requires string values).
#[derive(Debug, Clone)]
pub struct Notification {
    pub kind: PushKind,
    pub title: String,
    pub body: String,
    pub data: BTreeMap<String, String>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    /// Deliveries the provider or webhook accepted.
    pub sent: u64,
    /// Deliveries given up: retries exhausted, a permanent error, or abandoned at shutdown.
    pub failed: u64,
    /// Deliveries not queued: the queue was full, or the pusher was shut down.
    pub dropped: u64,
    /// Attempts beyond the first.
    pub retried: u64,
    /// Deliveries whose key the provider said is dead (reported on the `dead_keys` channel).
    pub dead_keys: u64,
}

/// Upper bound of one backoff step.
const RETRY_CAP: Duration = Duration::from_secs(60);
/// A `Retry-After` longer than this is not waited for (the delivery fails instead).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Provider response bodies are read up to this size (they are small JSON documents).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
    dead_keys: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> PushStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PushStats {
            sent: get(&self.sent),
            failed: get(&self.failed),
            dropped: get(&self.dropped),
            retried: get(&self.retried),
            dead_keys: get(&self.dead_keys),
        }
    }
}

/// How one delivery attempt ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    Sent,
    /// The provider says this key will never work again.
    DeadKey(String),
    /// Worth another try, after `after` when the server said so.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// Permanent: retrying would not help.
    Fail(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The configured provider, with the target's key.
    Provider,
    Webhook,
}

/// One (target, route) delivery. Dropped unsettled (abandoned at shutdown, or its task
/// panicked), it counts as failed.
struct Job {
    target: PushTarget,
    n: Arc<Notification>,
    route: Route,
    counters: Arc<Counters>,
    settled: bool,
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.settled {
            Counters::add(&self.counters.failed, 1);
            tracing::debug!(
                user = %self.target.user_id,
                device = %self.target.device,
                key = %short_key(&self.target.key),
                "push delivery abandoned"
            );
        }
    }
}

enum ProviderClient {
    Fcm(fcm::Fcm),
    OneSignal(onesignal::OneSignal),
}

/// What the delivery tasks share.
struct Shared {
    http: reqwest::Client,
    provider: Option<(Provider, ProviderClient)>,
    webhook: Option<webhook::Webhook>,
    counters: Arc<Counters>,
    dead_keys: mpsc::UnboundedSender<PushTarget>,
    /// HTTP requests in flight.
    requests: Semaphore,
    max_attempts: u32,
    retry_base: Duration,
}

pub struct Pusher {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    abort: Arc<Notify>,
}

/// `Some` unless empty or blank (an env var set to "" means unset).
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Parses an http(s) URL, naming the setting in the error.
pub(crate) fn parse_url(what: &str, s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("{what} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!("{what} must be an http(s) URL with a host")),
    }
}

impl Pusher {
    /// Validates the config (reads and parses the service-account file, checks the OneSignal
    /// pair is complete, the webhook URL parses) and starts the delivery workers. `dead_keys`
    /// receives every target whose key the provider said is dead (FCM `UNREGISTERED` / invalid
    /// registration, OneSignal invalid player/subscription id) so the server can delete it from
    /// its store.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn start(
        cfg: PushConfig,
        dead_keys: mpsc::UnboundedSender<PushTarget>,
    ) -> Result<Pusher, String> {
        if cfg.queue_capacity == 0 {
            return Err("push queue_capacity must be at least 1".into());
        }
        if cfg.concurrency == 0 {
            return Err("push concurrency must be at least 1".into());
        }
        if cfg.max_attempts == 0 {
            return Err("push max_attempts must be at least 1".into());
        }
        if cfg.request_timeout.is_zero() {
            return Err("push request_timeout must be more than zero".into());
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "Pusher::start must run inside a Tokio runtime".to_string())?;

        let fcm = match &cfg.fcm_service_account {
            Some(path) => Some(fcm::Fcm::load(
                path,
                &cfg.fcm_endpoint,
                non_empty(&cfg.fcm_token_uri),
            )?),
            None => None,
        };
        let onesignal = match (
            non_empty(&cfg.onesignal_app_id),
            non_empty(&cfg.onesignal_api_key),
        ) {
            (Some(app_id), Some(api_key)) => Some(onesignal::OneSignal::new(
                app_id,
                api_key,
                &cfg.onesignal_endpoint,
            )?),
            (None, None) => None,
            (Some(_), None) => {
                return Err("onesignal_app_id is set but onesignal_api_key is not".into())
            }
            (None, Some(_)) => {
                return Err("onesignal_api_key is set but onesignal_app_id is not".into())
            }
        };
        let provider = match cfg.provider {
            None => None,
            Some(Provider::Fcm) => {
                let fcm = fcm.ok_or("push provider fcm needs fcm_service_account")?;
                Some((Provider::Fcm, ProviderClient::Fcm(fcm)))
            }
            Some(Provider::OneSignal) => {
                let os = onesignal.ok_or(
                    "push provider onesignal needs onesignal_app_id and onesignal_api_key",
                )?;
                Some((Provider::OneSignal, ProviderClient::OneSignal(os)))
            }
        };
        if cfg.provider != Some(Provider::Fcm) && cfg.fcm_service_account.is_some() {
            tracing::warn!("fcm_service_account is set but the push provider is not fcm: unused");
        }
        if cfg.provider != Some(Provider::OneSignal) && cfg.onesignal_app_id.is_some() {
            tracing::warn!(
                "onesignal_app_id is set but the push provider is not onesignal: unused"
            );
        }
        let webhook = match non_empty(&cfg.webhook_url) {
            Some(url) => Some(webhook::Webhook::new(
                parse_url("webhook_url", url)?,
                non_empty(&cfg.webhook_secret),
            )),
            None => {
                if non_empty(&cfg.webhook_secret).is_some() {
                    tracing::warn!("webhook_secret is set but webhook_url is not: unused");
                }
                None
            }
        };

        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout)
            // A redirected POST would become a GET (and lose its signature): never follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vchat-signal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the push HTTP client: {e}"))?;

        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            http,
            provider,
            webhook,
            counters,
            dead_keys,
            requests: Semaphore::new(cfg.concurrency),
            max_attempts: cfg.max_attempts,
            retry_base: cfg.retry_base,
        });
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let slots = Arc::new(Semaphore::new(cfg.queue_capacity));
        let abort = Arc::new(Notify::new());
        let dispatcher = runtime.spawn(dispatch(shared.clone(), rx, slots, abort.clone()));
        if shared.provider.is_some() || shared.webhook.is_some() {
            tracing::info!(
                provider = shared.provider.as_ref().map(|(p, _)| p.as_str()),
                webhook = shared.webhook.is_some(),
                "push delivery on"
            );
        }
        Ok(Pusher {
            shared,
            tx: Mutex::new(Some(tx)),
            dispatcher: Mutex::new(Some(dispatcher)),
            abort,
        })
    }

    /// Whether any delivery path is configured (a provider or the webhook).
    pub fn enabled(&self) -> bool {
        self.shared.provider.is_some() || self.shared.webhook.is_some()
    }

    /// Non-blocking. Queues delivery of `n` to each target (the provider path for the configured
    /// provider, plus the webhook when set). Returns how many deliveries were dropped because the
    /// bounded queue was full, or the pusher was shut down (counted in metrics too). Targets with
    /// an empty key get no provider delivery (the webhook still gets them).
    pub fn enqueue(&self, targets: Vec<PushTarget>, n: Arc<Notification>) -> usize {
        if !self.enabled() {
            return 0;
        }
        let provider = self.shared.provider.is_some();
        let webhook = self.shared.webhook.is_some();
        let mut dropped = 0usize;
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        for target in targets {
            let routes = [
                (provider && !target.key.is_empty()).then_some(Route::Provider),
                webhook.then_some(Route::Webhook),
            ];
            for route in routes.into_iter().flatten() {
                let job = Job {
                    target: target.clone(),
                    n: n.clone(),
                    route,
                    counters: self.shared.counters.clone(),
                    settled: false,
                };
                let refused = match tx.as_ref() {
                    Some(tx) => tx.try_send(job).err().map(|e| e.into_inner()),
                    None => Some(job),
                };
                if let Some(mut job) = refused {
                    job.settled = true;
                    dropped += 1;
                }
            }
        }
        let closed = tx.is_none();
        drop(tx);
        if dropped > 0 {
            Counters::add(&self.shared.counters.dropped, dropped as u64);
            if closed {
                tracing::debug!(dropped, "push deliveries refused: pusher shut down");
            } else {
                tracing::warn!(dropped, "push queue full: deliveries dropped");
            }
        }
        dropped
    }

    /// Counters for /metrics.
    pub fn stats(&self) -> PushStats {
        self.shared.counters.snapshot()
    }

    /// Stop taking work; wait up to `grace` for queued and in-flight deliveries (retries
    /// included). What is still unfinished then is abandoned and counted failed. Later calls
    /// return at once.
    pub async fn shutdown(&self, grace: Duration) {
        drop(
            self.tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut handle) = handle else { return };
        if tokio::time::timeout(grace, &mut handle).await.is_err() {
            let before = self.stats().failed;
            self.abort.notify_one();
            let _ = handle.await;
            let abandoned = self.stats().failed - before;
            tracing::warn!(
                abandoned,
                "push shutdown: grace ran out, deliveries abandoned"
            );
        }
    }
}

/// Takes jobs off the queue and runs each in its own task, until the queue is closed and
/// drained and every task is done, or until `abort`.
async fn dispatch(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Job>,
    slots: Arc<Semaphore>,
    abort: Arc<Notify>,
) {
    let mut tasks = JoinSet::new();
    let mut open = true;
    loop {
        while let Some(res) = tasks.try_join_next() {
            report(res);
        }
        if !open && tasks.is_empty() {
            return;
        }
        tokio::select! {
            _ = abort.notified() => {
                tasks.abort_all();
                while let Some(res) = tasks.join_next().await {
                    report(res);
                }
                rx.close();
                // Jobs still queued: dropped unsettled, so counted failed.
                while rx.try_recv().is_ok() {}
                return;
            }
            Some(res) = tasks.join_next() => report(res),
            next = next_job(&mut rx, &slots), if open => match next {
                Some((job, slot)) => {
                    tasks.spawn(deliver(shared.clone(), job, slot));
                }
                None => open = false,
            },
        }
    }
}

/// A slot first, then a job: while every slot is taken, jobs wait in the bounded queue.
async fn next_job(
    rx: &mut mpsc::Receiver<Job>,
    slots: &Arc<Semaphore>,
) -> Option<(Job, OwnedSemaphorePermit)> {
    let slot = slots.clone().acquire_owned().await.ok()?;
    let job = rx.recv().await?;
    Some((job, slot))
}

fn report(res: Result<(), JoinError>) {
    if let Err(e) = res {
        if e.is_panic() {
            tracing::error!("push delivery task panicked");
        }
    }
}

/// Runs one delivery to its end: attempts, waits between them, counting and reporting.
async fn deliver(shared: Arc<Shared>, mut job: Job, _slot: OwnedSemaphorePermit) {
    let route = match job.route {
        Route::Provider => shared
            .provider
            .as_ref()
            .map_or("provider", |(p, _)| p.as_str()),
        Route::Webhook => "webhook",
    };
    let mut attempt: u32 = 1;
    loop {
        let result = {
            let _request = shared.requests.acquire().await.ok();
            shared.attempt(&job).await
        };
        let c = &shared.counters;
        let t = &job.target;
        match result {
            Attempt::Sent => {
                Counters::add(&c.sent, 1);
                tracing::debug!(route, user = %t.user_id, device = %t.device, key = %short_key(&t.key), attempt, "push sent");
                break;
            }
            Attempt::DeadKey(why) => {
                Counters::add(&c.dead_keys, 1);
                tracing::info!(route, user = %t.user_id, device = %t.device, key = %short_key(&t.key), %why, "push key is dead");
                let _ = shared.dead_keys.send(t.clone());
                break;
            }
            Attempt::Fail(why) => {
                Counters::add(&c.failed, 1);
                tracing::warn!(route, user = %t.user_id, device = %t.device, key = %short_key(&t.key), attempt, %why, "push failed");
                break;
            }
            Attempt::Retry { after, why } => {
                if attempt >= shared.max_attempts {
                    Counters::add(&c.failed, 1);
                    tracing::warn!(route, user = %t.user_id, device = %t.device, key = %short_key(&t.key), attempt, %why, "push failed: out of attempts");
                    break;
                }
                let wait = match after {
                    Some(after) if after > MAX_RETRY_AFTER => {
                        Counters::add(&c.failed, 1);
                        tracing::warn!(route, user = %t.user_id, device = %t.device, key = %short_key(&t.key), retry_after_s = after.as_secs(), %why, "push failed: Retry-After too far off");
                        break;
                    }
                    Some(after) => after,
                    None => backoff(shared.retry_base, attempt),
                };
                tracing::debug!(route, key = %short_key(&t.key), attempt, wait_ms = wait.as_millis() as u64, %why, "push retry");
                tokio::time::sleep(wait).await;
                attempt += 1;
                Counters::add(&c.retried, 1);
            }
        }
    }
    job.settled = true;
}

impl Shared {
    async fn attempt(&self, job: &Job) -> Attempt {
        match job.route {
            Route::Provider => match &self.provider {
                Some((_, ProviderClient::Fcm(fcm))) => {
                    fcm.send(&self.http, &job.target, &job.n).await
                }
                Some((_, ProviderClient::OneSignal(os))) => {
                    os.send(&self.http, &job.target, &job.n).await
                }
                None => Attempt::Fail("no push provider configured".into()),
            },
            Route::Webhook => match &self.webhook {
                Some(w) => {
                    let provider = self.provider.as_ref().map(|(p, _)| *p);
                    w.send(&self.http, provider, &job.target, &job.n).await
                }
                None => Attempt::Fail("no webhook configured".into()),
            },
        }
    }
}

/// The wait before attempt `attempt + 1`: `base · 2^(attempt-1)`, capped at [`RETRY_CAP`], then
/// a random point in its upper half.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(20);
    let step = base.saturating_mul(factor).min(RETRY_CAP);
    let half = step / 2;
    let jitter = rand::thread_rng().gen_range(0..=half.as_micros() as u64);
    half + Duration::from_micros(jitter)
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// 429 and 5xx are worth retrying (after `Retry-After` when given).
pub(crate) fn transient(status: StatusCode, headers: &HeaderMap) -> Option<Attempt> {
    (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()).then(|| Attempt::Retry {
        after: retry_after(headers),
        why: format!("HTTP {}", status.as_u16()),
    })
}

/// A request that got no response: retried, unless the request itself could not be built.
pub(crate) fn network_error(what: &str, e: reqwest::Error) -> Attempt {
    let e = e.without_url();
    if e.is_builder() {
        return Attempt::Fail(format!("{what}: {e}"));
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connect error"
    } else {
        "request error"
    };
    Attempt::Retry {
        after: None,
        why: format!("{what}: {kind}: {e}"),
    }
}

/// The response body, at most [`MAX_RESPONSE_BODY`] bytes of it (empty when unreadable).
pub(crate) async fn read_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_RESPONSE_BODY - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_RESPONSE_BODY {
            break;
        }
    }
    out
}

/// At most `max` characters of `s`, for logs.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The first 8 characters of a push key, for logs.
pub(crate) fn short_key(key: &str) -> String {
    clip(key, 8)
}
