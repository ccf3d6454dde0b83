//! Where a call's work runs. Alone, everything runs here. In a cluster a live call is owned by
//! one node (it holds the call's lock, timers and kept events): work on a call this node does
//! not own is sent to its owner and the owner's answer returned, and a call whose owner is dead
//! is taken over first. Handlers call these functions, never the `*_here` ones.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::socket::Sid;

use super::machine::{Action, Status};
use super::service;
use crate::app::App;
use crate::auth::Identity;
use crate::cluster::lanes::{Candidate, Filed};
use crate::cluster::link::{node_of_run, AskError};
use crate::cluster::takeover;
use crate::cluster::wire::{Reply, Request, Told, WireError, CREATE_SINCE};
use crate::wire::shapes::Exception;
use crate::wire::{events, ApiError};

enum Owner {
    Here,
    There(String),
}

/// Which node runs work on `meet_id`. A dead owner's call is claimed first.
async fn owner(app: &Arc<App>, meet_id: &str) -> Owner {
    let Some(cluster) = app.cluster.as_ref() else {
        return Owner::Here;
    };
    // Here, unless it was a claim of this node's that has just lost the call to another node:
    // its lock tells (the work after this takes that lock anyway).
    if app.calls.contains(meet_id) && takeover::taken_here(app, meet_id).await {
        return Owner::Here;
    }
    let now = std::time::Instant::now();
    if let Some(node) = cluster.owners.get(meet_id, now) {
        if cluster.is_alive(&node) {
            return Owner::There(node);
        }
    }
    // A few rounds: another node may claim the call between our read and our claim.
    for _ in 0..3 {
        app.metrics.inc(|m| &m.call_owner_reads);
        let node = match app.store.call_node(meet_id).await {
            Ok(Some((status, node))) if status.is_live() && node != cluster.node => node,
            // Not live, unknown, ours, or the store cannot say: the local path answers.
            _ => {
                cluster.owners.forget(meet_id);
                return Owner::Here;
            }
        };
        if cluster.is_alive(&node) {
            cluster.owners.put(meet_id, &node, now);
            return Owner::There(node);
        }
        if takeover::claim(app, meet_id, &node).await {
            return Owner::Here;
        }
    }
    Owner::Here
}

/// Where work on a call went.
enum Routed {
    /// Run it here (this node owns the call, or just took it over).
    Here,
    /// The owner ran it and answered.
    Answered(Reply),
    Unreachable(AskError),
}

/// Sends `req` to the owner of `meet_id`. An owner that does not answer is looked at again:
/// dead, its call is taken over (by us, or by another node we then ask); alive (it may have
/// been restarting), it is asked once more.
async fn to_owner(app: &Arc<App>, meet_id: &str, req: Request) -> Routed {
    let mut last = None;
    for _ in 0..2 {
        let node = match owner(app, meet_id).await {
            Owner::Here => return Routed::Here,
            Owner::There(node) => node,
        };
        let cluster = app
            .cluster
            .as_ref()
            .expect("only clusters have other nodes");
        match cluster.ask(&node, req.clone()).await {
            Ok(rep) => return Routed::Answered(rep),
            Err(e) => {
                tracing::warn!(meet_id, node, error = %e, "the call's node did not answer");
                cluster.owners.forget(meet_id);
                cluster.refresh().await;
                last = Some(e);
            }
        }
    }
    Routed::Unreachable(last.expect("asked at least once"))
}

fn unavailable(e: AskError) -> ApiError {
    ApiError::Unavailable(format!("the node running this call cannot be reached: {e}"))
}

/// Places a new call. In a cluster it is run by the node holding the caller's socket (the
/// acting device's), wherever the REST request arrived: that party's candidates then start at
/// the call's owner. With N nodes and sockets spread evenly a candidate crosses 1 − 1/N nodes
/// on average instead of 2(1 − 1/N), and none when both parties share a node. A caller with no
/// socket, or on a node too old to run a forwarded creation, gets the call run here.
pub async fn create(
    app: &Arc<App>,
    who: &Identity,
    device: String,
    room_id: &str,
    body: crate::wire::shapes::CreateCall,
) -> Result<service::CreatedCall, ApiError> {
    let Some(node) = callers_node(app, who, &device) else {
        return service::create(app, who, device, room_id, body).await;
    };
    let cluster = app
        .cluster
        .as_ref()
        .expect("only clusters have other nodes");
    let req = Request::Create {
        who: who.clone(),
        device: device.clone(),
        room_id: room_id.to_string(),
        body: body.clone(),
    };
    match cluster.ask_if_heard(&node, req).await {
        Ok(Reply::Created {
            meet_id: Some(meet_id),
            ..
        }) => {
            app.metrics.inc(|m| &m.calls_forwarded);
            Ok(service::CreatedCall {
                meet_id,
                ice_servers: app.ice.for_user(&who.user_id).ice_servers,
            })
        }
        Ok(Reply::Created { err: Some(e), .. }) => Err(e.into()),
        Ok(other) => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        // Nobody read it, so nothing was created: the call is run here.
        Err(AskError::Unheard(_)) => service::create(app, who, device, room_id, body).await,
        // It may have been created there: running it here too could ring the callee twice.
        Err(e) => Err(ApiError::Unavailable(format!(
            "the node holding your socket cannot be reached: {e}"
        ))),
    }
}

/// The node that should run a call `who` places from `device`, when not this one.
fn callers_node(app: &App, who: &Identity, device: &str) -> Option<String> {
    let cluster = app.cluster.as_ref()?;
    if app.config.call_placement != "caller" {
        return None;
    }
    let run = app.presence.remote_run_of_device(&who.user_id, device)?;
    let node = node_of_run(&run);
    (cluster.is_live_run(&run) && cluster.speaks(node, CREATE_SINCE)).then(|| node.to_string())
}

/// A user's action on a call (accept, reject, cancel, end, end/v2). Returns the new status.
#[tracing::instrument(name = "call", skip_all, fields(meet_id = %meet_id, user = %who.user_id))]
pub async fn act(
    app: &Arc<App>,
    who: &Identity,
    device: &str,
    meet_id: &str,
    action: Action,
) -> Result<Status, ApiError> {
    let req = Request::Act {
        meet_id: meet_id.into(),
        user: who.user_id.clone(),
        device: device.into(),
        action: action.clone(),
    };
    match to_owner(app, meet_id, req).await {
        Routed::Here => service::act_here(app, &who.user_id, device, meet_id, action).await,
        Routed::Answered(Reply::Status { ok: Some(s), .. }) => Ok(s),
        Routed::Answered(Reply::Status { err: Some(e), .. }) => Err(e.into()),
        Routed::Answered(other) => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
        Routed::Unreachable(e) => Err(unavailable(e)),
    }
}

/// Relays one ICE candidate (see [`service::relay_ice_here`]). `sid`: the socket that sent it;
/// a candidate for a call another node runs is then sent there without waiting for the owner
/// to run it (the owner tells that socket if it fails). Without one (a request from a node that
/// still asks), the owner is asked and its answer awaited.
pub async fn relay_ice(
    app: &Arc<App>,
    who: &Identity,
    sid: Option<Sid>,
    may_bind: bool,
    meet_id: &str,
    payload: Value,
) -> Result<(), String> {
    let Some(cluster) = app
        .cluster
        .as_ref()
        .filter(|_| !app.calls.contains(meet_id))
    else {
        // The hot path: no request to build.
        return service::relay_ice_here(app, &who.user_id, &who.device, may_bind, meet_id, payload)
            .await;
    };
    let req = || Request::Ice {
        meet_id: meet_id.into(),
        user: who.user_id.clone(),
        device: who.device.clone(),
        may_bind,
        payload: payload.clone(),
    };
    if let Some(sid) = sid {
        let Owner::There(node) = owner(app, meet_id).await else {
            return service::relay_ice_here(
                app,
                &who.user_id,
                &who.device,
                may_bind,
                meet_id,
                payload,
            )
            .await;
        };
        match cluster.tell(&node, sid.as_str(), req()).await {
            Ok(true) => {
                app.metrics.inc(|m| &m.ice_told);
                return Ok(());
            }
            // Nobody reads the owner's channel (it died, or is subscribing again): asking
            // finds whoever runs the call next.
            Ok(false) => cluster.owners.forget(meet_id),
            Err(e) => tracing::warn!(meet_id, node, error = %e, "candidate not told"),
        }
    }
    match to_owner(app, meet_id, req()).await {
        Routed::Here => {
            service::relay_ice_here(app, &who.user_id, &who.device, may_bind, meet_id, payload)
                .await
        }
        Routed::Answered(Reply::Ice { err: None }) => Ok(()),
        Routed::Answered(Reply::Ice { err: Some(e) }) => Err(e),
        Routed::Answered(other) => Err(format!("unexpected answer {other:?}")),
        Routed::Unreachable(e) => Err(unavailable(e).to_string()),
    }
}

/// [`relay_ice`] without waiting, for a call this node owns whose lock is free; the payload
/// back when the candidate has to wait (for the lock, or for the owning node).
pub fn try_relay_ice(
    app: &Arc<App>,
    who: &Identity,
    may_bind: bool,
    meet_id: &str,
    payload: Value,
) -> Result<Result<(), String>, Value> {
    if app.cluster.is_some() && !app.calls.contains(meet_id) {
        return Err(payload);
    }
    service::try_relay_ice_here(app, &who.user_id, &who.device, may_bind, meet_id, payload)
}

/// Runs a candidate another node told this node (see [`Told`]), called by the subscriber in
/// the order candidates arrive: at once if nothing of its call is queued and the call's lock
/// is free, else in the call's lane, behind the call's earlier candidates.
pub fn serve_told(app: &Arc<App>, told: Told) {
    let Some(cluster) = app.cluster.as_ref() else {
        return;
    };
    let (meet_id, candidate) = match told.req {
        Request::Ice {
            meet_id,
            user,
            device,
            may_bind,
            payload,
        } => {
            let candidate = Candidate {
                sid: told.sid,
                who: Identity::of_user(&user, &device),
                may_bind,
                payload,
            };
            (meet_id, candidate)
        }
        other => {
            // Only candidates are told; anything else runs as if asked, unanswered.
            let app = app.clone();
            tokio::spawn(async move {
                serve(&app, other).await;
            });
            return;
        }
    };
    let mut c = match cluster.lanes.file(&meet_id, candidate) {
        Filed::Queued => return,
        Filed::Full(c) => {
            return refuse_told(app, &c.sid, "too many candidates waiting for this call")
        }
        Filed::Free(c) => c,
    };
    let payload = std::mem::take(&mut c.payload);
    match try_relay_ice(app, &c.who, c.may_bind, &meet_id, payload) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => refuse_told(app, &c.sid, &e),
        Err(payload) => {
            c.payload = payload;
            if cluster.lanes.open(&meet_id, c) {
                tokio::spawn(drain_lane(app.clone(), meet_id));
            }
        }
    }
}

/// Runs a call's lane until it is empty.
async fn drain_lane(app: Arc<App>, meet_id: String) {
    let Some(cluster) = app.cluster.as_ref() else {
        return;
    };
    while let Some(c) = cluster.lanes.next(&meet_id) {
        // As in `serve`: if the call moved, where it went is read from the store.
        cluster.owners.forget(&meet_id);
        let from = c.sid.parse().ok();
        if let Err(e) = relay_ice(&app, &c.who, from, c.may_bind, &meet_id, c.payload).await {
            refuse_told(&app, &c.sid, &e);
        }
    }
}

/// A told candidate failed: its sender hears it as it would from its own node.
fn refuse_told(app: &App, sid: &str, error: &str) {
    app.metrics.inc(|m| &m.socket_exceptions);
    let Ok(sid) = sid.parse::<Sid>() else {
        return;
    };
    let error = format!("{}: {error}", events::ICE_CANDIDATE);
    app.notify
        .to_socket(sid, events::ON_EXCEPTION, &Exception { error: &error });
}

/// The user's live call, wherever it runs.
async fn call_of(app: &App, user: &str) -> Option<String> {
    if let Some(m) = app.calls.call_of(user) {
        return Some(m);
    }
    app.cluster.as_ref()?.held_by(user).await
}

/// The last socket of `device` went away (on this node, or on a node that died).
pub async fn device_gone(app: &Arc<App>, user: &str, device: &str) {
    let Some(meet_id) = call_of(app, user).await else {
        return;
    };
    let req = Request::DeviceGone {
        user: user.into(),
        device: device.into(),
    };
    match to_owner(app, &meet_id, req).await {
        Routed::Here => service::device_gone_here(app, user, device, &meet_id).await,
        Routed::Answered(_) => {}
        Routed::Unreachable(e) => {
            tracing::warn!(meet_id, user, error = %e, "device loss not handed to the call's node");
        }
    }
}

/// A socket of `device` connected here (see [`service::device_back_here`]).
pub async fn device_back(app: &Arc<App>, user: &str, device: &str, sid: Sid) {
    let Some(meet_id) = call_of(app, user).await else {
        return service::device_back_here(app, user, device, sid, None).await;
    };
    let req = Request::DeviceBack {
        user: user.into(),
        device: device.into(),
        sid: sid.to_string(),
    };
    match to_owner(app, &meet_id, req).await {
        Routed::Here => service::device_back_here(app, user, device, sid, Some(&meet_id)).await,
        Routed::Answered(_) => {}
        Routed::Unreachable(e) => {
            tracing::warn!(meet_id, user, error = %e, "device return not handed to the call's node");
        }
    }
}

/// Runs a request another node sent here, as if its client had come to this node. If the call
/// moved meanwhile, it is routed again.
pub async fn serve(app: &Arc<App>, req: Request) -> Reply {
    // Asked as the owner: if the call is not here (it moved, or ended), where it went is read
    // from the store, never from what this node last read, so two nodes' stale reads cannot
    // send a request back and forth.
    if let (Some(cluster), Request::Act { meet_id, .. } | Request::Ice { meet_id, .. }) =
        (app.cluster.as_ref(), &req)
    {
        cluster.owners.forget(meet_id);
    }
    match req {
        Request::Act {
            meet_id,
            user,
            device,
            action,
        } => {
            let who = Identity::of_user(&user, &device);
            Reply::of_status(&act(app, &who, &device, &meet_id, action).await)
        }
        Request::Ice {
            meet_id,
            user,
            device,
            may_bind,
            payload,
        } => {
            let who = Identity::of_user(&user, &device);
            let err = relay_ice(app, &who, None, may_bind, &meet_id, payload)
                .await
                .err();
            Reply::Ice { err }
        }
        Request::DeviceGone { user, device } => {
            device_gone(app, &user, &device).await;
            Reply::Done
        }
        // Run here, never sent on: the caller's socket may have moved since, and a creation
        // must not travel between nodes.
        Request::Create {
            who,
            device,
            room_id,
            body,
        } => match service::create(app, &who, device, &room_id, body).await {
            Ok(created) => Reply::Created {
                meet_id: Some(created.meet_id),
                err: None,
            },
            Err(e) => Reply::Created {
                meet_id: None,
                err: Some(WireError::from(&e)),
            },
        },
        Request::DeviceBack { user, device, sid } => {
            if let Ok(sid) = sid.parse() {
                device_back(app, &user, &device, sid).await;
            }
            Reply::Done
        }
    }
}
