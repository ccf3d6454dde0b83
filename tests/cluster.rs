//! Several `vchat-signal` nodes on one Redis and one PostgreSQL database, with real npm
//! socket.io-client sockets spread over them (and nginx in front, running the shipped
//! `deploy/nginx-vchat.conf`): calls, ICE and chat across nodes, one winner for racing actions
//! arriving at different nodes, and calls that outlive the node that ran them.
//!
//! Needs Redis (`VCHAT_TEST_REDIS_URL`, else a `redis-server` it starts) and PostgreSQL
//! (`VCHAT_TEST_DATABASE_URL`); without them each test says SKIPPED, except under `CI=true`
//! where it fails (`.ci/run` provides both).

mod common;

use common::cluster::{RedisLink, TestCluster};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn cand(meet: &str, n: u32) -> Value {
    json!({"meetId": meet, "data": {"candidate": format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host"),
                                    "sdpMid": "0", "sdpMLineIndex": 0}})
}

async fn create_call(api: &Api, t: &str, room: &str) -> String {
    let d = api
        .post(
            &format!("call/create/{room}"),
            t,
            json!({"payload": {"type": "offer", "sdp": "v=0"}, "withVideo": true}),
        )
        .await
        .ok();
    d["meetId"].as_str().unwrap().to_string()
}

/// Alice's and bob's tokens (devices `a-phone` and `b-phone`), bob made known through node 1,
/// and their room, made by alice through node 0.
async fn alice_and_bob(c: &TestCluster) -> (String, String, String) {
    let (a, b) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
    );
    c.node(1).api().touch(&b).await;
    let room = c.node(0).api().peer_room(&a, "bob").await;
    (a, b, room)
}

/// A call from alice (socket on node 0, request through node 0) to bob (socket on node 1), who
/// accepts through node 1; returns its meetId once alice has heard the accept.
async fn answered_across(
    c: &TestCluster,
    (a, b, room): (&str, &str, &str),
    alice: &mut Conn<'_>,
    bob: &mut Conn<'_>,
) -> String {
    let meet = create_call(&c.node(0).api(), a, room).await;
    assert_eq!(bob.expect("v1OnNewCall").await["meetId"], meet.as_str());
    c.node(1)
        .api()
        .post(
            &format!("call/accept/{meet}"),
            b,
            json!({"payload": {"type": "answer", "sdp": "v=0"}}),
        )
        .await
        .ok();
    alice.expect("v1OnCallAccepted").await;
    meet
}

async fn node_of_call(c: &TestCluster, meet: &str) -> String {
    let db = c.node(1).db().await;
    sqlx::query_scalar::<_, String>("SELECT node FROM calls WHERE id = $1")
        .bind(meet)
        .fetch_one(&db)
        .await
        .unwrap()
}

#[tokio::test]
async fn calls_ice_chat_and_presence_work_across_two_nodes() {
    let Some(c) = TestCluster::start("cluster: across nodes", 2, &[]) else {
        return;
    };
    let (api0, api1) = (c.node(0).api(), c.node(1).api());
    let (a, b, room) = alice_and_bob(&c).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let mut alice = d0.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    c.settle(&[1, 1]).await;

    // Presence: node 0 knows bob (on node 1) is online.
    alice
        .emit("v1MyOnline", &json!([{"peerId": "bob", "extra": room}]))
        .await;
    assert_eq!(alice.expect("v1OnMyOnline").await[0]["isOnline"], true);

    // Chat: a message stored through node 0 reaches bob's socket on node 1, typing too.
    let sent = api0
        .post(
            &format!("channel/{room}/message/"),
            &a,
            json!({"content": "hi across", "localId": "l-1", "messageType": "text"}),
        )
        .await
        .ok();
    assert_eq!(bob.expect("v1OnNewMessage").await, sent);
    assert_eq!(alice.expect("v1OnNewMessage").await, sent);
    alice
        .emit(
            "v1RoomStatusChange",
            &json!({"roomId": room, "status": "typing"}),
        )
        .await;
    assert_eq!(bob.expect("v1OnRoomStatusChange").await["status"], "typing");

    // A call placed on node 0 (its owner), answered and ended through node 1.
    let meet = create_call(&api0, &a, &room).await;
    assert_eq!(node_of_call(&c, &meet).await, "n0");
    let ring = bob.expect("v1OnNewCall").await;
    assert_eq!(ring["meetId"], meet.as_str());
    assert_eq!(ring["payload"], json!({"type": "offer", "sdp": "v=0"}));
    // Early ICE from the caller is held by the owner until the answer.
    alice.emit("v1IceCandidate", &cand(&meet, 1)).await;
    api1.post(
        &format!("call/accept/{meet}"),
        &b,
        json!({"payload": {"type": "answer", "sdp": "v=0"}}),
    )
    .await
    .ok();
    let acc = alice.expect("v1OnCallAccepted").await;
    assert_eq!(acc["peerAnswer"], json!({"type": "answer", "sdp": "v=0"}));
    assert_eq!(bob.expect("v1OnIceCandidate").await, cand(&meet, 1));
    // Bob's candidates go through node 1 to the owner and on to alice, in order.
    let reads = c.node(1).metric("vchat_call_owner_reads_total").await;
    for n in 10..20 {
        bob.emit("v1IceCandidate", &cand(&meet, n)).await;
    }
    for n in 10..20 {
        assert_eq!(alice.expect("v1OnIceCandidate").await, cand(&meet, n));
    }
    // Node 1 did not read who owns the call once per candidate (a read is trusted for a
    // second; the accept may have made the one these use).
    let reads = c.node(1).metric("vchat_call_owner_reads_total").await - reads;
    assert!(reads < 10.0, "{reads} owner reads for 10 candidates");
    // ... nor waited for the owner to run each: they were told, not asked.
    assert_eq!(c.node(1).metric("vchat_ice_told_total").await, 10.0);
    // A told candidate the owner refuses comes back to the socket that sent it, on its node.
    let eve = token("eve", Some("e-phone"));
    let mut eve_s = d1.connect("e-phone", &eve).await;
    c.settle(&[1, 2]).await;
    eve_s.emit("v1IceCandidate", &cand(&meet, 99)).await;
    let refused = eve_s.expect("v1OnException").await;
    assert_eq!(
        refused["error"],
        "v1IceCandidate: you are not a party to this call"
    );
    assert_eq!(c.node(1).metric("vchat_ice_told_total").await, 11.0);
    eve_s.close().await;
    c.settle(&[1, 1]).await;
    // Neither node's Socket.IO adapter fell behind the other's messages (and both count them).
    for n in [0, 1] {
        let text = c.node(n).metrics().await;
        assert!(
            text.lines()
                .any(|l| l == "vchat_adapter_messages_dropped_total 0"),
            "node {n}: {text}"
        );
    }
    alice.emit("v1IceCandidate", &cand(&meet, 2)).await;
    assert_eq!(bob.expect("v1OnIceCandidate").await, cand(&meet, 2));
    // Busy across nodes: bob cannot be called by carol through node 1.
    let carol = token("carol", Some("c-phone"));
    let croom = api1.peer_room(&carol, "bob").await;
    let r = api1
        .post(&format!("call/create/{croom}"), &carol, json!({}))
        .await;
    assert_eq!(r.err(400), "peerUserInCallNow");

    api1.post(&format!("call/end/{meet}"), &b, json!({}))
        .await
        .ok();
    for s in [&mut alice, &mut bob] {
        assert_eq!(s.expect("v1OnCallEnded").await["meetId"], meet.as_str());
    }
    let h = api1.get("call/history", &a).await.ok();
    assert_eq!(h[0]["callStatus"], "finished");
    // Both free again, whichever node asks.
    let again = create_call(&api1, &carol, &croom).await;
    bob.expect("v1OnNewCall").await;
    api0.post(&format!("call/cancel/{again}"), &carol, json!({}))
        .await
        .ok();
    bob.expect("v1OnCallCanceled").await;

    // A call created through node 1 by alice, whose socket is on node 0, is run by node 0:
    // node 1 forwards the creation and answers with the meetId node 0 gave it.
    assert_eq!(c.node(1).metric("vchat_calls_forwarded_total").await, 0.0);
    let placed = create_call(&api1, &a, &room).await;
    assert_eq!(node_of_call(&c, &placed).await, "n0");
    assert_eq!(c.node(1).metric("vchat_calls_forwarded_total").await, 1.0);
    assert_eq!(bob.expect("v1OnNewCall").await["meetId"], placed.as_str());
    // Bob's candidates are told to node 0; alice's start there.
    api1.post(
        &format!("call/accept/{placed}"),
        &b,
        json!({"payload": {"type": "answer", "sdp": "v=0"}}),
    )
    .await
    .ok();
    alice.expect("v1OnCallAccepted").await;
    bob.emit("v1IceCandidate", &cand(&placed, 30)).await;
    assert_eq!(alice.expect("v1OnIceCandidate").await, cand(&placed, 30));
    alice.emit("v1IceCandidate", &cand(&placed, 31)).await;
    assert_eq!(bob.expect("v1OnIceCandidate").await, cand(&placed, 31));
    api1.post(&format!("call/end/{placed}"), &a, json!({}))
        .await
        .ok();
    for s in [&mut alice, &mut bob] {
        assert_eq!(s.expect("v1OnCallEnded").await["meetId"], placed.as_str());
    }
    // A forwarded creation's refusal is the caller's answer, status and message kept.
    let r = api1.post("call/create/no-such-room", &a, json!({})).await;
    assert_eq!(r.err(404), "room \"no-such-room\" not found");
    assert_eq!(c.node(1).metric("vchat_calls_forwarded_total").await, 1.0);

    // Bob leaves node 1: node 0 reads him offline.
    bob.close().await;
    c.settle(&[1, 0]).await;
    alice
        .emit("v1MyOnline", &json!([{"peerId": "bob", "extra": room}]))
        .await;
    assert_eq!(alice.expect("v1OnMyOnline").await[0]["isOnline"], false);
}

/// Accept (on node 1) against cancel (on node 0) on one ringing call, many rounds, and glare
/// (each calls the other, through different nodes): exactly one winner every time.
#[tokio::test]
async fn racing_actions_arriving_at_different_nodes_have_one_winner() {
    let Some(c) = TestCluster::start("cluster: races", 2, &[]) else {
        return;
    };
    let (api0, api1) = (c.node(0).api(), c.node(1).api());
    let (a, b, room) = alice_and_bob(&c).await;
    // alice has no socket: each of her calls is run by the node her creation reaches.
    let d1 = Driver::new(c.node(1)).await;
    let mut bob = d1.connect("b-phone", &b).await;
    c.settle(&[0, 1]).await;

    let mut wins = [0u32; 2];
    for round in 0..12 {
        // The owner alternates, so both directions of forwarding race.
        let (owner_api, other_api) = if round % 2 == 0 {
            (&api0, &api1)
        } else {
            (&api1, &api0)
        };
        let meet = create_call(owner_api, &a, &room).await;
        assert_eq!(node_of_call(&c, &meet).await, format!("n{}", round % 2));
        bob.expect("v1OnNewCall").await;
        let (accept_path, cancel_path) =
            (format!("call/accept/{meet}"), format!("call/cancel/{meet}"));
        let accept = other_api.post(&accept_path, &b, json!({"payload": "answer"}));
        let cancel = owner_api.post(&cancel_path, &a, json!({}));
        let (acc, can) = tokio::join!(accept, cancel);
        let ok = [acc.status == 200, can.status == 200];
        assert_eq!(
            ok.iter().filter(|w| **w).count(),
            1,
            "round {round}: accept {} / cancel {}",
            acc.body,
            can.body
        );
        if ok[0] {
            wins[0] += 1;
            api0.post(&format!("call/end/{meet}"), &a, json!({}))
                .await
                .ok();
            bob.expect("v1OnCallEnded").await;
        } else {
            wins[1] += 1;
            bob.expect("v1OnCallCanceled").await;
        }
    }
    eprintln!("accept won {} rounds, cancel {}", wins[0], wins[1]);

    // Glare through different nodes: one call stands.
    for round in 0..8 {
        let path = format!("call/create/{room}");
        let ab = api0.post(&path, &a, json!({}));
        let ba = api1.post(&path, &b, json!({}));
        let (ab, ba) = tokio::join!(ab, ba);
        let created: Vec<&Reply> = [&ab, &ba].into_iter().filter(|r| r.status == 200).collect();
        assert_eq!(created.len(), 1, "round {round}: {} / {}", ab.body, ba.body);
        let meet = created[0].data()["meetId"].as_str().unwrap().to_string();
        let who = if ab.status == 200 { &a } else { &b };
        api1.post(&format!("call/cancel/{meet}"), who, json!({}))
            .await
            .ok();
        if ab.status == 200 {
            bob.expect("v1OnNewCall").await;
            bob.expect("v1OnCallCanceled").await;
        }
    }
    for node in 0..2 {
        c.node(node)
            .wait_metric("vchat_busy_users", |v| v == 0.0)
            .await;
        assert_eq!(c.node(node).metric("vchat_live_calls").await, 0.0);
    }
}

/// The node running a call is killed (SIGKILL). Parties whose sockets were on the survivor keep
/// talking (ICE flows, the call can be ended); a ringing call whose caller went down with the
/// node is canceled by the survivor; a party that comes back within its grace continues.
#[tokio::test]
async fn a_killed_nodes_calls_are_taken_over_by_a_live_node() {
    let Some(mut c) = TestCluster::start(
        "cluster: node killed",
        2,
        &[
            ("VCHAT_CALLER_GRACE_MS", "1500"),
            ("VCHAT_RECONNECT_GRACE_MS", "20000"),
            // Each call is run by node 0, where its creation arrives, wherever its caller is.
            ("VCHAT_CALL_PLACEMENT", "request"),
        ],
    ) else {
        return;
    };
    let (api0, api1) = (c.node(0).api(), c.node(1).api());
    let (a, b) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
    );
    let (e, f) = (
        token("erin", Some("e-phone")),
        token("frank", Some("f-phone")),
    );
    let (g, h) = (
        token("gina", Some("g-phone")),
        token("hugo", Some("h-phone")),
    );
    for t in [&b, &f, &h] {
        api1.touch(t).await;
    }
    let room_ab = api1.peer_room(&a, "bob").await;
    let room_ef = api1.peer_room(&e, "frank").await;
    let room_gh = api1.peer_room(&g, "hugo").await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);

    // 1. alice and bob both on node 1, their call run by node 0.
    let mut alice = d1.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    // 2. erin on node 0 rings frank on node 1; erin goes down with node 0.
    let _erin = d0.connect("e-phone", &e).await;
    let mut frank = d1.connect("f-phone", &f).await;
    // 3. gina on node 0 in a call with hugo on node 1; gina comes back on node 1.
    let _gina = d0.connect("g-phone", &g).await;
    let mut hugo = d1.connect("h-phone", &h).await;
    c.settle(&[2, 4]).await;

    let m1 = create_call(&api0, &a, &room_ab).await;
    bob.expect("v1OnNewCall").await;
    api0.post(
        &format!("call/accept/{m1}"),
        &b,
        json!({"payload": "answer"}),
    )
    .await
    .ok();
    alice.expect("v1OnCallAccepted").await;
    let m2 = create_call(&api0, &e, &room_ef).await;
    frank.expect("v1OnNewCall").await;
    let m3 = create_call(&api0, &g, &room_gh).await;
    hugo.expect("v1OnNewCall").await;
    api0.post(
        &format!("call/accept/{m3}"),
        &h,
        json!({"payload": "answer"}),
    )
    .await
    .ok();
    for m in [&m1, &m2, &m3] {
        assert_eq!(node_of_call(&c, m).await, "n0");
    }

    c.kill(0);
    c.node(1)
        .wait_metric("vchat_calls_taken_over_total", |v| v == 3.0)
        .await;
    for m in [&m1, &m3] {
        assert_eq!(node_of_call(&c, m).await, "n1");
    }

    // 1. ICE keeps flowing both ways; the call ends normally.
    alice.emit("v1IceCandidate", &cand(&m1, 1)).await;
    assert_eq!(bob.expect("v1OnIceCandidate").await, cand(&m1, 1));
    bob.emit("v1IceCandidate", &cand(&m1, 2)).await;
    assert_eq!(alice.expect("v1OnIceCandidate").await, cand(&m1, 2));

    // 2. The ringing call's caller never comes back: canceled after the caller grace.
    assert_eq!(
        frank.expect("v1OnCallCanceled").await["meetId"],
        m2.as_str()
    );
    let h2 = api1.get("call/history", &f).await.ok();
    let st = h2
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["_id"] == m2.as_str())
        .unwrap()["callStatus"]
        .clone();
    assert_eq!(st, "canceled");

    // 3. gina reconnects (same device) on node 1 within the grace: ICE flows again.
    let mut gina = d1.connect("g-phone-2", &g).await;
    gina.emit("v1IceCandidate", &cand(&m3, 7)).await;
    assert_eq!(hugo.expect("v1OnIceCandidate").await, cand(&m3, 7));
    hugo.emit("v1IceCandidate", &cand(&m3, 8)).await;
    assert_eq!(gina.expect("v1OnIceCandidate").await, cand(&m3, 8));

    for (m, t, x, y) in [
        (&m1, &a, &mut alice, &mut bob),
        (&m3, &h, &mut gina, &mut hugo),
    ] {
        api1.post(&format!("call/end/{m}"), t, json!({})).await.ok();
        assert_eq!(x.expect("v1OnCallEnded").await["meetId"], m.as_str());
        assert_eq!(y.expect("v1OnCallEnded").await["meetId"], m.as_str());
    }
    c.node(1)
        .wait_metric("vchat_live_calls", |v| v == 0.0)
        .await;
    assert_eq!(c.node(1).metric("vchat_busy_users").await, 0.0);
}

/// Timers are the cluster's, not a process's: a grace armed by a call's owner is stored, and
/// the node that takes the call over after the owner is killed keeps that grace's deadline
/// (it does not start it again); the call ends when it passes, and nothing is left in Redis.
#[tokio::test]
async fn a_grace_keeps_its_stored_deadline_when_its_call_changes_node() {
    let Some(mut c) = TestCluster::start(
        "cluster: stored grace",
        2,
        &[
            ("VCHAT_RECONNECT_GRACE_MS", "6000"),
            ("VCHAT_CALL_PLACEMENT", "request"),
        ],
    ) else {
        return;
    };
    let (api0, api1) = (c.node(0).api(), c.node(1).api());
    let (a, b) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
    );
    api1.touch(&b).await;
    let room = api1.peer_room(&a, "bob").await;
    let d1 = Driver::new(c.node(1)).await;
    let alice = d1.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    c.settle(&[0, 2]).await;

    // Run by node 0, both parties on node 1.
    let meet = create_call(&api0, &a, &room).await;
    bob.expect("v1OnNewCall").await;
    api0.post(
        &format!("call/accept/{meet}"),
        &b,
        json!({"payload": "answer"}),
    )
    .await
    .ok();
    assert_eq!(node_of_call(&c, &meet).await, "n0");
    let key = format!("due:{meet}");
    assert!(c.wait_hash(&key, |_| true).await.is_empty());

    // alice's phone drops: node 0 gives her the reconnect grace and stores its deadline.
    alice.close().await;
    let before = c.wait_hash(&key, |h| h.len() == 1).await;
    let (field, due) = before.iter().next().unwrap();
    assert!(field.starts_with("caller:"), "{before:?}");
    let due = *due;

    c.kill(0);
    c.node(1)
        .wait_metric("vchat_calls_taken_over_total", |v| v == 1.0)
        .await;
    assert_eq!(node_of_call(&c, &meet).await, "n1");
    // Node 1 re-armed alice's grace at the stored deadline, under its own timer id.
    let after = c
        .wait_hash(&key, |h| h.len() == 1 && !h.contains_key(field.as_str()))
        .await;
    let (field1, due1) = after.iter().next().unwrap();
    assert!(field1.starts_with("caller:"), "{after:?}");
    assert_eq!(*due1, due, "the grace kept its deadline");

    // alice never comes back: the call ends, not before the stored deadline.
    assert_eq!(bob.expect("v1OnCallEnded").await["meetId"], meet.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now >= due, "ended {} ms before its deadline", due - now);
    let h = api1.get("call/history", &b).await.ok();
    assert_eq!(h[0]["callStatus"], "finished");
    c.wait_hash(&key, |h| h.is_empty()).await;
    c.node(1)
        .wait_metric("vchat_live_calls", |v| v == 0.0)
        .await;
}

/// Behind nginx (the shipped config, round-robin): every node is restarted in turn (SIGTERM,
/// then started again on its address) while a call is live; both clients reconnect through
/// nginx each time, landing wherever nginx sends them; the call survives every restart.
#[tokio::test]
async fn a_rolling_restart_behind_nginx_keeps_a_live_call() {
    let Some(c) = TestCluster::start(
        "cluster: rolling restart",
        2,
        &[("VCHAT_RECONNECT_GRACE_MS", "20000")],
    ) else {
        return;
    };
    let mut c = c.with_nginx();
    let lb = c.lb_url();
    let api = Api {
        base: lb.clone(),
        http: reqwest::Client::new(),
    };
    let (a, b) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
    );
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    let d = Driver::new_at(&lb).await;
    let mut alice = d.connect("a-0", &a).await;
    let mut bob = d.connect("b-0", &b).await;
    c.settle_total(2).await;

    let meet = create_call(&api, &a, &room).await;
    bob.expect("v1OnNewCall").await;
    api.post(
        &format!("call/accept/{meet}"),
        &b,
        json!({"payload": "answer"}),
    )
    .await
    .ok();
    alice.expect("v1OnCallAccepted").await;

    let mut n = 0;
    for node in 0..2 {
        c.stop(node);
        alice.close().await;
        bob.close().await;
        c.restart(node);
        alice = d.connect(&format!("a-{}", node + 1), &a).await;
        bob = d.connect(&format!("b-{}", node + 1), &b).await;
        c.settle_total(2).await;
        n += 2;
        alice.emit("v1IceCandidate", &cand(&meet, n)).await;
        assert_eq!(bob.expect("v1OnIceCandidate").await, cand(&meet, n));
        bob.emit("v1IceCandidate", &cand(&meet, n + 1)).await;
        assert_eq!(alice.expect("v1OnIceCandidate").await, cand(&meet, n + 1));
    }
    api.post(&format!("call/end/{meet}"), &a, json!({}))
        .await
        .ok();
    assert_eq!(alice.expect("v1OnCallEnded").await["meetId"], meet.as_str());
    assert_eq!(bob.expect("v1OnCallEnded").await["meetId"], meet.as_str());
    let h = api.get("call/history", &b).await.ok();
    assert_eq!(h[0]["callStatus"], "finished");
}

/// A node asked to join a cluster without what every node must share refuses to start and
/// names what is missing.
#[test]
fn a_clustered_node_without_shared_settings_refuses_to_start() {
    let redis = ("VCHAT_REDIS_URL", "redis://127.0.0.1:6379");
    let e = refused_start(&[redis]);
    for missing in [
        "VCHAT_DATABASE_URL",
        "VCHAT_JWT_SECRET",
        "VCHAT_TURN_SECRET",
    ] {
        assert!(e.contains(missing), "{missing} not named in: {e}");
    }
    let e = refused_start(&[
        redis,
        ("VCHAT_DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
        ("VCHAT_JWT_SECRET", SECRET),
    ]);
    assert!(e.contains("VCHAT_TURN_SECRET"), "{e}");
    assert!(!e.contains("VCHAT_JWT_SECRET"), "{e}");
    let e = refused_start(&[
        redis,
        ("VCHAT_DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
        ("VCHAT_JWT_SECRET", SECRET),
        ("VCHAT_TURN_SECRET", "t"),
        ("VCHAT_NODE_ID", "bad id!"),
    ]);
    assert!(e.contains("node id"), "{e}");
    let e = refused_start(&[("VCHAT_REDIS_URL", "http://127.0.0.1:6379")]);
    assert!(e.contains("redis://"), "{e}");
}

/// Redis restarts empty (it keeps nothing on disk) under two running nodes: they subscribe
/// again, rebuild their heartbeats and presence, and calls and chat across them work after.
#[tokio::test]
async fn the_cluster_recovers_when_redis_restarts_empty() {
    let Some(mut c) = TestCluster::start_own_redis("cluster: redis restart", 2, &[]) else {
        return;
    };
    let (api0, api1) = (c.node(0).api(), c.node(1).api());
    let (a, b, room) = alice_and_bob(&c).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let mut alice = d0.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    c.settle(&[1, 1]).await;

    c.redis().restart_empty();
    // Both nodes see each other and each other's sockets again, and both Socket.IO adapters
    // have subscribed again (Redis counts the subscribers of the adapters' request channel).
    c.settle(&[1, 1]).await;
    c.wait_adapters(2).await;

    let meet = create_call(&api0, &a, &room).await;
    bob.expect("v1OnNewCall").await;
    api1.post(
        &format!("call/accept/{meet}"),
        &b,
        json!({"payload": "answer"}),
    )
    .await
    .ok();
    alice.expect("v1OnCallAccepted").await;
    bob.emit("v1IceCandidate", &cand(&meet, 1)).await;
    assert_eq!(alice.expect("v1OnIceCandidate").await, cand(&meet, 1));
    let sent = api1
        .post(
            &format!("channel/{room}/message/"),
            &b,
            json!({"content": "still here", "localId": "l-1", "messageType": "text"}),
        )
        .await
        .ok();
    assert_eq!(alice.expect("v1OnNewMessage").await, sent);
    api0.post(&format!("call/end/{meet}"), &a, json!({}))
        .await
        .ok();
    bob.expect("v1OnCallEnded").await;
}

/// The heartbeat TTL of the young-Redis tests: node 0 looks every 2 s, so it has looked at
/// least once in the last second of the 6 s in which a stopped node 1 must stay alive to it.
const SLOW_TTL_MS: i64 = 6000;

/// Two nodes on a Redis of their own (to restart or flush), with heartbeats every 2 s.
fn slow_heartbeat_cluster(what: &str) -> Option<TestCluster> {
    TestCluster::start_own_redis(what, 2, &[("VCHAT_NODE_TTL_MS", "6000")])
}

/// What makes Redis young to the nodes, as a test reads it.
enum Youth<'a> {
    /// Its uptime (whole seconds) is under the TTL.
    Uptime,
    /// The cluster's keys are new: no birth mark yet, or its settling mark still lives.
    Keys { born: &'a str, settling: &'a str },
}

/// About how many milliseconds Redis stays young by `how`; `None` once it is old.
async fn young_for(con: &mut redis::aio::MultiplexedConnection, how: &Youth<'_>) -> Option<i64> {
    match how {
        Youth::Uptime => {
            let info: redis::InfoDict = redis::cmd("INFO")
                .arg("server")
                .query_async(con)
                .await
                .unwrap();
            let up: i64 = info.get("uptime_in_seconds").unwrap();
            (up * 1000 < SLOW_TTL_MS).then(|| SLOW_TTL_MS - up * 1000)
        }
        Youth::Keys { born, settling } => {
            let (is_born, left): (bool, i64) = redis::pipe()
                .cmd("EXISTS")
                .arg(born)
                .cmd("PTTL")
                .arg(settling)
                .query_async(con)
                .await
                .unwrap();
            match (is_born, left) {
                (false, _) => Some(SLOW_TTL_MS),
                (true, left) if left >= 0 => Some(left),
                _ => None,
            }
        }
    }
}

/// Node 0 keeps stopped node 1 alive for as long as Redis is young by `how` (and was seen
/// doing so in the last second of it), then takes it for dead.
async fn node_0_keeps_node_1_while_young(
    c: &TestCluster,
    con: &mut redis::aio::MultiplexedConnection,
    how: Youth<'_>,
) {
    let n0 = c.node(0);
    let mut last_second_seen = false;
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis never got old by this measure"
        );
        // Node 0's view first, Redis's age after: a view read while Redis was young was also
        // taken while it was young.
        let nodes = n0.metric("vchat_cluster_nodes").await;
        let Some(left) = young_for(con, &how).await else {
            break;
        };
        assert_eq!(
            nodes, 2.0,
            "node 0 took stopped node 1 for dead about {left} ms before Redis was old"
        );
        last_second_seen |= left <= 1000;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        last_second_seen,
        "no view of node 0 read in Redis's last young second"
    );
    n0.wait_metric("vchat_cluster_nodes", |v| v == 1.0).await;
}

/// Redis restarting empty wipes every heartbeat, and a live node writes its own again only
/// every TTL/3, so for a while a live node's heartbeat is missing. Until Redis has been up for
/// a whole TTL that proves nothing: node 1 is stopped (SIGSTOP) across the restart, and node 0
/// keeps it alive for as long as Redis says it is younger than the TTL. Taking it for dead
/// then would let a request take node 1's calls over while node 1 runs them. Once Redis is a
/// TTL old, node 1 (still stopped) is dead and bob leaves presence; resumed, node 1 rejoins.
#[tokio::test]
async fn a_node_is_not_taken_for_dead_while_redis_is_younger_than_a_ttl() {
    let Some(mut c) = slow_heartbeat_cluster("cluster: young redis") else {
        return;
    };
    let (a, b, _room) = alice_and_bob(&c).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let _bob = d1.connect("b-phone", &b).await;
    c.settle(&[1, 1]).await;

    let n1 = c.node(1).pid();
    unsafe_kill(n1, 19); // SIGSTOP
    c.redis().restart_empty();
    let redis = redis::Client::open(c.redis().url.as_str()).unwrap();
    let mut con = redis.get_multiplexed_async_connection().await.unwrap();
    node_0_keeps_node_1_while_young(&c, &mut con, Youth::Uptime).await;
    // Node 1 is dead to node 0 now, and bob left presence.
    c.node(0)
        .wait_metric("vchat_remote_sockets", |v| v == 0.0)
        .await;

    unsafe_kill(n1, 18); // SIGCONT
    c.settle(&[1, 1]).await;
}

/// Redis can lose the cluster's keys without restarting (`FLUSHALL`, a failover to an empty
/// replica), which its uptime does not show. The first look after that marks the keys as new
/// for a TTL, and during it nobody is taken for dead either: node 1, stopped across the flush,
/// stays alive to node 0 until the mark expires, and is dead after.
#[tokio::test]
async fn a_node_is_not_taken_for_dead_while_the_clusters_keys_are_younger_than_a_ttl() {
    let Some(mut c) = slow_heartbeat_cluster("cluster: flushed redis") else {
        return;
    };
    let (a, b, _room) = alice_and_bob(&c).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let _bob = d1.connect("b-phone", &b).await;
    c.settle(&[1, 1]).await;
    let (born, settling) = (c.redis_key("born"), c.redis_key("settling"));
    let keys = Youth::Keys {
        born: &born,
        settling: &settling,
    };
    let client = redis::Client::open(c.redis().url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // Redis is a TTL old, and so are the cluster's keys: only the flush can make them young.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    while young_for(&mut con, &Youth::Uptime).await.is_some()
        || young_for(&mut con, &keys).await.is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster's keys never got a TTL old (no birth mark?)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let n1 = c.node(1).pid();
    unsafe_kill(n1, 19); // SIGSTOP
    let () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    node_0_keeps_node_1_while_young(&c, &mut con, keys).await;

    unsafe_kill(n1, 18); // SIGCONT
    c.settle(&[1, 1]).await;
}

/// A request that reaches a node while Redis is younger than a TTL goes to the call's live
/// owner even if the owner has not written its heartbeat since Redis came back empty: it is
/// never taken over from under it. Node 1 runs bob's call and is stopped (SIGSTOP) across the
/// restart; alice's rejection through node 0 is asked of node 1, which answers once resumed.
#[tokio::test]
async fn a_live_nodes_call_is_not_taken_over_after_redis_restarts_empty() {
    let Some(mut c) = slow_heartbeat_cluster("cluster: no takeover from a young redis") else {
        return;
    };
    let (a, b, room) = alice_and_bob(&c).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let mut alice = d0.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    c.settle(&[1, 1]).await;
    // Bob calls: the call runs on his node, 1.
    let meet = create_call(&c.node(1).api(), &b, &room).await;
    alice.expect("v1OnNewCall").await;
    assert_eq!(node_of_call(&c, &meet).await, "n1");

    let n1 = c.node(1).pid();
    unsafe_kill(n1, 19); // SIGSTOP
    c.redis().restart_empty();
    // Node 0 has subscribed again, and looked at the heartbeats: node 1's is not there.
    c.wait_bus(0).await;
    let client = redis::Client::open(c.redis().url.as_str()).unwrap();
    let mut bus1 = client.get_async_pubsub().await.unwrap();
    bus1.subscribe(c.bus_channel(1)).await.unwrap();
    let mut heard = bus1.into_on_message();

    let api0 = c.node(0).api();
    let reject = format!("call/reject/{meet}");
    let hang_up = api0.post(&reject, &a, json!({}));
    tokio::pin!(hang_up);
    // Node 0 asks node 1 (so it took node 1 for alive); node 1 is resumed only then.
    loop {
        tokio::select! {
            m = futures_util::StreamExt::next(&mut heard) => {
                let text: String = m.expect("bus subscription").get_payload().unwrap();
                if text.contains(r#""t":"Ask""#) {
                    break;
                }
            }
            r = &mut hang_up => panic!(
                "node 0 ran a request on node 1's call without asking node 1: {:?}",
                r.data()
            ),
        }
    }
    unsafe_kill(n1, 18); // SIGCONT
    hang_up.await.ok();
    bob.expect("v1OnCallRejected").await;
    assert_eq!(node_of_call(&c, &meet).await, "n1");
    assert_eq!(c.node(0).metric("vchat_calls_taken_over_total").await, 0.0);
}

/// With three nodes, an event for one socket goes to that socket's node only: candidates
/// relayed from node 0 to bob on node 1 never reach node 2, neither on the bus nor through the
/// Socket.IO adapter's channel (which every node reads). A logout's socket close goes to the
/// socket's node the same way, and a room made through node 1 reaches carol's socket on node 2.
#[tokio::test]
async fn an_event_for_one_socket_reaches_only_its_node() {
    const KEY: &str = "cluster-encrypt-hash-key";
    let Some(c) = TestCluster::start(
        "cluster: socket emits to their node",
        3,
        &[("VCHAT_ENCRYPT_HASH_KEY", KEY)],
    ) else {
        return;
    };
    let (api0, api1) = (c.node(0).api(), c.node(1).api());
    let (a, b, room) = alice_and_bob(&c).await;
    // Carol signs in through node 0 (a session node 0 can end) and connects to node 2.
    let form = reqwest::multipart::Form::new()
        .text("identifier", "carol")
        .text("deviceId", "c-build")
        .text("password", sdk_password(KEY, "carol"))
        .text("fullName", "Carol")
        .text("language", "en")
        .text("platform", "android");
    let signed = api0
        .multipart("POST", "auth/connect", None, form)
        .await
        .ok();
    let carol = signed["accessToken"].as_str().unwrap().to_string();
    let (d0, d1, d2) = (
        Driver::new(c.node(0)).await,
        Driver::new(c.node(1)).await,
        Driver::new(c.node(2)).await,
    );
    let mut alice = d0.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    let mut carol_s = d2
        .open("c-phone", ConnectOpts::query(&carol))
        .await
        .unwrap();
    c.settle(&[1, 1, 1]).await;

    let meet = answered_across(&c, (&a, &b, &room), &mut alice, &mut bob).await;
    assert_eq!(node_of_call(&c, &meet).await, "n0");

    let n2 = c.node(2);
    let adapter_before = n2.metric("vchat_adapter_messages_received_total").await;
    let to_n1 = c
        .node(1)
        .metric("vchat_cluster_socket_messages_received_total")
        .await;
    for n in 0..100 {
        alice.emit("v1IceCandidate", &cand(&meet, n)).await;
    }
    for n in 0..100 {
        assert_eq!(bob.expect("v1OnIceCandidate").await, cand(&meet, n));
    }
    let to_n1 = c
        .node(1)
        .metric("vchat_cluster_socket_messages_received_total")
        .await
        - to_n1;
    assert!(to_n1 >= 100.0, "node 1 got {to_n1} socket emits");
    assert_eq!(
        n2.metric("vchat_cluster_socket_messages_received_total")
            .await,
        0.0
    );
    // The adapter's own heartbeats still arrive (one every few seconds per node); 100 relayed
    // candidates would have been 100 more.
    let adapter = n2.metric("vchat_adapter_messages_received_total").await - adapter_before;
    assert!(adapter < 25.0, "node 2's adapter read {adapter} messages");
    api0.post(&format!("call/end/{meet}"), &a, json!({}))
        .await
        .ok();
    for s in [&mut alice, &mut bob] {
        assert_eq!(s.expect("v1OnCallEnded").await["meetId"], meet.as_str());
        // The call's note in their room.
        assert_eq!(s.expect("v1OnNewMessage").await["mT"], "call");
    }

    // A room made through node 1 puts carol's socket on node 2 in it at once, before the
    // message sent right after.
    let carol_room = api1.peer_room(&b, "carol").await;
    let sent = api1
        .post(
            &format!("channel/{carol_room}/message/"),
            &b,
            json!({"content": "hi carol", "localId": "l-c", "messageType": "text"}),
        )
        .await
        .ok();
    assert_eq!(carol_s.expect("v1OnNewMessage").await, sent);
    assert_eq!(bob.expect("v1OnNewMessage").await, sent);

    // Logging out through node 0 closes carol's socket on node 2, told on node 2's channel.
    let to_n2 = n2
        .metric("vchat_cluster_socket_messages_received_total")
        .await;
    api0.post("auth/logout", &carol, json!({})).await.ok();
    carol_s.expect_disconnect().await;
    assert!(
        n2.metric("vchat_cluster_socket_messages_received_total")
            .await
            > to_n2
    );
    for (i, s) in [(0, &mut alice), (1, &mut bob)] {
        s.fence().await;
        let text = c.node(i).metrics().await;
        assert!(
            text.lines().any(|l| l == "vchat_emits_dropped_total 0"),
            "node {i}: {text}"
        );
    }
}

/// A client on node 1 that stops reading, in a call run by node 0: what node 0 sends it over
/// the bus and does not fit its socket's send buffer is dropped on node 1 and counted there.
#[tokio::test]
async fn a_socket_that_stops_reading_has_its_drops_counted_on_its_node() {
    let Some(c) = TestCluster::start(
        "cluster: drops counted on the socket's node",
        2,
        &[("VCHAT_MAX_EVENTS_PER_SECOND", "0")],
    ) else {
        return;
    };
    let (a, b, room) = alice_and_bob(&c).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let mut alice = d0.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    c.settle(&[1, 1]).await;
    let meet = answered_across(&c, (&a, &b, &room), &mut alice, &mut bob).await;

    bob.pause_reading().await;
    // As in tests/calls.rs: 4 KB candidates in rounds closed by a fence, until node 1 counts a
    // drop; a round still crossing the bus when the counter is read is counted in a later one.
    let big = json!({"meetId": meet, "data": {"candidate": "x".repeat(4000),
                                              "sdpMid": "0", "sdpMLineIndex": 0}});
    let mut sent = 0;
    while c.node(1).metric("vchat_emits_dropped_total").await < 1.0 {
        assert!(
            sent < 40_000,
            "{sent} candidates to a stopped reader on another node and none dropped"
        );
        alice.emit_repeated("v1IceCandidate", &big, 200).await;
        alice.fence().await;
        sent += 200;
    }
    assert_eq!(c.node(0).metric("vchat_emits_dropped_total").await, 0.0);
    assert!(
        alice.drain("v1OnException").await.is_empty(),
        "the caller was never refused"
    );
}

/// A node taken for dead (its heartbeat gone) that comes back under its id before the sweep
/// forgets it keeps its place in the node list and its presence hash, and is no longer listed
/// dead, although the looking node has not looked since. Against Redis, with the cluster's own
/// link (no server process: the race is between two Redis commands).
#[tokio::test]
async fn a_node_back_under_its_id_is_neither_dead_nor_forgotten() {
    use redis::AsyncCommands;
    use vchat_signal::cluster::link::Cluster;
    let Some(r) = common::cluster::TestRedis::get() else {
        common::cluster::must_run("cluster: forget a node", "no Redis");
        return;
    };
    let prefix = format!("vchat-forget-{}", std::process::id());
    let ttl = std::time::Duration::from_millis(2000);
    let key = |k: &str| format!("{prefix}:{k}");
    let a = Cluster::connect(&r.url, "a".into(), &prefix, ttl)
        .await
        .unwrap();
    let _b = Cluster::connect(&r.url, "b".into(), &prefix, ttl)
        .await
        .unwrap();
    let mut con = redis::Client::open(r.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = con.hset(key("pn:b"), "sid-1", "bob").await.unwrap();

    // b dies: its heartbeat is gone.
    let _: () = con.del(key("node:b")).await.unwrap();
    assert_eq!(a.dead_nodes().await.unwrap(), vec!["b".to_string()]);

    // b is back under its id (a new run writes its heartbeat) before the sweep forgets it.
    let _b2 = Cluster::connect(&r.url, "b".into(), &prefix, ttl)
        .await
        .unwrap();
    let _: () = con.hset(key("pn:b"), "sid-2", "bob").await.unwrap();
    assert!(
        a.dead_nodes().await.unwrap().is_empty(),
        "b has a heartbeat"
    );
    assert!(!a.forget_node("b").await.unwrap());
    let nodes: Vec<String> = con.smembers(key("nodes")).await.unwrap();
    assert!(nodes.contains(&"b".to_string()), "{nodes:?}");
    let hash: i64 = con.hlen(key("pn:b")).await.unwrap();
    assert_eq!(hash, 1, "b's new run's presence hash stays");

    // Gone for good this time: forgotten, list entry and hash.
    let _: () = con.del(key("node:b")).await.unwrap();
    assert!(a.forget_node("b").await.unwrap());
    let nodes: Vec<String> = con.smembers(key("nodes")).await.unwrap();
    assert!(!nodes.contains(&"b".to_string()), "{nodes:?}");
    let hash: i64 = con.exists(key("pn:b")).await.unwrap();
    assert_eq!(hash, 0);
    common::cluster::drop_redis_keys(&r.url, &prefix);
}

/// Redis hangs (stopped, so each command waits for the connection's response timeout): a
/// node's own sockets keep hearing each other at once, room events included, rather than
/// waiting half a second behind each publish to other nodes; once Redis answers again, room
/// events reach the other node again.
#[tokio::test]
async fn a_hung_redis_does_not_hold_up_a_nodes_own_sockets() {
    let Some(mut c) = slow_heartbeat_cluster("cluster: hung redis") else {
        return;
    };
    let redis = c.redis().pid();
    let (a, b, room) = alice_and_bob(&c).await;
    let b_tab = token("bob", Some("b-tab"));
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let mut alice = d0.connect("a-phone", &a).await;
    let mut bob = d0.connect("b-phone", &b).await;
    let mut bob_tab = d1.connect("b-tab", &b_tab).await;
    c.settle(&[2, 1]).await;
    // A call between two sockets on node 0, run there.
    let meet = create_call(&c.node(0).api(), &a, &room).await;
    assert_eq!(bob.expect("v1OnNewCall").await["meetId"], meet.as_str());
    c.node(0)
        .api()
        .post(
            &format!("call/accept/{meet}"),
            &b,
            json!({"payload": {"type": "answer", "sdp": "v=0"}}),
        )
        .await
        .ok();
    alice.expect("v1OnCallAccepted").await;
    assert_eq!(node_of_call(&c, &meet).await, "n0");
    let n0 = c.node(0);
    assert_eq!(n0.metric("vchat_cluster_redis_unanswered").await, 0.0);

    unsafe_kill(redis, 19); // SIGSTOP
    let resume = ResumeOnDrop(redis);
    // Forty room events, each to be published for the other node, then a candidate for a
    // socket on this node: before, each publish held the node's queue for Redis's response
    // timeout (half a second), so the candidate came 20 s later.
    let typing = json!({"roomId": room, "status": "typing"});
    alice.emit_repeated("v1RoomStatusChange", &typing, 40).await;
    alice.emit("v1IceCandidate", &cand(&meet, 1)).await;
    assert_eq!(bob.expect("v1OnIceCandidate").await, cand(&meet, 1));
    // The room events reached the room's sockets on this node (the adapter sends nothing
    // locally once its publish fails), and the node says what it did not send.
    assert_eq!(bob.expect("v1OnRoomStatusChange").await["status"], "typing");
    assert_eq!(n0.metric("vchat_cluster_redis_unanswered").await, 1.0);
    assert!(n0.metric("vchat_cluster_events_unsent_total").await >= 1.0);
    drop(resume);

    // Node 0 sends to the other node again once Redis answers.
    n0.wait_metric("vchat_cluster_redis_unanswered", |v| v == 0.0)
        .await;
    let recording = json!({"roomId": room, "status": "recording"});
    alice.emit("v1RoomStatusChange", &recording).await;
    loop {
        if bob_tab.expect("v1OnRoomStatusChange").await["status"] == "recording" {
            break;
        }
    }
}

/// A group made by `token` with one other member; its room id.
async fn group(api: &Api, token: &str, name: &str, member: &str) -> String {
    let form = reqwest::multipart::Form::new()
        .text("groupName", name.to_string())
        .text("identifiers", json!([member]).to_string());
    api.multipart("POST", "channel/group", Some(token), form)
        .await
        .ok()["rId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A text message from `token` to `room`, its content also its local id.
async fn say(api: &Api, token: &str, room: &str, text: &str) {
    api.post(
        &format!("channel/{room}/message/"),
        token,
        json!({"content": text, "localId": text, "messageType": "text"}),
    )
    .await
    .ok();
}

/// Waits until `conn` hears the message whose local id is `lid`.
async fn hears(conn: &mut Conn<'_>, lid: &str) {
    while conn.expect("v1OnNewMessage").await["lId"] != lid {}
}

/// Bob, removed from `group`, hears alice's next message in their own room and not her
/// message to the group sent before it (both room emits leave alice's node on one connection
/// and are read by bob's on one, in order, so the first would have arrived first).
async fn hears_the_pair_not_the_group(
    api: &Api,
    alice: &str,
    pair: &str,
    group: &str,
    bob: &mut Conn<'_>,
) {
    say(api, alice, group, "after").await;
    say(api, alice, pair, "in our room").await;
    loop {
        let m = bob.expect("v1OnNewMessage").await;
        assert_ne!(
            m["lId"], "after",
            "bob's tablet still heard the group after his removal"
        );
        if m["lId"] == "in our room" {
            break;
        }
    }
}

/// A member removed from a group while Redis hangs leaves it on every node: at once on the
/// node that removed them, and on the other nodes once Redis answers, before anything sent to
/// the group after that. Bob's tablet on node 1 does not hear alice's group message sent after
/// Redis is back, and does hear her next message in their own room (both room emits leave node 0
/// on one connection and are read by node 1 on one, in order, so the first would have arrived
/// before the second).
#[tokio::test]
async fn a_member_removed_while_redis_hangs_leaves_the_group_on_every_node() {
    let Some(mut c) = slow_heartbeat_cluster("cluster: removal in a hung redis") else {
        return;
    };
    let redis = c.redis().pid();
    let (a, _b, pair) = alice_and_bob(&c).await;
    let b_tab = token("bob", Some("b-tab"));
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let mut bob_tab = d1.connect("b-tab", &b_tab).await;
    c.settle(&[1, 1]).await;
    let api0 = c.node(0).api();
    let group = group(&api0, &a, "Team", "bob").await;
    say(&api0, &a, &group, "before").await;
    hears(&mut bob_tab, "before").await;

    unsafe_kill(redis, 19); // SIGSTOP
    let resume = ResumeOnDrop(redis);
    api0.delete(&format!("channel/{group}/group/members/bob"), &a)
        .await
        .ok();
    let n0 = c.node(0);
    n0.wait_metric("vchat_cluster_redis_unanswered", |v| v == 1.0)
        .await;
    drop(resume);
    n0.wait_metric("vchat_cluster_redis_unanswered", |v| v == 0.0)
        .await;

    hears_the_pair_not_the_group(&api0, &a, &pair, &group, &mut bob_tab).await;
}

/// Resumes a stopped process when dropped, so that a failing test does not leave it stopped.
struct ResumeOnDrop(u32);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        unsafe_kill(self.0, 18); // SIGCONT
    }
}

/// With three nodes, a room emit goes to the nodes holding a member socket of the room only: 50
/// messages between alice on node 0 and bob on node 1 reach bob, and node 2 (no member of their
/// room) reads none of them, neither on a room channel nor on the Socket.IO adapter's channel.
#[tokio::test]
async fn a_room_emit_reaches_only_the_nodes_with_a_member_of_the_room() {
    let Some(c) = TestCluster::start("cluster: room channels", 3, &[]) else {
        return;
    };
    let (a, b, room) = alice_and_bob(&c).await;
    let carol = token("carol", Some("c-phone"));
    c.node(2).api().touch(&carol).await;
    let (d0, d1, d2) = (
        Driver::new(c.node(0)).await,
        Driver::new(c.node(1)).await,
        Driver::new(c.node(2)).await,
    );
    let _alice = d0.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    let _carol = d2.connect("c-phone", &carol).await;
    c.settle(&[1, 1, 1]).await;
    let (n1, n2) = (c.node(1), c.node(2));
    assert!(n1.metric("vchat_cluster_room_channels").await >= 1.0);
    assert_eq!(n2.metric("vchat_cluster_room_channels").await, 0.0);
    let adapter_before = n2.metric("vchat_adapter_messages_received_total").await;
    let to_n1 = n1
        .metric("vchat_cluster_room_messages_received_total")
        .await;

    let api0 = c.node(0).api();
    for n in 0..50 {
        say(&api0, &a, &room, &format!("m{n}")).await;
    }
    for n in 0..50 {
        assert_eq!(
            bob.expect("v1OnNewMessage").await["lId"],
            format!("m{n}").as_str()
        );
    }
    let to_n1 = n1
        .metric("vchat_cluster_room_messages_received_total")
        .await
        - to_n1;
    assert!(to_n1 >= 50.0, "node 1 read {to_n1} room emits");
    assert_eq!(
        n2.metric("vchat_cluster_room_messages_received_total")
            .await,
        0.0
    );
    // The adapter's own heartbeats still arrive (one every few seconds per node); 50 room
    // emits would have been 50 more.
    let adapter = n2.metric("vchat_adapter_messages_received_total").await - adapter_before;
    assert!(adapter < 25.0, "node 2's adapter read {adapter} messages");
}

/// A node listens to a room's channel before a socket of a member is told it is connected, and
/// before a membership change made on another node returns: the very next room emit reaches
/// it. A node that no longer holds a member socket stops listening, and a removed member stops
/// hearing the room at once. Bob's and carol's sockets are on node 2, which holds no other member
/// of their rooms; alice sends through node 0.
#[tokio::test]
async fn a_member_hears_the_next_room_emit_after_connecting_or_being_added_on_another_node() {
    let Some(c) = TestCluster::start("cluster: room channels in time", 3, &[]) else {
        return;
    };
    let (a, b, room) = alice_and_bob(&c).await;
    let carol = token("carol", Some("c-phone"));
    c.node(2).api().touch(&carol).await;
    let (d0, d2) = (Driver::new(c.node(0)).await, Driver::new(c.node(2)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let api0 = c.node(0).api();
    let n2 = c.node(2);
    for n in 0..5 {
        let mut bob = d2.connect(&format!("b-phone-{n}"), &b).await;
        let text = format!("right after connect {n}");
        say(&api0, &a, &room, &text).await;
        assert_eq!(bob.expect("v1OnNewMessage").await["lId"], text.as_str());
        bob.close().await;
        // Bob's was node 2's last member socket of the room.
        n2.wait_metric("vchat_cluster_room_channels", |v| v == 0.0)
            .await;
    }

    let mut carol_s = d2.connect("c-phone", &carol).await;
    let pair = api0.peer_room(&a, "carol").await;
    for n in 0..3 {
        let group = group(&api0, &a, &format!("Team {n}"), "bob").await;
        api0.post(
            &format!("channel/{group}/group/members"),
            &a,
            json!({"identifiers": ["carol"]}),
        )
        .await
        .ok();
        let text = format!("welcome {n}");
        say(&api0, &a, &group, &text).await;
        loop {
            let m = carol_s.expect("v1OnNewMessage").await;
            if m["lId"] == text.as_str() {
                break;
            }
        }
        api0.delete(&format!("channel/{group}/group/members/carol"), &a)
            .await
            .ok();
        let (after, fence) = (format!("after {n}"), format!("fence {n}"));
        say(&api0, &a, &group, &after).await;
        say(&api0, &a, &pair, &fence).await;
        loop {
            let m = carol_s.expect("v1OnNewMessage").await;
            assert_ne!(
                m["lId"],
                after.as_str(),
                "carol still heard group {n} after her removal"
            );
            if m["lId"] == fence.as_str() {
                break;
            }
        }
    }
    // Carol is left in her room with alice only.
    n2.wait_metric("vchat_cluster_room_channels", |v| v == 1.0)
        .await;
}

/// While a node of an older build (one that reads no room channels) is live, room emits and
/// membership changes go through the Socket.IO adapter's channel, as before; once it is gone,
/// through room channels. The older node is written into Redis as such a node's heartbeat
/// looks (no bus version), and its heartbeat is then deleted.
#[tokio::test]
async fn room_traffic_takes_the_adapter_while_a_node_of_an_older_build_is_live() {
    let Some(mut c) = TestCluster::start("cluster: room channels in a rolling upgrade", 2, &[])
    else {
        return;
    };
    let redis = redis::Client::open(c.redis().url.as_str()).unwrap();
    let mut con = redis.get_multiplexed_async_connection().await.unwrap();
    let beat = c.redis_key("node:old");
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg(c.redis_key("nodes"))
        .arg("old")
        .cmd("SET")
        .arg(&beat)
        .arg("old#0")
        .arg("PX")
        .arg(120_000)
        .query_async(&mut con)
        .await
        .unwrap();
    for i in 0..2 {
        c.node(i)
            .wait_metric("vchat_cluster_nodes", |v| v == 3.0)
            .await;
    }
    let (a, b, room) = alice_and_bob(&c).await;
    let carol = token("carol", Some("c-phone"));
    c.node(1).api().touch(&carol).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let mut bob = d1.connect("b-phone", &b).await;
    let mut carol_s = d1.connect("c-phone", &carol).await;
    // Presence has spread (`settle` would wait for two live nodes).
    for (i, elsewhere) in [(0, 2.0), (1, 1.0)] {
        c.node(i)
            .wait_metric("vchat_remote_sockets", |v| v == elsewhere)
            .await;
    }
    let (api0, n1) = (c.node(0).api(), c.node(1));
    let adapter = n1.metric("vchat_adapter_messages_received_total").await;
    say(&api0, &a, &room, "through the adapter").await;
    assert_eq!(
        bob.expect("v1OnNewMessage").await["lId"],
        "through the adapter"
    );
    let group = group(&api0, &a, "Team", "carol").await;
    say(&api0, &a, &group, "group through the adapter").await;
    hears(&mut carol_s, "group through the adapter").await;
    assert_eq!(
        n1.metric("vchat_cluster_room_messages_received_total")
            .await,
        0.0
    );
    assert!(n1.metric("vchat_adapter_messages_received_total").await >= adapter + 2.0);

    // The older node leaves: room emits take room channels.
    let _: () = redis::cmd("DEL")
        .arg(&beat)
        .query_async(&mut con)
        .await
        .unwrap();
    for i in 0..2 {
        c.node(i)
            .wait_metric("vchat_cluster_nodes", |v| v == 2.0)
            .await;
    }
    say(&api0, &a, &room, "through its channel").await;
    assert_eq!(
        bob.expect("v1OnNewMessage").await["lId"],
        "through its channel"
    );
    say(&api0, &a, &group, "group through its channel").await;
    hears(&mut carol_s, "group through its channel").await;
    assert!(
        n1.metric("vchat_cluster_room_messages_received_total")
            .await
            >= 2.0
    );
}

/// A member added while Redis hangs hears the group on every node once Redis answers: the
/// kept join is sent then, and the other node, holding no other member of the group, listens
/// to the group's channel before node 0 sends anything after it (`vchat_cluster_kept` is back
/// to 0 once that is done). Carol's socket is on node 1; alice adds her through node 0.
#[tokio::test]
async fn a_member_added_while_redis_hangs_hears_the_group_once_it_answers() {
    let Some(mut c) = slow_heartbeat_cluster("cluster: addition in a hung redis") else {
        return;
    };
    let redis = c.redis().pid();
    let (a, _b, _pair) = alice_and_bob(&c).await;
    let carol = token("carol", Some("c-phone"));
    c.node(1).api().touch(&carol).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let mut carol_s = d1.connect("c-phone", &carol).await;
    c.settle(&[1, 1]).await;
    let api0 = c.node(0).api();
    let group = group(&api0, &a, "Team", "bob").await;
    let n0 = c.node(0);
    assert_eq!(c.node(1).metric("vchat_cluster_room_channels").await, 0.0);

    unsafe_kill(redis, 19); // SIGSTOP
    let resume = ResumeOnDrop(redis);
    api0.post(
        &format!("channel/{group}/group/members"),
        &a,
        json!({"identifiers": ["carol"]}),
    )
    .await
    .ok();
    n0.wait_metric("vchat_cluster_redis_unanswered", |v| v == 1.0)
        .await;
    assert_eq!(n0.metric("vchat_cluster_kept").await, 1.0);
    drop(resume);
    n0.wait_metric("vchat_cluster_redis_unanswered", |v| v == 0.0)
        .await;
    n0.wait_metric("vchat_cluster_kept", |v| v == 0.0).await;

    say(&api0, &a, &group, "welcome").await;
    hears(&mut carol_s, "welcome").await;
}

/// Sets the ACL of Redis's default user (the one every node connects as).
async fn acl(redis_url: &str, rule: &str) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg(rule)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
}

/// A Redis that answers every command but refuses publishes (an ACL here; a proxy or an
/// account misconfigured in life) is not an outage: the nodes go on. A member removed meanwhile
/// leaves the group on node 0 at once, and on node 1 once publishes are taken again, before the
/// group's next message there.
#[tokio::test]
async fn a_member_removed_while_redis_refuses_publishes_leaves_the_group_once_it_takes_them() {
    let Some(mut c) = slow_heartbeat_cluster("cluster: publishes refused") else {
        return;
    };
    let url = c.redis().url.clone();
    let (a, _b, pair) = alice_and_bob(&c).await;
    let b_tab = token("bob", Some("b-tab"));
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let mut bob_tab = d1.connect("b-tab", &b_tab).await;
    c.settle(&[1, 1]).await;
    let api0 = c.node(0).api();
    let group = group(&api0, &a, "Team", "bob").await;
    say(&api0, &a, &group, "before").await;
    hears(&mut bob_tab, "before").await;

    acl(&url, "-publish").await;
    api0.delete(&format!("channel/{group}/group/members/bob"), &a)
        .await
        .ok();
    let n0 = c.node(0);
    n0.wait_metric("vchat_cluster_kept", |v| v == 1.0).await;
    acl(&url, "+publish").await;
    // Kept work is tried again at most 5 s apart while publishes are refused.
    n0.wait_metric_within("vchat_cluster_kept", |v| v == 0.0, Duration::from_secs(15))
        .await;

    hears_the_pair_not_the_group(&api0, &a, &pair, &group, &mut bob_tab).await;
}

/// Alice (`a`) removes bob from `group` and adds carol, through `api`.
async fn bob_out_carol_in(api: &Api, a: &str, group: &str) {
    api.delete(&format!("channel/{group}/group/members/bob"), a)
        .await
        .ok();
    api.post(
        &format!("channel/{group}/group/members"),
        a,
        json!({"identifiers": ["carol"]}),
    )
    .await
    .ok();
}

/// A node cut off from Redis reads neither its bus channel nor the Socket.IO adapter's: the
/// membership changes and the messages other nodes send meanwhile do not reach it. Once it is
/// subscribed again, it puts its sockets in the rooms the store has for their users, then sends
/// them the messages they missed. Bob, removed from the group through node 0 while node 1 was
/// cut off, does not hear the group on his tablet on node 1; carol, added meanwhile, does on
/// her phone there; and bob's tablet gets alice's message sent meanwhile, once, and not the one
/// it had before the cut.
#[tokio::test]
async fn what_a_node_cut_off_from_redis_missed_reaches_its_sockets_once_it_is_back() {
    let mut link: Option<(RedisLink, String)> = None;
    let env = [("VCHAT_NODE_TTL_MS", "6000")];
    // Node 0 reaches Redis directly, node 1 through a link that can be cut.
    let Some(c) = TestCluster::start_behind("cluster: a node cut off", 2, &env, |i, url| {
        if i == 0 {
            return url.to_string();
        }
        link.get_or_insert_with(|| RedisLink::start(url)).1.clone()
    }) else {
        return;
    };
    let (link, _) = link.expect("node 1's link");
    let (a, _b, pair) = alice_and_bob(&c).await;
    let (b_tab, carol) = (token("bob", Some("b-tab")), token("carol", Some("c-phone")));
    c.node(1).api().touch(&carol).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let mut bob_tab = d1.connect("b-tab", &b_tab).await;
    let mut carol_s = d1.connect("c-phone", &carol).await;
    c.settle(&[1, 2]).await;
    let api0 = c.node(0).api();
    let group = group(&api0, &a, "Team", "bob").await;
    say(&api0, &a, &group, "before").await;
    hears(&mut bob_tab, "before").await;
    say(&api0, &a, &pair, "hello").await;
    hears(&mut bob_tab, "hello").await;
    let n1 = c.node(1);
    let reread = n1.metric("vchat_cluster_rooms_reread_total").await;

    link.cut();
    c.wait_subscribers(&c.bus_channel(1), 0).await;
    c.wait_adapters(1).await;
    say(&api0, &a, &pair, "during").await;
    bob_out_carol_in(&api0, &a, &group).await;
    link.mend();
    n1.wait_metric("vchat_cluster_rooms_reread_total", |v| v > reread)
        .await;
    // Both nodes listen to both rooms again (node 1 for carol and for bob).
    c.wait_subscribers(&c.room_channel(&group), 2).await;
    c.wait_subscribers(&c.room_channel(&pair), 2).await;
    // The message bob missed comes once node 1 is back, once; "hello", which he had, not again.
    n1.wait_metric("vchat_cluster_messages_replayed_total", |v| v >= 1.0)
        .await;
    let missed = bob_tab.expect("v1OnNewMessage").await;
    assert_eq!(missed["lId"], "during", "{missed}");
    say(&api0, &a, &pair, "next").await;
    let next = bob_tab.expect("v1OnNewMessage").await;
    assert_eq!(next["lId"], "next", "{next}");

    hears_the_pair_not_the_group(&api0, &a, &pair, &group, &mut bob_tab).await;
    hears(&mut carol_s, "after").await;
}

/// A node that stalls for longer than the heartbeat TTL is taken for dead, and the other nodes
/// send it nothing meanwhile, membership changes included. Back, it finds its heartbeat lapsed,
/// rejoins, and reads its sockets' rooms from the store, as after a cut: bob, removed from the
/// group while node 1 was stopped, no longer hears it there, and carol, added meanwhile, does.
#[tokio::test]
async fn membership_changes_made_while_a_node_is_taken_for_dead_reach_it_once_it_is_back() {
    let Some(c) = TestCluster::start("cluster: a node taken for dead", 2, &[]) else {
        return;
    };
    let (a, _b, pair) = alice_and_bob(&c).await;
    let (b_tab, carol) = (token("bob", Some("b-tab")), token("carol", Some("c-phone")));
    c.node(1).api().touch(&carol).await;
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let _alice = d0.connect("a-phone", &a).await;
    let mut bob_tab = d1.connect("b-tab", &b_tab).await;
    let mut carol_s = d1.connect("c-phone", &carol).await;
    c.settle(&[1, 2]).await;
    let api0 = c.node(0).api();
    let group = group(&api0, &a, "Team", "bob").await;
    say(&api0, &a, &group, "before").await;
    hears(&mut bob_tab, "before").await;
    let (n0, n1) = (c.node(0), c.node(1));
    let reread = n1.metric("vchat_cluster_rooms_reread_total").await;

    unsafe_kill(n1.pid(), 19); // SIGSTOP
    let resume = ResumeOnDrop(n1.pid());
    n0.wait_metric("vchat_cluster_nodes", |v| v == 1.0).await;
    bob_out_carol_in(&api0, &a, &group).await;
    drop(resume);
    n1.wait_metric("vchat_cluster_rooms_reread_total", |v| v > reread)
        .await;
    n0.wait_metric("vchat_cluster_nodes", |v| v == 2.0).await;
    c.wait_subscribers(&c.room_channel(&group), 2).await;
    c.wait_subscribers(&c.room_channel(&pair), 2).await;

    hears_the_pair_not_the_group(&api0, &a, &pair, &group, &mut bob_tab).await;
    hears(&mut carol_s, "after").await;
}

/// Behind a Redis that answers every command, but slowly (each request arrives 250 ms late), a
/// node's queue to other nodes does not grow without end: an event that waited a heartbeat TTL
/// in it is dropped and counted, and the node is back to normal once the queue is through.
#[tokio::test]
async fn events_for_other_nodes_that_wait_a_ttl_behind_a_slow_redis_are_dropped() {
    let mut link: Option<(RedisLink, String)> = None;
    let env = [
        ("VCHAT_NODE_TTL_MS", "6000"),
        ("VCHAT_MAX_EVENTS_PER_SECOND", "1000000"),
    ];
    // Both nodes through one link.
    let Some(c) = TestCluster::start_behind("cluster: slow redis", 2, &env, |_, url| {
        link.get_or_insert_with(|| RedisLink::start(url)).1.clone()
    }) else {
        return;
    };
    let (link, _) = link.expect("the link is up");
    let (a, _b, room) = alice_and_bob(&c).await;
    let b_tab = token("bob", Some("b-tab"));
    let (d0, d1) = (Driver::new(c.node(0)).await, Driver::new(c.node(1)).await);
    let alice = d0.connect("a-phone", &a).await;
    let mut bob_tab = d1.connect("b-tab", &b_tab).await;
    c.settle(&[1, 1]).await;
    let n0 = c.node(0);

    // A round trip now carries up to 256 of node 0's operations and takes 250 ms: about 1,000
    // room emits a second reach node 1, so most of 15,000 wait longer than the TTL (6 s).
    // Sent 200 at a time, each lot once node 0 has taken the one before (its handler only
    // queues the emit), so that alice's socket refuses none however busy the machine is.
    link.set_delay(Duration::from_millis(250));
    let typing = json!({"roomId": room, "status": "typing"});
    const SENT: usize = 15_000;
    const LOT: usize = 200;
    let taken = n0.metric("vchat_socket_events_total").await as usize;
    for lot in 1..=SENT / LOT {
        alice
            .emit_repeated("v1RoomStatusChange", &typing, LOT)
            .await;
        n0.wait_metric("vchat_socket_events_total", |v| {
            v as usize >= taken + lot * LOT
        })
        .await;
    }
    n0.wait_metric_within(
        "vchat_cluster_events_late_total",
        |v| v > 0.0,
        Duration::from_secs(60),
    )
    .await;
    link.set_delay(Duration::ZERO);

    let recording = json!({"roomId": room, "status": "recording"});
    alice.emit("v1RoomStatusChange", &recording).await;
    let mut typed = 0usize;
    while bob_tab.expect("v1OnRoomStatusChange").await["status"] != "recording" {
        typed += 1;
    }
    // Every emit bob's tablet did not hear was late on node 0, or found its send buffer on
    // node 1 full (it reads its socket as fast as it can, but 15,000 arrive at once).
    let late = n0.metric("vchat_cluster_events_late_total").await as usize;
    let full = c.node(1).metric("vchat_emits_dropped_total").await as usize;
    assert!(
        typed > 0 && typed + late + full == SENT,
        "{typed} heard, {late} late, {full} dropped at a full buffer, of {SENT}"
    );
    // Dropped for their wait alone: every publish was taken.
    assert_eq!(n0.metric("vchat_cluster_events_unsent_total").await, 0.0);
    assert_eq!(n0.metric("vchat_cluster_redis_unanswered").await, 0.0);
}
