//! Races over the real server: contenders fired concurrently, many times. Exactly one wins, the
//! losers get a clear 400, and the events match the winner.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_reject_cancel_and_the_ring_timer_have_one_winner() {
    let server = TestServer::start_with(&[("VCHAT_CALL_TIMEOUT_MS", "150")]);
    let api = server.api();
    let a = token("alice", Some("a-phone"));
    let b = token("bob", Some("b-phone"));
    let b2 = token("bob", Some("b-tablet"));
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    let d = Driver::new(&server).await;
    let mut sa = d.connect("a", &a).await;
    let mut sb = d.connect("b", &b).await;
    let mut sb2 = d.connect("b2", &b2).await;
    let mut tally = std::collections::BTreeMap::<String, u32>::new();

    for i in 0..40u64 {
        let meet = api
            .post(&format!("call/create/{room}"), &a, json!({"payload": "o"}))
            .await
            .ok()["meetId"]
            .as_str()
            .unwrap()
            .to_string();
        sb.expect("v1OnNewCall").await;
        sb2.expect("v1OnNewCall").await;
        // Spread the start around the 150 ms ring deadline so every contender, the timer
        // included, gets to win some rounds.
        tokio::time::sleep(Duration::from_millis((i % 8) * 25)).await;
        let (p_acc, p_rej, p_can) = (
            format!("call/accept/{meet}"),
            format!("call/reject/{meet}"),
            format!("call/cancel/{meet}"),
        );
        let (acc, rej, can) = tokio::join!(
            api.post(&p_acc, &b, json!({"payload": "ans"})),
            api.post(&p_rej, &b2, json!({})),
            api.post(&p_can, &a, json!({})),
        );
        let results = [("accept", &acc), ("reject", &rej), ("cancel", &can)];
        let winners: Vec<&str> = results
            .iter()
            .filter(|(_, r)| r.status == 200)
            .map(|(n, _)| *n)
            .collect();
        assert!(winners.len() <= 1, "round {i}: several winners {winners:?}");
        for (name, r) in results.iter().filter(|(_, r)| r.status != 200) {
            let msg = r.err(400);
            assert!(
                msg.contains("not ringing") || msg.contains("already ended"),
                "round {i}: {name} lost with {msg:?}"
            );
        }
        let winner = winners.first().copied().unwrap_or("timer");
        *tally.entry(winner.to_string()).or_default() += 1;
        // The events match the winner (each names this call), and nothing else about this call
        // was said.
        let is_this = |v: serde_json::Value| {
            assert_eq!(
                v["meetId"],
                meet.as_str(),
                "round {i}: an event of another call"
            );
            v
        };
        match winner {
            "accept" => {
                assert_eq!(
                    is_this(sa.expect("v1OnCallAccepted").await)["peerAnswer"],
                    "ans"
                );
                is_this(sb2.expect("v1OnCallCanceled").await);
                api.post(&format!("call/end/{meet}"), &a, json!({}))
                    .await
                    .ok();
                is_this(sa.expect("v1OnCallEnded").await);
                is_this(sb.expect("v1OnCallEnded").await);
                is_this(sb2.expect("v1OnCallEnded").await);
            }
            "reject" => {
                is_this(sa.expect("v1OnCallRejected").await);
                is_this(sb.expect("v1OnCallCanceled").await);
            }
            "cancel" => {
                is_this(sb.expect("v1OnCallCanceled").await);
                is_this(sb2.expect("v1OnCallCanceled").await);
            }
            _ => {
                is_this(sa.expect("v1OnCallTimeout").await);
                is_this(sb.expect("v1OnCallTimeout").await);
                is_this(sb2.expect("v1OnCallTimeout").await);
            }
        }
        // The call is over in the server (its events leave before it is dropped, and an ended
        // call has no timers left), so every socket's fence below comes after all of them.
        server.wait_metric("vchat_live_calls", |v| v == 0.0).await;
        let status = api.get("call/history", &a).await.ok()[0]["callStatus"].clone();
        let want = match winner {
            "accept" => "finished",
            "reject" => "rejected",
            "cancel" => "canceled",
            _ => "timeout",
        };
        assert_eq!(status, want, "round {i}");
        for (s, name) in [(&mut sa, "a"), (&mut sb, "b"), (&mut sb2, "b2")] {
            for ev in [
                "v1OnCallAccepted",
                "v1OnCallRejected",
                "v1OnCallCanceled",
                "v1OnCallTimeout",
                "v1OnCallEnded",
            ] {
                let extra = s.drain(ev).await;
                assert!(
                    extra.is_empty(),
                    "round {i} ({winner} won): {name} also got {ev}"
                );
            }
            s.drain("v1OnNewMessage").await;
        }
    }
    println!("winners over 40 rounds: {tally:?}");
    assert!(tally.len() >= 2, "the race never varied: {tally:?}");
    let m = server.metrics().await;
    assert!(m.contains("vchat_live_calls 0"), "{m}");
    assert!(m.contains("vchat_busy_users 0"), "{m}");
    // The counters agree with what the clients saw.
    assert!(m.contains("vchat_calls_created_total 40"), "{m}");
    for (winner, status) in [
        ("timer", "timeout"),
        ("reject", "rejected"),
        ("cancel", "canceled"),
        ("accept", "finished"),
    ] {
        let n = tally.get(winner).copied().unwrap_or(0);
        let line = format!("vchat_calls_ended_total{{status=\"{status}\"}} {n}\n");
        assert!(m.contains(&line), "want {line:?} in {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn glare_leaves_exactly_one_live_call() {
    let server = TestServer::start();
    let api = server.api();
    let a = token("alice", None);
    let b = token("bob", None);
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    let d = Driver::new(&server).await;
    let _sa = d.connect("a", &a).await;
    let _sb = d.connect("b", &b).await;
    let path = format!("call/create/{room}");
    for i in 0..40 {
        let (x, y) = tokio::join!(
            api.post(&path, &a, json!({})),
            api.post(&path, &b, json!({})),
        );
        let ok: Vec<&Reply> = [&x, &y].into_iter().filter(|r| r.status == 200).collect();
        assert_eq!(ok.len(), 1, "round {i}: {} / {}", x.body, y.body);
        let loser = if x.status == 200 { &y } else { &x };
        let msg = loser.err(400);
        assert!(
            msg == "peerUserInCallNow" || msg.contains("already in another call"),
            "{msg}"
        );
        let meet = ok[0].data()["meetId"].as_str().unwrap().to_string();
        let caller = if x.status == 200 { &a } else { &b };
        api.post(&format!("call/cancel/{meet}"), caller, json!({}))
            .await
            .ok();
    }
    let m = server.metrics().await;
    assert!(m.contains("vchat_live_calls 0"), "{m}");
}
