//! The call service: the shell around the pure machine. A transition holds the call's lock
//! from start to end: decide (the machine, on a copy) → commit (the store) → announce (emits,
//! timers). A failed commit leaves the call exactly as it was; events leave in the order the
//! machine decided them, so a caller never hears a callee's candidate before the answer. Chat
//! notes about the call are posted after the lock is released.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::socket::Sid;
use tokio::sync::mpsc;

use super::machine::{self, Action, Actor, Call, CallNote, Effect, Role, Status, UNBOUND};
use super::registry::{Busy, LiveCall, SlotGuard, TryLock};
use super::timers::{now_unix_ms, Fired, TimerKind};
use crate::app::App;
use crate::auth::Identity;
use crate::ice::IceServer;
use crate::ids::{iso, new_id};
use crate::metrics::Commit;
use crate::realtime::presence::{is_socket_device, socket_device};
use crate::store::{CallRecord, RoomKind};
use crate::wire::events;
use crate::wire::shapes::{CallAccepted, CallRef, CreateCall, NewCall, UserData};
use crate::wire::ApiError;

/// A timer whose transition could not be committed (store down) tries again after this.
const TIMER_RETRY: Duration = Duration::from_secs(1);

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

/// A stored live call as the machine sees it (for a node taking the call over). Candidates
/// held while ringing are not stored: a client whose early candidates are lost re-sends them
/// on ICE restart, and most arrive after the answer anyway.
pub fn call_of_record(r: &crate::store::CallRecord) -> Option<Call> {
    let time = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    Some(Call {
        meet_id: r.id.clone(),
        room_id: r.room_id.clone(),
        caller: r.caller_id.clone(),
        callee: r.callee_id.clone(),
        caller_device: r.caller_device.clone(),
        callee_device: r.callee_device.clone(),
        with_video: r.with_video,
        platform: r.platform.clone(),
        status: Status::parse(&r.status)?,
        payload: serde_json::from_str(&r.payload).ok()?,
        answer: match &r.answer {
            Some(a) => Some(serde_json::from_str(a).ok()?),
            None => None,
        },
        created_at: time(&r.created_at)?,
        accepted_at: r.accepted_at.as_deref().and_then(time),
        ended_at: r.ended_at.as_deref().and_then(time),
        rev: r.rev,
        held_ice: Vec::new(),
    })
}

/// Arms a taken-over call's deadline where its first owner would have had it: the ring
/// timeout from when it was placed, the max duration from when it was answered. Parties that
/// are nowhere get their grace from now.
/// `graces`: the grace deadlines (Unix ms) the call's last owner had armed, by role.
pub(crate) fn arm_restored(app: &App, live: &mut LiveCall, graces: &HashMap<Role, u64>) {
    let now = Utc::now();
    let (from, span, action) = match live.call.status {
        Status::Ring => (
            live.call.created_at,
            app.config.call_timeout(),
            Action::RingTimeout,
        ),
        _ => (
            live.call.accepted_at.unwrap_or(now),
            app.config.max_call_duration(),
            Action::MaxDurationReached,
        ),
    };
    let passed = (now - from).to_std().unwrap_or_default();
    live.deadline = Some(app.timers.arm(
        &live.call.meet_id,
        TimerKind::Deadline,
        span.saturating_sub(passed),
        action,
    ));
    // A party still gone keeps the grace it had; one that was on the dead node gets a whole one.
    for (&role, &due) in graces {
        if !party_here(app, &live.call, role) {
            arm_grace_until(app, live, role, due);
        }
    }
    ensure_graces(app, live);
}

/// The device a REST request acts from. Tokens with a `did` (and sign-in sessions) name it.
/// Without one every socket is its own device: the request acts from the socket named in the
/// `X-Socket-Id` header, else from the user's only such socket, else from a device bound later,
/// by the first socket that sends ICE for the call.
pub fn acting_device(app: &App, who: &Identity, socket_hint: Option<&str>) -> String {
    if who.has_device() {
        return who.device.clone();
    }
    let mut mine = app.presence.socket_devices(&who.user_id);
    if let Some(hint) = socket_hint {
        let named = socket_device(hint);
        if mine.contains(&named) {
            return named;
        }
    }
    match mine.len() {
        1 => mine.remove(0),
        _ => UNBOUND.to_string(),
    }
}

// `meet_id` is filled in once the call has one.
#[tracing::instrument(name = "call", skip_all, fields(meet_id = tracing::field::Empty, user = %who.user_id))]
pub async fn create(
    app: &Arc<App>,
    who: &Identity,
    device: String,
    room_id: &str,
    body: CreateCall,
) -> Result<CreatedCall, ApiError> {
    let started = std::time::Instant::now();
    let platform = body.meet_platform.unwrap_or_else(|| "webRtc".into());
    match platform.as_str() {
        "webRtc" => {}
        "agora" if app.config.agora_app_id.is_some() => {}
        "agora" => {
            return Err(ApiError::bad(
                "meetPlatform agora is not available: this server has no Agora app configured \
                 (VCHAT_AGORA_APP_ID); place the call with meetPlatform webRtc",
            ))
        }
        _ => {
            return Err(ApiError::bad(format!(
                "meetPlatform must be webRtc or agora (got {platform:?})"
            )))
        }
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

    app.limits
        .check_call(&who.user_id, &peer.id)
        .map_err(ApiError::TooManyRequests)?;
    let meet_id = new_id();
    tracing::Span::current().record("meet_id", meet_id.as_str());
    let busy_error = |busy| match busy {
        Busy::Callee => ApiError::bad("peerUserInCallNow"),
        Busy::Caller => ApiError::bad("you are already in another call"),
    };
    app.calls
        .reserve(&who.user_id, &peer.id, &meet_id)
        .map_err(busy_error)?;
    if let Err(hold) = crate::calls::busy::hold_pair(app, &who.user_id, &peer.id, &meet_id).await {
        app.calls.release(&who.user_id, &meet_id);
        app.calls.release(&peer.id, &meet_id);
        return Err(match hold {
            crate::calls::busy::Hold::Busy(busy) => busy_error(busy),
            crate::calls::busy::Hold::Down(e) => ApiError::Unavailable(e),
        });
    }
    let call = Call {
        meet_id: meet_id.clone(),
        room_id: room_id.to_string(),
        caller: who.user_id.clone(),
        callee: peer.id.clone(),
        caller_device: device,
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
    let writing = std::time::Instant::now();
    let inserted = app.store.insert_call(&record_of(&call), app.node()).await;
    app.metrics.committed(Commit::Call, writing);
    if let Err(e) = inserted {
        app.calls.release(&who.user_id, &meet_id);
        app.calls.release(&peer.id, &meet_id);
        crate::calls::busy::unhold_pair(app, &call.caller, &call.callee, &meet_id).await;
        return Err(e.into());
    }
    crate::calls::busy::confirm_pair(app, &call.caller, &call.callee).await;

    let caller = UserData::from(&crate::store::UserRow {
        id: who.user_id.clone(),
        full_name: who.name.clone(),
        identifier: who.identifier.clone(),
        img: who.img.clone(),
    });
    let mut live = LiveCall::new(call, caller);
    // The ring timeout is armed before anyone hears of the call.
    live.deadline = Some(app.timers.arm(
        &meet_id,
        TimerKind::Deadline,
        app.config.call_timeout(),
        Action::RingTimeout,
    ));
    // A caller with no socket to hear the answer gets the caller grace to connect one.
    ensure_graces(app, &mut live);
    let mut guard = app.calls.insert(live);
    let live = guard.as_mut().expect("just inserted");
    let rung = ring(app, live, None);
    drop(guard);
    app.metrics
        .time_to_ring
        .observe(started.elapsed().as_secs_f64());
    if rung == 0 {
        crate::wake::incoming_call(app, &peer.id, who, room_id, &meet_id).await;
    }
    app.metrics.inc(|m| &m.calls_created);
    tracing::info!(meet_id, caller = %who.user_id, callee = %peer.id, "call ringing");
    Ok(CreatedCall {
        meet_id,
        ice_servers: app.ice.for_user(&who.user_id).ice_servers,
    })
}

/// `v1OnNewCall` to the callee's sockets not rung yet (all of them, or only `only`). Devices in
/// a grace are skipped: they are rung when they come back, after what they were kept.
fn ring(app: &App, live: &mut LiveCall, only: Option<Sid>) -> usize {
    let c = &live.call;
    let sids: Vec<Sid> = app
        .presence
        .sockets_by_device(&c.callee)
        .into_iter()
        .filter(|(sid, device)| {
            only.is_none_or(|o| o == *sid)
                && !live.rung.contains(sid)
                && !app.notify.outbox.is_open(&c.callee, device)
        })
        .map(|(sid, _)| sid)
        .collect();
    if sids.is_empty() {
        return 0;
    }
    app.notify.to_sockets(
        &sids,
        events::ON_NEW_CALL,
        &NewCall {
            meet_id: &c.meet_id,
            room_id: &c.room_id,
            with_video: c.with_video,
            payload: &c.payload,
            user_data: live.caller_data.clone(),
            ice_servers: serde_json::to_value(app.ice.for_user(&c.callee).ice_servers).ok(),
        },
    );
    live.rung.extend(sids.iter().copied());
    sids.len()
}

/// A user's action on a call this node owns (accept, reject, cancel, end, end/v2). Returns
/// the new status. Callers go through [`crate::calls::route::act`].
pub async fn act_here(
    app: &Arc<App>,
    user: &str,
    device: &str,
    meet_id: &str,
    action: Action,
) -> Result<Status, ApiError> {
    let actor = Actor {
        user: Some(user),
        device,
    };
    let Some(mut guard) = app.calls.lock(meet_id).await else {
        return Err(not_live(app, meet_id, &actor).await);
    };
    let (call, notes) = transition(app, &mut guard, action, &actor).await?;
    drop(guard);
    post_notes(app, &call, notes, actor.user).await;
    Ok(call.status)
}

/// Decide, commit, announce, under the call's lock. Returns the call as it now is and the chat
/// notes to post once the lock is released.
async fn transition(
    app: &Arc<App>,
    guard: &mut SlotGuard,
    action: Action,
    actor: &Actor<'_>,
) -> Result<(Call, Vec<CallNote>), ApiError> {
    let live = guard.as_mut().expect("a locked live call");
    let name = action.name();
    let mut next = live.call.clone();
    let effects = machine::apply(&mut next, action, actor, Utc::now()).map_err(|e| {
        if e.is_forbidden() {
            ApiError::forbidden(e.to_string())
        } else {
            ApiError::bad(e.to_string())
        }
    })?;
    let writing = std::time::Instant::now();
    let saved = app.store.save_call(&record_of(&next), live.call.rev).await;
    app.metrics.committed(Commit::Call, writing);
    if !matches!(saved, Ok(true)) {
        app.metrics.inc(|m| &m.call_commit_failures);
        return Err(match saved {
            Err(e) => e.into(),
            _ => ApiError::Internal("the call changed in the store under us".into()),
        });
    }
    if let (None, Some(answered)) = (live.call.accepted_at, next.accepted_at) {
        let ringing = (answered - next.created_at).to_std().unwrap_or_default();
        app.metrics.time_to_answer.observe(ringing.as_secs_f64());
    }
    live.call = next;
    tracing::info!(
        meet_id = %live.call.meet_id,
        action = name,
        status = live.call.status.as_str(),
        "call transition"
    );
    if !live.call.status.is_live() {
        // Free both users before the end is announced: a client that hears it may place its
        // next call at once, and must not be told it is still in this one.
        let c = &live.call;
        app.calls.release(&c.caller, &c.meet_id);
        app.calls.release(&c.callee, &c.meet_id);
        crate::calls::busy::unhold_pair(app, &c.caller, &c.callee, &c.meet_id).await;
    }
    let mut notes = Vec::new();
    for effect in effects {
        perform(app, live, effect, &mut notes);
    }
    if live.call.status.is_live() {
        // Answered from a device with no socket (over REST only): it gets its grace too.
        ensure_graces(app, live);
    }
    let call = live.call.clone();
    if !call.status.is_live() {
        app.calls.remove(guard);
        app.metrics.call_ended(call.status);
        app.limits
            .call_ended(&call.caller, &call.callee, call.accepted_at.is_some());
    }
    Ok((call, notes))
}

/// Carries out one effect. Emits are synchronous, so they leave in the machine's order while
/// the call's lock is held.
fn perform(app: &Arc<App>, live: &mut LiveCall, effect: Effect, notes: &mut Vec<CallNote>) {
    let call = &live.call;
    let r = CallRef {
        meet_id: &call.meet_id,
        room_id: &call.room_id,
    };
    let n = &app.notify;
    match effect {
        Effect::TellCallerAccepted => n.call_to_device(
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
        Effect::DeviceBound { role, device } => {
            if role == Role::Callee {
                n.to_other_socket_devices(&call.callee, &device, events::ON_CALL_CANCELED, &r)
            }
        }
        Effect::TellCallerRejected => n.call_to_user(&call.caller, events::ON_CALL_REJECTED, &r),
        Effect::TellCalleeCanceled => n.call_to_user(&call.callee, events::ON_CALL_CANCELED, &r),
        Effect::TellBothTimeout => {
            n.call_to_user(&call.caller, events::ON_CALL_TIMEOUT, &r);
            n.call_to_user(&call.callee, events::ON_CALL_TIMEOUT, &r);
        }
        Effect::TellBothEnded => {
            n.call_to_user(&call.caller, events::ON_CALL_ENDED, &r);
            n.call_to_user(&call.callee, events::ON_CALL_ENDED, &r);
        }
        Effect::StopRingTimer => {
            live.deadline = None;
            live.rung.clear();
        }
        Effect::StartMaxDurationTimer => {
            live.deadline = Some(app.timers.arm(
                &call.meet_id,
                TimerKind::Deadline,
                app.config.max_call_duration(),
                Action::MaxDurationReached,
            ))
        }
        Effect::DeliverIce {
            to,
            device,
            payload,
        } => n.call_to_device(
            call.user_of(to),
            &device,
            events::ON_ICE_CANDIDATE,
            &payload,
        ),
        Effect::Note(note) => notes.push(note),
    }
}

async fn post_notes(app: &App, call: &Call, notes: Vec<CallNote>, actor: Option<&str>) {
    for note in notes {
        let sender = match note {
            CallNote::Missed | CallNote::Canceled => call.caller.as_str(),
            CallNote::Rejected => call.callee.as_str(),
            CallNote::Finished => actor.unwrap_or(&call.caller),
        };
        if let Err(e) = crate::chat::messages::post_call_note(app, call, note, sender).await {
            tracing::warn!(meet_id = %call.meet_id, error = %e, "call note not posted");
        }
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
                ApiError::bad(format!("call already ended (status: {})", rec.status))
            } else {
                ApiError::forbidden("you are not a party to this call")
            }
        }
        Ok(None) => ApiError::not_found(format!("call {meet_id:?} not found")),
        Err(e) => e.into(),
    }
}

/// Relays one ICE candidate to the other party's call device, or holds it until that device is
/// known. `may_bind`: the sender is a socket of a token without `did`, which may claim its
/// party's device if that is not known yet. For calls this node owns; callers go through
/// [`crate::calls::route::relay_ice`].
pub async fn relay_ice_here(
    app: &Arc<App>,
    user: &str,
    device: &str,
    may_bind: bool,
    meet_id: &str,
    payload: Value,
) -> Result<(), String> {
    let arrived = std::time::Instant::now();
    let Some(guard) = app.calls.lock(meet_id).await else {
        return Err(no_live_call(meet_id));
    };
    relay_ice_locked(app, guard, user, device, may_bind, payload, arrived)
}

/// [`relay_ice_here`] without waiting: the payload back when someone holds the call's lock.
pub fn try_relay_ice_here(
    app: &Arc<App>,
    user: &str,
    device: &str,
    may_bind: bool,
    meet_id: &str,
    payload: Value,
) -> Result<Result<(), String>, Value> {
    let arrived = std::time::Instant::now();
    match app.calls.try_lock(meet_id) {
        TryLock::Held => Err(payload),
        TryLock::NotLive => Ok(Err(no_live_call(meet_id))),
        TryLock::Locked(guard) => Ok(relay_ice_locked(
            app, guard, user, device, may_bind, payload, arrived,
        )),
    }
}

fn no_live_call(meet_id: &str) -> String {
    format!("no live call with meetId {meet_id:?}")
}

fn relay_ice_locked(
    app: &Arc<App>,
    mut guard: SlotGuard,
    user: &str,
    device: &str,
    may_bind: bool,
    payload: Value,
    arrived: std::time::Instant,
) -> Result<(), String> {
    let live = guard.as_mut().expect("a locked live call");
    let effects = machine::route_ice(&mut live.call, user, device, may_bind, payload)
        .map_err(|e| e.to_string())?;
    // The other party's device may have just lost its socket, with its disconnect not handled
    // yet (it waits for this lock): its grace starts now, so the candidate is kept for it
    // rather than sent to no socket.
    ensure_graces(app, live);
    let mut notes = Vec::new();
    for effect in effects {
        perform(app, live, effect, &mut notes);
    }
    app.metrics.inc(|m| &m.ice_relayed);
    app.metrics.relay.observe(arrived.elapsed().as_secs_f64());
    Ok(())
}

/// Starts a party's grace: its call events are kept for its device, and if the device is not
/// back in time the call is canceled (ringing caller) or finished.
fn arm_grace(app: &App, live: &mut LiveCall, role: Role, grace: Duration) {
    let due = now_unix_ms().saturating_add(grace.as_millis() as u64);
    arm_grace_until(app, live, role, due);
}

fn arm_grace_until(app: &App, live: &mut LiveCall, role: Role, due_unix_ms: u64) {
    if live.grace_mut(role).is_some() {
        return;
    }
    let user = live.call.user_of(role).to_string();
    if let Some(device) = live.call.device_of(role).filter(|d| *d != UNBOUND) {
        let left = Duration::from_millis(due_unix_ms.saturating_sub(now_unix_ms()));
        app.notify.outbox.open(&user, device, Instant::now() + left);
    }
    let timer = app.timers.arm_at(
        &live.call.meet_id,
        TimerKind::Grace(role),
        due_unix_ms,
        Action::DeviceLost { role },
    );
    *live.grace_mut(role) = Some(timer);
}

/// Whether a party's call device can hear its call now: a socket of that device, or, for a
/// device not bound yet, any socket of the user without a `did`.
fn party_here(app: &App, call: &Call, role: Role) -> bool {
    let user = call.user_of(role);
    match call.device_of(role) {
        None => true,
        Some(UNBOUND) => !app.presence.socket_devices(user).is_empty(),
        Some(device) => app.presence.device_online(user, device),
    }
}

/// Every party whose call device cannot hear the call gets its grace (if it has none yet): a
/// ringing caller the caller grace, a party in a call the reconnect grace. Covers a device that
/// never had a socket (acting over REST only) as well as one whose last socket left.
pub(crate) fn ensure_graces(app: &App, live: &mut LiveCall) {
    for role in [Role::Caller, Role::Callee] {
        let grace = match (role, live.call.status) {
            (Role::Caller, Status::Ring) => app.config.caller_grace(),
            (_, Status::InCall) => app.config.reconnect_grace(),
            _ => continue,
        };
        if !party_here(app, &live.call, role) {
            arm_grace(app, live, role, grace);
        }
    }
}

/// Whether `device` is (or stands for) the call device of `role`: the device itself, or any
/// socket of a token without `did` while the party's device is not bound yet.
fn is_call_device(call: &Call, role: Role, device: &str) -> bool {
    match call.device_of(role) {
        Some(UNBOUND) => is_socket_device(device),
        Some(d) => d == device,
        None => false,
    }
}

/// The last socket of `device` went away. If that device carries call `meet_id` (owned here),
/// it gets a grace to come back.
pub async fn device_gone_here(app: &Arc<App>, user: &str, device: &str, meet_id: &str) {
    let Some(mut guard) = app.calls.lock(meet_id).await else {
        return;
    };
    let live = guard.as_mut().expect("a locked live call");
    let role = live.call.role_of(user);
    if !is_call_device(&live.call, role, device) {
        return;
    }
    // It may have come back while we waited for the lock.
    if party_here(app, &live.call, role) {
        return;
    }
    tracing::info!(meet_id, user, device, "call device gone; waiting for it");
    ensure_graces(app, live);
}

/// A socket of `device` connected (its user is known to presence already): it gets what was
/// kept for the device, in order, the device's grace ends, and a callee socket that connects
/// while its call rings is rung. `meet_id`: the user's call, when this node owns it.
pub async fn device_back_here(
    app: &Arc<App>,
    user: &str,
    device: &str,
    sid: Sid,
    meet_id: Option<&str>,
) {
    let flushed = app.notify.outbox.flush(user, device, |event, text| {
        app.notify.send_text(&[sid], event, text);
    });
    if flushed > 0 {
        tracing::info!(user, device, events = flushed, "kept call events delivered");
    }
    let Some(meet_id) = meet_id else {
        return;
    };
    let Some(mut guard) = app.calls.lock(meet_id).await else {
        return;
    };
    let live = guard.as_mut().expect("a locked live call");
    let role = live.call.role_of(user);
    if is_call_device(&live.call, role, device) && live.grace_mut(role).take().is_some() {
        tracing::info!(meet_id, user, device, "call device back within its grace");
    }
    if role == Role::Callee && live.call.status == Status::Ring {
        ring(app, live, Some(sid));
    }
}

/// Runs fired deadlines as system actions, each on its own task.
pub fn run_timers(app: Arc<App>, mut fired: mpsc::UnboundedReceiver<Fired>) {
    tokio::spawn(async move {
        while let Some(f) = fired.recv().await {
            tokio::spawn(on_timer(app.clone(), f));
        }
    });
}

// The server acts here, not a user.
#[tracing::instrument(name = "call", skip_all, fields(meet_id = %f.meet_id, user = "server"))]
async fn on_timer(app: Arc<App>, f: Fired) {
    let Some(mut guard) = app.calls.lock(&f.meet_id).await else {
        return;
    };
    let live = guard.as_mut().expect("a locked live call");
    if !live.holds(f.kind, f.id) {
        return;
    }
    let mut graced = None;
    if let TimerKind::Grace(role) = f.kind {
        let user = live.call.user_of(role).to_string();
        let device = live.call.device_of(role).unwrap_or(UNBOUND).to_string();
        if party_here(&app, &live.call, role) {
            *live.grace_mut(role) = None;
            return;
        }
        tracing::info!(meet_id = %f.meet_id, user, device, "call device did not come back");
        graced = Some((user, device));
    }
    match transition(&app, &mut guard, f.action.clone(), &Actor::SYSTEM).await {
        Ok((call, notes)) => {
            // Past the grace, what was kept for the device goes with the call's ending.
            if let Some((user, device)) = graced {
                app.notify.outbox.close(&user, &device);
            }
            drop(guard);
            post_notes(&app, &call, notes, None).await;
        }
        Err(ApiError::Internal(e)) => {
            tracing::warn!(meet_id = %f.meet_id, error = %e, "timed transition not committed; retrying");
            if let Some(live) = guard.as_mut() {
                let timer = app
                    .timers
                    .arm(&f.meet_id, f.kind, TIMER_RETRY, f.action.clone());
                match f.kind {
                    TimerKind::Deadline => live.deadline = Some(timer),
                    TimerKind::Grace(role) => *live.grace_mut(role) = Some(timer),
                }
            }
        }
        Err(_) => {}
    }
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

/// `GET call/agora-access/{roomId}`: an Agora RTC token for the channel named by the room id
/// (uid 0, publisher), for members of the room who are not banned in it.
pub async fn agora_access(app: &App, who: &Identity, room_id: &str) -> Result<Value, ApiError> {
    let (Some(app_id), Some(cert)) = (&app.config.agora_app_id, &app.config.agora_app_certificate)
    else {
        return Err(ApiError::bad(
            "Agora is not configured on this server (VCHAT_AGORA_APP_ID): calls use WebRTC \
             (see GET call/ice-servers)",
        ));
    };
    let not_yours = || ApiError::forbidden("you are not a member of this room");
    let room = app.store.room(room_id).await?.ok_or_else(not_yours)?;
    if app
        .store
        .member_role(room_id, &who.user_id)
        .await?
        .is_none()
    {
        return Err(not_yours());
    }
    if room.kind() == RoomKind::Single {
        if let Some(peer) = app.store.single_peer(room_id, &who.user_id).await? {
            if app.store.is_blocked(&who.user_id, &peer.id).await? {
                return Err(ApiError::forbidden(
                    "you can't call in this room: a ban is in place",
                ));
            }
        }
    }
    let ttl = app.config.agora_token_ttl_secs as u32;
    let token = crate::agora::rtc_token(app_id, cert, room_id, 0, ttl)
        .map_err(|e| ApiError::Internal(format!("agora token: {e}")))?;
    Ok(json!({
        "rtcToken": token,
        "channelName": room_id,
        "uid": 0,
        "expireAt": iso(Utc::now() + chrono::Duration::seconds(ttl as i64)),
    }))
}
