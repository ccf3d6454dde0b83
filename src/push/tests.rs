//! Real HTTP servers on loopback stand in for FCM (and Google's token endpoint), OneSignal and a
//! webhook receiver; every test checks the exact requests they received. Nothing waits on a
//! clock: tests wait for requests to arrive (each server reports them on a channel), for dead
//! keys on the `dead_keys` channel, or for `Pusher::shutdown`, which returns once every
//! delivery has ended.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Router;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};

use super::*;

const CLIENT_EMAIL: &str = "vchat-push@vchat-test-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
const SEND_PATH: &str = "/v1/projects/vchat-test-project/messages:send";
/// Guard against a hang: how long a test waits for an event before failing.
const WAIT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/push")
        .join(name)
}

// ---- the stand-in servers ----

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path and query.
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: v.to_string(),
        }
    }

    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

type Responder = Box<dyn Fn(&Req) -> Reply + Send + Sync>;

struct MockState {
    respond: Responder,
    seen: mpsc::UnboundedSender<Req>,
    /// When set, each request is reported, then held until the test adds a permit.
    gate: Option<Arc<Semaphore>>,
}

struct Mock {
    base: String,
    seen: mpsc::UnboundedReceiver<Req>,
    gate: Option<Arc<Semaphore>>,
}

impl Mock {
    async fn start(respond: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Mock {
        Mock::start_with(Box::new(respond), None).await
    }

    /// A server that holds every request until [`Mock::release`].
    async fn gated(respond: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Mock {
        Mock::start_with(Box::new(respond), Some(Arc::new(Semaphore::new(0)))).await
    }

    async fn start_with(respond: Responder, gate: Option<Arc<Semaphore>>) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(MockState {
            respond,
            seen: tx,
            gate: gate.clone(),
        });
        let app = Router::new().fallback(handle).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Mock {
            base,
            seen: rx,
            gate,
        }
    }

    /// The next request (fails the test if none arrives).
    async fn next(&mut self) -> Req {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("no request arrived")
            .expect("server gone")
    }

    /// Requests seen and not yet taken with `next`.
    fn rest(&mut self) -> Vec<Req> {
        let mut out = Vec::new();
        while let Ok(r) = self.seen.try_recv() {
            out.push(r);
        }
        out
    }

    fn release(&self, n: usize) {
        self.gate.as_ref().expect("a gated server").add_permits(n);
    }
}

async fn handle(State(st): State<Arc<MockState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default()
        .to_vec();
    let req = Req {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let reply = (st.respond)(&req);
    let _ = st.seen.send(req);
    if let Some(gate) = &st.gate {
        gate.acquire().await.expect("gate open").forget();
    }
    let mut resp = Response::builder().status(reply.status);
    for (k, v) in reply.headers {
        resp = resp.header(k, v);
    }
    resp.body(Body::from(reply.body)).unwrap()
}

/// An FCM stand-in on one port: `/token` hands out `tok-1`, `tok-2`, … (expires_in 3599), and
/// `messages:send` requests are answered by `send`.
async fn fcm_mock(send: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Mock {
    fcm_mock_expiring(3599, send).await
}

async fn fcm_mock_expiring(
    expires_in: u64,
    send: impl Fn(&Req) -> Reply + Send + Sync + 'static,
) -> Mock {
    let issued = AtomicUsize::new(0);
    Mock::start(move |req| match req.path.as_str() {
        "/token" => {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::json(
                200,
                json!({"access_token": format!("tok-{n}"), "expires_in": expires_in, "token_type": "Bearer"}),
            )
        }
        SEND_PATH => send(req),
        _ => Reply::status(404),
    })
    .await
}

fn fcm_ok() -> Reply {
    Reply::json(
        200,
        json!({"name": "projects/vchat-test-project/messages/0:1500415314455276%31bd1c9631bd1c96"}),
    )
}

// ---- helpers ----

fn test_cfg() -> PushConfig {
    PushConfig {
        retry_base: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
        ..PushConfig::default()
    }
}

fn target(key: &str) -> PushTarget {
    PushTarget {
        user_id: "u-1".into(),
        device: "d-1".into(),
        key: key.into(),
    }
}

fn note(kind: PushKind) -> Arc<Notification> {
    Arc::new(Notification {
        kind,
        title: "Ann".into(),
        body: "hi there".into(),
        data: BTreeMap::from([
            ("chatId".to_string(), "c-1".to_string()),
            ("messageId".to_string(), "m-1".to_string()),
        ]),
    })
}

fn start(cfg: PushConfig) -> (Pusher, mpsc::UnboundedReceiver<PushTarget>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Pusher::start(cfg, tx).expect("a valid config"), rx)
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_file(name: &str, contents: &str) -> TempFile {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "vchat-push-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, contents).unwrap();
    TempFile(path)
}

/// The fixture service account, with `token_uri` (and any other field) replaced.
fn service_account(changes: Value) -> TempFile {
    let text = std::fs::read_to_string(fixture("service-account.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    for (k, val) in changes.as_object().unwrap() {
        v[k] = val.clone();
    }
    temp_file("service-account.json", &v.to_string())
}

fn fcm_cfg(server: &Mock, sa: &TempFile) -> PushConfig {
    PushConfig {
        provider: Some(Provider::Fcm),
        fcm_service_account: Some(sa.0.clone()),
        fcm_endpoint: server.base.clone(),
        ..test_cfg()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("percent escape"));
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// What Google's token endpoint checks: the form fields, the assertion's RS256 signature with the
/// service account's public key, and its claims.
fn verify_token_request(req: &Req, token_uri: &str) {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/token");
    assert_eq!(
        req.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let f = form(&req.body);
    assert_eq!(f.len(), 2, "grant_type and assertion only: {:?}", f.keys());
    assert_eq!(
        f["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );

    let public =
        DecodingKey::from_rsa_pem(&std::fs::read(fixture("fcm-test-key.pub.pem")).unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[token_uri]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let jwt = jsonwebtoken::decode::<Value>(&f["assertion"], &public, &validation)
        .expect("assertion signed with the service account's key, right iss/aud, not expired");
    assert_eq!(jwt.header.alg, Algorithm::RS256);
    assert_eq!(jwt.header.typ.as_deref(), Some("JWT"));
    assert_eq!(jwt.header.kid.as_deref(), Some(KEY_ID));
    let c = &jwt.claims;
    assert_eq!(
        c["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    let iat = c["iat"].as_u64().expect("iat");
    let exp = c["exp"].as_u64().expect("exp");
    assert_eq!(exp - iat, 3600, "one hour assertion");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat.abs_diff(now) < 300, "iat is now");
    assert_eq!(
        c.as_object().unwrap().len(),
        5,
        "iss, scope, aud, iat, exp: {c}"
    );
}

fn verify_fcm_send(req: &Req, key: &str, bearer: &str) {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, SEND_PATH);
    assert_eq!(req.header("authorization"), format!("Bearer {bearer}"));
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(
        req.json(),
        json!({
            "message": {
                "token": key,
                "notification": {"title": "Ann", "body": "hi there"},
                "data": {"chatId": "c-1", "messageId": "m-1"},
                "android": {"priority": "high"},
                "apns": {
                    "headers": {"apns-priority": "10"},
                    "payload": {"aps": {"sound": "default"}}
                }
            }
        })
    );
}

fn paths(reqs: &[Req]) -> Vec<&str> {
    reqs.iter().map(|r| r.path.as_str()).collect()
}

async fn next_dead(dead: &mut mpsc::UnboundedReceiver<PushTarget>) -> PushTarget {
    tokio::time::timeout(WAIT, dead.recv())
        .await
        .expect("no dead key reported")
        .expect("channel open")
}

// ---- FCM ----

#[tokio::test]
async fn fcm_exchanges_the_token_once_and_sends_the_documented_request() {
    let mut server = fcm_mock(|_| fcm_ok()).await;
    let token_uri = format!("{}/token", server.base);
    let sa = service_account(json!({ "token_uri": token_uri }));
    let (pusher, _dead) = start(fcm_cfg(&server, &sa));
    assert!(pusher.enabled());

    let n = pusher.enqueue(vec![target("fcm-token-1")], note(PushKind::Message));
    assert_eq!(n, 0);
    verify_token_request(&server.next().await, &token_uri);
    verify_fcm_send(&server.next().await, "fcm-token-1", "tok-1");

    // The second send reuses the cached access token: no second token request.
    assert_eq!(
        pusher.enqueue(vec![target("fcm-token-2")], note(PushKind::Message)),
        0
    );
    verify_fcm_send(&server.next().await, "fcm-token-2", "tok-1");

    pusher.shutdown(GRACE).await;
    assert_eq!(paths(&server.rest()), Vec::<&str>::new());
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 2,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn fcm_fetches_a_new_access_token_once_the_old_one_expires() {
    // expires_in 0: the token is stale as soon as it is used once.
    let mut server = fcm_mock_expiring(0, |_| fcm_ok()).await;
    let token_uri = format!("{}/token", server.base);
    let sa = service_account(json!({ "token_uri": token_uri }));
    let (pusher, _dead) = start(fcm_cfg(&server, &sa));

    pusher.enqueue(vec![target("fcm-token-1")], note(PushKind::Message));
    verify_token_request(&server.next().await, &token_uri);
    verify_fcm_send(&server.next().await, "fcm-token-1", "tok-1");
    pusher.enqueue(vec![target("fcm-token-1")], note(PushKind::Message));
    verify_token_request(&server.next().await, &token_uri);
    verify_fcm_send(&server.next().await, "fcm-token-1", "tok-2");

    pusher.shutdown(GRACE).await;
    assert_eq!(pusher.stats().sent, 2);
}

#[tokio::test]
async fn fcm_refreshes_the_access_token_once_after_a_401() {
    let mut server = fcm_mock(|req| {
        if req.header("authorization") == "Bearer tok-1" {
            Reply::json(
                401,
                json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
            )
        } else {
            fcm_ok()
        }
    })
    .await;
    // The fixture file as is (Google's token_uri), overridden by fcm_token_uri.
    let token_uri = format!("{}/token", server.base);
    let cfg = PushConfig {
        provider: Some(Provider::Fcm),
        fcm_service_account: Some(fixture("service-account.json")),
        fcm_token_uri: Some(token_uri.clone()),
        fcm_endpoint: server.base.clone(),
        ..test_cfg()
    };
    let (pusher, _dead) = start(cfg);
    pusher.enqueue(vec![target("fcm-token-1")], note(PushKind::Message));

    verify_token_request(&server.next().await, &token_uri);
    verify_fcm_send(&server.next().await, "fcm-token-1", "tok-1");
    verify_token_request(&server.next().await, &token_uri);
    verify_fcm_send(&server.next().await, "fcm-token-1", "tok-2");

    pusher.shutdown(GRACE).await;
    assert_eq!(paths(&server.rest()), Vec::<&str>::new());
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 1,
            ..PushStats::default()
        },
        "a token refresh is not a retry"
    );
}

#[tokio::test]
async fn fcm_unregistered_token_is_reported_dead_and_not_retried() {
    let mut server = fcm_mock(|_| {
        Reply::json(
            404,
            json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
                   "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
        )
    })
    .await;
    let sa = service_account(json!({ "token_uri": format!("{}/token", server.base) }));
    let (pusher, mut dead) = start(fcm_cfg(&server, &sa));
    pusher.enqueue(vec![target("gone-token")], note(PushKind::Call));

    assert_eq!(next_dead(&mut dead).await, target("gone-token"));
    pusher.shutdown(GRACE).await;
    assert_eq!(paths(&server.rest()), vec!["/token", SEND_PATH]);
    assert!(dead.try_recv().is_err(), "reported once");
    assert_eq!(
        pusher.stats(),
        PushStats {
            dead_keys: 1,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn fcm_invalid_registration_token_is_dead_but_other_400s_just_fail() {
    let mut server = fcm_mock(|req| {
        if req.json()["message"]["token"] == "malformed-token" {
            // FCM's documented answer for an invalid registration token.
            Reply::json(
                400,
                json!({"error": {"code": 400, "message": "The registration token is not a valid FCM registration token",
                       "status": "INVALID_ARGUMENT",
                       "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]}}),
            )
        } else {
            // An INVALID_ARGUMENT about the payload: the key is fine.
            Reply::json(
                400,
                json!({"error": {"code": 400, "message": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
                       "status": "INVALID_ARGUMENT",
                       "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                    "fieldViolations": [{"field": "message.data[0].value", "description": "Invalid value"}]}]}}),
            )
        }
    })
    .await;
    let sa = service_account(json!({ "token_uri": format!("{}/token", server.base) }));
    let (pusher, mut dead) = start(fcm_cfg(&server, &sa));
    pusher.enqueue(
        vec![target("malformed-token"), target("good-token")],
        note(PushKind::Message),
    );

    assert_eq!(next_dead(&mut dead).await, target("malformed-token"));
    pusher.shutdown(GRACE).await;
    assert!(dead.try_recv().is_err());
    let sends = server
        .rest()
        .into_iter()
        .filter(|r| r.path == SEND_PATH)
        .count();
    assert_eq!(sends, 2, "one request each, no retry");
    assert_eq!(
        pusher.stats(),
        PushStats {
            dead_keys: 1,
            failed: 1,
            ..PushStats::default()
        }
    );
}

// ---- OneSignal ----

const OS_APP_ID: &str = "5eb5a37e-b458-11e3-ac11-000c2940e62c";
const OS_KEY: &str = "os_v2_app_testkey";

fn onesignal_cfg(server: &Mock) -> PushConfig {
    PushConfig {
        provider: Some(Provider::OneSignal),
        onesignal_app_id: Some(OS_APP_ID.into()),
        onesignal_api_key: Some(OS_KEY.into()),
        onesignal_endpoint: format!("{}/notifications", server.base),
        ..test_cfg()
    }
}

#[tokio::test]
async fn onesignal_sends_the_documented_request() {
    let mut server = Mock::start(|_| {
        Reply::json(
            200,
            json!({"id": "b98881cc-1e94-4366-bbd9-db8f3429292b", "external_id": null}),
        )
    })
    .await;
    let (pusher, _dead) = start(onesignal_cfg(&server));
    let sub = "1dd608f2-c6a1-11e3-851d-000c2940e62c";
    pusher.enqueue(vec![target(sub)], note(PushKind::Call));

    let req = server.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/notifications");
    assert_eq!(req.header("authorization"), format!("Key {OS_KEY}"));
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("accept"), "application/json");
    assert_eq!(
        req.json(),
        json!({
            "app_id": OS_APP_ID,
            "include_subscription_ids": [sub],
            "headings": {"en": "Ann"},
            "contents": {"en": "hi there"},
            "data": {"chatId": "c-1", "messageId": "m-1"},
            "priority": 10
        })
    );
    pusher.shutdown(GRACE).await;
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 1,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn onesignal_invalid_ids_are_dead_keys_in_every_answer_shape() {
    let mut server = Mock::start(|req| {
        let key = req.json()["include_subscription_ids"][0]
            .as_str()
            .unwrap()
            .to_string();
        match key.as_str() {
            // Legacy shape: 200, no notification, the id listed as invalid.
            "legacy-dead" => Reply::json(
                200,
                json!({"id": "", "recipients": 0, "errors": {"invalid_player_ids": ["legacy-dead"]}}),
            ),
            // The id exists but is unsubscribed.
            "unsubscribed" => Reply::json(
                200,
                json!({"id": "", "recipients": 0, "errors": ["All included players are not subscribed"]}),
            ),
            // Older API versions answered 400 with the invalid ids.
            "rejected" => Reply::json(400, json!({"errors": {"invalid_player_ids": ["rejected"]}})),
            _ => Reply::json(200, json!({"id": "6f2c1b4e-0000-4000-8000-000000000001"})),
        }
    })
    .await;
    let (pusher, mut dead) = start(onesignal_cfg(&server));
    pusher.enqueue(
        vec![
            target("legacy-dead"),
            target("unsubscribed"),
            target("rejected"),
            target("alive"),
        ],
        note(PushKind::Message),
    );

    let mut got = HashSet::new();
    for _ in 0..3 {
        got.insert(next_dead(&mut dead).await.key);
    }
    pusher.shutdown(GRACE).await;
    assert_eq!(
        got,
        HashSet::from(["legacy-dead", "unsubscribed", "rejected"].map(String::from))
    );
    assert!(dead.try_recv().is_err());
    assert_eq!(server.rest().len(), 4, "one request per target, no retries");
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 1,
            dead_keys: 3,
            ..PushStats::default()
        }
    );
}

// ---- webhook ----

fn webhook_cfg(server: &Mock, secret: Option<&str>) -> PushConfig {
    PushConfig {
        webhook_url: Some(format!("{}/hooks/push?tenant=a", server.base)),
        webhook_secret: secret.map(String::from),
        ..test_cfg()
    }
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn webhook_gets_the_documented_body_signed_with_hmac_sha256() {
    let mut server = Mock::start(|_| Reply::status(204)).await;
    let (pusher, _dead) = start(webhook_cfg(&server, Some("whsec-test")));
    assert!(pusher.enabled());
    pusher.enqueue(vec![target("any-key-123456789")], note(PushKind::Call));

    let req = server.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hooks/push?tenant=a");
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(
        req.json(),
        json!({
            "kind": "call",
            "provider": null,
            "userId": "u-1",
            "device": "d-1",
            "pushKey": "any-key-123456789",
            "title": "Ann",
            "body": "hi there",
            "data": {"chatId": "c-1", "messageId": "m-1"}
        })
    );
    assert_eq!(
        req.header("x-vchat-signature"),
        format!("sha256={}", hmac_hex(b"whsec-test", &req.body))
    );
    assert_eq!(
        webhook_signature(b"whsec-test", &req.body),
        req.header("x-vchat-signature")
    );
    pusher.shutdown(GRACE).await;
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 1,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn webhook_gets_every_notification_whatever_the_provider() {
    let mut onesignal = Mock::start(|_| Reply::json(200, json!({"id": "n-1"}))).await;
    let mut hook = Mock::start(|_| Reply::status(200)).await;
    let cfg = PushConfig {
        webhook_url: Some(format!("{}/hook", hook.base)),
        ..onesignal_cfg(&onesignal)
    };
    let (pusher, _dead) = start(cfg);
    // The second device has no push key: no provider delivery, but the webhook still hears of it.
    let keyless = PushTarget {
        device: "d-2".into(),
        ..target("")
    };
    pusher.enqueue(vec![target("sub-1"), keyless], note(PushKind::Message));

    let reqs = [hook.next().await, hook.next().await];
    assert!(
        reqs.iter()
            .all(|r| r.header("x-vchat-signature").is_empty()),
        "no secret, no signature"
    );
    let mut hooked: Vec<Value> = reqs.iter().map(Req::json).collect();
    hooked.sort_by_key(|v| v["device"].as_str().unwrap().to_string());
    assert_eq!(hooked[0]["provider"], "oneSignal");
    assert_eq!(hooked[0]["pushKey"], "sub-1");
    assert_eq!(hooked[0]["kind"], "message");
    assert_eq!(hooked[1]["device"], "d-2");
    assert_eq!(hooked[1]["pushKey"], "");
    assert_eq!(
        onesignal.next().await.json()["include_subscription_ids"],
        json!(["sub-1"])
    );

    pusher.shutdown(GRACE).await;
    assert!(onesignal.rest().is_empty() && hook.rest().is_empty());
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 3,
            ..PushStats::default()
        }
    );
}

// ---- retry policy ----

/// A webhook server answering with `statuses` in turn, then 200.
async fn scripted(statuses: Vec<Reply>) -> Mock {
    let script = std::sync::Mutex::new(std::collections::VecDeque::from(statuses));
    Mock::start(move |_| {
        script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Reply::status(200))
    })
    .await
}

#[tokio::test]
async fn server_error_then_success_is_delivered_once_after_one_retry() {
    let mut server = scripted(vec![Reply::status(500)]).await;
    let (pusher, _dead) = start(webhook_cfg(&server, Some("s")));
    pusher.enqueue(vec![target("k")], note(PushKind::Message));

    let first = server.next().await;
    let second = server.next().await;
    assert_eq!(first.body, second.body, "the same delivery, resent");
    assert_eq!(
        first.header("x-vchat-signature"),
        second.header("x-vchat-signature")
    );
    pusher.shutdown(GRACE).await;
    assert!(server.rest().is_empty());
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 1,
            retried: 1,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn retry_after_is_honoured_instead_of_the_backoff() {
    let mut server = scripted(vec![Reply::status(429).header("retry-after", "0")]).await;
    // A backoff of an hour: only Retry-After: 0 lets the retry happen within the test.
    let cfg = PushConfig {
        retry_base: Duration::from_secs(3600),
        ..webhook_cfg(&server, None)
    };
    let (pusher, _dead) = start(cfg);
    pusher.enqueue(vec![target("k")], note(PushKind::Message));

    server.next().await;
    server.next().await;
    pusher.shutdown(GRACE).await;
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 1,
            retried: 1,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn client_error_fails_without_retry() {
    let mut server = scripted(vec![Reply::status(400)]).await;
    let (pusher, _dead) = start(webhook_cfg(&server, None));
    pusher.enqueue(vec![target("k")], note(PushKind::Message));

    server.next().await;
    pusher.shutdown(GRACE).await;
    assert!(server.rest().is_empty(), "no second attempt");
    assert_eq!(
        pusher.stats(),
        PushStats {
            failed: 1,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut server = scripted(vec![Reply::status(307).header("location", "/elsewhere")]).await;
    let (pusher, _dead) = start(webhook_cfg(&server, Some("s")));
    pusher.enqueue(vec![target("k")], note(PushKind::Message));

    server.next().await;
    pusher.shutdown(GRACE).await;
    assert!(server.rest().is_empty(), "not followed, not retried");
    assert_eq!(pusher.stats().failed, 1);
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let mut server = Mock::start(|_| Reply::status(503)).await;
    let cfg = PushConfig {
        max_attempts: 3,
        ..webhook_cfg(&server, None)
    };
    let (pusher, _dead) = start(cfg);
    pusher.enqueue(vec![target("k")], note(PushKind::Message));

    pusher.shutdown(GRACE).await;
    assert_eq!(server.rest().len(), 3);
    assert_eq!(
        pusher.stats(),
        PushStats {
            failed: 1,
            retried: 2,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn connection_errors_are_retried() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = PushConfig {
        webhook_url: Some(format!("http://{addr}/hook")),
        max_attempts: 2,
        ..test_cfg()
    };
    let (pusher, _dead) = start(cfg);
    pusher.enqueue(vec![target("k")], note(PushKind::Message));

    pusher.shutdown(GRACE).await;
    assert_eq!(
        pusher.stats(),
        PushStats {
            failed: 1,
            retried: 1,
            ..PushStats::default()
        }
    );
}

// ---- queue ----

#[tokio::test]
async fn full_queue_drops_and_counts() {
    let mut server = Mock::gated(|_| Reply::status(200)).await;
    let cfg = PushConfig {
        queue_capacity: 1,
        concurrency: 1,
        ..webhook_cfg(&server, None)
    };
    let (pusher, _dead) = start(cfg);

    assert_eq!(
        pusher.enqueue(vec![target("k-1")], note(PushKind::Message)),
        0
    );
    // k-1 is in flight, held by the server; it holds the only delivery slot.
    assert_eq!(server.next().await.json()["pushKey"], "k-1");
    // k-2 fits in the queue; k-3 and k-4 do not.
    let dropped = pusher.enqueue(
        vec![target("k-2"), target("k-3"), target("k-4")],
        note(PushKind::Message),
    );
    assert_eq!(dropped, 2);
    assert_eq!(pusher.stats().dropped, 2);

    server.release(2);
    assert_eq!(server.next().await.json()["pushKey"], "k-2");
    pusher.shutdown(GRACE).await;
    assert!(server.rest().is_empty());

    // After shutdown nothing is taken.
    assert_eq!(
        pusher.enqueue(vec![target("k-5")], note(PushKind::Message)),
        1
    );
    assert_eq!(
        pusher.stats(),
        PushStats {
            sent: 2,
            dropped: 3,
            ..PushStats::default()
        }
    );
}

#[tokio::test]
async fn shutdown_abandons_what_the_grace_does_not_cover() {
    let mut server = Mock::gated(|_| Reply::status(200)).await;
    let cfg = PushConfig {
        concurrency: 1,
        ..webhook_cfg(&server, None)
    };
    let (pusher, _dead) = start(cfg);
    pusher.enqueue(vec![target("k-1"), target("k-2")], note(PushKind::Message));
    server.next().await;

    // The server never answers: both deliveries are still open when the grace runs out.
    pusher.shutdown(Duration::from_millis(50)).await;
    assert_eq!(
        pusher.stats(),
        PushStats {
            failed: 2,
            ..PushStats::default()
        }
    );
    pusher.shutdown(GRACE).await; // a second call returns at once
}

#[tokio::test]
async fn nothing_configured_means_disabled() {
    let (pusher, _dead) = start(PushConfig::default());
    assert!(!pusher.enabled());
    assert_eq!(
        pusher.enqueue(vec![target("k")], note(PushKind::Message)),
        0
    );
    pusher.shutdown(GRACE).await;
    assert_eq!(pusher.stats(), PushStats::default());
}

// ---- configuration ----

#[tokio::test]
async fn bad_configs_are_refused_with_a_reason() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let refuse = |cfg: PushConfig| match Pusher::start(cfg, tx.clone()) {
        Ok(_) => panic!("config accepted"),
        Err(e) => {
            assert!(!e.contains("PRIVATE KEY"), "no key material in errors: {e}");
            e
        }
    };
    let fcm = |path: PathBuf| PushConfig {
        provider: Some(Provider::Fcm),
        fcm_service_account: Some(path),
        ..PushConfig::default()
    };

    let e = refuse(fcm("/nonexistent/vchat/service-account.json".into()));
    assert!(e.contains("cannot read FCM service account"), "{e}");

    let malformed = temp_file(
        "malformed.json",
        r#"{"type": "service_account", "project_id": "#,
    );
    let e = refuse(fcm(malformed.0.clone()));
    assert!(e.contains("not a service-account JSON file"), "{e}");

    let no_key = service_account(json!({ "private_key": null }));
    let e = refuse(fcm(no_key.0.clone()));
    assert!(e.contains("has no private_key"), "{e}");

    let bad_key = service_account(
        json!({ "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" }),
    );
    let e = refuse(fcm(bad_key.0.clone()));
    assert!(e.contains("private_key"), "{e}");

    let wrong_type = service_account(json!({ "type": "authorized_user" }));
    let e = refuse(fcm(wrong_type.0.clone()));
    assert!(e.contains("service_account"), "{e}");

    let e = refuse(PushConfig {
        provider: Some(Provider::Fcm),
        ..PushConfig::default()
    });
    assert!(e.contains("fcm_service_account"), "{e}");

    let e = refuse(PushConfig {
        onesignal_app_id: Some(OS_APP_ID.into()),
        ..PushConfig::default()
    });
    assert!(e.contains("onesignal_api_key is not"), "{e}");

    let e = refuse(PushConfig {
        onesignal_api_key: Some(OS_KEY.into()),
        onesignal_app_id: Some(String::new()),
        ..PushConfig::default()
    });
    assert!(e.contains("onesignal_app_id is not"), "{e}");

    let e = refuse(PushConfig {
        provider: Some(Provider::OneSignal),
        ..PushConfig::default()
    });
    assert!(e.contains("onesignal_app_id and onesignal_api_key"), "{e}");

    for url in ["not a url", "ftp://example.com/hook"] {
        let e = refuse(PushConfig {
            webhook_url: Some(url.into()),
            ..PushConfig::default()
        });
        assert!(e.contains("webhook_url"), "{e}");
    }

    let e = refuse(PushConfig {
        queue_capacity: 0,
        ..PushConfig::default()
    });
    assert!(e.contains("queue_capacity"), "{e}");

    // The fixture itself is a valid service account.
    let ok = Pusher::start(fcm(fixture("service-account.json")), tx.clone()).expect("valid");
    assert!(ok.enabled());
}

// ---- small pieces ----

#[test]
fn pusher_can_be_shared_and_config_debug_hides_secrets() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Pusher>();
    let cfg = PushConfig {
        onesignal_api_key: Some("os-secret-key".into()),
        webhook_secret: Some("hook-secret".into()),
        ..PushConfig::default()
    };
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains("os-secret-key") && !shown.contains("hook-secret"),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"));
}

#[test]
fn provider_names() {
    assert_eq!("FCM".parse::<Provider>(), Ok(Provider::Fcm));
    assert_eq!("onesignal".parse::<Provider>(), Ok(Provider::OneSignal));
    assert_eq!("oneSignal".parse::<Provider>(), Ok(Provider::OneSignal));
    assert!("apns".parse::<Provider>().is_err());
    assert_eq!(Provider::OneSignal.as_str(), "oneSignal");
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let base = Duration::from_secs(1);
    for _ in 0..100 {
        let first = backoff(base, 1);
        assert!(
            first >= Duration::from_millis(500) && first <= base,
            "{first:?}"
        );
        let third = backoff(base, 3);
        assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4));
        let late = backoff(base, 40);
        assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
    }
}

#[test]
fn retry_after_takes_seconds_or_a_date() {
    let mut h = HeaderMap::new();
    assert_eq!(retry_after(&h), None);
    h.insert("retry-after", "7".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    h.insert(
        "retry-after",
        "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
    );
    assert_eq!(retry_after(&h), Some(Duration::ZERO), "a past date: now");
    h.insert("retry-after", "soon".parse().unwrap());
    assert_eq!(retry_after(&h), None);
}

#[test]
fn keys_are_shortened_for_logs() {
    assert_eq!(short_key("abcdefghijklmnop"), "abcdefgh…");
    assert_eq!(short_key("abc"), "abc");
    assert_eq!(short_key("ééééééééé"), "éééééééé…");
}
