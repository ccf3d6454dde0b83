//! The room list as the SDK asks for it (filters by title, type, muted, archived, deleted) and
//! each member's own room settings: mute, archive, view-once mode, nickname, translation,
//! delete-for-me, unread count. Settings are one member's: the others see no change.

mod common;

use common::*;
use serde_json::{json, Value};

struct World {
    api: Api,
    a: String,
    b: String,
    ab: String,
    ac: String,
    team: String,
}

async fn world(server: &TestServer) -> World {
    let api = server.api();
    let (a, b, c) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
        token("carol", Some("c-phone")),
    );
    for t in [&a, &b, &c] {
        api.touch(t).await;
    }
    let ab = api.peer_room(&a, "bob").await;
    let ac = api.peer_room(&a, "carol").await;
    let g = api
        .post(
            "channel/group",
            &a,
            json!({"groupName": "Team", "identifiers": ["bob", "carol"]}),
        )
        .await
        .ok();
    let team = g["rId"].as_str().unwrap().to_string();
    let w = World {
        api,
        a,
        b,
        ab,
        ac,
        team,
    };
    // Activity order, newest first: ab, ac, team.
    say(&w, &w.a, &w.ac.clone(), "c1", "hi carol").await;
    say(&w, &w.b, &w.ab.clone(), "b1", "hi alice").await;
    w
}

async fn say(w: &World, t: &str, room: &str, local: &str, text: &str) {
    w.api
        .post(
            &format!("channel/{room}/message/"),
            t,
            json!({"localId": local, "messageType": "text", "content": text}),
        )
        .await
        .ok();
}

async fn list(w: &World, t: &str, query: &str) -> Vec<Value> {
    let d = w.api.get(&format!("channel/?{query}"), t).await.ok();
    assert!(d["page"].is_i64() && d["limit"].is_i64(), "{d}");
    d["docs"].as_array().unwrap().clone()
}

fn ids(rooms: &[Value]) -> Vec<String> {
    rooms
        .iter()
        .map(|r| r["rId"].as_str().unwrap().to_string())
        .collect()
}

fn find<'a>(rooms: &'a [Value], id: &str) -> &'a Value {
    rooms.iter().find(|r| r["rId"] == id).expect("room listed")
}

#[tokio::test]
async fn filters_and_settings_shape_each_members_list() {
    let server = TestServer::start();
    let w = world(&server).await;
    let all = list(&w, &w.a, "limit=20&page=1").await;
    assert_eq!(ids(&all), [w.ab.as_str(), w.ac.as_str(), w.team.as_str()]);
    for r in &all {
        for key in ["isM", "isA", "isD", "uC", "t", "img", "rT", "createdAt"] {
            assert!(!r[key].is_null(), "{key} missing: {r}");
        }
    }

    // Types and titles (a single room's title is the peer's name).
    assert_eq!(ids(&list(&w, &w.a, "roomType=g").await), [w.team.as_str()]);
    assert_eq!(
        ids(&list(&w, &w.a, "roomType=s").await),
        [w.ab.as_str(), w.ac.as_str()]
    );
    assert!(list(&w, &w.a, "roomType=b").await.is_empty());
    w.api.get("channel/?roomType=x", &w.a).await.err(400);
    assert_eq!(ids(&list(&w, &w.a, "title=caro").await), [w.ac.as_str()]);
    assert_eq!(ids(&list(&w, &w.a, "title=tea").await), [w.team.as_str()]);
    assert!(list(&w, &w.a, "title=%25").await.is_empty(), "% is literal");

    // Mute, both ways the SDK asks; only alice's view changes.
    let r = w
        .api
        .patch(
            &format!("channel/{}/notification", w.ab),
            &w.a,
            json!({"isMuted": true}),
        )
        .await
        .ok();
    assert_eq!(r, json!(true));
    assert_eq!(find(&list(&w, &w.a, "").await, &w.ab)["isM"], true);
    assert_eq!(find(&list(&w, &w.b, "").await, &w.ab)["isM"], false);
    assert_eq!(
        ids(&list(&w, &w.a, "mutedOnly=true").await),
        [w.ab.as_str()]
    );
    w.api
        .patch(
            &format!("channel/{}/notification/un-mute", w.ab),
            &w.a,
            json!({}),
        )
        .await
        .ok();
    assert!(list(&w, &w.a, "mutedOnly=true").await.is_empty());
    w.api
        .patch(&format!("channel/{}/notification", w.ab), &w.a, json!({}))
        .await
        .err(400);

    // Archive and view-once mode.
    w.api
        .patch(&format!("channel/{}/archive", w.team), &w.a, json!({}))
        .await
        .ok();
    assert_eq!(
        ids(&list(&w, &w.a, "archiveOnly=true").await),
        [w.team.as_str()]
    );
    assert_eq!(find(&list(&w, &w.a, "").await, &w.team)["isA"], true);
    w.api
        .patch(&format!("channel/{}/un-archive", w.team), &w.a, json!({}))
        .await
        .ok();
    assert!(list(&w, &w.a, "archiveOnly=true").await.is_empty());
    w.api
        .patch(&format!("channel/{}/one-seen/on", w.ac), &w.a, json!({}))
        .await
        .ok();
    assert_eq!(find(&list(&w, &w.a, "").await, &w.ac)["isOneSeen"], true);
    w.api
        .patch(&format!("channel/{}/bogus", w.ac), &w.a, json!({}))
        .await
        .err(404);

    // Nickname: alice's title for the room; empty clears it.
    w.api
        .patch(
            &format!("channel/{}/nick-name", w.ab),
            &w.a,
            json!({"name": "Bobby"}),
        )
        .await
        .ok();
    let ab = w.api.get(&format!("channel/{}", w.ab), &w.a).await.ok();
    assert_eq!(
        (&ab["t"], &ab["nickName"]),
        (&json!("Bobby"), &json!("Bobby"))
    );
    assert_eq!(ids(&list(&w, &w.a, "title=bobb").await), [w.ab.as_str()]);
    assert_eq!(
        w.api.get(&format!("channel/{}", w.ab), &w.b).await.ok()["t"],
        "Alice Name"
    );
    w.api
        .patch(
            &format!("channel/{}/nick-name", w.ab),
            &w.a,
            json!({"name": ""}),
        )
        .await
        .ok();
    assert_eq!(
        w.api.get(&format!("channel/{}", w.ab), &w.a).await.ok()["t"],
        "Bob Name"
    );

    // Translation language.
    w.api
        .patch(
            &format!("channel/{}/translate", w.ab),
            &w.a,
            json!({"transTo": "pt-BR"}),
        )
        .await
        .ok();
    assert_eq!(
        w.api.get(&format!("channel/{}", w.ab), &w.a).await.ok()["tTo"],
        "pt-BR"
    );
    w.api
        .patch(
            &format!("channel/{}/translate", w.ab),
            &w.a,
            json!({"transTo": "<b>"}),
        )
        .await
        .err(400);
    w.api
        .patch(&format!("channel/{}/translate/stop", w.ab), &w.a, json!({}))
        .await
        .ok();
    assert_eq!(
        w.api.get(&format!("channel/{}", w.ab), &w.a).await.ok()["tTo"],
        Value::Null
    );

    // Not a member: 403 on every setting.
    let eve = token("eve", None);
    w.api.touch(&eve).await;
    for path in ["archive", "notification/mute", "one-seen/on"] {
        w.api
            .patch(&format!("channel/{}/{path}", w.ab), &eve, json!({}))
            .await
            .err(403);
    }
    w.api
        .get(&format!("channel/{}/un-read-count", w.ab), &eve)
        .await
        .err(403);
    w.api
        .delete(&format!("channel/{}", w.ab), &eve)
        .await
        .err(403);
}

#[tokio::test]
async fn delete_for_me_hides_the_past_until_something_new_comes() {
    let server = TestServer::start();
    let w = world(&server).await;
    let count = |t: String| {
        let api = &w.api;
        let room = w.ab.clone();
        async move {
            api.get(&format!("channel/{room}/un-read-count"), &t)
                .await
                .ok()
        }
    };
    assert_eq!(count(w.a.clone()).await, json!(1), "bob's hi");

    w.api.delete(&format!("channel/{}", w.ab), &w.a).await.ok();
    assert!(!ids(&list(&w, &w.a, "").await).contains(&w.ab));
    let gone = list(&w, &w.a, "deletedOnly=true").await;
    assert_eq!(ids(&gone), [w.ab.as_str()]);
    assert_eq!(gone[0]["isD"], true);
    assert_eq!(count(w.a.clone()).await, json!(0));
    let page = w
        .api
        .get(&format!("channel/{}/message/", w.ab), &w.a)
        .await
        .ok();
    assert_eq!(page["docs"], json!([]));
    // bob keeps everything.
    let his = w
        .api
        .get(&format!("channel/{}/message/", w.ab), &w.b)
        .await
        .ok();
    assert_eq!(his["docs"].as_array().unwrap().len(), 1);
    assert!(ids(&list(&w, &w.b, "").await).contains(&w.ab));

    // Something new brings the room back, with only what is new.
    say(&w, &w.b, &w.ab.clone(), "b2", "still there?").await;
    let back = list(&w, &w.a, "").await;
    assert_eq!(ids(&back)[0], w.ab);
    let ab = find(&back, &w.ab);
    assert_eq!((&ab["isD"], &ab["uC"]), (&json!(false), &json!(1)));
    assert_eq!(ab["lastMessage"]["lId"], "b2");
    let page = w
        .api
        .get(&format!("channel/{}/message/", w.ab), &w.a)
        .await
        .ok();
    let lids: Vec<&str> = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["lId"].as_str().unwrap())
        .collect();
    assert_eq!(lids, ["b2"]);
    assert_eq!(count(w.a.clone()).await, json!(1));
}
