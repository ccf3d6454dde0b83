//! Push through the real server to real HTTP servers on loopback that stand in for FCM,
//! OneSignal and a webhook, each checking the request its provider documents: a message to a
//! user with no live socket wakes their phone, a call rings it, a dead key is forgotten.

mod common;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// One request a provider stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

type Answer = Arc<dyn Fn(&Seen) -> (u16, Value) + Send + Sync>;

#[derive(Clone)]
struct Recorder {
    tx: mpsc::UnboundedSender<Seen>,
    answer: Answer,
}

/// A provider stand-in: every request is reported on the channel and answered by `answer`.
async fn provider(answer: Answer) -> (String, mpsc::UnboundedReceiver<Seen>) {
    async fn handle(
        State(r): State<Recorder>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let seen = Seen {
            method,
            path: uri.to_string(),
            headers,
            body,
        };
        let (status, reply) = (r.answer)(&seen);
        let _ = r.tx.send(seen);
        (StatusCode::from_u16(status).unwrap(), axum::Json(reply)).into_response()
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Recorder { tx, answer });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the provider was called")
        .expect("provider running")
}

/// The next push. In a cluster each node exchanges its own FCM token the first time it pushes,
/// so token requests from the other nodes are passed over.
async fn next_push(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    loop {
        let s = next(rx).await;
        if common::cluster::spread_nodes() > 1 && s.path == "/token" {
            continue;
        }
        return s;
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/push/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// FCM's two endpoints: the OAuth2 token exchange and messages:send (UNREGISTERED for one key).
fn fcm_answer() -> Answer {
    Arc::new(|s: &Seen| {
        if s.path == "/token" {
            return (
                200,
                json!({"access_token": "at-1", "expires_in": 3600, "token_type": "Bearer"}),
            );
        }
        let token = s.json()["message"]["token"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if token == "dead-key" {
            return (
                404,
                json!({"error": {"code": 404, "message": "Requested entity was not found.",
                    "status": "NOT_FOUND", "details": [{
                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": "UNREGISTERED"}]}}),
            );
        }
        (
            200,
            json!({"name": "projects/vchat-test-project/messages/1"}),
        )
    })
}

async fn send(api: &Api, t: &str, room: &str, local: &str, text: &str) -> Value {
    api.post(
        &format!("channel/{room}/message/"),
        t,
        json!({"content": text, "localId": local, "messageType": "text"}),
    )
    .await
    .ok()
}

#[tokio::test]
async fn fcm_wakes_a_sleeping_phone_for_messages_and_calls_and_forgets_dead_keys() {
    let (fcm, mut seen) = provider(fcm_answer()).await;
    let server = TestServer::start_with(&[
        ("VCHAT_PUSH_PROVIDER", "fcm"),
        (
            "VCHAT_FCM_SERVICE_ACCOUNT",
            &fixture("service-account.json"),
        ),
        ("VCHAT_FCM_ENDPOINT", &fcm),
        ("VCHAT_FCM_TOKEN_URI", &format!("{fcm}/token")),
    ]);
    let api = server.api();
    let (a, b, c) = (
        token("alice", Some("a1")),
        token("bob", Some("b1")),
        token("carol", Some("c1")),
    );
    api.post("profile/push", &b, json!({"pushKey": "bob-key"}))
        .await
        .ok();
    api.post("profile/push", &c, json!({"pushKey": "dead-key"}))
        .await
        .ok();
    let room = api.peer_room(&a, "bob").await;

    // Bob has no socket: his phone is woken.
    let sent = send(&api, &a, &room, "l1", "hello bob").await;
    let tok = next(&mut seen).await;
    assert_eq!((tok.method.as_str(), tok.path.as_str()), ("POST", "/token"));
    let form = String::from_utf8(tok.body.to_vec()).unwrap();
    assert!(form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"));
    let push = next(&mut seen).await;
    assert_eq!(push.path, "/v1/projects/vchat-test-project/messages:send");
    assert_eq!(push.header("authorization"), "Bearer at-1");
    let m = &push.json()["message"];
    assert_eq!(m["token"], "bob-key");
    assert_eq!(
        m["notification"],
        json!({"title": "Alice Name", "body": "hello bob"})
    );
    assert_eq!(m["data"]["fromVChat"], "1");
    let v: Value =
        serde_json::from_str(m["data"]["vMessage"].as_str().expect("a JSON string")).unwrap();
    assert_eq!(v, sent, "the full message, as the SDK parses it");
    assert_eq!(m["android"]["priority"], "high");

    // Bob online: the socket event is enough, nothing is pushed.
    let d = Driver::new(&server).await;
    let sb = d.connect("b", &b).await;
    send(&api, &a, &room, "l2", "you are here").await;
    assert_eq!(server.metric("vchat_push_enqueued_total").await, 1.0);
    sb.close().await;
    server.wait_metric("vchat_sockets", |v| v == 0.0).await;

    // A call rings a sleeping phone.
    let meet = api
        .post(&format!("call/create/{room}"), &a, json!({}))
        .await
        .ok()["meetId"]
        .as_str()
        .unwrap()
        .to_string();
    let ring = next_push(&mut seen).await;
    let m = &ring.json()["message"];
    assert_eq!(m["notification"]["body"], "📞 Incoming call");
    assert_eq!(m["notification"]["title"], "Alice Name");
    assert_eq!(m["data"]["type"], "vchatCall");
    assert_eq!(m["data"]["meetId"], meet.as_str());
    assert!(
        m["data"].get("fromVChat").is_none(),
        "not a message: the SDK would parse it as one"
    );

    // A key FCM calls dead is forgotten: the next message does not try it.
    let rc = api.peer_room(&a, "carol").await;
    send(&api, &a, &rc, "l3", "hi carol").await;
    let dead = next_push(&mut seen).await;
    assert_eq!(dead.json()["message"]["token"], "dead-key");
    server
        .wait_metric("vchat_push_keys_dropped_total", |v| v == 1.0)
        .await;
    assert_eq!(server.metric("vchat_push_dead_keys_total").await, 1.0);
    let db = server.db().await;
    let key: Option<String> =
        sqlx::query_scalar("SELECT push_key FROM devices WHERE user_id = 'carol'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(key, None);
    let before = server.metric("vchat_push_enqueued_total").await;
    send(&api, &a, &rc, "l4", "still there?").await;
    assert_eq!(server.metric("vchat_push_enqueued_total").await, before);
    assert_eq!(server.metric("vchat_push_sent_total").await, 2.0);
}

#[tokio::test]
async fn onesignal_gets_the_documented_request() {
    let (os, mut seen) = provider(Arc::new(|_: &Seen| {
        (200, json!({"id": "b98881cc-1e94-4366-bbd9-db8f3429292b"}))
    }))
    .await;
    let server = TestServer::start_with(&[
        ("VCHAT_PUSH_PROVIDER", "onesignal"),
        ("VCHAT_ONESIGNAL_APP_ID", "app-123"),
        ("VCHAT_ONESIGNAL_API_KEY", "os-key"),
        ("VCHAT_ONESIGNAL_ENDPOINT", &format!("{os}/notifications")),
    ]);
    let api = server.api();
    let (a, b) = (token("alice", Some("a1")), token("bob", Some("b1")));
    api.post("profile/push", &b, json!({"pushKey": "bob-player"}))
        .await
        .ok();
    let room = api.peer_room(&a, "bob").await;
    send(&api, &a, &room, "l1", "hello").await;
    let req = next(&mut seen).await;
    assert_eq!(req.path, "/notifications");
    assert_eq!(req.header("authorization"), "Key os-key");
    let body = req.json();
    assert_eq!(body["app_id"], "app-123");
    assert_eq!(body["include_subscription_ids"], json!(["bob-player"]));
    assert_eq!(body["headings"]["en"], "Alice Name");
    assert_eq!(body["contents"]["en"], "hello");
    assert_eq!(body["data"]["fromVChat"], "1");
    assert!(body["data"]["vMessage"].is_string());
}

#[tokio::test]
async fn the_webhook_gets_every_push_signed() {
    let (hook, mut seen) = provider(Arc::new(|_: &Seen| (200, json!({})))).await;
    let server = TestServer::start_with(&[
        ("VCHAT_PUSH_WEBHOOK_URL", &format!("{hook}/push")),
        ("VCHAT_PUSH_WEBHOOK_SECRET", "hook-secret"),
    ]);
    let api = server.api();
    let (a, b) = (token("alice", Some("a1")), token("bob", None));
    api.post("profile/push", &b, json!({"pushKey": "k-9"}))
        .await
        .ok();
    let g = api
        .post(
            "channel/group",
            &a,
            json!({"groupName": "Team", "identifiers": ["bob"]}),
        )
        .await
        .ok();
    let room = g["rId"].as_str().unwrap().to_string();
    // The group's creation note is a message too: bob is pushed for it, then for the text.
    let first = next(&mut seen).await;
    assert_eq!(first.json()["title"], "Team");
    send(&api, &a, &room, "l1", "standup?").await;
    let req = next(&mut seen).await;
    assert_eq!(req.path, "/push");
    let sig = req.header("x-vchat-signature");
    assert_eq!(
        sig,
        vchat_signal::push::webhook_signature(b"hook-secret", &req.body),
        "HMAC-SHA256 of the exact body"
    );
    let body = req.json();
    assert_eq!(body["kind"], "message");
    assert_eq!(body["userId"], "bob");
    assert_eq!(body["device"], "default");
    assert_eq!(body["pushKey"], "k-9");
    assert_eq!(body["title"], "Team", "a group is titled by its name");
    assert_eq!(body["body"], "standup?");
    assert_eq!(body["data"]["fromVChat"], "1");
}

/// A member who muted a room gets no push for it; after un-muting, pushes come again.
#[tokio::test]
async fn a_muted_room_wakes_nobody() {
    let (hook, mut seen) = provider(Arc::new(|_: &Seen| (200, json!({})))).await;
    let server = TestServer::start_with(&[("VCHAT_PUSH_WEBHOOK_URL", &format!("{hook}/push"))]);
    let api = server.api();
    let (a, b) = (token("alice", Some("a1")), token("bob", None));
    api.post("profile/push", &b, json!({"pushKey": "k-1"}))
        .await
        .ok();
    let room = api.peer_room(&a, "bob").await;
    let muted = api
        .patch(
            &format!("channel/{room}/notification"),
            &b,
            json!({"isMuted": true}),
        )
        .await
        .ok();
    assert_eq!(muted, json!(true));
    send(&api, &a, &room, "m1", "muted?").await;
    api.patch(
        &format!("channel/{room}/notification/un-mute"),
        &b,
        json!({}),
    )
    .await
    .ok();
    send(&api, &a, &room, "m2", "back").await;
    // Pushes leave in order: had the first been pushed, it would come first.
    let req = next(&mut seen).await;
    assert_eq!(req.json()["body"], "back");
}
