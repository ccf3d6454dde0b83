//! Busy users across a cluster: a user is in at most one live call whichever node placed it.
//! Alone, the registry's busy index is the judge and these do nothing.

use super::registry::Busy;
use crate::app::App;

/// Marks both users busy with `meet_id` across the cluster, or neither: the same id order as
/// the local reserve, so glare across nodes leaves exactly one call. A mark left by a call
/// that is no longer live (its node died between ending it and freeing its users) is cleared.
pub async fn hold_pair(app: &App, caller: &str, callee: &str, meet_id: &str) -> Result<(), Hold> {
    let Some(cluster) = app.cluster.as_ref() else {
        return Ok(());
    };
    let order = if caller <= callee {
        [(caller, Busy::Caller), (callee, Busy::Callee)]
    } else {
        [(callee, Busy::Callee), (caller, Busy::Caller)]
    };
    let mut held: Vec<&str> = Vec::new();
    for (user, side) in order {
        if let Err(e) = hold_one(app, user, meet_id, side).await {
            for u in held {
                cluster.unhold(u, meet_id).await;
            }
            return Err(e);
        }
        held.push(user);
    }
    Ok(())
}

/// Why the cluster would not mark a user busy.
pub enum Hold {
    Busy(Busy),
    Down(String),
}

async fn hold_one(app: &App, user: &str, meet_id: &str, side: Busy) -> Result<(), Hold> {
    let cluster = app.cluster.as_ref().expect("cluster mode");
    for _ in 0..2 {
        let holder = cluster
            .hold(user, meet_id)
            .await
            .map_err(|e| Hold::Down(format!("cannot mark the user busy in Redis: {e}")))?;
        let Some(holder) = holder else {
            return Ok(());
        };
        // A holder not in the store yet is being placed right now (its mark expires by itself
        // if its node dies first); one that is stored and over left its mark behind.
        let live = match app.store.call_node(&holder).await {
            Ok(Some((status, _))) => status.is_live(),
            Ok(None) | Err(_) => true,
        };
        if live {
            return Err(Hold::Busy(side));
        }
        tracing::info!(user, holder, "clearing a busy mark left by an ended call");
        cluster.unhold(user, &holder).await;
    }
    Err(Hold::Busy(side))
}

/// The call is stored: its parties stay busy for as long as it can last.
pub async fn confirm_pair(app: &App, a: &str, b: &str) {
    if let Some(cluster) = app.cluster.as_ref() {
        let lifetime = app.config.call_timeout()
            + app.config.max_call_duration()
            + app.config.reconnect_grace()
            + std::time::Duration::from_secs(60);
        cluster.confirm([a, b], lifetime).await;
    }
}

pub async fn unhold_pair(app: &App, a: &str, b: &str, meet_id: &str) {
    if let Some(cluster) = app.cluster.as_ref() {
        tokio::join!(cluster.unhold(a, meet_id), cluster.unhold(b, meet_id));
    }
}
