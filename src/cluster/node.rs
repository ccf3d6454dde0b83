//! Runs this node in the cluster: the subscriber that keeps the presence replica and serves
//! requests for the calls this node owns, the heartbeat, and the watch that purges dead nodes'
//! sockets and takes their calls over.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures_util::StreamExt;

use super::takeover;
use super::wire::{Msg, Reply};
use crate::app::App;

/// Starts the node's background work: the subscriber (presence replica, requests, answers),
/// the heartbeat, and the watch for dead nodes.
pub async fn run(app: &Arc<App>) -> Result<(), String> {
    if app.cluster.is_none() {
        return Ok(());
    }
    let pubsub = subscribe(app).await?;
    let weak = Arc::downgrade(app);
    tokio::spawn(listen(weak.clone(), pubsub));
    tokio::spawn(watch(weak));
    Ok(())
}

/// Subscribes to this node's channels, then reads who is where. Subscribed first, then the
/// snapshot: a change made in between is both in the snapshot and in the stream, and applying
/// it twice is harmless. This node's own sockets are written back to its presence hash (Redis
/// may have restarted empty). The connection's sink goes to the rooms' subscriptions, which
/// subscribe every room with a member socket here on it.
async fn subscribe(app: &Arc<App>) -> Result<redis::aio::PubSubStream, String> {
    let cluster = app.cluster.as_ref().expect("cluster mode");
    let mut pubsub = cluster
        .client
        .get_async_pubsub()
        .await
        .map_err(|e| format!("cannot subscribe in Redis: {e}"))?;
    pubsub
        .subscribe(&[
            cluster.presence_channel(),
            cluster.bus_channel(&cluster.node),
        ])
        .await
        .map_err(|e| format!("cannot subscribe in Redis: {e}"))?;
    let (sink, stream) = pubsub.split();
    if let Some(listening) = &app.notify.listening {
        listening.connection(sink);
    }
    cluster.look().await.map_err(|e| e.to_string())?;
    let snapshot = cluster.snapshot().await.map_err(|e| e.to_string())?;
    // What we knew of other nodes may have changed unheard while we were not subscribed.
    let before = app.presence.purge(|_| true);
    for (run, sid, user, device) in snapshot {
        if cluster.is_live_run(&run) {
            if let Ok(sid) = sid.parse() {
                app.presence.add_remote(&run, &user, &device, sid);
            }
        }
    }
    // Ours, to nodes listening now (published) and to nodes that start later (the hash).
    for (user, device, sid) in app.presence.local_sockets() {
        cluster.socket_up(&user, &device, sid.as_str()).await;
    }
    // Devices that left while we were not listening: their calls' owners hear it now.
    let app2 = app.clone();
    tokio::spawn(async move {
        for (user, device) in before {
            if !app2.presence.device_online(&user, &device) {
                crate::calls::route::device_gone(&app2, &user, &device).await;
            }
        }
    });
    Ok(stream)
}

/// Reads the cluster's messages in order; when the subscription breaks (Redis restarted, a
/// network cut), subscribes again.
async fn listen(app: Weak<App>, first: redis::aio::PubSubStream) {
    let mut pubsub = Some(first);
    let mut broke = None;
    loop {
        if let Some(mut stream) = pubsub.take() {
            while let Some(m) = stream.next().await {
                let Some(app) = app.upgrade() else { return };
                let Ok(text) = m.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<Msg>(&text) {
                    Ok(msg) => on_message(&app, msg),
                    Err(e) => tracing::warn!(error = %e, "unreadable cluster message"),
                }
            }
            tracing::error!("the Redis subscription ended; subscribing again");
            if let Some(a) = app.upgrade() {
                broke = Some(crate::chat::replay::Break {
                    at: std::time::SystemTime::now(),
                    rooms_on_channels: a
                        .cluster
                        .as_ref()
                        .is_some_and(|c| c.all_speak(super::wire::ROOMS_SINCE)),
                    held: a.notify.delivered.hold(),
                });
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(a) = app.upgrade() else { return };
        if a.cluster
            .as_ref()
            .is_some_and(|c| c.stopping.load(Ordering::SeqCst))
        {
            return;
        }
        match subscribe(&a).await {
            Ok(p) => {
                tracing::warn!("subscribed to the cluster again");
                pubsub = Some(p);
                // What other nodes sent while we were not subscribed was lost here: membership
                // changes, then the messages of the rooms the sockets are in now.
                let (app, broke) = (a.clone(), broke.take());
                tokio::spawn(async move {
                    crate::realtime::membership::reread_all(app.clone()).await;
                    if let Some(broke) = broke {
                        crate::chat::replay::since(&app, broke).await;
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe yet"),
        }
    }
}

fn on_message(app: &Arc<App>, msg: Msg) {
    let Some(cluster) = app.cluster.as_ref() else {
        return;
    };
    match msg {
        Msg::Up {
            node,
            user,
            device,
            sid,
        } => {
            if node == cluster.incarnation {
                return;
            }
            let Ok(sid) = sid.parse() else { return };
            app.presence.add_remote(&node, &user, &device, sid);
            // A party of a call owned here came back on another node: ring it or hand it what
            // was kept, even if its node could not tell us (it asks too; both are idempotent).
            if let Some(meet_id) = app.calls.call_of(&user) {
                let app = app.clone();
                tokio::spawn(async move {
                    crate::calls::service::device_back_here(
                        &app,
                        &user,
                        &device,
                        sid,
                        Some(&meet_id),
                    )
                    .await;
                });
            }
        }
        Msg::Profile { node, user } => {
            if node != cluster.incarnation {
                app.profiles.forget(&user);
            }
        }
        Msg::Gone { node } => {
            // A node stopping gracefully: its sockets are gone now, not when its heartbeat
            // would have lapsed.
            let gone = app.presence.purge(|run| run == node);
            let app = app.clone();
            tokio::spawn(async move {
                for (user, device) in gone {
                    crate::calls::route::device_gone(&app, &user, &device).await;
                }
            });
        }
        Msg::Down { node, user, sid } => {
            if node != cluster.incarnation {
                if let Ok(sid) = sid.parse() {
                    app.presence.remove(&user, sid);
                }
            }
        }
        Msg::Answer { id, rep } => {
            if let Some((_, tx)) = cluster.pending.remove(&id) {
                let _ = tx.send(rep);
            }
        }
        Msg::Tell(told) => crate::calls::route::serve_told(app, told),
        Msg::Emit { sids, event, text } => app.notify.from_peer(&sids, &event, &text),
        Msg::Kick { sid } => app.notify.from_peer_kick(&sid),
        Msg::Room {
            from,
            room,
            event,
            text,
        } => {
            // This node's own emits come back on the channels it listens to: sent already.
            if from != cluster.incarnation {
                app.notify.from_peer_room(&room, &event, &text);
            }
        }
        Msg::Member {
            id,
            from,
            user,
            room,
            join,
        } => {
            let listen = app.notify.member_from_peer(&user, &room, join);
            if !listen && id.is_none() {
                return;
            }
            // Also unanswered (a change kept through a Redis outage and sent after it): the
            // room's channel is listened to either way.
            let app = app.clone();
            tokio::spawn(async move {
                if let Some(listening) = app.notify.listening.as_ref().filter(|_| listen) {
                    listening.ensure(vec![room]).await;
                }
                if let (Some(c), Some(id)) = (app.cluster.as_ref(), id) {
                    c.answer(&from, id, Reply::Done).await;
                }
            });
        }
        Msg::Ask { id, from, req } => {
            // Requests run concurrently; each asker waits for its answer before it asks again,
            // so one socket's requests still run in the order it sent them.
            let app = app.clone();
            tokio::spawn(async move {
                let rep = crate::calls::route::serve(&app, req).await;
                if let Some(c) = app.cluster.as_ref() {
                    c.answer(&from, id, rep).await;
                }
            });
        }
    }
}

/// Heartbeat, and the watch for nodes that stopped beating: their sockets leave presence (so
/// their calls' parties get their grace) and their calls are taken over.
async fn watch(app: Weak<App>) {
    let period = {
        let Some(app) = app.upgrade() else { return };
        let Some(c) = app.cluster.as_ref() else {
            return;
        };
        c.ttl / 3
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        let Some(c) = app.cluster.as_ref() else {
            return;
        };
        if c.stopping.load(Ordering::SeqCst) {
            return;
        }
        match c.beat().await {
            Ok(false) => {}
            Ok(true) => {
                tracing::error!(
                    "this node's heartbeat had lapsed (stalled, or cut off from Redis); rejoining"
                );
                rejoin(&app).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat not written");
                continue;
            }
        }
        let lost = match c.look().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node list");
                continue;
            }
        };
        for node in &lost {
            tracing::warn!(node, "node stopped beating; its sockets leave presence");
        }
        sweep(&app, &lost).await;
    }
}

/// This node was taken for dead and is back: calls another node took over meanwhile are no
/// longer ours (their timers go, their parties stay busy), and our sockets are announced again
/// to nodes that dropped them.
async fn rejoin(app: &Arc<App>) {
    let Some(cluster) = app.cluster.as_ref() else {
        return;
    };
    for meet_id in app.calls.meet_ids() {
        let ours = match app.store.call_node(&meet_id).await {
            Ok(Some((_, node))) => node == cluster.node,
            Ok(None) => false,
            Err(_) => true,
        };
        if !ours {
            if let Some(mut g) = app.calls.lock(&meet_id).await {
                tracing::warn!(
                    meet_id,
                    "call taken over while we were away; dropping our copy"
                );
                app.calls.forget(&mut g);
            }
        }
    }
    for (user, device, sid) in app.presence.local_sockets() {
        cluster.socket_up(&user, &device, sid.as_str()).await;
    }
    // Nodes that took us for dead sent us no membership changes meanwhile.
    tokio::spawn(crate::realtime::membership::reread_all(app.clone()));
}

/// One round of the watch: sockets of dead nodes leave presence (their call devices get their
/// grace), then dead nodes' calls are claimed, and a dead node with nothing left is forgotten.
pub async fn sweep(app: &Arc<App>, lost: &[String]) {
    let Some(cluster) = app.cluster.as_ref() else {
        return;
    };
    let gone = app.presence.purge(|run| !cluster.is_live_run(run));
    if !lost.is_empty() || !gone.is_empty() {
        tracing::info!(nodes = ?lost, devices = gone.len(), "sockets of dead nodes left presence");
    }
    let dead = match cluster.dead_nodes().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list nodes");
            return;
        }
    };
    for node in &dead {
        let calls = match app.store.live_calls_on(node).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list a dead node's calls");
                continue;
            }
        };
        for meet_id in &calls {
            takeover::claim(app, meet_id, node).await;
        }
        if matches!(app.store.live_calls_on(node).await, Ok(c) if c.is_empty()) {
            let _ = cluster.forget_node(node).await;
        }
    }
    for (user, device) in gone {
        crate::calls::route::device_gone(app, &user, &device).await;
    }
}

/// At start: calls this node id owned in an earlier run (a restart with a fixed
/// `VCHAT_NODE_ID`) are picked up again like a dead node's.
pub async fn resume(app: &Arc<App>) {
    let Some(cluster) = app.cluster.as_ref() else {
        return;
    };
    match app.store.live_calls_on(&cluster.node).await {
        Ok(calls) => {
            for meet_id in calls {
                takeover::claim(app, &meet_id, &cluster.node).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list this node's earlier calls"),
    }
}
