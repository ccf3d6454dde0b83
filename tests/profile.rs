//! The profile API (`/api/v2/profile/…`): image, name, push key, last seen, user search.

mod common;

use common::*;
use reqwest::multipart::Form;
use serde_json::json;

async fn image(api: &Api, t: &str, bytes: Vec<u8>, name: &str, mime: &str) -> Reply {
    api.multipart(
        "PATCH",
        "profile/image",
        Some(t),
        Form::new().part("file", file_part(bytes, name, mime)),
    )
    .await
}

#[tokio::test]
async fn an_image_is_checked_stored_served_and_shown_to_peers() {
    if common::cluster::single_node_only(
        "other nodes drop their cached profile when told over pub/sub: a message sent through another node within that moment can carry the old image",
    ) {
        return;
    }
    let server = TestServer::start_with(&[("VCHAT_MAX_IMAGE_BYTES", "30000")]);
    let api = server.api();
    let (a, b) = (token("alice", Some("a1")), token("bob", Some("b1")));
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;

    let pic = png(64, 48);
    let d = image(
        &api,
        &a,
        pic.clone(),
        "avatar.bin",
        "application/octet-stream",
    )
    .await
    .ok();
    let url = d["fullImage"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/media/", server.url)), "{url}");
    assert_eq!(d["chatImage"], url.as_str());
    assert_eq!(d["smallImage"], url.as_str());
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()["content-type"],
        "image/png",
        "by content, not by name"
    );
    assert!(got.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(got.bytes().await.unwrap().as_ref(), &pic[..]);

    // Peers see it: the message sender image and the room's picture.
    let m = api
        .post(
            &format!("channel/{room}/message/"),
            &a,
            json!({"content": "hi", "localId": "l1", "messageType": "text"}),
        )
        .await
        .ok();
    assert_eq!(m["sImg"], url.as_str());
    let r = api.get(&format!("channel/{room}"), &b).await.ok();
    assert_eq!(
        r["img"],
        url.as_str(),
        "the token's img claim no longer wins"
    );

    // Refusals change nothing.
    for (bytes, name, status, needle) in [
        (
            b"GIF87a but not really".to_vec(),
            "x.gif",
            400,
            "not an image",
        ),
        (
            b"%PDF-1.4 a document".to_vec(),
            "x.png",
            400,
            "not an image",
        ),
        (Vec::new(), "x.png", 400, "empty"),
        (png(300, 300), "big.png", 413, "too large"),
    ] {
        let msg = image(&api, &a, bytes, name, "image/png").await.err(status);
        assert!(msg.contains(needle), "{name}: {msg}");
    }
    let none = api
        .multipart(
            "PATCH",
            "profile/image",
            Some(&a),
            Form::new().text("file", "not a file"),
        )
        .await;
    assert!(none.err(400).contains("file"));
    let r = api.get(&format!("channel/{room}"), &b).await.ok();
    assert_eq!(r["img"], url.as_str(), "unchanged");
    let missing = reqwest::get(format!("{}/media/avatars/nope.png", server.url))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let traversal = reqwest::get(format!("{}/media/../vchat.db", server.url))
        .await
        .unwrap();
    assert_ne!(
        traversal.status(),
        200,
        "nothing outside the media dir is served"
    );
}

#[tokio::test]
async fn a_new_name_shows_in_later_events_and_outlives_token_claims() {
    if common::cluster::single_node_only(
        "other nodes drop their cached profile when told over pub/sub: a message sent through another node within that moment can carry the old name",
    ) {
        return;
    }
    let server = TestServer::start();
    let api = server.api();
    let (a, b) = (token("alice", Some("a1")), token("bob", Some("b1")));
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    let d = Driver::new(&server).await;
    let sa = d.connect("a", &a).await;
    let mut sb = d.connect("b", &b).await;

    api.patch("profile/name", &a, json!({"fullName": "  Alice Liddell "}))
        .await
        .ok();
    // Typing right after the rename, with no other request in between.
    sa.emit(
        "v1RoomStatusChange",
        &json!({"roomId": room, "status": "recording"}),
    )
    .await;
    assert_eq!(
        sb.expect("v1OnRoomStatusChange").await["name"],
        "Alice Liddell"
    );
    // The token still says "Alice Name"; the chosen name wins from now on.
    let m = api
        .post(
            &format!("channel/{room}/message/"),
            &a,
            json!({"content": "hi", "localId": "l1", "messageType": "text"}),
        )
        .await
        .ok();
    assert_eq!(m["sName"], "Alice Liddell");
    assert_eq!(sb.expect("v1OnNewMessage").await["sName"], "Alice Liddell");
    sa.emit(
        "v1RoomStatusChange",
        &json!({"roomId": room, "status": "typing"}),
    )
    .await;
    assert_eq!(
        sb.expect("v1OnRoomStatusChange").await["name"],
        "Alice Liddell",
        "a socket opened before the rename"
    );
    api.post(&format!("call/create/{room}"), &a, json!({}))
        .await
        .ok();
    assert_eq!(
        sb.expect("v1OnNewCall").await["userData"]["fullName"],
        "Alice Liddell"
    );
    let list = api.get("channel/", &b).await.ok();
    assert_eq!(list["docs"][0]["t"], "Alice Liddell");

    let huge = api
        .patch(
            "profile/name",
            &a,
            json!({"fullName": "x".repeat(300 * 1024)}),
        )
        .await;
    assert!(huge.err(413).contains("too large"));
    for body in [
        json!({}),
        json!({"fullName": ""}),
        json!({"fullName": "   "}),
        json!({"fullName": "x".repeat(101)}),
        json!({"fullName": 7}),
    ] {
        api.patch("profile/name", &a, body.clone()).await.err(400);
    }
    let m = api.get(&format!("channel/{room}"), &b).await.ok();
    assert_eq!(m["t"], "Alice Liddell", "unchanged by refusals");
}

#[tokio::test]
async fn push_keys_are_set_cleared_and_belong_to_one_device() {
    let server = TestServer::start();
    let api = server.api();
    let a = token("alice", Some("a-phone"));
    let b = token("bob", Some("b-phone"));
    api.post("profile/push", &a, json!({"pushKey": "key-1"}))
        .await
        .ok();
    let db = server.db().await;
    let keys = || async {
        sqlx::query_as::<_, (String, String, Option<String>)>(
            "SELECT user_id, device, push_key FROM devices ORDER BY user_id",
        )
        .fetch_all(&db)
        .await
        .unwrap()
    };
    assert_eq!(
        keys().await,
        vec![("alice".into(), "a-phone".into(), Some("key-1".into()))]
    );
    // Bob signs in on the same phone: the key is his now.
    api.post("profile/push", &b, json!({"pushKey": "key-1"}))
        .await
        .ok();
    assert_eq!(
        keys().await,
        vec![
            ("alice".into(), "a-phone".into(), None),
            ("bob".into(), "b-phone".into(), Some("key-1".into()))
        ]
    );
    api.delete("profile/push", &b).await.ok();
    assert_eq!(keys().await[1].2, None);
    for body in [json!({}), json!({"pushKey": ""}), json!({"pushKey": 5})] {
        api.post("profile/push", &a, body).await.err(400);
    }
}

#[tokio::test]
async fn last_seen_and_user_search() {
    let server = TestServer::start();
    let api = server.api();
    let (a, b, c) = (
        token("alice", None),
        token("bob", None),
        token("carol", None),
    );
    for t in [&a, &b, &c] {
        api.touch(t).await;
    }
    assert!(api
        .get("profile/users/nobody/last-seen", &a)
        .await
        .err(404)
        .contains("not found"));
    let d = Driver::new(&server).await;
    let sb = d.connect("b", &b).await;
    // The client hears it is connected before the server has the socket in presence
    // (socketioxide sends the connect packet before our connect handler runs).
    server.wait_metric("vchat_sockets", |v| v == 1.0).await;
    let before = vchat_signal::ids::now_iso();
    let online = api.get("profile/users/bob/last-seen", &a).await.ok();
    assert!(online.as_str().unwrap() >= before.as_str(), "online: now");
    sb.close().await;
    server.wait_metric("vchat_sockets", |v| v == 0.0).await;
    let seen = api.get("profile/users/bob/last-seen", &a).await.ok();
    let seen = seen.as_str().unwrap().to_string();
    assert!(seen >= before, "{seen} is when bob left");
    assert!(seen <= vchat_signal::ids::now_iso());

    let all = api.get("profile/users?limit=10&page=1", &a).await.ok();
    let names: Vec<_> = all["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["identifier"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["bob", "carol"], "everyone but me");
    assert_eq!(
        (all["page"].clone(), all["limit"].clone()),
        (json!(1), json!(10))
    );
    assert!(all["nextPage"].is_null());
    for u in all["docs"].as_array().unwrap() {
        assert!(u["userImages"]["smallImage"].is_string());
        assert!(u["_id"].is_string() && u["fullName"].is_string());
    }
    let page1 = api.get("profile/users?limit=1&page=1", &a).await.ok();
    assert_eq!(page1["nextPage"], 2);
    let page2 = api.get("profile/users?limit=1&page=2", &a).await.ok();
    assert_eq!(page2["docs"][0]["identifier"], "carol");
    let filtered = api.get("profile/users?fullName=CAR", &a).await.ok();
    assert_eq!(filtered["docs"].as_array().unwrap().len(), 1);
    let none = api.get("profile/users?fullName=%25", &a).await.ok();
    assert_eq!(none["docs"], json!([]), "% is a character, not a wildcard");
    for q in ["limit=0", "limit=101", "page=0", "limit=x"] {
        api.get(&format!("profile/users?{q}"), &a).await.err(400);
    }
}
