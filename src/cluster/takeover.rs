//! Calls whose node died. A live node claims each one with a compare-and-swap on the call's
//! row (owner and revision), so exactly one node takes it; the winner rebuilds it from the
//! store, re-arms its deadline from the stored times, keeps each grace its last owner stored,
//! and gives every other party that is nowhere a whole grace. The parties' clients reconnect (through the load balancer) to any node; their
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
        return taken_here(app, meet_id).await;
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
    let Some(mut guard) = app.calls.insert_new(LiveCall::new(call, caller)) else {
        // Another task of this node (the sweep, or a request for the call) got here first.
        return taken_here(app, meet_id).await;
    };
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
    let graces = super::graces::take(cluster, meet_id).await;
    let live = guard.as_mut().expect("just inserted");
    arm_restored(app, live, &graces);
    app.metrics.inc(|m| &m.calls_taken_over);
    tracing::warn!(
        meet_id,
        from = dead,
        status = live.call.status.as_str(),
        "call taken over"
    );
    true
}

/// Whether a call in this node's registry is live here, once its lock is free: a claim of it
/// under way holds the lock until it has won (live here) or lost (gone from the registry).
pub async fn taken_here(app: &Arc<App>, meet_id: &str) -> bool {
    app.calls.lock(meet_id).await.is_some()
}
