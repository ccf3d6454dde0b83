//! Calls whose node died. A live node claims each one with a compare-and-swap on the call's
//! row (owner and revision), so exactly one node takes it; the winner rebuilds it from the
//! store, re-arms its deadline from the stored times and gives every party that is nowhere its
//! grace. The parties' clients reconnect (through the load balancer) to any node; their
//! requests find the new owner in the store.

use std::sync::Arc;

use crate::app::App;
use crate::calls::registry::LiveCall;
use crate::calls::service::{arm_restored, call_of_record};
use crate::wire::shapes::UserData;

/// Claims call `meet_id` from `dead` (its owner). True if this node now owns it.
pub async fn claim(app: &Arc<App>, meet_id: &str, dead: &str) -> bool {
    let Some(cluster) = app.cluster.as_ref() else {
        return false;
    };
    if app.calls.contains(meet_id) {
        return true;
    }
    let rec = match app.store.call(meet_id).await {
        Ok(Some(r)) => r,
        _ => return false,
    };
    let Some(call) = call_of_record(&rec) else {
        tracing::error!(meet_id, "a stored call cannot be read back; not taken over");
        return false;
    };
    if !call.status.is_live() {
        return false;
    }
    let caller = match app.store.user(&call.caller).await {
        Ok(Some(u)) => UserData::from(&u),
        _ => return false,
    };
    // In the registry (locked) before the claim is visible: a request that finds us in the
    // store waits for the rebuild instead of finding no call.
    let (caller_id, callee_id) = (call.caller.clone(), call.callee.clone());
    let mut guard = app.calls.insert(LiveCall::new(call, caller));
    match app
        .store
        .claim_call(meet_id, dead, &cluster.node, rec.rev)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            app.calls.forget(&mut guard);
            return false;
        }
        Err(e) => {
            tracing::warn!(meet_id, error = %e, "call not claimed");
            app.calls.forget(&mut guard);
            return false;
        }
    }
    app.calls.mark_busy(&caller_id, meet_id);
    app.calls.mark_busy(&callee_id, meet_id);
    let live = guard.as_mut().expect("just inserted");
    arm_restored(app, live);
    app.metrics.inc(|m| &m.calls_taken_over);
    tracing::warn!(
        meet_id,
        from = dead,
        status = live.call.status.as_str(),
        "call taken over"
    );
    true
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
            claim(app, meet_id, node).await;
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
                claim(app, &meet_id, &cluster.node).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list this node's earlier calls"),
    }
}
