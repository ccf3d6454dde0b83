//! Calls over the real server with real npm socket.io-client sockets: every call event reaches
//! exactly the right sockets, payloads keep their JSON type, and nothing gets stuck.

mod common;

use common::*;
use serde_json::{json, Value};

struct Pair {
    api: Api,
    a: String,
    b: String,
    room: String,
}

/// alice (caller) and bob (callee) with a single room; devices are named in the tokens.
async fn pair(server: &TestServer) -> Pair {
    let api = server.api();
    let a = token("alice", Some("a-phone"));
    let b = token("bob", Some("b-phone"));
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    Pair { api, a, b, room }
}

impl Pair {
    /// Bob accepts `meet` over REST with the SDP answer `"answer"`.
    async fn accept(&self, meet: &str) -> Reply {
        self.api
            .post(
                &format!("call/accept/{meet}"),
                &self.b,
                json!({"payload": "answer"}),
            )
            .await
    }

    /// `POST call/{action}/{meetId}` with an empty body, as `who`.
    async fn act(&self, action: &str, meet: &str, who: &str) -> Reply {
        self.api
            .post(&format!("call/{action}/{meet}"), who, json!({}))
            .await
    }
}

/// A call from alice's socket `a` that bob answered (over REST) after `b` rang: its meetId.
async fn answered(p: &Pair, a: &mut Conn<'_>, b: &mut Conn<'_>) -> String {
    let meet = create(p, json!("offer")).await;
    b.expect("v1OnNewCall").await;
    p.accept(&meet).await.ok();
    a.expect("v1OnCallAccepted").await;
    meet
}

async fn create(p: &Pair, payload: Value) -> String {
    let d = p
        .api
        .post(
            &format!("call/create/{}", p.room),
            &p.a,
            json!({"payload": payload, "withVideo": true}),
        )
        .await
        .ok();
    d["meetId"].as_str().unwrap().to_string()
}

async fn history_status(api: &Api, t: &str, meet: &str) -> String {
    let h = api.get("call/history", t).await.ok();
    h.as_array()
        .unwrap()
        .iter()
        .find(|c| c["_id"] == meet)
        .unwrap_or_else(|| panic!("{meet} not in history {h}"))["callStatus"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn accept_flow(offer: Value, answer: Value) {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a_phone = d.connect("a-phone", &p.a).await;
    let mut a_tablet = d
        .connect("a-tablet", &token("alice", Some("a-tablet")))
        .await;
    let mut b_phone = d.connect("b-phone", &p.b).await;
    let mut b_tablet = d.connect("b-tablet", &token("bob", Some("b-tablet"))).await;

    let meet = create(&p, offer.clone()).await;
    for callee in [&mut b_phone, &mut b_tablet] {
        let n = callee.expect("v1OnNewCall").await;
        assert_eq!(n["meetId"], meet.as_str());
        assert_eq!(n["roomId"], p.room.as_str());
        assert_eq!(n["withVideo"], true);
        assert_eq!(n["payload"], offer, "offer relayed with its JSON type");
        assert_eq!(
            n["userData"],
            json!({"_id": "alice", "fullName": "Alice Name", "identifier": "alice",
                   "userImages": {"fullImage": "https://img.example/alice.png",
                                  "chatImage": "https://img.example/alice.png",
                                  "smallImage": "https://img.example/alice.png"}})
        );
        assert!(n["iceServers"].is_array());
    }
    // GET call/active gives the ringing call with the offer as received.
    let active = p.api.get("call/active", &p.b).await.ok();
    assert_eq!(active["meetId"], meet.as_str());
    assert_eq!(active["payload"], offer);
    assert_eq!(active["userData"]["_id"], "alice");

    p.api
        .post(
            &format!("call/accept/{meet}"),
            &p.b,
            json!({"payload": answer}),
        )
        .await
        .ok();
    let acc = a_phone.expect("v1OnCallAccepted").await;
    assert_eq!(
        acc,
        json!({"meetId": meet, "roomId": p.room, "peerAnswer": answer}),
        "answer relayed with its JSON type to the creating device"
    );
    let other = b_tablet.expect("v1OnCallCanceled").await;
    assert_eq!(
        other,
        json!({"meetId": meet, "roomId": p.room}),
        "answered elsewhere"
    );
    a_tablet.assert_none("v1OnCallAccepted").await;
    b_phone.assert_none("v1OnCallCanceled").await;
    assert_eq!(p.api.get("call/active", &p.b).await.ok(), Value::Null);

    p.act("end", &meet, &p.b).await.ok();
    for s in [&mut a_phone, &mut b_phone, &mut a_tablet, &mut b_tablet] {
        assert_eq!(
            s.expect("v1OnCallEnded").await,
            json!({"meetId": meet, "roomId": p.room})
        );
    }
    // The finished call leaves a chat message with the real talk time.
    let note = a_phone.expect("v1OnNewMessage").await;
    assert_eq!(note["mT"], "call");
    assert_eq!(note["sId"], "bob", "sent by the one who ended it");
    assert_eq!(note["msgAtt"]["callStatus"], "finished");
    assert_eq!(note["msgAtt"]["withVideo"], true);
    let h = p.api.get("call/history", &p.a).await.ok();
    let row = &h[0];
    assert_eq!(row["_id"], meet.as_str());
    assert_eq!(row["callStatus"], "finished");
    assert_eq!(row["meetPlatform"], "webRtc");
    assert_eq!(note["msgAtt"]["startAt"], row["acceptedAt"]);
    assert_eq!(note["msgAtt"]["endAt"], row["endAt"]);
    assert_eq!(row["peerUser"]["_id"], "bob");
    assert_eq!(row["peerUser"]["identifier"], "bob");
    assert!(row["peerUser"]["userImages"]["smallImage"].is_string());
}

#[tokio::test]
async fn accept_with_string_payloads_keeps_strings() {
    accept_flow(
        json!(r#"{"sdp":{"version":0,"media":[]},"type":"offer"}"#),
        json!(r#"{"answer":{"sdp":{"version":0},"type":"answer"}}"#),
    )
    .await;
}

#[tokio::test]
async fn accept_with_object_payloads_keeps_objects() {
    accept_flow(
        json!({"sdp": "v=0\r\n", "type": "offer", "z": 1, "a": 2}),
        json!({"answer": {"sdp": "v=0\r\n", "type": "answer"}}),
    )
    .await;
}

#[tokio::test]
async fn reject_tells_the_caller_and_stops_other_callee_devices() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let mut b_phone = d.connect("b-phone", &p.b).await;
    let mut b_tablet = d.connect("b-tablet", &token("bob", Some("b-tablet"))).await;
    let meet = create(&p, Value::Null).await;
    b_phone.expect("v1OnNewCall").await;
    b_tablet.expect("v1OnNewCall").await;
    p.act("reject", &meet, &p.b).await.ok();
    assert_eq!(
        a.expect("v1OnCallRejected").await,
        json!({"meetId": meet, "roomId": p.room})
    );
    b_tablet.expect("v1OnCallCanceled").await;
    b_phone.assert_none("v1OnCallCanceled").await;
    let note = a.expect("v1OnNewMessage").await;
    assert_eq!(note["msgAtt"]["callStatus"], "rejected");
    assert_eq!(note["sId"], "bob");
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "rejected");
    // The loser of the race after it: a clear 400.
    let late = p.act("accept", &meet, &p.b).await;
    assert!(late.err(400).contains("already ended"));
}

#[tokio::test]
async fn cancel_tells_every_callee_device() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut b_phone = d.connect("b-phone", &p.b).await;
    let mut b_tablet = d.connect("b-tablet", &token("bob", Some("b-tablet"))).await;
    let meet = create(&p, Value::Null).await;
    b_phone.expect("v1OnNewCall").await;
    p.act("cancel", &meet, &p.a).await.ok();
    for s in [&mut b_phone, &mut b_tablet] {
        assert_eq!(
            s.expect("v1OnCallCanceled").await,
            json!({"meetId": meet, "roomId": p.room})
        );
    }
    assert_eq!(history_status(&p.api, &p.b, &meet).await, "canceled");
    assert_eq!(p.api.get("call/active", &p.b).await.ok(), Value::Null);
}

#[tokio::test]
async fn ring_timeout_reaches_both_and_posts_a_missed_call() {
    let server = TestServer::start_with(&[("VCHAT_CALL_TIMEOUT_MS", "700")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, json!("offer")).await;
    for s in [&mut a, &mut b] {
        assert_eq!(
            s.expect("v1OnCallTimeout").await,
            json!({"meetId": meet, "roomId": p.room})
        );
    }
    let note = b.expect("v1OnNewMessage").await;
    assert_eq!(note["mT"], "call");
    assert_eq!(note["c"], "📞 Missed Call from Alice Name");
    assert_eq!(note["msgAtt"]["callStatus"], "timeout");
    assert_eq!(note["msgAtt"]["endAt"], Value::Null);
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "timeout");
    // Nobody is left busy: a new call can ring.
    create(&p, Value::Null).await;
}

#[tokio::test]
async fn end_from_the_caller_and_end_v2_dispatch() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;

    // caller + inCall → end, from the caller's side
    let m1 = create(&p, Value::Null).await;
    p.act("accept", &m1, &p.b).await.ok();
    p.act("end", &m1, &p.a).await.ok();
    a.expect("v1OnCallEnded").await;
    b.expect("v1OnCallEnded").await;
    let late = p.act("end", &m1, &p.b).await;
    late.err(400);

    // end/v2: caller + ring → cancel
    let m2 = create(&p, Value::Null).await;
    p.act("end/v2", &m2, &p.a).await.ok();
    b.expect("v1OnCallCanceled").await;
    assert_eq!(history_status(&p.api, &p.a, &m2).await, "canceled");
    // end/v2: callee + ring → reject
    let m3 = create(&p, Value::Null).await;
    p.act("end/v2", &m3, &p.b).await.ok();
    a.expect("v1OnCallRejected").await;
    assert_eq!(history_status(&p.api, &p.a, &m3).await, "rejected");
    // end/v2: callee + inCall → end
    let m4 = create(&p, Value::Null).await;
    p.act("accept", &m4, &p.b).await.ok();
    p.act("end/v2", &m4, &p.b).await.ok();
    a.expect("v1OnCallEnded").await;
    assert_eq!(history_status(&p.api, &p.a, &m4).await, "finished");
    // end on a ringing call is refused with the original's message
    let m5 = create(&p, Value::Null).await;
    let e = p.act("end", &m5, &p.a).await;
    assert!(e.err(400).contains("meet status not InCall"));
}

#[tokio::test]
async fn roles_and_unknown_calls_are_refused() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let eve = token("eve", None);
    let meet = create(&p, Value::Null).await;
    let r = p.act("accept", &meet, &p.a).await;
    assert!(r.err(403).contains("only the callee"));
    let r = p.act("cancel", &meet, &p.b).await;
    assert!(r.err(403).contains("only the caller"));
    for action in ["accept", "reject", "cancel", "end", "end/v2"] {
        p.act(action, &meet, &eve).await.err(403);
    }
    p.act("accept", "nope", &p.b).await.err(404);
    // The call is still ringing after all those refusals.
    assert_eq!(
        p.api.get("call/active", &p.b).await.ok()["meetId"],
        meet.as_str()
    );
}

#[tokio::test]
async fn create_rules_busy_group_nonmember_and_platform() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let c = token("carol", None);
    p.api.touch(&c).await;
    let carol_bob = p.api.peer_room(&c, "bob").await;
    let alice_carol = p.api.peer_room(&p.a, "carol").await;

    let meet = create(&p, Value::Null).await;
    let busy = p
        .api
        .post(&format!("call/create/{carol_bob}"), &c, json!({}))
        .await;
    assert_eq!(busy.err(400), "peerUserInCallNow");
    let caller_busy = p.act("create", &alice_carol, &p.a).await;
    assert!(caller_busy.err(400).contains("already in another call"));

    // Not a member; unknown room; group room; bad platform.
    p.api
        .post(&format!("call/create/{}", p.room), &c, json!({}))
        .await
        .err(403);
    p.api.post("call/create/nope", &c, json!({})).await.err(404);
    let group = p
        .api
        .post(
            "channel/group",
            &c,
            json!({"groupName": "g", "identifiers": ["bob"]}),
        )
        .await
        .ok();
    let g = p
        .api
        .post(
            &format!("call/create/{}", group["rId"].as_str().unwrap()),
            &c,
            json!({}),
        )
        .await;
    assert!(g.err(400).contains("group calls are not supported"));
    // The platform is checked for itself (not refused by accident for a busy peer).
    let zoom = p
        .api
        .post(
            &format!("call/create/{alice_carol}"),
            &c,
            json!({"meetPlatform": "zoom"}),
        )
        .await;
    assert!(zoom
        .err(400)
        .contains("meetPlatform must be webRtc or agora"));
    // Agora calls could never connect without an Agora app: refused, not rung.
    let agora = p
        .api
        .post(
            &format!("call/create/{alice_carol}"),
            &c,
            json!({"meetPlatform": "agora"}),
        )
        .await;
    assert!(agora
        .err(400)
        .contains("meetPlatform agora is not available"));

    // Wrong body types are refused in the envelope; nothing is created.
    for body in [
        json!({"withVideo": "yes"}),
        json!({"meetPlatform": 5}),
        json!([1, 2]),
        json!("text"),
    ] {
        let r = p
            .api
            .post(&format!("call/create/{alice_carol}"), &c, body.clone())
            .await;
        assert!(r.err(400).contains("invalid JSON body"), "{body}");
    }

    // Gen-B's Agora token route answers clearly instead of 404.
    let agora = p
        .api
        .get(&format!("call/agora-access/{}", p.room), &p.a)
        .await;
    assert!(agora.err(400).contains("Agora is not configured"));

    // Once the call ends, carol can call bob.
    p.act("cancel", &meet, &p.a).await.ok();
    p.api
        .post(&format!("call/create/{carol_bob}"), &c, json!({}))
        .await
        .ok();
}

/// A callee whose client stops reading: the server keeps relaying into its socket's send buffer
/// until it is full, then drops what does not fit, counts it, and goes on serving everyone else
/// (the caller's socket included); once its connection has made no progress for
/// `VCHAT_SEND_STALL_MS` it is closed, and the callee's device is in its grace as after any
/// drop. Nothing blocks on the hung client, and nothing of it stays.
#[tokio::test]
async fn a_client_that_stops_reading_loses_what_overflows_then_is_closed() {
    // The buffer fills within about five rounds of the loop below once the kernel's buffers are
    // full; the stall limit is far above that so the drops are seen before the close.
    const STALL: std::time::Duration = std::time::Duration::from_secs(5);
    let server = TestServer::start_with(&[
        ("VCHAT_MAX_EVENTS_PER_SECOND", "0"),
        ("VCHAT_SEND_STALL_MS", "5000"),
    ]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a-phone", &p.a).await;
    let mut b = d.connect("b-phone", &p.b).await;
    let meet = answered(&p, &mut a, &mut b).await;
    assert_eq!(server.metric("vchat_emits_dropped_total").await, 0.0);

    b.pause_reading().await;
    // 4 KB candidates: the kernel's socket buffers (a few MB each way on loopback) fill first,
    // then the server's send buffer of 1,024 events. Sent in rounds the caller's inbox can hold
    // (256), each closed by a fence: when it is answered, every candidate of the round has been
    // relayed or refused, so the counter is read after a known amount, never after a wait.
    let big = json!({"meetId": meet, "data": {"candidate": "x".repeat(4000),
                                              "sdpMid": "0", "sdpMLineIndex": 0}});
    let mut sent = 0;
    while server.metric("vchat_emits_dropped_total").await < 1.0 {
        assert!(
            sent < 40_000,
            "{sent} candidates to a stopped reader and none dropped"
        );
        a.emit_repeated("v1IceCandidate", &big, 200).await;
        a.fence().await;
        sent += 200;
    }
    assert!(
        a.drain("v1OnException").await.is_empty(),
        "the caller was never refused"
    );
    // The server does not keep the hung client: once its writes have made no progress for
    // VCHAT_SEND_STALL_MS its connection is closed, and its call device gets its grace (events
    // kept) as after any drop; the call stays live.
    server
        .wait_metric_within("vchat_sockets", |v| v == 1.0, STALL + common::WAIT)
        .await;
    server
        .wait_metric("vchat_outbox_devices", |v| v == 1.0)
        .await;
    assert_eq!(server.metric("vchat_live_calls").await, 1.0);
    // The caller's socket and the server are unaffected.
    a.fence().await;
    let mut other = d.connect("carol", &token("carol", None)).await;
    other.fence().await;
}

#[tokio::test]
async fn ice_flows_both_ways_to_the_other_party_only_and_early_ice_is_held() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let eve = token("eve", None);
    let d = Driver::new(&server).await;
    let mut a = d.connect("a-phone", &p.a).await;
    let mut a_tablet = d
        .connect("a-tablet", &token("alice", Some("a-tablet")))
        .await;
    let mut b = d.connect("b-phone", &p.b).await;
    let mut b_tablet = d.connect("b-tablet", &token("bob", Some("b-tablet"))).await;
    let mut e = d.connect("eve", &eve).await;
    let meet = create(&p, json!("offer")).await;
    b.expect("v1OnNewCall").await;

    let cand = |n: u32| {
        json!({"meetId": meet, "data": {"candidate": format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host"),
                                        "sdpMid": "0", "sdpMLineIndex": 0}})
    };
    // Early candidates from the caller while ringing: held.
    a.emit("v1IceCandidate", &cand(1)).await;
    a.emit("v1IceCandidate", &cand(2)).await;
    a.fence().await;
    b.assert_none("v1OnIceCandidate").await;
    b_tablet.assert_none("v1OnIceCandidate").await;

    p.accept(&meet).await.ok();
    assert_eq!(
        b.expect("v1OnIceCandidate").await,
        cand(1),
        "held, delivered in order"
    );
    assert_eq!(b.expect("v1OnIceCandidate").await, cand(2));
    a.expect("v1OnCallAccepted").await;

    // Live relay both ways, never echoed, never to other devices.
    a.emit("v1IceCandidate", &cand(3)).await;
    assert_eq!(b.expect("v1OnIceCandidate").await, cand(3));
    b.emit("v1IceCandidate", &cand(4)).await;
    assert_eq!(a.expect("v1OnIceCandidate").await, cand(4));
    // Object payloads are relayed the same way.
    b.emit_raw("v1IceCandidate", json!([cand(5)])).await;
    assert_eq!(a.expect("v1OnIceCandidate").await, cand(5));
    b.fence().await;
    a.fence().await;
    a.assert_none("v1OnIceCandidate").await;
    b.assert_none("v1OnIceCandidate").await;
    a_tablet.assert_none("v1OnIceCandidate").await;
    b_tablet.assert_none("v1OnIceCandidate").await;

    // A stranger and a non-call device are refused; nothing is relayed.
    e.emit("v1IceCandidate", &cand(6)).await;
    assert!(e.expect("v1OnException").await["error"]
        .as_str()
        .unwrap()
        .contains("not a party"));
    b_tablet.emit("v1IceCandidate", &cand(7)).await;
    assert!(b_tablet.expect("v1OnException").await["error"]
        .as_str()
        .unwrap()
        .contains("not the one in the call"));
    e.fence().await;
    b_tablet.fence().await;
    a.assert_none("v1OnIceCandidate").await;

    // After the end, ICE is refused.
    p.act("end", &meet, &p.a).await.ok();
    a.emit("v1IceCandidate", &cand(8)).await;
    assert!(a.expect("v1OnException").await["error"]
        .as_str()
        .unwrap()
        .contains("no live call"));
    a.fence().await;
    b.assert_none("v1OnIceCandidate").await;
}

#[tokio::test]
async fn ringing_caller_that_disconnects_is_canceled_after_the_grace() {
    let server = TestServer::start_with(&[("VCHAT_CALLER_GRACE_MS", "300")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, Value::Null).await;
    b.expect("v1OnNewCall").await;
    a.close().await;
    assert_eq!(
        b.expect("v1OnCallCanceled").await,
        json!({"meetId": meet, "roomId": p.room})
    );
    assert_eq!(history_status(&p.api, &p.b, &meet).await, "canceled");
}

#[tokio::test]
async fn a_blip_shorter_than_the_grace_changes_nothing() {
    let server = TestServer::start_with(&[("VCHAT_CALLER_GRACE_MS", "60000")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, Value::Null).await;
    b.expect("v1OnNewCall").await;
    a.close().await;
    let mut a2 = d.connect("a-again", &p.a).await;
    p.api
        .post(&format!("call/accept/{meet}"), &p.b, json!({"payload": 1}))
        .await
        .ok();
    assert_eq!(a2.expect("v1OnCallAccepted").await["peerAnswer"], 1);
}

fn candidate(meet: &str, c: &str) -> Value {
    json!({"meetId": meet, "data": {"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}})
}

/// The caller's connection drops while ringing and the callee answers in that gap: the answer
/// and the callee's candidates wait for the caller's device, which gets them first, in order,
/// when it reconnects (same `did`), and only then anything newer.
#[tokio::test]
async fn accept_during_a_caller_blip_reaches_the_caller_when_it_comes_back() {
    let server = TestServer::start_with(&[("VCHAT_CALLER_GRACE_MS", "60000")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, json!("offer")).await;
    b.expect("v1OnNewCall").await;
    a.close().await;
    server
        .wait_metric("vchat_outbox_devices", |v| v == 1.0)
        .await;
    p.accept(&meet).await.ok();
    for c in ["c0", "c1", "c2"] {
        b.emit("v1IceCandidate", &candidate(&meet, c)).await;
    }
    server
        .wait_metric("vchat_outbox_events", |v| v == 4.0)
        .await;

    let mut a2 = d.connect("a-back", &p.a).await;
    let (first, accepted) = a2.next_event().await;
    assert_eq!(first, "v1OnCallAccepted", "the answer comes first");
    assert_eq!(accepted["peerAnswer"], "answer");
    for c in ["c0", "c1", "c2"] {
        let (name, ice) = a2.next_event().await;
        assert_eq!(
            (name.as_str(), &ice["data"]["candidate"]),
            ("v1OnIceCandidate", &json!(c))
        );
    }
    b.emit("v1IceCandidate", &candidate(&meet, "c3")).await;
    assert_eq!(
        a2.expect("v1OnIceCandidate").await["data"]["candidate"],
        "c3"
    );
    assert_eq!(server.metric("vchat_outbox_devices").await, 0.0);
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "inCall");
    // The call goes on from the new socket.
    a2.emit("v1IceCandidate", &candidate(&meet, "a0")).await;
    assert_eq!(
        b.expect("v1OnIceCandidate").await["data"]["candidate"],
        "a0"
    );
}

/// Answered while the caller was away, and the caller never came back: the call finishes at the
/// end of the grace and the callee is told; what was kept goes with it.
#[tokio::test]
async fn a_caller_not_back_within_its_grace_ends_the_answered_call() {
    let server = TestServer::start_with(&[("VCHAT_CALLER_GRACE_MS", "3000")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, Value::Null).await;
    b.expect("v1OnNewCall").await;
    a.close().await;
    server
        .wait_metric("vchat_outbox_devices", |v| v == 1.0)
        .await;
    p.act("accept", &meet, &p.b).await.ok();
    assert_eq!(
        b.expect("v1OnCallEnded").await,
        json!({"meetId": meet, "roomId": p.room})
    );
    assert_eq!(history_status(&p.api, &p.b, &meet).await, "finished");
    server
        .wait_metric("vchat_outbox_devices", |v| v == 0.0)
        .await;
    let mut late = d.connect("a-late", &p.a).await;
    late.assert_none("v1OnCallAccepted").await;
    late.assert_none("v1OnCallEnded").await;
    assert_eq!(server.metric("vchat_live_calls").await, 0.0);
}

/// During a call, the candidates meant for a party whose connection dropped wait for it.
#[tokio::test]
async fn ice_for_a_party_in_a_blip_waits_for_it() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let b = d.connect("b", &p.b).await;
    let meet = create(&p, Value::Null).await;
    p.act("accept", &meet, &p.b).await.ok();
    a.expect("v1OnCallAccepted").await;
    b.close().await;
    server
        .wait_metric("vchat_outbox_devices", |v| v == 1.0)
        .await;
    for c in ["c0", "c1"] {
        a.emit("v1IceCandidate", &candidate(&meet, c)).await;
    }
    server
        .wait_metric("vchat_outbox_events", |v| v == 2.0)
        .await;
    let mut b2 = d.connect("b-back", &p.b).await;
    for c in ["c0", "c1"] {
        assert_eq!(b2.expect("v1OnIceCandidate").await["data"]["candidate"], c);
    }
    a.emit("v1IceCandidate", &candidate(&meet, "c2")).await;
    assert_eq!(
        b2.expect("v1OnIceCandidate").await["data"]["candidate"],
        "c2"
    );
    b2.assert_none("v1OnCallEnded").await;
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "inCall");
}

/// A callee device that reconnects while its call still rings is rung again (once), and
/// `call/active` says the same.
#[tokio::test]
async fn a_callee_that_reconnects_while_ringing_is_rung_again() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let _a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, json!({"sdp": "x"})).await;
    b.expect("v1OnNewCall").await;
    b.close().await;
    server.wait_metric("vchat_sockets", |v| v == 1.0).await;
    let mut b2 = d.connect("b-back", &p.b).await;
    let again = b2.expect("v1OnNewCall").await;
    assert_eq!(again["meetId"], meet.as_str());
    assert_eq!(again["payload"], json!({"sdp": "x"}));
    let active = p.api.get("call/active", &p.b).await.ok();
    assert_eq!(active["meetId"], meet.as_str());
    b2.assert_none("v1OnNewCall").await;
}

#[tokio::test]
async fn a_party_gone_past_the_reconnect_grace_finishes_the_call() {
    let server = TestServer::start_with(&[("VCHAT_RECONNECT_GRACE_MS", "300")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let b = d.connect("b", &p.b).await;
    let meet = create(&p, Value::Null).await;
    p.act("accept", &meet, &p.b).await.ok();
    a.expect("v1OnCallAccepted").await;
    b.close().await;
    assert_eq!(
        a.expect("v1OnCallEnded").await,
        json!({"meetId": meet, "roomId": p.room})
    );
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "finished");
    // Nothing stays stuck: both can call again.
    create(&p, Value::Null).await;
}

/// Whoever hears a call end may place the next one at once: both users are free before the
/// end is announced (in a cluster the busy marks are in Redis, and the next call may be run by
/// another node). Ended, canceled and rejected calls, each followed by a call the other way.
#[tokio::test]
async fn a_call_can_be_placed_the_moment_the_last_one_is_heard_ending() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    async fn call(p: &Pair, from: &str) -> String {
        let d = p
            .api
            .post(&format!("call/create/{}", p.room), from, json!({}))
            .await
            .ok();
        d["meetId"].as_str().unwrap().to_string()
    }
    for round in 0..6 {
        // alice calls; bob ends it (answered), or alice cancels it, or bob rejects it.
        let meet = call(&p, &p.a).await;
        assert_eq!(b.expect("v1OnNewCall").await["meetId"], meet.as_str());
        let heard = match round % 3 {
            0 => {
                p.accept(&meet).await.ok();
                a.expect("v1OnCallAccepted").await;
                p.act("end", &meet, &p.b).await.ok();
                a.expect("v1OnCallEnded").await
            }
            1 => {
                p.act("cancel", &meet, &p.a).await.ok();
                b.expect("v1OnCallCanceled").await
            }
            _ => {
                p.act("reject", &meet, &p.b).await.ok();
                a.expect("v1OnCallRejected").await
            }
        };
        assert_eq!(heard["meetId"], meet.as_str(), "round {round}");
        // The one who just heard it calls the other at once (refused before: still busy).
        let (caller, callee) = if round % 3 == 1 {
            ((&p.b, &mut b), (&p.a, &mut a))
        } else {
            ((&p.a, &mut a), (&p.b, &mut b))
        };
        let next = call(&p, caller.0).await;
        assert_eq!(
            callee.1.expect("v1OnNewCall").await["meetId"],
            next.as_str()
        );
        p.act("reject", &next, callee.0).await.ok();
        assert_eq!(
            caller.1.expect("v1OnCallRejected").await["meetId"],
            next.as_str()
        );
        for s in [&mut a, &mut b] {
            for event in ["v1OnCallEnded", "v1OnCallCanceled", "v1OnCallRejected"] {
                s.drain(event).await;
            }
        }
    }
}

#[tokio::test]
async fn a_call_nobody_ends_is_finished_at_the_max_duration() {
    let server = TestServer::start_with(&[("VCHAT_MAX_CALL_MS", "400")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, Value::Null).await;
    p.act("accept", &meet, &p.b).await.ok();
    for s in [&mut a, &mut b] {
        assert_eq!(
            s.expect("v1OnCallEnded").await,
            json!({"meetId": meet, "roomId": p.room})
        );
    }
    assert_eq!(
        a.expect("v1OnNewMessage").await["msgAtt"]["callStatus"],
        "finished"
    );
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "finished");
    // Exactly one end, and no timeout for a call that was answered.
    a.assert_none("v1OnCallEnded").await;
    a.assert_none("v1OnCallTimeout").await;
}

#[tokio::test]
async fn active_and_history_survive_a_crash_and_nothing_stays_stuck() {
    if common::cluster::single_node_only("a crash of the only process closes its calls; in a cluster live nodes take them over (tests/cluster.rs)") {
        return;
    }
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let _a = d.connect("a", &p.a).await;
    let done = create(&p, json!({"k": "v"})).await;
    p.act("accept", &done, &p.b).await.ok();
    p.act("end", &done, &p.b).await.ok();
    let ringing = create(&p, json!("offer-text")).await;
    assert_eq!(
        p.api.get("call/active", &p.b).await.ok()["payload"],
        "offer-text"
    );

    let server = server.restart(); // SIGKILL, then a new process on the same data
    let api = server.api();
    assert_eq!(api.get("call/active", &p.b).await.ok(), Value::Null);
    assert_eq!(history_status(&api, &p.a, &ringing).await, "timeout");
    assert_eq!(history_status(&api, &p.b, &done).await, "finished");
    let h = api.get("call/history", &p.a).await.ok();
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!(h[1]["peerUser"]["fullName"], "Bob Name");
    // The crashed ring does not block new calls.
    let p2 = Pair { api, ..p };
    create(&p2, Value::Null).await;
}

#[tokio::test]
async fn history_clear_checks_participation() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let eve = token("eve", None);
    let meet = create(&p, Value::Null).await;
    p.act("cancel", &meet, &p.a).await.ok();
    p.api
        .delete(&format!("call/history/clear/{meet}"), &eve)
        .await
        .err(404);
    assert_eq!(
        p.api
            .get("call/history", &p.b)
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        p.api
            .delete(&format!("call/history/clear/{meet}"), &p.b)
            .await
            .ok(),
        "Done"
    );
    assert_eq!(p.api.get("call/history", &p.b).await.ok(), json!([]));
    assert_eq!(
        p.api
            .get("call/history", &p.a)
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1,
        "only for me"
    );
    assert_eq!(p.api.delete("call/history/clear", &p.a).await.ok(), "Done");
    assert_eq!(p.api.get("call/history", &p.a).await.ok(), json!([]));
}

#[tokio::test]
async fn ice_servers_are_minted_per_user() {
    let server =
        TestServer::start_with(&[("VCHAT_TURN_SECRET", "s3cret"), ("VCHAT_TURN_TTL", "600")]);
    let p = pair(&server).await;
    let ice = p.api.get("call/ice-servers", &p.a).await.ok();
    assert_eq!(ice["ttl"], 600);
    let s = &ice["iceServers"][0];
    let user = s["username"].as_str().unwrap();
    let (exp, id) = user.split_once(':').unwrap();
    assert_eq!(id, "alice");
    let exp: u64 = exp.parse().unwrap();
    let now = vchat_signal::auth::now_unix();
    assert!(exp > now + 590 && exp <= now + 601, "expiry is now + ttl");
    assert_eq!(
        s["credential"].as_str().unwrap(),
        vchat_signal::vchat_turn::password_for("s3cret", user)
    );
    // The embedded TURN of the node that answered (spread over a cluster, each node has its
    // own; which one took the request is the load balancer's choice).
    let url = s["urls"][0].as_str().unwrap();
    let addr = url
        .strip_prefix("turn:")
        .and_then(|u| u.strip_suffix("?transport=udp"))
        .unwrap_or_else(|| panic!("{url}"));
    assert!(
        server.turn_addrs().iter().any(|t| t == addr),
        "{url} is none of {:?}",
        server.turn_addrs()
    );
    // The same server's STUN, for clients behind NAT, without credentials.
    assert_eq!(
        ice["iceServers"][1],
        json!({"urls": [format!("stun:{addr}")]})
    );
    let created = p
        .api
        .post(&format!("call/create/{}", p.room), &p.a, json!({}))
        .await
        .ok();
    assert!(created["iceServers"][0]["username"]
        .as_str()
        .unwrap()
        .ends_with(":alice"));
}

/// Review fix 5: a token without `did` counts as one device per socket. A callee with two such
/// sockets (two browser tabs) that answers over REST without saying from where is bound to the
/// first socket that sends ICE: the other stops ringing, and ICE goes to the answering one only.
#[tokio::test]
async fn sockets_without_a_device_id_are_devices_of_their_own() {
    let server = TestServer::start();
    let api = server.api();
    let a = token("alice", Some("a-phone"));
    let b = token("bob", None);
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    let d = Driver::new(&server).await;
    let mut sa = d.connect("a", &a).await;
    let mut b1 = d.connect("b1", &b).await;
    let mut b2 = d.connect("b2", &b).await;

    // As a stock app: accept over REST, then trickle from the socket that answered.
    let meet = api
        .post(&format!("call/create/{room}"), &a, json!({}))
        .await
        .ok()["meetId"]
        .as_str()
        .unwrap()
        .to_string();
    b1.expect("v1OnNewCall").await;
    b2.expect("v1OnNewCall").await;
    sa.emit("v1IceCandidate", &candidate(&meet, "a0")).await;
    api.post(&format!("call/accept/{meet}"), &b, json!({}))
        .await
        .ok();
    sa.expect("v1OnCallAccepted").await;
    b1.emit("v1IceCandidate", &candidate(&meet, "b0")).await;
    assert_eq!(
        b1.expect("v1OnIceCandidate").await["data"]["candidate"],
        "a0"
    );
    assert_eq!(b2.expect("v1OnCallCanceled").await["meetId"], meet.as_str());
    assert_eq!(
        sa.expect("v1OnIceCandidate").await["data"]["candidate"],
        "b0"
    );
    sa.emit("v1IceCandidate", &candidate(&meet, "a1")).await;
    assert_eq!(
        b1.expect("v1OnIceCandidate").await["data"]["candidate"],
        "a1"
    );
    b2.assert_none("v1OnIceCandidate").await;
    b1.assert_none("v1OnCallCanceled").await;
    // The other socket cannot take the call over.
    b2.emit("v1IceCandidate", &candidate(&meet, "b-other"))
        .await;
    assert!(b2.expect("v1OnException").await["error"]
        .as_str()
        .unwrap()
        .contains("not the one in the call"));
    api.post(&format!("call/end/v2/{meet}"), &a, json!({}))
        .await
        .ok();
    b1.expect("v1OnCallEnded").await;

    // A client that names its socket (`X-Socket-Id`) is bound at once.
    let meet = api
        .post(&format!("call/create/{room}"), &a, json!({}))
        .await
        .ok()["meetId"]
        .as_str()
        .unwrap()
        .to_string();
    b1.expect("v1OnNewCall").await;
    b2.expect("v1OnNewCall").await;
    let r = api
        .http
        .post(format!("{}/api/v2/call/accept/{meet}", server.url))
        .header("authorization", format!("Bearer {b}"))
        .header("x-socket-id", &b2.sid)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(b1.expect("v1OnCallCanceled").await["meetId"], meet.as_str());
    sa.expect("v1OnCallAccepted").await;
    sa.emit("v1IceCandidate", &candidate(&meet, "x0")).await;
    assert_eq!(
        b2.expect("v1OnIceCandidate").await["data"]["candidate"],
        "x0"
    );
    b1.assert_none("v1OnIceCandidate").await;
    b2.assert_none("v1OnCallCanceled").await;
}

/// Review fix 6: a transition whose store write fails leaves the call as it was (memory and
/// store) and answers 5xx in the envelope; a retry then works. The failure is real: another
/// connection holds SQLite's write lock.
#[tokio::test]
async fn a_failed_store_write_changes_nothing_and_can_be_retried() {
    let server = TestServer::start_with(&[
        ("VCHAT_DB_BUSY_TIMEOUT_MS", "200"),
        ("VCHAT_CALL_TIMEOUT_MS", "600000"),
    ]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, json!("offer")).await;
    b.expect("v1OnNewCall").await;

    let blocker = server.block_writes().await;
    let r = p.accept(&meet).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.body["code"], 500);
    assert!(r.body["data"].is_string());
    a.assert_none("v1OnCallAccepted").await;
    blocker.release().await;

    assert_eq!(
        history_status(&p.api, &p.a, &meet).await,
        "ring",
        "store unchanged"
    );
    p.accept(&meet).await.ok();
    assert_eq!(a.expect("v1OnCallAccepted").await["peerAnswer"], "answer");
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "inCall");
}

/// A deadline that cannot be committed (store locked) is not lost: it is tried again.
#[tokio::test]
async fn a_timer_whose_write_fails_tries_again() {
    let server = TestServer::start_with(&[
        ("VCHAT_DB_BUSY_TIMEOUT_MS", "100"),
        ("VCHAT_CALL_TIMEOUT_MS", "300"),
    ]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut b = d.connect("b", &p.b).await;
    let meet = create(&p, Value::Null).await;
    b.expect("v1OnNewCall").await;
    let blocker = server.block_writes().await;
    // The ring timeout fires while the store is locked and fails; the call is still live.
    server
        .wait_metric("vchat_call_commit_failures_total", |v| v >= 1.0)
        .await;
    assert_eq!(server.metric("vchat_live_calls").await, 1.0);
    blocker.release().await;
    assert_eq!(b.expect("v1OnCallTimeout").await["meetId"], meet.as_str());
    assert_eq!(history_status(&p.api, &p.a, &meet).await, "timeout");
}

/// Review fix 9: the caller never receives a callee candidate before `v1OnCallAccepted`, which
/// carries the answer it must apply first, even when the callee trickles while accepting.
#[tokio::test]
async fn the_answer_always_reaches_the_caller_before_the_callees_candidates() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    for round in 0..15 {
        let meet = create(&p, json!("offer")).await;
        b.expect("v1OnNewCall").await;
        let api = server.api();
        let (bt, m) = (p.b.clone(), meet.clone());
        let accept = tokio::spawn(async move {
            api.post(
                &format!("call/accept/{m}"),
                &bt,
                json!({"payload": "answer"}),
            )
            .await
            .ok()
        });
        for i in 0..6 {
            b.emit(
                "v1IceCandidate",
                &candidate(&meet, &format!("r{round}c{i}")),
            )
            .await;
        }
        accept.await.unwrap();
        let (first, _) = a.next_event().await;
        assert_eq!(first, "v1OnCallAccepted", "round {round}");
        for i in 0..6 {
            let (name, ice) = a.next_event().await;
            assert_eq!(name, "v1OnIceCandidate", "round {round}");
            assert_eq!(
                ice["data"]["candidate"],
                format!("r{round}c{i}"),
                "in order"
            );
        }
        p.act("end/v2", &meet, &p.a).await.ok();
        a.expect("v1OnCallEnded").await;
        b.expect("v1OnCallEnded").await;
        // Take this call's note before the next round. Waited for, not drained: spread over a
        // cluster it may come through another node, after this socket's own node answers a fence.
        let note = a.expect("v1OnNewMessage").await;
        assert_eq!(note["msgAtt"]["callStatus"], "finished", "round {round}");
    }
}

/// Review fix 7: the ring timer is armed before the callee hears of the call, so an answer
/// that comes at once never loses the call's max-duration safety net to a late ring timer.
#[tokio::test]
async fn an_instant_answer_keeps_the_max_duration_timer() {
    let server = TestServer::start_with(&[("VCHAT_MAX_CALL_MS", "400")]);
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let _a = d.connect("a", &p.a).await;
    let mut b = d.connect("b", &p.b).await;
    for _ in 0..3 {
        let meet = create(&p, Value::Null).await;
        b.expect("v1OnNewCall").await;
        p.act("accept", &meet, &p.b).await.ok();
        assert_eq!(b.expect("v1OnCallEnded").await["meetId"], meet.as_str());
        assert_eq!(history_status(&p.api, &p.a, &meet).await, "finished");
    }
}

#[tokio::test]
async fn metrics_count_and_time_a_call() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a-phone", &p.a).await;
    let mut b = d.connect("b-phone", &p.b).await;
    let before = server.metrics().await;
    let moved = |after: &str, name: &str| metric_value(after, name) - metric_value(&before, name);

    let meet = answered(&p, &mut a, &mut b).await;
    let cand = json!({"meetId": meet, "data": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                               "sdpMid": "0", "sdpMLineIndex": 0}});
    a.emit("v1IceCandidate", &cand).await;
    b.expect("v1OnIceCandidate").await;
    p.act("end", &meet, &p.a).await.ok();
    b.expect("v1OnCallEnded").await;

    let after = server.metrics().await;
    assert_eq!(moved(&after, "vchat_calls_created_total"), 1.0);
    assert_eq!(
        moved(&after, "vchat_calls_ended_total{status=\"finished\"}"),
        1.0
    );
    assert_eq!(moved(&after, "vchat_ice_relayed_total"), 1.0);
    assert_eq!(moved(&after, "vchat_time_to_ring_seconds_count"), 1.0);
    assert_eq!(moved(&after, "vchat_time_to_answer_seconds_count"), 1.0);
    assert_eq!(moved(&after, "vchat_relay_seconds_count"), 1.0);
    assert!(moved(&after, "vchat_time_to_ring_seconds_sum") > 0.0);
    // Create, accept and end each committed a call row.
    assert_eq!(
        moved(&after, "vchat_store_commit_seconds_count{what=\"call\"}"),
        3.0
    );
    if server.database_url().is_none() {
        // SQLite's group commit carried those three and the call's note, and nothing waits.
        assert_eq!(moved(&after, "vchat_store_batch_size_sum"), 4.0);
        assert_eq!(metric_value(&after, "vchat_store_writes_waiting"), 0.0);
    }
    for (method, route) in [
        ("POST", "/api/v2/call/create/{room_id}"),
        ("POST", "/api/v2/call/accept/{meet_id}"),
        ("POST", "/api/v2/call/end/{meet_id}"),
    ] {
        let series = format!(
            "vchat_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\",status=\"200\"}}"
        );
        assert_eq!(moved(&after, &series), 1.0, "{series}");
    }

    // The body is OpenMetrics from one node: one HELP and TYPE per family, samples named
    // after it, and the end marker.
    if common::cluster::spread_nodes() == 1 {
        let r = reqwest::get(format!("{}/metrics", server.url))
            .await
            .unwrap();
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let text = r.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut families = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap().to_string();
            assert!(families.insert(name), "{line} twice");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(
                families.iter().any(|f| name.starts_with(f.as_str())),
                "{line} has no family"
            );
        }
    }
}

#[tokio::test]
async fn json_logs_carry_the_meet_id_and_user_on_call_lines() {
    if common::cluster::single_node_only("reads one process's log") {
        return;
    }
    let log = std::env::temp_dir().join(format!(
        "vchat-json-log-{}.txt",
        vchat_signal::ids::random_hex(6)
    ));
    let server = TestServer::start_with(&[
        ("VCHAT_LOG_FORMAT", "json"),
        ("VCHAT_LOG", "info"),
        ("VCHAT_TEST_STDERR", log.to_str().unwrap()),
    ]);
    let p = pair(&server).await;
    let meet = create(&p, json!("offer")).await;
    p.accept(&meet).await.ok();
    p.act("end", &meet, &p.a).await.ok();

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_call: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "call")
        .collect();
    let messages: Vec<&str> = of_call
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"call ringing"), "{text}");
    assert_eq!(
        messages.iter().filter(|m| **m == "call transition").count(),
        2,
        "accept and end: {text}"
    );
    for l in &of_call {
        assert_eq!(l["span"]["meet_id"], meet.as_str(), "{l}");
        assert!(!l["span"]["user"].as_str().unwrap().is_empty(), "{l}");
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    // Each line names whose action it was.
    let users: Vec<&str> = of_call
        .iter()
        .map(|l| l["span"]["user"].as_str().unwrap())
        .collect();
    assert_ne!(
        users.first(),
        users.get(1),
        "the caller creates, the callee accepts"
    );
}

#[test]
fn an_unknown_log_format_stops_the_server_at_start() {
    let err = refused_start(&[("VCHAT_LOG_FORMAT", "xml")]);
    assert!(err.contains("log format must be text or json"), "{err}");
}
