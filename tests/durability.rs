//! Durability under faults: the server killed (SIGKILL) while a burst of message sends and call
//! transitions is in flight, and a backup taken while it serves traffic.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

/// What the clients were told succeeded, per call.
#[derive(Debug, Default, Clone)]
struct Acked {
    created: bool,
    accepted: bool,
    ended: bool,
}

async fn all_messages(api: &Api, t: &str, room: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let q = match &last {
            None => format!("channel/{room}/message/?limit=100"),
            Some(l) => format!("channel/{room}/message/?limit=100&lastId={l}"),
        };
        let docs = api.get(&q, t).await.ok()["docs"]
            .as_array()
            .unwrap()
            .clone();
        if docs.is_empty() {
            return out;
        }
        last = docs.last().unwrap()["_id"].as_str().map(str::to_string);
        out.extend(docs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_in_the_middle_of_a_burst_loses_nothing_acknowledged() {
    let mut server = TestServer::start();
    let api = server.api();
    let users: Vec<String> = (0..6).map(|i| token(&format!("u{i}"), Some("d"))).collect();
    for t in &users {
        api.touch(t).await;
    }
    // Three pairs call each other in a loop; two senders chat in their rooms.
    let mut rooms = Vec::new();
    for p in 0..3 {
        rooms.push(
            api.peer_room(&users[2 * p], &format!("u{}", 2 * p + 1))
                .await,
        );
    }
    let acked_msgs = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let acked_calls = Arc::new(Mutex::new(HashMap::<String, Acked>::new()));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for (s, room) in rooms.iter().enumerate().take(2) {
        let (api, t, room, acked, progress) = (
            server.api(),
            users[2 * s].clone(),
            room.clone(),
            acked_msgs.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let local = format!("m{s}-{i}");
                let r = api
                    .http
                    .post(format!("{}/api/v2/channel/{room}/message/", api.base))
                    .header("authorization", format!("Bearer {t}"))
                    .json(&json!({"content": local, "localId": local, "messageType": "text"}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().push((room.clone(), local));
                        progress.notify_one();
                    }
                    _ => return,
                }
            }
        }));
    }
    for (p, room) in rooms.iter().enumerate() {
        let (api, caller, callee, room, acked) = (
            server.api(),
            users[2 * p].clone(),
            users[2 * p + 1].clone(),
            room.clone(),
            acked_calls.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let post = |path: String, t: String| {
                let api = &api;
                async move {
                    api.http
                        .post(format!("{}/api/v2/{path}", api.base))
                        .header("authorization", format!("Bearer {t}"))
                        .json(&json!({}))
                        .send()
                        .await
                        .ok()
                        .filter(|r| r.status() == 200)
                }
            };
            loop {
                let Some(r) = post(format!("call/create/{room}"), caller.clone()).await else {
                    return;
                };
                let meet = r.json::<Value>().await.unwrap()["data"]["meetId"]
                    .as_str()
                    .unwrap()
                    .to_string();
                acked
                    .lock()
                    .unwrap()
                    .entry(meet.clone())
                    .or_default()
                    .created = true;
                if post(format!("call/accept/{meet}"), callee.clone())
                    .await
                    .is_none()
                {
                    return;
                }
                acked.lock().unwrap().get_mut(&meet).unwrap().accepted = true;
                if post(format!("call/end/{meet}"), caller.clone())
                    .await
                    .is_none()
                {
                    return;
                }
                acked.lock().unwrap().get_mut(&meet).unwrap().ended = true;
            }
        }));
    }
    // Kill it while everything is in full swing: after 150 acknowledged messages, with the call
    // loops still running.
    while acked_msgs.lock().unwrap().len() < 150 {
        progress.notified().await;
    }
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let acked_msgs = acked_msgs.lock().unwrap().clone();
    let acked_calls = acked_calls.lock().unwrap().clone();
    assert!(
        acked_calls.values().filter(|c| c.ended).count() >= 1,
        "calls were in flight too"
    );

    let server = server.restart();
    let api = server.api();
    // Every acknowledged message is there, once; whatever else is there is whole.
    for (s, room) in rooms.iter().enumerate().take(2) {
        let stored = all_messages(&api, &users[2 * s], room).await;
        let texts: Vec<_> = stored
            .iter()
            .filter(|m| m["mT"] == "text")
            .map(|m| {
                assert_eq!(
                    m["c"], m["lId"],
                    "a message is all there or not at all: {m}"
                );
                m["lId"].as_str().unwrap().to_string()
            })
            .collect();
        let mut unique = texts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), texts.len(), "no message twice");
        for (r, local) in acked_msgs.iter().filter(|(r, _)| r == room) {
            assert!(texts.contains(local), "acknowledged {local} in {r} is lost");
        }
    }
    // Every acknowledged transition is there; no call is left ringing or running. (History
    // shows the last 30 calls; the store has them all.)
    let db = server.db().await;
    let calls: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, accepted_at FROM calls")
            .fetch_all(&db)
            .await
            .unwrap();
    let stored: HashMap<_, _> = calls.into_iter().map(|(id, s, a)| (id, (s, a))).collect();
    for (status, _) in stored.values() {
        assert!(
            !matches!(status.as_str(), "ring" | "inCall"),
            "stuck: {status}"
        );
    }
    for (meet, a) in &acked_calls {
        let (status, accepted_at) = stored
            .get(meet)
            .unwrap_or_else(|| panic!("acknowledged call {meet} lost"));
        if a.accepted {
            assert!(accepted_at.is_some(), "acknowledged accept of {meet} lost");
            assert_eq!(status, "finished", "{meet}");
        }
    }
    for p in 0..3 {
        let history = api.get("call/history", &users[2 * p]).await.ok();
        assert!(!history.as_array().unwrap().is_empty());
    }
    assert_eq!(server.metric("vchat_live_calls").await, 0.0);
    // Nobody is left busy: each pair can call again.
    for (p, room) in rooms.iter().enumerate() {
        api.post(&format!("call/create/{room}"), &users[2 * p], json!({}))
            .await
            .ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_has_every_acknowledged_message() {
    if store_is_postgres() {
        eprintln!("skipped: `vchat-signal backup` copies the SQLite store (PostgreSQL: pg_dump)");
        return;
    }
    let server = TestServer::start();
    let api = server.api();
    let (a, b) = (token("alice", None), token("bob", None));
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    for i in 0..50 {
        api.post(
            &format!("channel/{room}/message/"),
            &a,
            json!({"content": format!("before-{i}"), "localId": format!("before-{i}"), "messageType": "text"}),
        )
        .await
        .ok();
    }
    // Keep writing while the backup runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (api, a, room, stop) = (server.api(), a.clone(), room.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                api.post(
                    &format!("channel/{room}/message/"),
                    &a,
                    json!({"content": "during", "localId": format!("during-{n}"), "messageType": "text"}),
                )
                .await
                .ok();
                n += 1;
            }
            n
        })
    };
    let file = std::env::temp_dir().join(format!(
        "vchat-backup-{}.db",
        vchat_signal::ids::random_hex(6)
    ));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vchat-signal"))
        .arg("backup")
        .arg(&file)
        .env_clear()
        .env("VCHAT_DATA_DIR", &server.data_dir)
        .env("VCHAT_JWT_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = writer.await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("backed up"));
    assert!(during > 0, "the server was writing during the backup");
    // A second backup to the same file is refused rather than overwriting it.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_vchat-signal"))
        .arg("backup")
        .arg(&file)
        .env_clear()
        .env("VCHAT_DATA_DIR", &server.data_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    // Restore into a fresh data dir and start a server on it.
    let restored = TestServer::start_on_copy(&file);
    let api = restored.api();
    let stored = all_messages(&api, &a, &room).await;
    for i in 0..50 {
        let l = format!("before-{i}");
        assert!(
            stored.iter().any(|m| m["lId"] == l.as_str()),
            "{l} missing from the backup"
        );
    }
    let db = restored.db().await;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let _ = std::fs::remove_file(&file);
}
