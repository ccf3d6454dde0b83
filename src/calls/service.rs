//! The call service: the shell around the pure machine. It loads what the machine needs, runs the
//! transition under the registry's entry lock, records the result, then carries out the effects
//! (emits, chat notes, timers) in that order.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

use super::machine::{self, Action, Actor, Call, CallNote, Effect, IceRoute, Role, Status};
use super::registry::Busy;
use crate::app::App;
use crate::auth::Identity;
use crate::ice::IceServer;
use crate::ids::{iso, new_id};
use crate::store::{CallRecord, RoomKind};
use crate::wire::events;
use crate::wire::shapes::{CallAccepted, CallRef, NewCall, UserData};
use crate::wire::ApiError;

/// `POST call/create/{roomId}` body. Gen-A sends `payload` as a JSON string and no platform.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCall {
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub with_video: bool,
    #[serde(default)]
    pub meet_platform: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedCall {
    pub meet_id: String,
    /// Extra: TURN/STUN servers for this call (rebuilt clients can use them).
    pub ice_servers: Vec<IceServer>,
}

fn record_of(c: &Call) -> CallRecord {
    CallRecord {
        id: c.meet_id.clone(),
        room_id: c.room_id.clone(),
        caller_id: c.caller.clone(),
        callee_id: c.callee.clone(),
        caller_device: c.caller_device.clone(),
        callee_device: c.callee_device.clone(),
        with_video: c.with_video,
        platform: c.platform.clone(),
        status: c.status.as_str().into(),
        payload: c.payload.to_string(),
        answer: c.answer.as_ref().map(|a| a.to_string()),
        rev: c.rev,
        created_at: iso(c.created_at),
        accepted_at: c.accepted_at.map(iso),
        ended_at: c.ended_at.map(iso),
    }
}

pub async fn create(
    app: &Arc<App>,
    who: &Identity,
    room_id: &str,
    body: CreateCall,
) -> Result<CreatedCall, ApiError> {
    let platform = body.meet_platform.unwrap_or_else(|| "webRtc".into());
    if !matches!(platform.as_str(), "webRtc" | "agora") {
        return Err(ApiError::bad(format!(
            "meetPlatform must be webRtc or agora (got {platform:?})"
        )));
    }
    let room = app
        .store
        .room(room_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("room {room_id:?} not found")))?;
    if app
        .store
        .member_role(room_id, &who.user_id)
        .await?
        .is_none()
    {
        return Err(ApiError::forbidden("you are not a member of this room"));
    }
    if room.kind() != RoomKind::Single {
        return Err(ApiError::bad(
            "group calls are not supported: only single rooms can be called",
        ));
    }
    let peer = app
        .store
        .single_peer(room_id, &who.user_id)
        .await?
        .ok_or_else(|| ApiError::bad("this room has no one else to call"))?;
    if peer.id == who.user_id {
        return Err(ApiError::bad("you cannot call yourself"));
    }
    if app.store.is_blocked(&who.user_id, &peer.id).await? {
        return Err(ApiError::bad(
            "you can't call in this room: a ban is in place",
        ));
    }

    let meet_id = new_id();
    app.calls
        .reserve(&who.user_id, &peer.id, &meet_id)
        .map_err(|busy| match busy {
            Busy::Callee => ApiError::bad("peerUserInCallNow"),
            Busy::Caller => ApiError::bad("you are already in another call"),
        })?;
    let call = Call {
        meet_id: meet_id.clone(),
        room_id: room_id.to_string(),
        caller: who.user_id.clone(),
        callee: peer.id.clone(),
        caller_device: who.device.clone(),
        callee_device: None,
        with_video: body.with_video,
        platform,
        status: Status::Ring,
        payload: body.payload,
        answer: None,
        created_at: Utc::now(),
        accepted_at: None,
        ended_at: None,
        rev: 1,
        held_ice: Vec::new(),
    };
    app.calls.insert(call.clone(), None);
    if let Err(e) = app.store.insert_call(&record_of(&call)).await {
        app.calls.remove(&meet_id);
        return Err(e.into());
    }

    app.notify.to_user(
        &peer.id,
        events::ON_NEW_CALL,
        &NewCall {
            meet_id: &meet_id,
            room_id,
            with_video: call.with_video,
            payload: &call.payload,
            user_data: UserData::from(&crate::store::UserRow {
                id: who.user_id.clone(),
                full_name: who.name.clone(),
                identifier: who.identifier.clone(),
                img: who.img.clone(),
            }),
            ice_servers: serde_json::to_value(app.ice.for_user(&peer.id).ice_servers).ok(),
        },
    );

    arm_timer(
        app,
        &meet_id,
        app.config.call_timeout(),
        Action::RingTimeout,
    );
    app.metrics.inc(|m| &m.calls_created);
    tracing::info!(meet_id, caller = %who.user_id, callee = %peer.id, "call ringing");

    Ok(CreatedCall {
        meet_id,
        ice_servers: app.ice.for_user(&who.user_id).ice_servers,
    })
}

/// A user's action on a call (accept, reject, cancel, end, end/v2). Returns the new status.
pub async fn act(
    app: &Arc<App>,
    who: &Identity,
    meet_id: &str,
    action: Action,
) -> Result<Status, ApiError> {
    let actor = Actor {
        user: Some(&who.user_id),
        device: &who.device,
    };
    run(app, meet_id, action, &actor).await
}

/// After `after`, the server itself acts on the call (ring timeout, max duration).
fn arm_timer(app: &Arc<App>, meet_id: &str, after: std::time::Duration, action: Action) {
    let timer = {
        let app = app.clone();
        let meet_id = meet_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            // Detached: once the timer has fired, aborting its handle must not cut the
            // transition short halfway through its store write.
            tokio::spawn(async move {
                let _ = act_as_system(&app, &meet_id, action).await;
            });
        })
    };
    app.calls.set_timer(meet_id, timer.abort_handle());
}

async fn act_as_system(app: &Arc<App>, meet_id: &str, action: Action) -> Result<Status, ApiError> {
    run(app, meet_id, action, &Actor::SYSTEM).await
}

async fn run(
    app: &Arc<App>,
    meet_id: &str,
    mut action: Action,
    actor: &Actor<'_>,
) -> Result<Status, ApiError> {
    // The machine may not read sockets, so whether the caller can still hear an answer is
    // looked up here and handed in.
    if let Action::Accept { caller_online, .. } = &mut action {
        let caller = app.calls.with_call(meet_id, |l| {
            (l.call.caller.clone(), l.call.caller_device.clone())
        });
        if let Some((user, device)) = caller {
            *caller_online = app.presence.device_online(&user, &device);
        }
    }
    let name = action.name();
    let outcome = app.calls.with_call(meet_id, |live| {
        let result = machine::apply(&mut live.call, action, actor, Utc::now());
        if let Ok(effects) = &result {
            if effects.contains(&Effect::StopRingTimer) {
                if let Some(t) = live.timer.take() {
                    t.abort();
                }
            }
        }
        result.map(|effects| (live.call.clone(), effects))
    });
    let (call, effects) = match outcome {
        Some(Ok(done)) => done,
        Some(Err(e)) => {
            return Err(if e.is_forbidden() {
                ApiError::forbidden(e.to_string())
            } else {
                ApiError::bad(e.to_string())
            })
        }
        None => return Err(not_live(app, meet_id, actor).await),
    };
    if !call.status.is_live() {
        app.calls.remove(meet_id);
        app.metrics.call_ended(call.status);
    }
    app.store.save_call(&record_of(&call)).await?;
    tracing::info!(
        meet_id,
        action = name,
        status = call.status.as_str(),
        "call transition"
    );
    let mut refuse = None;
    for effect in effects {
        if let Some(e) = perform(app, &call, actor, effect).await {
            refuse = Some(e);
        }
    }
    match refuse {
        Some(e) => Err(e),
        None => Ok(call.status),
    }
}

/// Why an action found no live call: never existed, not ours, or already over.
async fn not_live(app: &App, meet_id: &str, actor: &Actor<'_>) -> ApiError {
    match app.store.call(meet_id).await {
        Ok(Some(rec)) => {
            let party = actor
                .user
                .is_none_or(|u| u == rec.caller_id || u == rec.callee_id);
            if party {
                ApiError::bad(match Status::parse(&rec.status) {
                    // Ended a moment ago; the record is being written.
                    Some(s) if s.is_live() => "call already ended".to_string(),
                    _ => format!("call already ended (status: {})", rec.status),
                })
            } else {
                ApiError::forbidden("you are not a party to this call")
            }
        }
        Ok(None) => ApiError::not_found(format!("call {meet_id:?} not found")),
        Err(e) => e.into(),
    }
}

async fn perform(
    app: &Arc<App>,
    call: &Call,
    actor: &Actor<'_>,
    effect: Effect,
) -> Option<ApiError> {
    let r = CallRef {
        meet_id: &call.meet_id,
        room_id: &call.room_id,
    };
    let n = &app.notify;
    match effect {
        Effect::TellCallerAccepted => n.to_device(
            &call.caller,
            &call.caller_device,
            events::ON_CALL_ACCEPTED,
            &CallAccepted {
                meet_id: &call.meet_id,
                room_id: &call.room_id,
                peer_answer: call.answer.as_ref().unwrap_or(&Value::Null),
            },
        ),
        Effect::StopOtherCalleeDevices { acting_device } => {
            n.to_other_devices(&call.callee, &acting_device, events::ON_CALL_CANCELED, &r)
        }
        Effect::TellCallerRejected => n.to_user(&call.caller, events::ON_CALL_REJECTED, &r),
        Effect::TellCalleeCanceled => n.to_user(&call.callee, events::ON_CALL_CANCELED, &r),
        Effect::TellBothTimeout => {
            n.to_user(&call.caller, events::ON_CALL_TIMEOUT, &r);
            n.to_user(&call.callee, events::ON_CALL_TIMEOUT, &r);
        }
        Effect::TellBothEnded => {
            n.to_user(&call.caller, events::ON_CALL_ENDED, &r);
            n.to_user(&call.callee, events::ON_CALL_ENDED, &r);
        }
        Effect::StopRingTimer => {}
        Effect::StartMaxDurationTimer => arm_timer(
            app,
            &call.meet_id,
            app.config.max_call_duration(),
            Action::MaxDurationReached,
        ),
        Effect::DeliverIce {
            to,
            device,
            payload,
        } => {
            let user = if to == Role::Caller {
                &call.caller
            } else {
                &call.callee
            };
            n.to_device(user, &device, events::ON_ICE_CANDIDATE, &payload);
        }
        Effect::Note(note) => {
            let sender = match note {
                CallNote::Missed | CallNote::Canceled => call.caller.as_str(),
                CallNote::Rejected => call.callee.as_str(),
                CallNote::Finished => actor.user.unwrap_or(&call.caller),
            };
            if let Err(e) = crate::chat::messages::post_call_note(app, call, note, sender).await {
                tracing::warn!(meet_id = %call.meet_id, error = %e, "call note not posted");
            }
        }
        Effect::RefuseAcceptCallerOffline => {
            return Some(ApiError::bad("peerUserDeviceOffline"));
        }
    }
    None
}

/// Relays one ICE candidate to the other party's call device, or holds it while ringing.
pub fn relay_ice(app: &App, who: &Identity, meet_id: &str, payload: Value) -> Result<(), String> {
    let routed = app.calls.with_call(meet_id, |live| {
        machine::route_ice(&mut live.call, &who.user_id, &who.device, payload)
    });
    match routed {
        None => return Err(format!("no live call with meetId {meet_id:?}")),
        Some(Err(e)) => return Err(e.to_string()),
        Some(Ok(IceRoute::Held)) => {}
        Some(Ok(IceRoute::Deliver {
            user,
            device,
            payload,
        })) => app
            .notify
            .to_device(&user, &device, events::ON_ICE_CANDIDATE, &payload),
    }
    app.metrics.inc(|m| &m.ice_relayed);
    Ok(())
}

/// The last socket of `device` went away. If that device carries a live call, give it a grace
/// to come back before the call is canceled (ringing caller) or finished (in a call).
pub fn device_gone(app: &Arc<App>, user: &str, device: &str, epoch: u64) {
    let Some(meet_id) = app.calls.call_of(user) else {
        app.presence.forget(user, device, epoch);
        return;
    };
    let plan = app.calls.with_call(&meet_id, |live| {
        let c = &live.call;
        let role = c.role_of(user);
        let call_device = match role {
            Role::Caller => Some(c.caller_device.as_str()),
            Role::Callee => c.callee_device.as_deref(),
            _ => None,
        };
        if call_device != Some(device) {
            return None;
        }
        match (role, c.status) {
            (Role::Caller, Status::Ring) => {
                Some((app.config.caller_grace(), Action::CallerDeviceLost))
            }
            (_, Status::InCall) => Some((app.config.reconnect_grace(), Action::PartyDeviceLost)),
            _ => None,
        }
    });
    let Some(Some((grace, action))) = plan else {
        app.presence.forget(user, device, epoch);
        return;
    };
    let (app, user, device) = (app.clone(), user.to_string(), device.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let came_back = app.presence.device_online(&user, &device)
            || app.presence.epoch(&user, &device) != epoch;
        if !came_back {
            tracing::info!(meet_id, user, device, "call device did not come back");
            let _ = act_as_system(&app, &meet_id, action).await;
            app.presence.forget(&user, &device, epoch);
        }
    });
}

/// `GET call/active`: the newest call ringing for me, with the offer as received.
pub async fn active(app: &App, who: &Identity) -> Result<Value, ApiError> {
    let Some(rec) = app.store.ringing_call_for(&who.user_id).await? else {
        return Ok(Value::Null);
    };
    let caller = app.store.user(&rec.caller_id).await?;
    Ok(json!({
        "meetId": rec.id,
        "roomId": rec.room_id,
        "withVideo": rec.with_video,
        "payload": serde_json::from_str::<Value>(&rec.payload).unwrap_or(Value::Null),
        "userData": caller.as_ref().map(UserData::from),
        "createdAt": rec.created_at,
    }))
}

/// History entries, peer shape as protocol §3.2.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    #[serde(rename = "_id")]
    pub id: String,
    pub room_id: String,
    pub with_video: bool,
    pub call_status: String,
    pub end_at: Option<String>,
    pub accepted_at: Option<String>,
    pub created_at: String,
    pub meet_platform: String,
    pub is_caller: bool,
    pub peer_user: UserData,
}

pub async fn history(app: &App, who: &Identity) -> Result<Vec<HistoryItem>, ApiError> {
    let rows = app.store.call_history(&who.user_id, 30).await?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryItem {
            is_caller: r.call.caller_id == who.user_id,
            id: r.call.id,
            room_id: r.call.room_id,
            with_video: r.call.with_video,
            // Only statuses clients can parse are ever stored (§6.5).
            call_status: r.call.status,
            end_at: r.call.ended_at,
            accepted_at: r.call.accepted_at,
            created_at: r.call.created_at,
            meet_platform: r.call.platform,
            peer_user: UserData::from(&r.peer),
        })
        .collect())
}
