//! Text chat over the real server with real npm socket.io-client sockets: messages, receipts,
//! deletes, bans, kicks, membership, durability, and every authorization failure.

mod common;

use common::*;
use serde_json::{json, Value};

struct Trio {
    api: Api,
    a: String,
    b: String,
    c: String,
    /// alice ↔ bob single room
    room: String,
}

async fn trio(server: &TestServer) -> Trio {
    let api = server.api();
    let (a, b, c) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
        token("carol", None),
    );
    for t in [&a, &b, &c] {
        api.touch(t).await;
    }
    let room = api.peer_room(&a, "bob").await;
    Trio { api, a, b, c, room }
}

async fn send(api: &Api, t: &str, room: &str, body: Value) -> Reply {
    api.post(&format!("channel/{room}/message/"), t, body).await
}

fn text(local: &str, c: &str) -> Value {
    json!({"content": c, "localId": local, "messageType": "text"})
}

#[tokio::test]
async fn a_message_reaches_every_member_socket_with_all_fields() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut a_phone = d.connect("a-phone", &t.a).await;
    let mut a_tablet = d
        .connect("a-tablet", &token("alice", Some("a-tablet")))
        .await;
    let mut b = d.connect("b", &t.b).await;
    let mut c = d.connect("c", &t.c).await;

    let sent = send(&t.api, &t.a, &t.room, text("l-1", "hello bob"))
        .await
        .ok();
    for s in [&mut a_phone, &mut a_tablet, &mut b] {
        let m = s.expect("v1OnNewMessage").await;
        assert_eq!(m, sent, "the event carries the stored message");
    }
    c.assert_none("v1OnNewMessage").await;
    // Every key the client's parser requires, with the right type.
    for (k, kind) in [
        ("_id", "string"),
        ("sId", "string"),
        ("sIdentifier", "string"),
        ("sName", "string"),
        ("sImg", "string"),
        ("plm", "string"),
        ("rId", "string"),
        ("c", "string"),
        ("isEncrypted", "bool"),
        ("mT", "string"),
        ("lId", "string"),
        ("createdAt", "string"),
        ("updatedAt", "string"),
        ("isStared", "bool"),
    ] {
        let v = &sent[k];
        let ok = match kind {
            "string" => v.is_string(),
            _ => v.is_boolean(),
        };
        assert!(ok, "{k} must be a {kind}: {sent}");
    }
    for k in ["msgAtt", "rTo", "sAt", "dAt", "forId", "dltAt", "pBId"] {
        assert!(sent.get(k).is_some(), "{k} present (null allowed)");
    }
    assert_eq!(sent["sId"], "alice");
    assert_eq!(sent["sName"], "Alice Name");
    assert_eq!(sent["rId"], t.room.as_str());
    assert_eq!(sent["c"], "hello bob");
    assert_eq!(sent["mT"], "text");
    assert_eq!(sent["lId"], "l-1");
    assert_eq!(sent["isEncrypted"], false);
}

#[tokio::test]
async fn a_local_id_retry_returns_the_same_message_and_emits_nothing() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut b = d.connect("b", &t.b).await;
    let first = send(&t.api, &t.a, &t.room, text("same", "once")).await.ok();
    b.expect("v1OnNewMessage").await;
    let again = send(&t.api, &t.a, &t.room, text("same", "once")).await.ok();
    assert_eq!(first["_id"], again["_id"]);
    b.assert_none("v1OnNewMessage").await;
    let page = t
        .api
        .get(&format!("channel/{}/message/", t.room), &t.a)
        .await
        .ok();
    assert_eq!(page["docs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn multipart_sends_types_replies_and_validation() {
    let server = TestServer::start();
    let t = trio(&server).await;
    // multipart, as V Chat clients send it
    let form = reqwest::multipart::Form::new()
        .text("content", "from multipart")
        .text("localId", "mp-1")
        .text("messageType", "text")
        .text("isEncrypted", "false");
    let r = t
        .api
        .http
        .post(format!("{}/api/v2/channel/{}/message/", server.url, t.room))
        .header("authorization", format!("Bearer {}", t.a))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["data"]["c"], "from multipart");

    // a file that is not what its message type says is refused (tests/media.rs has the rest)
    let form = reqwest::multipart::Form::new()
        .text("localId", "mp-2")
        .text("messageType", "image")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("a.png"),
        );
    let r = t
        .api
        .http
        .post(format!("{}/api/v2/channel/{}/message/", server.url, t.room))
        .header("authorization", format!("Bearer {}", t.a))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let m: Value = r.json().await.unwrap();
    assert!(m["data"].as_str().unwrap().contains("not an image"), "{m}");

    // custom and location carry their attachment; reply nests the message
    let custom = send(
        &t.api,
        &t.b,
        &t.room,
        json!({"localId": "cu", "messageType": "custom",
        "content": "x", "attachment": {"data": {"k": 1}}}),
    )
    .await
    .ok();
    assert_eq!(custom["msgAtt"], json!({"data": {"k": 1}}));
    let reply = send(
        &t.api,
        &t.a,
        &t.room,
        json!({"localId": "re", "content": "answer",
        "replyToLocalId": "cu"}),
    )
    .await
    .ok();
    assert_eq!(reply["rTo"]["_id"], custom["_id"]);
    assert_eq!(reply["rTo"]["lId"], "cu");

    for (body, want) in [
        (json!({"content": "x"}), "localId is required"),
        (
            json!({"localId": "v1", "content": "  "}),
            "content is required",
        ),
        (
            json!({"localId": "v2", "messageType": "image"}),
            "multipart part named file",
        ),
        (
            json!({"localId": "v3", "messageType": "allDeleted", "content": "x"}),
            "unknown messageType",
        ),
        (
            json!({"localId": "v4", "messageType": "location", "content": "x"}),
            "attachment",
        ),
        (
            json!({"localId": "v5", "content": "x", "isEncrypted": "maybe"}),
            "isEncrypted",
        ),
        (
            json!({"localId": "v6", "content": "x", "replyToLocalId": "nope"}),
            "replyToLocalId",
        ),
        (json!({"localId": "v7", "content": 5}), "invalid JSON body"),
    ] {
        let r = send(&t.api, &t.a, &t.room, body.clone()).await;
        assert!(r.err(400).contains(want), "{body}: {}", r.body);
    }
}

#[tokio::test]
async fn paging_newest_first_with_last_id() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            send(
                &t.api,
                &t.a,
                &t.room,
                text(&format!("p{i}"), &format!("m{i}")),
            )
            .await
            .ok()["_id"]
                .clone(),
        );
    }
    let page1 = t
        .api
        .get(&format!("channel/{}/message/?limit=2", t.room), &t.b)
        .await
        .ok();
    let got: Vec<_> = page1["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["c"].clone())
        .collect();
    assert_eq!(got, vec![json!("m4"), json!("m3")]);
    let last = page1["docs"][1]["_id"].as_str().unwrap();
    let page2 = t
        .api
        .get(
            &format!("channel/{}/message/?limit=2&lastId={last}", t.room),
            &t.b,
        )
        .await
        .ok();
    let got: Vec<_> = page2["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["c"].clone())
        .collect();
    assert_eq!(got, vec![json!("m2"), json!("m1")]);
    t.api
        .get(&format!("channel/{}/message/?limit=0", t.room), &t.b)
        .await
        .err(400);
    t.api
        .get(&format!("channel/{}/message/?lastId=nope", t.room), &t.b)
        .await
        .err(400);
}

#[tokio::test]
async fn delete_for_all_and_for_me() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &t.a).await;
    let mut b = d.connect("b", &t.b).await;
    let m = send(&t.api, &t.a, &t.room, text("d1", "secret")).await.ok();
    let id = m["_id"].as_str().unwrap();
    // Only the sender deletes for everyone.
    let r = t
        .api
        .delete(&format!("channel/{}/message/{id}/delete/all", t.room), &t.b)
        .await;
    assert!(r.err(403).contains("only the sender"));
    let gone = t
        .api
        .delete(&format!("channel/{}/message/{id}/delete/all", t.room), &t.a)
        .await
        .ok();
    assert_eq!(gone["c"], "");
    assert!(gone["dltAt"].is_string());
    assert_eq!(
        gone["mT"], "text",
        "never allDeleted, which clients cannot parse"
    );
    for s in [&mut a, &mut b] {
        let e = s.expect("v1OnDeleteMessageFromAll").await;
        assert_eq!(e["lId"], "d1");
        assert!(e["dltAt"].is_string());
    }
    // delete for me hides it from me only
    let m2 = send(&t.api, &t.a, &t.room, text("d2", "keep for bob"))
        .await
        .ok();
    let id2 = m2["_id"].as_str().unwrap();
    t.api
        .delete(&format!("channel/{}/message/{id2}/delete/me", t.room), &t.a)
        .await
        .ok();
    let mine = t
        .api
        .get(&format!("channel/{}/message/", t.room), &t.a)
        .await
        .ok();
    assert!(mine["docs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["_id"] != id2));
    let bobs = t
        .api
        .get(&format!("channel/{}/message/", t.room), &t.b)
        .await
        .ok();
    assert!(bobs["docs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["_id"] == id2));
    t.api
        .delete(&format!("channel/{}/message/nope/delete/me", t.room), &t.a)
        .await
        .err(404);
}

#[tokio::test]
async fn ban_and_unban_with_per_user_flags_block_sends_and_calls() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &t.a).await;
    let mut b = d.connect("b", &t.b).await;

    let mine = t.api.post("user-ban/bob/ban", &t.a, json!({})).await.ok();
    assert_eq!(
        mine,
        json!({"isMeBanner": true, "isPeerBanner": false, "roomId": t.room})
    );
    assert_eq!(
        a.expect("v1OnBanUserChat").await,
        json!({"isMeBanner": true, "isPeerBanner": false, "roomId": t.room})
    );
    assert_eq!(
        b.expect("v1OnBanUserChat").await,
        json!({"isMeBanner": false, "isPeerBanner": true, "roomId": t.room}),
        "the banned user sees it from their own side"
    );
    assert_eq!(
        t.api.get("user-ban/alice/ban", &t.b).await.ok(),
        json!({"isMeBanner": false, "isPeerBanner": true, "roomId": t.room})
    );
    for who in [&t.a, &t.b] {
        let r = send(
            &t.api,
            who,
            &t.room,
            text(&format!("x{}", who.len() % 7), "hi"),
        )
        .await;
        assert!(r.err(400).contains("ban"));
        let r = t
            .api
            .post(&format!("call/create/{}", t.room), who, json!({}))
            .await;
        assert!(r.err(400).contains("ban"));
    }
    // Their sockets left the room: no typing relay either.
    a.emit(
        "v1RoomStatusChange",
        &json!({"roomId": t.room, "status": "typing"}),
    )
    .await;
    assert!(a.expect("v1OnException").await["error"]
        .as_str()
        .unwrap()
        .contains("not a member"));
    a.fence().await;
    b.assert_none("v1OnRoomStatusChange").await;

    // Only the banner lifts it.
    let r = t.api.post("user-ban/alice/un-ban", &t.b, json!({})).await;
    assert!(r.err(400).contains("not banned"));
    let lifted = t
        .api
        .post("user-ban/bob/un-ban", &t.a, json!({}))
        .await
        .ok();
    assert_eq!(
        lifted,
        json!({"isMeBanner": false, "isPeerBanner": false, "roomId": t.room})
    );
    b.expect("v1OnBanUserChat").await;
    // Sockets are back in the room: messages flow again.
    send(&t.api, &t.a, &t.room, text("after", "back"))
        .await
        .ok();
    assert_eq!(b.expect("v1OnNewMessage").await["c"], "back");

    // Banning yourself, an unknown user, or a stranger you have no chat with.
    t.api
        .post("user-ban/alice/ban", &t.a, json!({}))
        .await
        .err(400);
    t.api
        .post("user-ban/nobody/ban", &t.a, json!({}))
        .await
        .err(404);
    t.api
        .post("user-ban/carol/ban", &t.a, json!({}))
        .await
        .err(403);
}

#[tokio::test]
async fn kick_removes_the_member_and_their_sockets_from_the_room() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &t.a).await;
    let mut b = d.connect("b", &t.b).await;
    let mut c = d.connect("c", &t.c).await;
    let g = t
        .api
        .post(
            "channel/group",
            &t.a,
            json!({"groupName": "Team", "identifiers": ["bob", "carol"]}),
        )
        .await
        .ok();
    assert_eq!(g["rT"], "g");
    assert_eq!(g["t"], "Team");
    let room = g["rId"].as_str().unwrap().to_string();
    // Sockets joined the new room at once.
    let info = c.expect("v1OnNewMessage").await;
    assert_eq!(info["mT"], "info");
    assert_eq!(info["msgAtt"]["action"], "createGroup");
    // Waited for rather than drained: spread over a cluster, a message posted on another node
    // can reach a socket after its own node has answered a fence.
    for s in [&mut a, &mut b] {
        assert_eq!(
            s.expect("v1OnNewMessage").await["msgAtt"]["action"],
            "createGroup"
        );
    }

    // Non-admins and non-members cannot kick.
    t.api
        .delete(&format!("channel/{room}/group/members/carol"), &t.b)
        .await
        .err(403);
    let eve = token("eve", None);
    t.api
        .delete(&format!("channel/{room}/group/members/carol"), &eve)
        .await
        .err(403);

    t.api
        .delete(&format!("channel/{room}/group/members/carol"), &t.a)
        .await
        .ok();
    for s in [&mut a, &mut b, &mut c] {
        assert_eq!(
            s.expect("v1OnKickGroupMember").await,
            json!({"roomId": room, "userId": "carol"})
        );
    }
    let kick_info = b.expect("v1OnNewMessage").await;
    assert_eq!(kick_info["msgAtt"]["action"], "kick");
    assert_eq!(kick_info["msgAtt"]["targetId"], "carol");
    assert_eq!(kick_info["msgAtt"]["adminName"], "Alice Name");

    // Carol's sockets left: she no longer hears the room.
    send(&t.api, &t.a, &room, text("g1", "after the kick"))
        .await
        .ok();
    assert_eq!(b.expect("v1OnNewMessage").await["c"], "after the kick");
    // Nothing after she left: at most the kick info, posted as her sockets were leaving.
    for m in c.drain("v1OnNewMessage").await {
        assert_eq!(m["msgAtt"]["action"], "kick", "{m}");
    }
    c.assert_none("v1OnNewMessage").await;
    // And she can do nothing there any more.
    send(&t.api, &t.c, &room, text("g2", "let me in"))
        .await
        .err(403);
    t.api
        .get(&format!("channel/{room}/message/"), &t.c)
        .await
        .err(403);
    t.api.get(&format!("channel/{room}"), &t.c).await.err(403);
    c.emit(
        "v1RoomStatusChange",
        &json!({"roomId": room, "status": "typing"}),
    )
    .await;
    c.expect("v1OnException").await;

    assert_eq!(a.expect("v1OnNewMessage").await["msgAtt"]["action"], "kick");
    assert_eq!(a.expect("v1OnNewMessage").await["c"], "after the kick");
    // Adding her back: her live socket hears the room again right away.
    t.api
        .post(
            &format!("channel/{room}/group/members"),
            &t.a,
            json!({"identifiers": ["carol"]}),
        )
        .await
        .ok();
    assert_eq!(
        c.expect("v1OnNewMessage").await["msgAtt"]["action"],
        "addGroupMember"
    );
    // Leaving.
    t.api
        .post(&format!("channel/{room}/group/leave"), &t.b, json!({}))
        .await
        .ok();
    assert_eq!(
        a.expect("v1OnNewMessage").await["msgAtt"]["action"],
        "addGroupMember"
    );
    assert_eq!(
        a.expect("v1OnNewMessage").await["msgAtt"]["action"],
        "leave"
    );
    send(&t.api, &t.b, &room, text("g3", "gone")).await.err(403);

    // The last admin leaving hands the group to its longest-standing member: carol, the only
    // one left.
    t.api
        .post(&format!("channel/{room}/group/leave"), &t.a, json!({}))
        .await
        .ok();
    let mut actions = Vec::new();
    for _ in 0..3 {
        let m = c.expect("v1OnNewMessage").await;
        actions.push((
            m["msgAtt"]["action"].clone(),
            m["msgAtt"]["targetId"].clone(),
        ));
    }
    // Bob's leave may come through another node, so only alice's two are in a known order.
    let at = |a: &str, t: &str| actions.iter().position(|x| x == &(json!(a), json!(t)));
    assert!(at("leave", "bob").is_some(), "{actions:?}");
    assert!(
        at("leave", "alice").unwrap() < at("upAdmin", "carol").unwrap(),
        "{actions:?}"
    );
    // And she can act as one.
    t.api
        .post(
            &format!("channel/{room}/group/members"),
            &t.c,
            json!({"identifiers": ["bob"]}),
        )
        .await
        .ok();
}

#[tokio::test]
async fn rooms_list_and_peer_room_rules() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let again = t.api.peer_room(&t.b, "alice").await;
    assert_eq!(again, t.room, "one single room per pair");
    send(&t.api, &t.a, &t.room, text("r1", "hi")).await.ok();
    let rooms = t.api.get("channel/", &t.b).await.ok();
    let r = &rooms["docs"][0];
    assert_eq!(r["rId"], t.room.as_str());
    assert_eq!(r["rT"], "s");
    assert_eq!(r["pId"], "alice");
    assert_eq!(r["t"], "Alice Name");
    assert_eq!(r["uC"], 1);
    assert_eq!(r["lastMessage"]["c"], "hi");
    assert_eq!(
        t.api.get(&format!("channel/{}", t.room), &t.a).await.ok()["pId"],
        "bob"
    );
    t.api
        .call("POST", "channel/peer-room/nobody", Some(&t.a), None)
        .await
        .err(404);
    t.api
        .call("POST", "channel/peer-room/alice", Some(&t.a), None)
        .await
        .err(400);
    t.api
        .get(&format!("channel/{}", t.room), &t.c)
        .await
        .err(403);
    t.api.get("channel/nope", &t.c).await.err(404);
    t.api
        .post("channel/group", &t.a, json!({"identifiers": ["bob"]}))
        .await
        .err(400);
    t.api
        .post(
            "channel/group",
            &t.a,
            json!({"groupName": "x", "identifiers": ["nobody"]}),
        )
        .await
        .err(404);
}

#[tokio::test]
async fn receipts_over_socket_rest_and_on_connect() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &t.a).await;

    // Bob is offline while alice writes; his connect delivers them and alice is told.
    send(&t.api, &t.a, &t.room, text("o1", "while away"))
        .await
        .ok();
    let mut b = d.connect("b", &t.b).await;
    let r = a.expect("v1OnDeliverChatRoom").await;
    assert_eq!(r["roomId"], t.room.as_str());
    assert_eq!(
        r["userId"], "alice",
        "userId is the sender whose messages changed"
    );
    assert!(r["date"].is_string());

    // Socket deliver, then enter (seen).
    send(&t.api, &t.a, &t.room, text("o2", "now")).await.ok();
    b.expect("v1OnNewMessage").await;
    b.emit("v1DeliverChatRoom", &json!({"roomId": t.room}))
        .await;
    assert_eq!(a.expect("v1OnDeliverChatRoom").await["userId"], "alice");
    b.emit("v1EnterChatRoom", &json!({"roomId": t.room})).await;
    assert_eq!(a.expect("v1OnEnterChatRoom").await["userId"], "alice");
    let page = t
        .api
        .get(&format!("channel/{}/message/", t.room), &t.a)
        .await
        .ok();
    for m in page["docs"].as_array().unwrap() {
        assert!(m["dAt"].is_string() && m["sAt"].is_string(), "{m}");
    }
    assert_eq!(t.api.get("channel/", &t.b).await.ok()["docs"][0]["uC"], 0);

    // REST deliver fallback.
    send(&t.api, &t.a, &t.room, text("o3", "rest")).await.ok();
    t.api
        .call(
            "PATCH",
            &format!("channel/{}/deliver", t.room),
            Some(&t.b),
            None,
        )
        .await
        .ok();
    assert_eq!(
        a.expect("v1OnDeliverChatRoom").await["roomId"],
        t.room.as_str()
    );
    t.api
        .call(
            "PATCH",
            &format!("channel/{}/deliver", t.room),
            Some(&t.c),
            None,
        )
        .await
        .err(403);
}

#[tokio::test]
async fn non_members_change_nothing() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let m = send(&t.api, &t.a, &t.room, text("n1", "private"))
        .await
        .ok();
    let id = m["_id"].as_str().unwrap();
    send(&t.api, &t.c, &t.room, text("n2", "intrude"))
        .await
        .err(403);
    t.api
        .get(&format!("channel/{}/message/", t.room), &t.c)
        .await
        .err(403);
    t.api
        .delete(&format!("channel/{}/message/{id}/delete/all", t.room), &t.c)
        .await
        .err(403);
    t.api
        .delete(&format!("channel/{}/message/{id}/delete/me", t.room), &t.c)
        .await
        .err(403);
    send(&t.api, &t.c, "no-such-room", text("n3", "x"))
        .await
        .err(404);
    let page = t
        .api
        .get(&format!("channel/{}/message/", t.room), &t.a)
        .await
        .ok();
    assert_eq!(page["docs"].as_array().unwrap().len(), 1);
    assert_eq!(page["docs"][0]["c"], "private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_sigkill_exactly_once() {
    if common::cluster::single_node_only("SIGKILL and restart of one process") {
        return;
    }
    let server = TestServer::start();
    let t = trio(&server).await;
    let mut acked = Vec::new();
    for batch in 0..25 {
        let sends: Vec<_> = (0..8)
            .map(|i| {
                let (api, tok, room) = (&t.api, if i % 2 == 0 { &t.a } else { &t.b }, &t.room);
                let local = format!("burst-{batch}-{i}");
                async move {
                    let r = send(api, tok, room, text(&local, &local)).await;
                    (local, r)
                }
            })
            .collect();
        for (local, r) in futures_join_all(sends).await {
            if r.status == 200 {
                acked.push(local);
            }
        }
    }
    assert_eq!(acked.len(), 200, "every send was acknowledged");
    let server = server.restart(); // SIGKILL + restart on the same data dir
    let api = server.api();
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let q = match &last {
            None => format!("channel/{}/message/?limit=100", t.room),
            Some(l) => format!("channel/{}/message/?limit=100&lastId={l}", t.room),
        };
        let page = api.get(&q, &t.a).await.ok();
        let docs = page["docs"].as_array().unwrap().clone();
        if docs.is_empty() {
            break;
        }
        last = docs.last().unwrap()["_id"].as_str().map(str::to_string);
        seen.extend(
            docs.into_iter()
                .map(|m| m["lId"].as_str().unwrap().to_string()),
        );
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no message twice");
    acked.sort();
    assert_eq!(unique, acked, "every acknowledged message is there");
}

async fn futures_join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    // Poll all concurrently.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(Option::unwrap));
    out
}

/// Review fix 1: clients cannot forge server messages (`info`, `call`), and every attachment is
/// checked against its type's shape, so no receiver's parser can be crashed.
#[tokio::test]
async fn clients_cannot_forge_server_messages_or_malformed_attachments() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut b = d.connect("b", &t.b).await;
    for (body, want) in [
        (
            json!({"localId": "f1", "messageType": "info", "content": "bob left",
                   "attachment": {"action": "leave", "targetName": "Bob", "adminName": "Bob", "targetId": "bob"}}),
            "written by the server only",
        ),
        (
            json!({"localId": "f2", "messageType": "call", "content": "📞",
                   "attachment": {"callStatus": "finished", "withVideo": true}}),
            "written by the server only",
        ),
        (
            json!({"localId": "f3", "messageType": "location", "content": "📍",
                   "attachment": {"lat": "north", "long": 2}}),
            "lat must be a number",
        ),
        (
            json!({"localId": "f4", "messageType": "location", "content": "📍",
                   "attachment": {"lat": 1, "long": 2, "linkPreviewData": [1]}}),
            "linkPreviewData must be an object",
        ),
        (
            json!({"localId": "f5", "messageType": "custom", "content": "x",
                   "attachment": {"data": "not a map"}}),
            "data must be an object",
        ),
        (
            json!({"localId": "f6", "messageType": "text", "content": "x",
                   "attachment": {"callStatus": "ring"}}),
            "text messages carry no attachment",
        ),
        (
            json!({"localId": "f7", "messageType": "custom", "content": "x",
                   "attachment": "{not json"}),
            "attachment must be a JSON object",
        ),
    ] {
        let r = send(&t.api, &t.a, &t.room, body.clone()).await;
        assert!(r.err(400).contains(want), "{body}: {}", r.body);
    }
    b.assert_none("v1OnNewMessage").await;
    // What is accepted is rebuilt to its shape: extra keys are dropped.
    let loc = send(
        &t.api,
        &t.a,
        &t.room,
        json!({"localId": "ok1", "messageType": "location", "content": "📍",
               "attachment": "{\"lat\": 48.85, \"long\": 2.35, \"linkPreviewData\": {\"title\": \"Paris\", \"onload\": \"x\"}, \"filePath\": \"/etc\"}"}),
    )
    .await
    .ok();
    assert_eq!(
        loc["msgAtt"],
        json!({"lat": 48.85, "long": 2.35, "linkPreviewData": {"title": "Paris"}})
    );
    let custom = send(
        &t.api,
        &t.a,
        &t.room,
        json!({"localId": "ok2", "messageType": "custom", "content": "x"}),
    )
    .await
    .ok();
    assert_eq!(
        custom["msgAtt"],
        json!({"data": {}}),
        "the SDK's parser needs data"
    );
    assert_eq!(b.expect("v1OnNewMessage").await["lId"], "ok1");
}

/// Review fix 4: in a group, one member's delivered/seen must not flip the message's shared
/// `dAt`/`sAt`; single rooms still do.
#[tokio::test]
async fn group_receipts_stay_per_member() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let g = t
        .api
        .post(
            "channel/group",
            &t.a,
            json!({"groupName": "G", "identifiers": ["bob", "carol"]}),
        )
        .await
        .ok();
    let group = g["rId"].as_str().unwrap().to_string();
    let m = send(&t.api, &t.a, &group, text("g1", "hi all")).await.ok();
    let d = Driver::new(&server).await;
    let mut b = d.connect("b", &t.b).await;
    b.emit("v1DeliverChatRoom", &json!({"roomId": group})).await;
    b.emit("v1EnterChatRoom", &json!({"roomId": group})).await;
    b.fence().await;
    t.api
        .call(
            "PATCH",
            &format!("channel/{group}/deliver"),
            Some(&t.c),
            None,
        )
        .await
        .ok();
    let page = t
        .api
        .get(&format!("channel/{group}/message/?limit=5"), &t.a)
        .await
        .ok();
    let stored = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["_id"] == m["_id"])
        .unwrap()
        .clone();
    assert_eq!(
        (stored["dAt"].clone(), stored["sAt"].clone()),
        (Value::Null, Value::Null)
    );
    // Bob's own unread count did move.
    let list = t.api.get("channel/?limit=20&page=1", &t.b).await.ok();
    let mine = list["docs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rId"] == group.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["uC"], 0);
    // A single room still stamps the message for its sender.
    let s = send(&t.api, &t.a, &t.room, text("s1", "hi bob")).await.ok();
    b.emit("v1EnterChatRoom", &json!({"roomId": t.room})).await;
    b.fence().await;
    let page = t
        .api
        .get(&format!("channel/{}/message/?limit=5", t.room), &t.a)
        .await
        .ok();
    let stored = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["_id"] == s["_id"])
        .unwrap()
        .clone();
    assert!(stored["sAt"].is_string() && stored["dAt"].is_string());
}

/// Review fix 8: a forward names its original by localId among the messages the forwarder can
/// see only, and a localId names one message per room, so nobody can make a reply or forward
/// point at a message of their choosing.
#[tokio::test]
async fn forwards_and_replies_resolve_only_what_the_sender_can_see() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let carol_bob = t.api.peer_room(&t.c, "bob").await;
    let secret = send(&t.api, &t.a, &t.room, text("L-secret", "alice to bob only"))
        .await
        .ok();
    // Carol cannot reach alice and bob's message by its localId.
    let r = send(
        &t.api,
        &t.c,
        &carol_bob,
        json!({"localId": "c1", "content": "fwd", "forwardLocalId": "L-secret"}),
    )
    .await;
    assert!(r.err(400).contains("names no message in your rooms"));
    // Nor plant a message under that localId in the room it lives in.
    let planted = send(&t.api, &t.b, &t.room, text("L-secret", "bob reuses it")).await;
    assert!(planted
        .err(400)
        .contains("already used by another message in this room"));
    // Carol may use the same localId in her own room; when alice forwards "L-secret" she gets
    // her own message (she cannot see carol's room anyway).
    send(&t.api, &t.c, &carol_bob, text("L-secret", "carol's own"))
        .await
        .ok();
    let fwd = send(
        &t.api,
        &t.a,
        &t.room,
        json!({"localId": "a-fwd", "content": "fwd", "forwardLocalId": "L-secret"}),
    )
    .await
    .ok();
    assert_eq!(
        fwd["forId"], secret["_id"],
        "alice's own message, not carol's"
    );
    let reply = send(
        &t.api,
        &t.b,
        &t.room,
        json!({"localId": "b-re", "content": "re", "replyToLocalId": "L-secret"}),
    )
    .await
    .ok();
    assert_eq!(
        reply["rTo"]["_id"], secret["_id"],
        "the reply resolves in its room"
    );
}

/// The room list the SDK parses: `{docs, page, limit, nextPage}` with ints, and the keys its
/// room parser needs for single and group rooms.
#[tokio::test]
async fn the_room_list_has_the_shape_the_sdk_parses() {
    let server = TestServer::start();
    let t = trio(&server).await;
    t.api
        .post(
            "channel/group",
            &t.a,
            json!({"groupName": "G", "identifiers": ["bob"]}),
        )
        .await
        .ok();
    let all = t.api.get("channel/?limit=20&page=1", &t.a).await.ok();
    assert_eq!(
        (all["page"].clone(), all["limit"].clone()),
        (json!(1), json!(20))
    );
    assert!(all["nextPage"].is_null());
    let docs = all["docs"].as_array().unwrap();
    assert_eq!(docs.len(), 2);
    for r in docs {
        for key in [
            "rId",
            "rT",
            "t",
            "img",
            "uC",
            "isA",
            "isM",
            "isD",
            "createdAt",
        ] {
            assert!(r.get(key).is_some_and(|v| !v.is_null()), "{key} in {r}");
        }
        assert!(r["uC"].is_i64());
        match r["rT"].as_str().unwrap() {
            "s" => assert!(r["pId"].is_string(), "single rooms need pId: {r}"),
            "g" => assert_eq!(r["t"], "G"),
            other => panic!("room type {other}"),
        }
    }
    let first = t.api.get("channel/?limit=1&page=1", &t.a).await.ok();
    assert_eq!(first["nextPage"], 2);
    let second = t.api.get("channel/?limit=1&page=2", &t.a).await.ok();
    assert!(second["nextPage"].is_null());
    assert_ne!(first["docs"][0]["rId"], second["docs"][0]["rId"]);
    t.api.get("channel/?page=0", &t.a).await.err(400);
}

/// PostgreSQL text cannot hold U+0000: the server refuses it wherever a client can put it, with
/// the same clear error on both stores, and stays healthy (this suite also runs on PostgreSQL).
#[tokio::test]
async fn nul_characters_are_refused_with_a_clear_error_everywhere() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let d = Driver::new(&server).await;
    let mut a = d.connect("a", &t.a).await;
    let mut b = d.connect("b", &t.b).await;
    // JSON bodies: in the content, in an attachment, in a key.
    for body in [
        text("n1", "a\u{0}b"),
        json!({"localId": "n2", "messageType": "custom", "content": "x",
               "attachment": {"data": {"k": "\u{0}"}}}),
        json!({"localId": "n3", "messageType": "text", "content": "x", "\u{0}": 1}),
    ] {
        let r = send(&t.api, &t.a, &t.room, body.clone()).await;
        assert!(r.err(400).contains("NUL"), "{body}: {}", r.body);
    }
    // An escaped backslash before `u0000` is text, not a NUL.
    let ok = send(&t.api, &t.a, &t.room, text("n4", "a\\u0000b"))
        .await
        .ok();
    assert_eq!(ok["c"], "a\\u0000b");
    assert_eq!(b.expect("v1OnNewMessage").await["lId"], "n4");
    // Multipart text fields and file names.
    let form = reqwest::multipart::Form::new()
        .text("content", "a\u{0}")
        .text("localId", "n5")
        .text("messageType", "text");
    let r = t
        .api
        .multipart(
            "POST",
            &format!("channel/{}/message/", t.room),
            Some(&t.a),
            form,
        )
        .await;
    assert!(r.err(400).contains("NUL"), "{}", r.body);
    // Ids in the URL path and query (behind nginx, nginx refuses `%00` itself, in HTML).
    let direct = common::cluster::spread_nodes() == 1;
    for path in [
        "channel/a%00b".to_string(),
        format!("channel/{}/message/x%00/delete/all", t.room),
        "profile/users?search=%00".to_string(),
        "call/accept/%00".to_string(),
    ]
    .into_iter()
    .filter(|_| direct)
    {
        let method = if path.starts_with("call/") {
            "POST"
        } else if path.contains("delete") {
            "DELETE"
        } else {
            "GET"
        };
        let r = t.api.call(method, &path, Some(&t.a), None).await;
        assert!(r.err(400).contains("NUL"), "{method} {path}: {}", r.body);
    }
    // Socket payloads, as a JSON string and as an object.
    a.emit("v1DeliverChatRoom", &json!({"roomId": "a\u{0}"}))
        .await;
    assert!(a.expect("v1OnException").await["error"]
        .as_str()
        .unwrap()
        .contains("NUL"));
    a.emit_raw(
        "v1RoomStatusChange",
        json!([{"roomId": "\u{0}", "status": "typing"}]),
    )
    .await;
    assert!(a.expect("v1OnException").await["error"]
        .as_str()
        .unwrap()
        .contains("NUL"));
    // Token claims.
    let bad = token("nul\u{0}user", Some("x"));
    let r = t.api.get("call/active", &bad).await;
    assert!(r.err(450).contains("NUL"), "{}", r.body);
    // Nothing was stored or sent, and the server still serves.
    b.assert_none("v1OnNewMessage").await;
    let after = send(&t.api, &t.a, &t.room, text("n6", "fine")).await.ok();
    assert_eq!(after["c"], "fine");
    assert_eq!(b.expect("v1OnNewMessage").await["lId"], "n6");
    let list = t
        .api
        .get(&format!("channel/{}/message", t.room), &t.b)
        .await
        .ok();
    let ids: Vec<&str> = list["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["lId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["n6", "n4"], "{list}");
}

/// The SDK's message search and filters (`text`, `filter=media|links|file|voice|all`) and stars:
/// each member's own, per room and across rooms, `isStared` for the viewer only.
#[tokio::test]
async fn search_filters_and_stars() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let room = &t.room;
    for (l, c) in [
        ("t1", "see https://example.com/x"),
        ("t2", "Lunch at noon?"),
        ("t3", "100% sure_thing"),
    ] {
        send(&t.api, &t.a, room, text(l, c)).await.ok();
    }
    let form = reqwest::multipart::Form::new()
        .text("localId", "i1")
        .text("messageType", "image")
        .text("content", "📷")
        .part("file", file_part(png(2, 2), "a.png", "image/png"));
    t.api
        .multipart(
            "POST",
            &format!("channel/{room}/message/"),
            Some(&t.a),
            form,
        )
        .await
        .ok();
    let lids = |v: &Value| -> Vec<String> {
        v["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["lId"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |q: &str| {
        let (api, path, tok) = (&t.api, format!("channel/{room}/message/?{q}"), t.b.clone());
        async move { api.get(&path, &tok).await }
    };
    assert_eq!(lids(&get("text=LUNCH").await.ok()), ["t2"]);
    assert_eq!(lids(&get("text=%25").await.ok()), ["t3"], "% is literal");
    assert_eq!(lids(&get("text=_").await.ok()), ["t3"], "_ is literal");
    assert_eq!(lids(&get("filter=links").await.ok()), ["t1"]);
    assert_eq!(lids(&get("filter=media").await.ok()), ["i1"]);
    assert!(lids(&get("filter=voice").await.ok()).is_empty());
    assert_eq!(lids(&get("filter=all&limit=2").await.ok()), ["i1", "t3"]);
    assert!(get("filter=photos").await.err(400).contains("filter"));

    // Stars are bob's own.
    let page = get("").await.ok();
    let id_of = |l: &str| {
        page["docs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["lId"] == l)
            .unwrap()["_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (t1, t2) = (id_of("t1"), id_of("t2"));
    for id in [&t1, &t2] {
        t.api
            .post(
                &format!("channel/{room}/message/{id}/star"),
                &t.b,
                json!({}),
            )
            .await
            .ok();
    }
    t.api
        .post(
            &format!("channel/{room}/message/{t1}/star"),
            &t.b,
            json!({}),
        )
        .await
        .ok();
    let mine = t
        .api
        .get(&format!("channel/{room}/message/stars"), &t.b)
        .await
        .ok();
    assert_eq!(lids(&mine), ["t2", "t1"], "newest star first, once each");
    assert!(mine["docs"][0]["isStared"].as_bool().unwrap());
    let everywhere = t.api.get("channel/messages/stars", &t.b).await.ok();
    assert_eq!(lids(&everywhere), ["t2", "t1"]);
    let alices = t.api.get("channel/messages/stars", &t.a).await.ok();
    assert!(lids(&alices).is_empty());
    let seen_by_a = t
        .api
        .get(&format!("channel/{room}/message/?text=lunch"), &t.a)
        .await
        .ok();
    assert_eq!(seen_by_a["docs"][0]["isStared"], false);
    assert_eq!(get("text=lunch").await.ok()["docs"][0]["isStared"], true);

    t.api
        .post(
            &format!("channel/{room}/message/{t2}/un-star"),
            &t.b,
            json!({}),
        )
        .await
        .ok();
    let mine = t
        .api
        .get(&format!("channel/{room}/message/stars"), &t.b)
        .await
        .ok();
    assert_eq!(lids(&mine), ["t1"]);
    // A message deleted for everyone leaves the stars; strangers cannot star.
    t.api
        .delete(&format!("channel/{room}/message/{t1}/delete/all"), &t.a)
        .await
        .ok();
    assert!(lids(&t.api.get("channel/messages/stars", &t.b).await.ok()).is_empty());
    t.api
        .post(
            &format!("channel/{room}/message/{t2}/star"),
            &t.c,
            json!({}),
        )
        .await
        .err(403);
    t.api
        .post(
            &format!("channel/{room}/message/nope/star"),
            &t.b,
            json!({}),
        )
        .await
        .err(404);
}

/// View-once messages: the flag from the form or, when absent, from the sender's room setting;
/// receivers mark them opened (`isOneSeenByMe` is theirs alone).
#[tokio::test]
async fn view_once_messages() {
    let server = TestServer::start();
    let t = trio(&server).await;
    let room = &t.room;
    let d = Driver::new(&server).await;
    let mut b = d.connect("b", &t.b).await;
    let form = reqwest::multipart::Form::new()
        .text("content", "only once")
        .text("localId", "o1")
        .text("messageType", "text")
        .text("isOneSeen", "true");
    let sent = t
        .api
        .multipart(
            "POST",
            &format!("channel/{room}/message/"),
            Some(&t.a),
            form,
        )
        .await
        .ok();
    assert_eq!(sent["isOneSeen"], true);
    let got = b.expect("v1OnNewMessage").await;
    assert_eq!(
        (&got["isOneSeen"], &got["isOneSeenByMe"]),
        (&json!(true), &json!(false))
    );
    let id = sent["_id"].as_str().unwrap();

    t.api
        .patch(
            &format!("channel/{room}/message/{id}/one-seen"),
            &t.a,
            json!({}),
        )
        .await
        .err(400);
    t.api
        .patch(
            &format!("channel/{room}/message/{id}/one-seen"),
            &t.c,
            json!({}),
        )
        .await
        .err(403);
    t.api
        .patch(
            &format!("channel/{room}/message/{id}/one-seen"),
            &t.b,
            json!({}),
        )
        .await
        .ok();
    let bobs = t
        .api
        .get(&format!("channel/{room}/message/"), &t.b)
        .await
        .ok();
    assert_eq!(bobs["docs"][0]["isOneSeenByMe"], true);
    let alices = t
        .api
        .get(&format!("channel/{room}/message/"), &t.a)
        .await
        .ok();
    assert_eq!(alices["docs"][0]["isOneSeenByMe"], false);

    // The sender's room setting decides when the form does not say.
    t.api
        .patch(&format!("channel/{room}/one-seen/on"), &t.a, json!({}))
        .await
        .ok();
    let m = send(&t.api, &t.a, room, text("o2", "by setting"))
        .await
        .ok();
    assert_eq!(m["isOneSeen"], true);
    let m = send(
        &t.api,
        &t.a,
        room,
        json!({"localId": "o3", "content": "said no", "isOneSeen": "false"}),
    )
    .await
    .ok();
    assert_eq!(m["isOneSeen"], false);
    let plain = m["_id"].as_str().unwrap();
    t.api
        .patch(
            &format!("channel/{room}/message/{plain}/one-seen"),
            &t.b,
            json!({}),
        )
        .await
        .err(400);
    let r = send(
        &t.api,
        &t.a,
        room,
        json!({"localId": "o4", "content": "x", "isOneSeen": "maybe"}),
    )
    .await;
    assert!(r.err(400).contains("isOneSeen"), "{}", r.body);
}
