//! Abuse limits, each configurable, each with a clear refusal: ringing, unanswered calls,
//! messages, socket events (and floods), requests and sockets per address, sockets per user.
//! A refused token stays 450 under any limit. And the defaults let normal use through.

mod common;

use common::*;
use serde_json::{json, Value};

/// The harness turns the limits off; `""` gives a variable back to the server's default.
const DEFAULTS: [(&str, &str); 5] = [
    ("VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND", ""),
    ("VCHAT_MAX_SOCKETS_PER_ADDRESS", ""),
    ("VCHAT_MAX_CALLS_PER_MINUTE", ""),
    ("VCHAT_MAX_UNANSWERED_CALLS", ""),
    ("VCHAT_MAX_MESSAGES_PER_10S", ""),
];

async fn limited(server: &TestServer, reason: &str) -> f64 {
    server
        .metric(&format!("vchat_limited_total{{reason=\"{reason}\"}}"))
        .await
}

async fn create(api: &Api, t: &str, room: &str) -> Reply {
    api.post(&format!("call/create/{room}"), t, json!({})).await
}

fn meet(r: Reply) -> String {
    r.ok()["meetId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ringing_is_limited_per_minute_and_after_unanswered_calls() {
    let server = TestServer::start_with(&[
        ("VCHAT_MAX_CALLS_PER_MINUTE", "3"),
        ("VCHAT_MAX_UNANSWERED_CALLS", "0"),
    ]);
    let api = server.api();
    let (a, b, c) = (
        token("alice", None),
        token("bob", None),
        token("carol", None),
    );
    for t in [&b, &c] {
        api.touch(t).await;
    }
    let ab = api.peer_room(&a, "bob").await;
    for _ in 0..3 {
        let m = meet(create(&api, &a, &ab).await);
        api.post(&format!("call/cancel/{m}"), &a, json!({}))
            .await
            .ok();
    }
    let refused = create(&api, &a, &ab).await.err(429);
    assert!(refused.contains("too many calls"), "{refused}");
    assert_eq!(limited(&server, "calls_per_minute").await, 1.0);
    // Per caller: carol still rings bob.
    let cb = api.peer_room(&c, "bob").await;
    meet(create(&api, &c, &cb).await);

    let server = TestServer::start_with(&[("VCHAT_MAX_UNANSWERED_CALLS", "2")]);
    let api = server.api();
    for t in [&b, &c] {
        api.touch(t).await;
    }
    let ab = api.peer_room(&a, "bob").await;
    let ac = api.peer_room(&a, "carol").await;
    // Two unanswered calls in a row to bob (one he rejects, one alice gives up on).
    let m = meet(create(&api, &a, &ab).await);
    api.post(&format!("call/reject/{m}"), &b, json!({}))
        .await
        .ok();
    let m = meet(create(&api, &a, &ab).await);
    api.post(&format!("call/cancel/{m}"), &a, json!({}))
        .await
        .ok();
    let refused = create(&api, &a, &ab).await.err(429);
    assert!(
        refused.contains("unanswered") && refused.contains("min"),
        "{refused}"
    );
    assert_eq!(limited(&server, "unanswered_calls").await, 1.0);
    // Only towards bob, and bob may call back.
    let m = meet(create(&api, &a, &ac).await);
    api.post(&format!("call/cancel/{m}"), &a, json!({}))
        .await
        .ok();
    let m = meet(create(&api, &b, &ab).await);
    api.post(&format!("call/cancel/{m}"), &b, json!({}))
        .await
        .ok();
    // An answered call starts the count over.
    let m = meet(create(&api, &a, &ac).await);
    api.post(&format!("call/accept/{m}"), &c, json!({}))
        .await
        .ok();
    api.post(&format!("call/end/{m}"), &c, json!({})).await.ok();
    let m = meet(create(&api, &a, &ac).await);
    api.post(&format!("call/cancel/{m}"), &a, json!({}))
        .await
        .ok();
    meet(create(&api, &a, &ac).await);
}

#[tokio::test]
async fn messages_are_limited_per_user() {
    if common::cluster::single_node_only("rate limits count per node") {
        return;
    }
    let server = TestServer::start_with(&[("VCHAT_MAX_MESSAGES_PER_10S", "5")]);
    let api = server.api();
    let (a, b) = (token("alice", None), token("bob", None));
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    let send = |t: String, l: String| {
        let api = server.api();
        let room = room.clone();
        async move {
            api.post(
                &format!("channel/{room}/message/"),
                &t,
                json!({"content": "x", "localId": l, "messageType": "text"}),
            )
            .await
        }
    };
    for i in 0..5 {
        send(a.clone(), format!("a{i}")).await.ok();
    }
    let refused = send(a.clone(), "a5".into()).await.err(429);
    assert!(refused.contains("too many messages"), "{refused}");
    send(b.clone(), "b0".into()).await.ok();
    assert_eq!(limited(&server, "messages_per_10s").await, 1.0);
    let page = api
        .get(&format!("channel/{room}/message/?limit=20"), &a)
        .await
        .ok();
    assert_eq!(
        page["docs"].as_array().unwrap().len(),
        6,
        "the refused one was not stored"
    );
}

#[tokio::test]
async fn socket_events_over_the_rate_are_refused_and_a_flood_is_disconnected() {
    let server = TestServer::start_with(&[("VCHAT_MAX_EVENTS_PER_SECOND", "5")]);
    let d = Driver::new(&server).await;
    let mut s = d.connect("s", &token("alice", None)).await;
    let poll = json!([{"peerId": "x", "extra": "y"}]);
    for _ in 0..20 {
        s.emit("v1MyOnline", &poll).await;
    }
    let e = s.expect("v1OnException").await;
    assert!(
        e["error"].as_str().unwrap().contains("too many events"),
        "{e}"
    );
    server
        .wait_metric("vchat_limited_total{reason=\"socket_events\"}", |v| {
            v >= 10.0
        })
        .await;
    // Far over the rate for long enough: the socket is closed.
    for _ in 0..400 {
        s.emit("v1MyOnline", &poll).await;
    }
    s.expect_disconnect().await;
    assert!(limited(&server, "socket_event_flood").await >= 1.0);
    // Others are not affected.
    let mut other = d.connect("other", &token("bob", None)).await;
    other.fence().await;
}

/// Each socket's events run one at a time from its inbox (256 deep). A client that sends faster
/// than its events can run gets each event past the inbox refused with an exception, none lost
/// silently, and keeps its socket.
#[tokio::test]
async fn events_past_a_full_inbox_are_refused_one_by_one() {
    let server = TestServer::start_with(&[("VCHAT_MAX_EVENTS_PER_SECOND", "0")]);
    let api = server.api();
    let (a, b) = (token("alice", None), token("bob", None));
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    let body = json!({"content": "hi", "localId": "l1", "messageType": "text"});
    api.post(&format!("channel/{room}/message/"), &b, body)
        .await
        .ok();
    let d = Driver::new(&server).await;
    let mut s = d.connect("alice", &a).await;
    // Entering the room marks bob's message seen: a write, which waits while writes are held,
    // so the first event holds the inbox and the next 256 wait behind it.
    let blocker = server.block_writes().await;
    // Refusals are emitted as they happen, into the socket's outgoing buffer (1,024 events);
    // past that, under a flood from a client that does not read, they are dropped (and
    // counted). This sends well under that past the inbox, so each one must arrive.
    const SENT: usize = 320;
    const DEPTH: usize = 256;
    for _ in 0..SENT {
        s.emit("v1EnterChatRoom", &json!({ "roomId": room })).await;
    }
    let in_flight = |e: &Value| {
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("too many events in flight"))
    };
    for _ in 0..SENT - DEPTH - 1 {
        let e = s.expect("v1OnException").await;
        assert!(in_flight(&e), "{e}");
    }
    blocker.release().await;
    // The events that were let in run (the metric counts events run); then the socket works
    // again, and there was at most one more refusal (if all 257 arrived before the first ran).
    server
        .wait_metric("vchat_socket_events_total", |v| v >= DEPTH as f64)
        .await;
    let later = s.drain("v1OnException").await;
    assert!(later.len() <= 1 && later.iter().all(in_flight), "{later:?}");
    let refused = SENT - DEPTH - 1 + later.len();
    assert_eq!(
        server.metric("vchat_socket_events_total").await as usize + refused,
        SENT + 1,
        "each event ran or was refused (the +1 is the fence)"
    );
}

async fn burst(server: &TestServer, n: usize, t: &str, xff: Option<&str>) -> Vec<(u16, Value)> {
    let http = reqwest::Client::new();
    let futs: Vec<_> = (0..n)
        .map(|_| {
            let mut r = http
                .get(format!("{}/api/v2/call/active", server.url))
                .header("authorization", format!("Bearer {t}"));
            if let Some(x) = xff {
                r = r.header("x-forwarded-for", x);
            }
            async move {
                let resp = r.send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap())
            }
        })
        .collect();
    // All at once, as a flood would come.
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn requests_per_address_are_slowed_then_refused_but_a_bad_token_stays_450() {
    let server = TestServer::start_with(&[("VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND", "10")]);
    let t = token("alice", None);
    let answers = burst(&server, 80, &t, None).await;
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!refused.is_empty(), "80 at once from one address");
    assert!(answers.iter().all(|(s, _)| *s == 200 || *s == 429));
    for (_, body) in &refused {
        assert_eq!(body["code"], 429);
        assert!(body["data"].as_str().unwrap().contains("too many requests"));
    }
    // Over the limit, a refused token is still told 450, never 429.
    let bad = token_exp("alice", None, vchat_signal::auth::now_unix() - 600);
    let answers = burst(&server, 30, &bad, None).await;
    assert!(answers.iter().all(|(s, _)| *s == 450), "{answers:?}");
    let none = reqwest::get(format!("{}/api/v2/call/history", server.url))
        .await
        .unwrap();
    assert_eq!(none.status(), 450);
    assert!(limited(&server, "requests_per_address").await >= 1.0);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let t = token("alice", None);
    let trusting = TestServer::start_with(&[
        ("VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND", "5"),
        ("VCHAT_TRUSTED_PROXIES", "127.0.0.0/8"),
    ]);
    let first = burst(&trusting, 40, &t, Some("198.51.100.1")).await;
    assert!(first.iter().any(|(s, _)| *s == 429));
    let second = burst(&trusting, 8, &t, Some("198.51.100.2")).await;
    assert!(
        second.iter().all(|(s, _)| *s == 200),
        "another client behind the proxy"
    );

    let wary = TestServer::start_with(&[("VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND", "5")]);
    burst(&wary, 40, &t, Some("198.51.100.1")).await;
    let spoofed = burst(&wary, 20, &t, Some("198.51.100.2")).await;
    assert!(
        spoofed.iter().any(|(s, _)| *s == 429),
        "an untrusted peer cannot pick its address"
    );
}

#[tokio::test]
async fn sockets_per_user_and_per_address_are_capped() {
    if common::cluster::single_node_only("the per-address socket cap counts per node") {
        return;
    }
    let server = TestServer::start_with(&[
        ("VCHAT_MAX_SOCKETS_PER_USER", "2"),
        ("VCHAT_MAX_SOCKETS_PER_ADDRESS", "3"),
    ]);
    let d = Driver::new(&server).await;
    let a = token("alice", None);
    let s1 = d.connect("a1", &a).await;
    let _s2 = d.connect("a2", &a).await;
    let e = d.open("a3", ConnectOpts::header(&a)).await.err().unwrap();
    assert!(e.contains("too many connections for this user"), "{e}");
    let _b = d.connect("b1", &token("bob", None)).await;
    let e = d
        .open("c1", ConnectOpts::header(&token("carol", None)))
        .await
        .err()
        .unwrap();
    assert!(e.contains("too many connections from your address"), "{e}");
    s1.close().await;
    server.wait_metric("vchat_sockets", |v| v == 2.0).await;
    d.connect("a4", &a).await;
    assert_eq!(limited(&server, "sockets_per_user").await, 1.0);
    assert_eq!(limited(&server, "sockets_per_address").await, 1.0);
}

#[tokio::test]
async fn the_defaults_let_normal_use_through() {
    let server = TestServer::start_with(&DEFAULTS);
    let t = token("alice", None);
    // 100 requests from one address within a second are all served.
    let answers = burst(&server, 100, &t, None).await;
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "{:?}",
        answers
            .iter()
            .filter(|(s, _)| *s != 200)
            .collect::<Vec<_>>()
    );
    let d = Driver::new(&server).await;
    let mut s = d.connect("a", &t).await;
    for _ in 0..50 {
        s.emit("v1MyOnline", &json!([{"peerId": "x", "extra": "y"}]))
            .await;
    }
    s.fence().await;
    s.assert_none("v1OnException").await;
}
