//! Broadcast lists over the real server with real npm socket.io-client sockets: a message in the
//! broadcast room reaches each recipient as a copy in their single room with the owner (`pBId`
//! set), its delivered/seen status comes from those copies, recipients are managed by the owner
//! only, and a resend makes no second copy.

mod common;

use common::*;
use serde_json::{json, Value};

fn path(room: &str, rest: &str) -> String {
    format!("channel/{room}/broadcast/{rest}")
}

async fn say(api: &Api, t: &str, room: &str, local: &str, text: &str) -> Value {
    api.post(
        &format!("channel/{room}/message/"),
        t,
        json!({"localId": local, "messageType": "text", "content": text}),
    )
    .await
    .ok()
}

#[tokio::test]
async fn a_broadcast_reaches_each_recipient_privately() {
    let server = TestServer::start();
    let api = server.api();
    let (a, b, c, d, e) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
        token("carol", Some("c-phone")),
        token("dave", Some("d-phone")),
        token("eve", Some("e-phone")),
    );
    for t in [&a, &b, &c, &d, &e] {
        api.touch(t).await;
    }
    let drv = Driver::new(&server).await;
    let mut bob = drv.connect("b", &b).await;

    let form = reqwest::multipart::Form::new()
        .text("broadcastName", "News")
        .text("identifiers", json!(["bob", "carol"]).to_string())
        .part("file", file_part(png(4, 4), "n.png", "image/png"));
    let room = api
        .multipart("POST", "channel/broadcast", Some(&a), form)
        .await
        .ok();
    assert_eq!(room["rT"], "b");
    assert_eq!(room["t"], "News");
    let bid = room["rId"].as_str().unwrap().to_string();
    let listed = |t: String, q: &'static str| {
        let api = &api;
        async move {
            api.get(&format!("channel/?{q}"), &t).await.ok()["docs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["rId"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(a.clone(), "roomType=b").await, [bid.as_str()]);
    assert!(
        !listed(b.clone(), "").await.contains(&bid),
        "recipients do not see the list"
    );

    // A message: the original in the broadcast room, a copy in each recipient's single room.
    let orig = say(&api, &a, &bid, "n1", "release is out").await;
    let copy = bob.expect("v1OnNewMessage").await;
    assert_eq!(copy["pBId"], orig["_id"]);
    assert_eq!(copy["c"], "release is out");
    assert_eq!(copy["sId"], "alice");
    let ab = copy["rId"].as_str().unwrap().to_string();
    assert_ne!(ab, bid);
    assert_eq!(
        api.peer_room(&b, "alice").await,
        ab,
        "the pair's single room"
    );
    let ac = api.peer_room(&c, "alice").await;
    let carols = api.get(&format!("channel/{ac}/message/"), &c).await.ok();
    assert_eq!(carols["docs"][0]["pBId"], orig["_id"]);
    assert_eq!(carols["docs"].as_array().unwrap().len(), 1);
    // A resend of the same localId makes no second copy.
    let again = say(&api, &a, &bid, "n1", "release is out").await;
    assert_eq!(again["_id"], orig["_id"]);
    bob.assert_none("v1OnNewMessage").await;

    // Status from the copies: bob's app delivers, then bob opens the chat.
    let status = |kind: &'static str| {
        let (api, p, a) = (
            &api,
            path(
                &bid,
                &format!("message/{}/status/{kind}", orig["_id"].as_str().unwrap()),
            ),
            a.clone(),
        );
        async move { api.get(&p, &a).await.ok() }
    };
    assert_eq!(status("deliver").await["docs"], json!([]));
    api.patch(&format!("channel/{ab}/deliver"), &b, json!({}))
        .await
        .ok();
    let delivered = status("deliver").await;
    assert_eq!(delivered["docs"].as_array().unwrap().len(), 1);
    assert_eq!(delivered["docs"][0]["userData"]["_id"], "bob");
    assert!(delivered["docs"][0]["dAt"].is_string());
    bob.emit("v1EnterChatRoom", &json!({"roomId": ab})).await;
    bob.fence().await;
    let seen = status("seen").await;
    assert_eq!(seen["docs"][0]["userData"]["_id"], "bob");
    assert!(seen["docs"][0]["sAt"].is_string());

    // Recipients: the owner's to manage.
    assert_eq!(
        api.get(&path(&bid, "my-info"), &a).await.ok(),
        json!({"totalUsers": 2})
    );
    api.get(&path(&bid, "my-info"), &b).await.err(403);
    api.post(&path(&bid, "members"), &b, json!({"identifiers": ["dave"]}))
        .await
        .err(403);
    let avail = api
        .get(&path(&bid, "available-users-to-add"), &a)
        .await
        .ok();
    let ids: Vec<&str> = avail["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dave", "eve"]);
    api.post(&path(&bid, "members"), &a, json!({"identifiers": ["dave"]}))
        .await
        .ok();
    let members = api.get(&path(&bid, "members"), &a).await.ok();
    let names: Vec<&str> = members["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userData"]["_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol", "dave"]);
    assert!(members["docs"][0]["createdAt"].is_string());
    api.delete(&path(&bid, "members/carol"), &a).await.ok();
    api.delete(&path(&bid, "members/carol"), &a).await.err(400);
    assert_eq!(
        api.get(&path(&bid, "my-info"), &a).await.ok(),
        json!({"totalUsers": 2})
    );
    say(&api, &a, &bid, "n2", "second").await;
    assert_eq!(bob.expect("v1OnNewMessage").await["c"], "second");
    let carols = api.get(&format!("channel/{ac}/message/"), &c).await.ok();
    assert_eq!(
        carols["docs"].as_array().unwrap().len(),
        1,
        "carol left the list"
    );
    let ad = api.peer_room(&d, "alice").await;
    let daves = api.get(&format!("channel/{ad}/message/"), &d).await.ok();
    assert_eq!(daves["docs"][0]["c"], "second");

    // Title and image: the owner's.
    api.patch(&path(&bid, "title"), &b, json!({"title": "Mine"}))
        .await
        .err(403);
    api.patch(&path(&bid, "title"), &a, json!({"title": "Weekly"}))
        .await
        .ok();
    assert_eq!(
        api.get(&format!("channel/{bid}"), &a).await.ok()["t"],
        "Weekly"
    );
    let form =
        reqwest::multipart::Form::new().part("file", file_part(png(2, 2), "i.png", "image/png"));
    let url = api
        .multipart("PATCH", &path(&bid, "image"), Some(&a), form)
        .await
        .ok();
    assert!(url.as_str().unwrap().contains("/media/"));
    // A broadcast needs a name and someone to reach.
    let form = reqwest::multipart::Form::new()
        .text("broadcastName", "")
        .text("identifiers", "[\"bob\"]");
    api.multipart("POST", "channel/broadcast", Some(&a), form)
        .await
        .err(400);
    let form = reqwest::multipart::Form::new()
        .text("broadcastName", "x")
        .text("identifiers", "[\"nobody\"]");
    api.multipart("POST", "channel/broadcast", Some(&a), form)
        .await
        .err(404);
}
