//! Group screens over the real server with real npm socket.io-client sockets: a group created
//! as the SDK does it (multipart, with its image), title/image/description/extra data, my-info and
//! my-status, the member list and roles (promote, demote, who may), users who could be added,
//! per-member delivered/seen status of a message, the member cap, and a member who left getting
//! nothing more.

mod common;

use common::*;
use serde_json::{json, Value};

struct Team {
    api: Api,
    a: String,
    b: String,
    c: String,
    d: String,
}

async fn team(server: &TestServer) -> Team {
    let api = server.api();
    let t = Team {
        a: token("alice", Some("a-phone")),
        b: token("bob", Some("b-phone")),
        c: token("carol", Some("c-phone")),
        d: token("dave", Some("d-phone")),
        api,
    };
    for tok in [&t.a, &t.b, &t.c, &t.d] {
        t.api.touch(tok).await;
    }
    t
}

/// `POST channel/group` as the SDK sends it: multipart, identifiers as a JSON-string array.
async fn create(t: &Team, name: &str, members: &[&str], image: Option<Vec<u8>>) -> Reply {
    let mut form = reqwest::multipart::Form::new()
        .text("groupName", name.to_string())
        .text("identifiers", json!(members).to_string());
    if let Some(png) = image {
        form = form.part("file", file_part(png, "g.png", "image/png"));
    }
    t.api
        .multipart("POST", "channel/group", Some(&t.a), form)
        .await
}

fn group_path(room: &str, rest: &str) -> String {
    format!("channel/{room}/group/{rest}")
}

async fn info_action(s: &mut Conn<'_>) -> Value {
    let m = s.expect("v1OnNewMessage").await;
    assert_eq!(m["mT"], "info", "{m}");
    m["msgAtt"].clone()
}

#[tokio::test]
async fn settings_info_members_and_roles_work_as_the_group_screens_need() {
    let server = TestServer::start();
    let t = team(&server).await;
    let drv = Driver::new(&server).await;
    let mut bob = drv.connect("b", &t.b).await;
    let _carol = drv.connect("c", &t.c).await;

    let g = create(&t, "Team", &["bob", "carol"], Some(png(6, 6)))
        .await
        .ok();
    assert_eq!(g["rT"], "g");
    let room = g["rId"].as_str().unwrap().to_string();
    let img = g["img"].as_str().unwrap();
    assert!(img.starts_with(&format!("{}/media/", server.url)), "{img}");
    // Spread over a cluster the file is in the bucket, and nginx may ask either node for it.
    assert_eq!(reqwest::get(img).await.unwrap().status(), 200);
    assert_eq!(info_action(&mut bob).await["action"], "createGroup");

    // Settings: admins only, each posting its info message.
    t.api
        .patch(&group_path(&room, "title"), &t.b, json!({"title": "Nope"}))
        .await
        .err(403);
    t.api
        .patch(&group_path(&room, "title"), &t.a, json!({"title": "  "}))
        .await
        .err(400);
    t.api
        .patch(&group_path(&room, "title"), &t.a, json!({"title": "Crew"}))
        .await
        .ok();
    let att = info_action(&mut bob).await;
    assert_eq!(
        (&att["action"], &att["targetName"]),
        (&json!("updateTitle"), &json!("Crew"))
    );
    assert_eq!(
        t.api.get(&format!("channel/{room}"), &t.b).await.ok()["t"],
        "Crew"
    );

    let form =
        reqwest::multipart::Form::new().part("file", file_part(png(3, 3), "n.png", "image/png"));
    let url = t
        .api
        .multipart("PATCH", &group_path(&room, "image"), Some(&t.a), form)
        .await
        .ok();
    let url = url.as_str().unwrap().to_string();
    let att = info_action(&mut bob).await;
    assert_eq!(
        (&att["action"], &att["targetName"]),
        (&json!("updateImage"), &json!(url))
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        file_part(b"not an image".to_vec(), "n.png", "image/png"),
    );
    t.api
        .multipart("PATCH", &group_path(&room, "image"), Some(&t.a), form)
        .await
        .err(400);

    t.api
        .patch(
            &group_path(&room, "description"),
            &t.a,
            json!({"description": "we ship"}),
        )
        .await
        .ok();
    t.api
        .patch(
            &group_path(&room, "extra-data"),
            &t.a,
            json!({"color": "teal", "n": 3}),
        )
        .await
        .ok();
    t.api
        .patch(&group_path(&room, "extra-data"), &t.a, json!([1, 2]))
        .await
        .err(400);

    // my-info as each member sees it.
    let mine = t.api.get(&group_path(&room, "my-info"), &t.a).await.ok();
    assert_eq!(mine["isMeOut"], false);
    assert_eq!(mine["membersCount"], 3);
    assert_eq!(mine["totalOnline"], 2, "bob and carol have sockets: {mine}");
    assert_eq!(mine["myRole"], "superAdmin");
    let s = &mine["groupSettings"];
    assert_eq!(s["cId"], "alice");
    assert_eq!(s["desc"], "we ship");
    assert_eq!(s["extraData"], json!({"color": "teal", "n": 3}));
    assert!(s["createdAt"].is_string());
    let bobs = t.api.get(&group_path(&room, "my-info"), &t.b).await.ok();
    assert_eq!(bobs["myRole"], "member");
    t.api
        .get(&group_path(&room, "my-info"), &t.d)
        .await
        .err(403);
    assert_eq!(
        t.api.get(&group_path(&room, "my-status"), &t.d).await.ok(),
        json!({"isMeOut": true})
    );

    // Roles: any admin promotes; only the creator demotes; the creator stays.
    t.api
        .patch(&group_path(&room, "members/bob/admin"), &t.c, json!({}))
        .await
        .err(403);
    t.api
        .patch(&group_path(&room, "members/bob/admin"), &t.a, json!({}))
        .await
        .ok();
    let att = info_action(&mut bob).await;
    assert_eq!(
        (&att["action"], &att["targetId"]),
        (&json!("upAdmin"), &json!("bob"))
    );
    assert_eq!(
        t.api.get(&group_path(&room, "my-info"), &t.b).await.ok()["myRole"],
        "admin"
    );
    t.api
        .patch(&group_path(&room, "members/carol/admin"), &t.b, json!({}))
        .await
        .ok();
    info_action(&mut bob).await;
    let r = t
        .api
        .patch(&group_path(&room, "members/carol/member"), &t.b, json!({}))
        .await;
    assert!(r.err(403).contains("creator"), "{}", r.body);
    let r = t
        .api
        .patch(&group_path(&room, "members/alice/member"), &t.a, json!({}))
        .await;
    assert!(r.err(400).contains("creator cannot"), "{}", r.body);
    t.api
        .patch(&group_path(&room, "members/carol/member"), &t.a, json!({}))
        .await
        .ok();
    assert_eq!(info_action(&mut bob).await["action"], "downMember");
    for (path, status) in [
        ("members/carol/owner", 400),
        ("members/dave/admin", 400),
        ("members/nobody/admin", 404),
        ("members/carol/member", 400),
    ] {
        t.api
            .patch(&group_path(&room, path), &t.a, json!({}))
            .await
            .err(status);
    }

    // The member list: admins first, paged, filtered by name.
    let page = t
        .api
        .get(&group_path(&room, "members?limit=2&page=1"), &t.c)
        .await
        .ok();
    let roles: Vec<(&str, &str)> = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userData"]["_id"].as_str().unwrap(),
                m["gR"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(roles, [("alice", "superAdmin"), ("bob", "admin")]);
    assert_eq!(
        (&page["page"], &page["limit"], &page["nextPage"]),
        (&json!(1), &json!(2), &json!(2))
    );
    assert!(page["docs"][0]["userData"]["userImages"]["fullImage"].is_string());
    let p2 = t
        .api
        .get(&group_path(&room, "members?limit=2&page=2"), &t.c)
        .await
        .ok();
    assert_eq!(p2["docs"][0]["gR"], "member");
    assert_eq!(p2["nextPage"], Value::Null);
    let named = t
        .api
        .get(&group_path(&room, "members?name=car"), &t.a)
        .await
        .ok();
    assert_eq!(named["docs"].as_array().unwrap().len(), 1);
    t.api
        .get(&group_path(&room, "members?limit=0"), &t.a)
        .await
        .err(400);

    // Who could be added: not members.
    let avail = t
        .api
        .get(&group_path(&room, "available-users-to-add"), &t.a)
        .await
        .ok();
    let ids: Vec<&str> = avail["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dave"]);
    t.api
        .get(&group_path(&room, "available-users-to-add"), &t.d)
        .await
        .err(403);
}

#[tokio::test]
async fn message_status_lists_who_delivered_and_who_saw_it() {
    let server = TestServer::start();
    let t = team(&server).await;
    let g = create(&t, "Team", &["bob", "carol", "dave"], None)
        .await
        .ok();
    let room = g["rId"].as_str().unwrap().to_string();
    let m = t
        .api
        .post(
            &format!("channel/{room}/message/"),
            &t.a,
            json!({"localId": "s1", "messageType": "text", "content": "status?"}),
        )
        .await
        .ok();
    let mid = m["_id"].as_str().unwrap();
    let status = |kind: &'static str| {
        let api = &t.api;
        let (room, mid, a) = (room.clone(), mid.to_string(), t.a.clone());
        async move {
            api.get(
                &group_path(&room, &format!("message/{mid}/status/{kind}")),
                &a,
            )
            .await
            .ok()
        }
    };
    assert_eq!(status("deliver").await["docs"], json!([]));

    // bob's app reports delivery over REST; carol opens the room.
    t.api
        .patch(&format!("channel/{room}/deliver"), &t.b, json!({}))
        .await
        .ok();
    let drv = Driver::new(&server).await;
    let mut carol = drv.connect("c", &t.c).await;
    carol
        .emit("v1EnterChatRoom", &json!({"roomId": room}))
        .await;
    carol.fence().await;

    let delivered = status("deliver").await;
    let who: Vec<&str> = delivered["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["userData"]["_id"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["bob", "carol"]);
    for d in delivered["docs"].as_array().unwrap() {
        assert!(d["dAt"].is_string(), "{d}");
    }
    let seen = status("seen").await;
    assert_eq!(seen["docs"].as_array().unwrap().len(), 1);
    assert_eq!(seen["docs"][0]["userData"]["_id"], "carol");
    assert!(seen["docs"][0]["sAt"].is_string());

    let bad = format!("message/{mid}/status/read");
    t.api.get(&group_path(&room, &bad), &t.a).await.err(400);
    t.api
        .get(&group_path(&room, "message/nope/status/seen"), &t.a)
        .await
        .err(404);
    let eve = token("eve", None);
    t.api.touch(&eve).await;
    t.api
        .get(
            &group_path(&room, &format!("message/{mid}/status/seen")),
            &eve,
        )
        .await
        .err(403);
}

#[tokio::test]
async fn the_member_cap_holds_and_a_member_who_left_gets_nothing_more() {
    let server = TestServer::start_with(&[("VCHAT_MAX_GROUP_MEMBERS", "3")]);
    let t = team(&server).await;
    let r = create(&t, "Big", &["bob", "carol", "dave"], None).await;
    assert!(r.err(400).contains("at most 3 members"), "{}", r.body);
    let g = create(&t, "Small", &["bob"], None).await.ok();
    let room = g["rId"].as_str().unwrap().to_string();
    t.api
        .post(
            &group_path(&room, "members"),
            &t.a,
            json!({"identifiers": ["carol"]}),
        )
        .await
        .ok();
    let r = t
        .api
        .post(
            &group_path(&room, "members"),
            &t.a,
            json!({"identifiers": ["dave"]}),
        )
        .await;
    assert!(r.err(400).contains("at most 3 members"), "{}", r.body);

    let drv = Driver::new(&server).await;
    let mut bob = drv.connect("b", &t.b).await;
    let mut carol = drv.connect("c", &t.c).await;
    t.api
        .post(&group_path(&room, "leave"), &t.c, json!({}))
        .await
        .ok();
    assert_eq!(info_action(&mut bob).await["action"], "leave");
    assert_eq!(
        t.api.get(&group_path(&room, "my-status"), &t.c).await.ok(),
        json!({"isMeOut": true})
    );
    t.api
        .post(
            &format!("channel/{room}/message/"),
            &t.a,
            json!({"localId": "after", "messageType": "text", "content": "still here?"}),
        )
        .await
        .ok();
    assert_eq!(bob.expect("v1OnNewMessage").await["lId"], "after");
    carol.assert_none("v1OnNewMessage").await;
    t.api
        .patch(&group_path(&room, "title"), &t.c, json!({"title": "Mine"}))
        .await
        .err(403);
}
