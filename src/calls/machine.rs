//! The call state machine. Pure: it reads no clock, touches no socket or database. Given a call,
//! an action, who acts and the time, it moves the call and says what must happen (effects), or
//! refuses with a typed error. The shell (service) performs the effects.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Ring,
    InCall,
    Canceled,
    Rejected,
    Timeout,
    Finished,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Ring,
        Status::InCall,
        Status::Canceled,
        Status::Rejected,
        Status::Timeout,
        Status::Finished,
    ];

    /// The wire name (client enum `VMessageCallStatus`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ring => "ring",
            Status::InCall => "inCall",
            Status::Canceled => "canceled",
            Status::Rejected => "rejected",
            Status::Timeout => "timeout",
            Status::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_live(self) -> bool {
        matches!(self, Status::Ring | Status::InCall)
    }
}

/// Who acts, relative to this call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Caller,
    Callee,
    Stranger,
    /// The server itself: ring timer, disconnect grace timers.
    System,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Callee answers.
    Accept {
        answer: Value,
    },
    Reject,
    Cancel,
    End,
    /// `end/v2`: cancel, reject or end, whichever fits the actor's role and the state.
    Hangup,
    RingTimeout,
    /// A party's call device stayed away past its grace: a ringing caller's call is canceled, a
    /// running call is finished.
    DeviceLost {
        role: Role,
    },
    /// The call ran for the longest time allowed (a safety net for calls nobody ends).
    MaxDurationReached,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Accept { .. } => "accept",
            Action::Reject => "reject",
            Action::Cancel => "cancel",
            Action::End => "end",
            Action::Hangup => "end/v2",
            Action::RingTimeout => "ring timeout",
            Action::DeviceLost { .. } => "device lost",
            Action::MaxDurationReached => "max duration reached",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("you are not a party to this call")]
    NotAParty,
    #[error("only the callee can {0} this call")]
    NotCallee(&'static str),
    #[error("only the caller can cancel this call")]
    NotCaller,
    #[error("only the server can time out or drop a call")]
    NotSystem,
    #[error("call is not ringing (status: {0})")]
    NotRinging(&'static str),
    /// The original server's message for end/end-v2 on a call that is not running.
    #[error("meet status not InCall! (status: {0})")]
    NotInCall(&'static str),
}

impl CallError {
    /// Role errors are 403; state errors (including every race loser) are 400.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            CallError::NotAParty
                | CallError::NotCallee(_)
                | CallError::NotCaller
                | CallError::NotSystem
        )
    }
}

/// Chat messages about calls that clients can render (`mT: "call"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallNote {
    Missed,
    Rejected,
    Canceled,
    Finished,
}

/// One ICE candidate waiting for the other side's device to be known.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldIce {
    pub from: Role,
    pub from_device: String,
    /// The whole `v1IceCandidate` payload as received.
    pub payload: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// `v1OnCallAccepted` to the caller's call device only.
    TellCallerAccepted,
    /// `v1OnCallCanceled` to the callee's devices other than the one that acted.
    StopOtherCalleeDevices {
        acting_device: String,
    },
    /// `v1OnCallRejected` to every caller device.
    TellCallerRejected,
    /// `v1OnCallCanceled` to every callee device.
    TellCalleeCanceled,
    TellBothTimeout,
    TellBothEnded,
    StopRingTimer,
    /// Arm the safety net that finishes a call nobody ends.
    StartMaxDurationTimer,
    /// `v1OnIceCandidate` to one party's device.
    DeliverIce {
        to: Role,
        device: String,
        payload: Value,
    },
    /// A party whose device was not known (a token without `did`, acting over REST) is now
    /// bound to the socket that sent its first ICE candidate.
    DeviceBound {
        role: Role,
        device: String,
    },
    Note(CallNote),
}

/// A call as the machine sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub meet_id: String,
    pub room_id: String,
    pub caller: String,
    pub callee: String,
    pub caller_device: String,
    pub callee_device: Option<String>,
    pub with_video: bool,
    pub platform: String,
    pub status: Status,
    pub payload: Value,
    pub answer: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Bumped on every transition; the store keeps the highest.
    pub rev: i64,
    pub held_ice: Vec<HeldIce>,
}

/// At most this many candidates are held per call; more is a misbehaving client.
pub const MAX_HELD_ICE: usize = 64;

/// A party device not known yet: the party acted over REST with a token that names no device
/// and had several sockets. It is bound to the first of its sockets that sends ICE.
pub const UNBOUND: &str = "";

impl Call {
    pub fn role_of(&self, user: &str) -> Role {
        if user == self.caller {
            Role::Caller
        } else if user == self.callee {
            Role::Callee
        } else {
            Role::Stranger
        }
    }

    /// The call device of a party: `None` for the callee while ringing (every device rings),
    /// `Some(UNBOUND)` while not known yet.
    pub fn device_of(&self, role: Role) -> Option<&str> {
        match role {
            Role::Caller => Some(self.caller_device.as_str()),
            Role::Callee => self.callee_device.as_deref(),
            _ => None,
        }
    }

    pub fn user_of(&self, role: Role) -> &str {
        match role {
            Role::Caller => &self.caller,
            _ => &self.callee,
        }
    }

    fn bind(&mut self, role: Role, device: &str) {
        match role {
            Role::Caller => self.caller_device = device.to_string(),
            _ => self.callee_device = Some(device.to_string()),
        }
    }

    /// Held candidates that can go now: both ends' devices known, the call running. Those from
    /// a device that did not get the call are dropped.
    fn flush_held(&mut self, effects: &mut Vec<Effect>) {
        if self.status != Status::InCall {
            return;
        }
        let held = std::mem::take(&mut self.held_ice);
        for h in held {
            let from = self.device_of(h.from).filter(|d| *d != UNBOUND);
            let to_role = h.from.other();
            let to = self.device_of(to_role).filter(|d| *d != UNBOUND);
            match (from, to) {
                (Some(f), _) if f != h.from_device => {}
                (Some(_), Some(t)) => effects.push(Effect::DeliverIce {
                    to: to_role,
                    device: t.to_string(),
                    payload: h.payload,
                }),
                _ => self.held_ice.push(h),
            }
        }
    }
}

impl Role {
    /// The other party (for the two parties).
    pub fn other(self) -> Role {
        match self {
            Role::Caller => Role::Callee,
            _ => Role::Caller,
        }
    }
}

/// The actor of an action: a user on a device, or the server.
#[derive(Clone, Debug)]
pub struct Actor<'a> {
    pub user: Option<&'a str>,
    pub device: &'a str,
}

impl Actor<'static> {
    pub const SYSTEM: Actor<'static> = Actor {
        user: None,
        device: "",
    };
}

/// Moves `call` by `action`. On error the call is unchanged.
pub fn apply(
    call: &mut Call,
    action: Action,
    actor: &Actor<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Effect>, CallError> {
    let role = match actor.user {
        None => Role::System,
        Some(u) => call.role_of(u),
    };
    let st = call.status;
    let state = st.as_str();
    // Resolve end/v2 into the action it stands for.
    let action = match action {
        Action::Hangup => match (role, st) {
            (Role::Stranger, _) => return Err(CallError::NotAParty),
            (Role::Caller, Status::Ring) => Action::Cancel,
            (Role::Callee, Status::Ring) => Action::Reject,
            (Role::Caller | Role::Callee, Status::InCall) => Action::End,
            (Role::System, _) => return Err(CallError::NotAParty),
            (_, _) => return Err(CallError::NotInCall(state)),
        },
        other => other,
    };
    let mut effects = Vec::new();
    let to = match action {
        Action::Accept { answer } => {
            match role {
                Role::Callee => {}
                Role::Caller => return Err(CallError::NotCallee("accept")),
                _ => return Err(CallError::NotAParty),
            }
            if st != Status::Ring {
                return Err(CallError::NotRinging(state));
            }
            call.answer = Some(answer);
            call.callee_device = Some(actor.device.to_string());
            call.accepted_at = Some(now);
            effects.extend([
                Effect::StopRingTimer,
                Effect::TellCallerAccepted,
                Effect::StartMaxDurationTimer,
                Effect::StopOtherCalleeDevices {
                    acting_device: actor.device.to_string(),
                },
            ]);
            Status::InCall
        }
        Action::Reject => {
            match role {
                Role::Callee => {}
                Role::Caller => return Err(CallError::NotCallee("reject")),
                _ => return Err(CallError::NotAParty),
            }
            if st != Status::Ring {
                return Err(CallError::NotRinging(state));
            }
            call.ended_at = Some(now);
            effects.extend([
                Effect::StopRingTimer,
                Effect::TellCallerRejected,
                Effect::StopOtherCalleeDevices {
                    acting_device: actor.device.to_string(),
                },
                Effect::Note(CallNote::Rejected),
            ]);
            Status::Rejected
        }
        Action::Cancel => {
            match role {
                Role::Caller => {}
                Role::Callee => return Err(CallError::NotCaller),
                _ => return Err(CallError::NotAParty),
            }
            if st != Status::Ring {
                return Err(CallError::NotRinging(state));
            }
            call.ended_at = Some(now);
            effects.extend([
                Effect::StopRingTimer,
                Effect::TellCalleeCanceled,
                Effect::Note(CallNote::Canceled),
            ]);
            Status::Canceled
        }
        Action::End => {
            if !matches!(role, Role::Caller | Role::Callee) {
                return Err(CallError::NotAParty);
            }
            if st != Status::InCall {
                return Err(CallError::NotInCall(state));
            }
            call.ended_at = Some(now);
            effects.extend([Effect::TellBothEnded, Effect::Note(CallNote::Finished)]);
            Status::Finished
        }
        Action::RingTimeout => {
            if role != Role::System {
                return Err(CallError::NotSystem);
            }
            if st != Status::Ring {
                return Err(CallError::NotRinging(state));
            }
            call.ended_at = Some(now);
            // The timer is the actor here; it has already fired.
            effects.extend([Effect::TellBothTimeout, Effect::Note(CallNote::Missed)]);
            Status::Timeout
        }
        Action::DeviceLost { role: lost } => {
            if role != Role::System {
                return Err(CallError::NotSystem);
            }
            match (lost, st) {
                (Role::Caller, Status::Ring) => {
                    call.ended_at = Some(now);
                    effects.extend([
                        Effect::StopRingTimer,
                        Effect::TellCalleeCanceled,
                        Effect::Note(CallNote::Canceled),
                    ]);
                    Status::Canceled
                }
                (Role::Caller | Role::Callee, Status::InCall) => {
                    call.ended_at = Some(now);
                    effects.extend([Effect::TellBothEnded, Effect::Note(CallNote::Finished)]);
                    Status::Finished
                }
                _ => return Err(CallError::NotInCall(state)),
            }
        }
        Action::MaxDurationReached => {
            if role != Role::System {
                return Err(CallError::NotSystem);
            }
            if st != Status::InCall {
                return Err(CallError::NotInCall(state));
            }
            call.ended_at = Some(now);
            effects.extend([Effect::TellBothEnded, Effect::Note(CallNote::Finished)]);
            Status::Finished
        }
        Action::Hangup => unreachable!("resolved above"),
    };
    call.status = to;
    call.rev += 1;
    if to.is_live() {
        call.flush_held(&mut effects);
    } else {
        call.held_ice.clear();
    }
    Ok(effects)
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IceError {
    #[error("you are not a party to this call")]
    NotAParty,
    #[error("call is not live (status: {0})")]
    NotLive(&'static str),
    #[error("this device is not the one in the call")]
    NotCallDevice,
    #[error("too many ICE candidates held for this call")]
    TooManyHeld,
}

/// Routes an ICE candidate from `user` on `device`: relayed to the other party's call device
/// when both ends are known and the call is running, held in order otherwise (ringing, or the
/// other device not bound yet). `may_bind`: the sender is a socket that may claim an unbound
/// device of its party (it counts as its own device). Returns the effects, like [`apply`].
pub fn route_ice(
    call: &mut Call,
    user: &str,
    device: &str,
    may_bind: bool,
    payload: Value,
) -> Result<Vec<Effect>, IceError> {
    let role = call.role_of(user);
    if role == Role::Stranger {
        return Err(IceError::NotAParty);
    }
    if !call.status.is_live() {
        return Err(IceError::NotLive(call.status.as_str()));
    }
    let mut effects = Vec::new();
    match call.device_of(role) {
        Some(d) if d == device => {}
        Some(UNBOUND) if may_bind => {
            call.bind(role, device);
            effects.push(Effect::DeviceBound {
                role,
                device: device.to_string(),
            });
        }
        Some(_) => return Err(IceError::NotCallDevice),
        // The callee while ringing: any of its devices may trickle early; only the one that
        // answers gets its candidates through.
        None => {}
    }
    let target = call.device_of(role.other()).filter(|d| *d != UNBOUND);
    match (call.status, target) {
        (Status::InCall, Some(t)) => {
            let t = t.to_string();
            call.flush_held(&mut effects);
            effects.push(Effect::DeliverIce {
                to: role.other(),
                device: t,
                payload,
            });
        }
        _ => {
            if call.held_ice.len() >= MAX_HELD_ICE {
                return Err(IceError::TooManyHeld);
            }
            call.held_ice.push(HeldIce {
                from: role,
                from_device: device.to_string(),
                payload,
            });
            call.flush_held(&mut effects);
        }
    }
    Ok(effects)
}

/// alice (on "a-phone") calling bob; in a call, bob answered on "b-phone".
#[cfg(test)]
pub(crate) fn sample_call(status: Status) -> Call {
    Call {
        meet_id: "m".into(),
        room_id: "r".into(),
        caller: "alice".into(),
        callee: "bob".into(),
        caller_device: "a-phone".into(),
        callee_device: (status == Status::InCall).then(|| "b-phone".to_string()),
        with_video: false,
        platform: "webRtc".into(),
        status,
        payload: serde_json::json!("offer"),
        answer: None,
        created_at: Utc::now(),
        accepted_at: None,
        ended_at: None,
        rev: 1,
        held_ice: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(status: Status) -> Call {
        sample_call(status)
    }

    fn actors() -> Vec<(Role, Actor<'static>)> {
        vec![
            (
                Role::Caller,
                Actor {
                    user: Some("alice"),
                    device: "a-phone",
                },
            ),
            (
                Role::Callee,
                Actor {
                    user: Some("bob"),
                    device: "b-phone",
                },
            ),
            (
                Role::Stranger,
                Actor {
                    user: Some("eve"),
                    device: "e",
                },
            ),
            (Role::System, Actor::SYSTEM),
        ]
    }

    fn actions() -> Vec<Action> {
        vec![
            Action::Accept {
                answer: json!({"answer": 1}),
            },
            Action::Accept { answer: json!("a") },
            Action::Reject,
            Action::Cancel,
            Action::End,
            Action::Hangup,
            Action::RingTimeout,
            Action::DeviceLost { role: Role::Caller },
            Action::DeviceLost { role: Role::Callee },
            Action::MaxDurationReached,
        ]
    }

    /// The whole table: what each state × action × role must give.
    fn expected(st: Status, action: &Action, role: Role) -> Result<Status, ()> {
        use Role::*;
        use Status::*;
        match (action, role, st) {
            (Action::Accept { .. }, Callee, Ring) => Ok(InCall),
            (Action::Reject, Callee, Ring) => Ok(Rejected),
            (Action::Cancel, Caller, Ring) => Ok(Canceled),
            (Action::End, Caller | Callee, InCall) => Ok(Finished),
            (Action::Hangup, Caller, Ring) => Ok(Canceled),
            (Action::Hangup, Callee, Ring) => Ok(Rejected),
            (Action::Hangup, Caller | Callee, InCall) => Ok(Finished),
            (Action::RingTimeout, System, Ring) => Ok(Timeout),
            (Action::DeviceLost { role: Caller }, System, Ring) => Ok(Canceled),
            (Action::DeviceLost { .. } | Action::MaxDurationReached, System, InCall) => {
                Ok(Finished)
            }
            _ => Err(()),
        }
    }

    #[test]
    fn every_state_action_actor() {
        let mut checked = 0;
        for st in Status::ALL {
            for action in actions() {
                for (role, actor) in actors() {
                    let mut c = call(st);
                    let before = c.clone();
                    let got = apply(&mut c, action.clone(), &actor, Utc::now());
                    match expected(st, &action, role) {
                        Ok(to) => {
                            let effects = got.unwrap_or_else(|e| {
                                panic!("{st:?} {} by {role:?}: unexpected {e}", action.name())
                            });
                            assert_eq!(c.status, to, "{st:?} {} by {role:?}", action.name());
                            assert_eq!(c.rev, before.rev + 1);
                            assert!(!effects.is_empty());
                            if !to.is_live() {
                                assert!(c.ended_at.is_some());
                            }
                        }
                        Err(()) => {
                            let e = got.expect_err("must refuse");
                            assert_eq!(c, before, "a refused action changes nothing");
                            // Role errors are 403, everything else (state) is 400.
                            if role == Role::Stranger {
                                assert!(e.is_forbidden(), "{e}");
                            }
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 10 * 4);
    }

    #[test]
    fn accept_records_answer_device_and_time_and_flushes_held_ice() {
        let mut c = call(Status::Ring);
        for (user, device, n) in [
            ("alice", "a-phone", 1),
            ("bob", "b-tablet", 2),
            ("bob", "b-phone", 3),
            ("alice", "a-phone", 4),
        ] {
            let fx = route_ice(&mut c, user, device, false, json!({ "n": n })).unwrap();
            assert!(fx.is_empty(), "held while ringing");
        }
        let now = Utc::now();
        let fx = apply(
            &mut c,
            Action::Accept {
                answer: json!("ans"),
            },
            &Actor {
                user: Some("bob"),
                device: "b-phone",
            },
            now,
        )
        .unwrap();
        assert_eq!(c.callee_device.as_deref(), Some("b-phone"));
        assert_eq!(c.answer, Some(json!("ans")));
        assert_eq!(c.accepted_at, Some(now));
        let ice: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::DeliverIce {
                    to,
                    device,
                    payload,
                } => Some((*to, device.clone(), payload["n"].as_i64().unwrap())),
                _ => None,
            })
            .collect();
        assert_eq!(
            ice,
            vec![
                (Role::Callee, "b-phone".into(), 1),
                (Role::Caller, "a-phone".into(), 3),
                (Role::Callee, "b-phone".into(), 4),
            ],
            "in order, to the answering device, the tablet's candidate dropped"
        );
        assert!(c.held_ice.is_empty());
        assert!(fx.contains(&Effect::StopOtherCalleeDevices {
            acting_device: "b-phone".into()
        }));
    }

    fn deliveries(fx: &[Effect]) -> Vec<(Role, String, Value)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::DeliverIce {
                    to,
                    device,
                    payload,
                } => Some((*to, device.clone(), payload.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ice_routing_in_call_and_refusals() {
        let mut c = call(Status::InCall);
        assert_eq!(
            route_ice(&mut c, "alice", "a-phone", false, json!(1)),
            Ok(vec![Effect::DeliverIce {
                to: Role::Callee,
                device: "b-phone".into(),
                payload: json!(1)
            }])
        );
        assert_eq!(
            route_ice(&mut c, "bob", "b-phone", false, json!(2)),
            Ok(vec![Effect::DeliverIce {
                to: Role::Caller,
                device: "a-phone".into(),
                payload: json!(2)
            }])
        );
        assert_eq!(
            route_ice(&mut c, "bob", "b-tablet", true, json!(1)),
            Err(IceError::NotCallDevice),
            "a bound device is never re-bound"
        );
        assert_eq!(
            route_ice(&mut c, "eve", "x", false, json!(1)),
            Err(IceError::NotAParty)
        );
        let mut ended = call(Status::Finished);
        assert_eq!(
            route_ice(&mut ended, "alice", "a-phone", false, json!(1)),
            Err(IceError::NotLive("finished"))
        );
        let mut ringing = call(Status::Ring);
        for _ in 0..MAX_HELD_ICE {
            route_ice(&mut ringing, "alice", "a-phone", false, json!(1)).unwrap();
        }
        assert_eq!(
            route_ice(&mut ringing, "alice", "a-phone", false, json!(1)),
            Err(IceError::TooManyHeld)
        );
    }

    /// A callee without a device id accepted over REST while it had two sockets: candidates wait
    /// until one socket speaks, then that socket is the call device and only it gets ICE.
    #[test]
    fn an_unbound_callee_is_bound_by_its_first_candidate() {
        let mut c = call(Status::Ring);
        route_ice(&mut c, "alice", "a-phone", false, json!("a1")).unwrap();
        let fx = apply(
            &mut c,
            Action::Accept { answer: json!(1) },
            &Actor {
                user: Some("bob"),
                device: UNBOUND,
            },
            Utc::now(),
        )
        .unwrap();
        assert!(deliveries(&fx).is_empty(), "nowhere to send yet");
        let fx = route_ice(&mut c, "alice", "a-phone", false, json!("a2")).unwrap();
        assert!(fx.is_empty(), "held: the callee's device is unknown");
        assert_eq!(
            route_ice(&mut c, "bob", "b-tablet", false, json!("b1")),
            Err(IceError::NotCallDevice),
            "a device with its own id cannot claim it"
        );
        assert_eq!(c.callee_device.as_deref(), Some(UNBOUND));
        let fx = route_ice(&mut c, "bob", "~s1", true, json!("b2")).unwrap();
        assert_eq!(c.callee_device.as_deref(), Some("~s1"));
        assert_eq!(
            fx[0],
            Effect::DeviceBound {
                role: Role::Callee,
                device: "~s1".into()
            }
        );
        assert_eq!(
            deliveries(&fx),
            vec![
                (Role::Callee, "~s1".into(), json!("a1")),
                (Role::Callee, "~s1".into(), json!("a2")),
                (Role::Caller, "a-phone".into(), json!("b2")),
            ],
            "held candidates in order; the other socket's dropped"
        );
        assert!(c.held_ice.is_empty());
        assert_eq!(
            route_ice(&mut c, "bob", "~s2", true, json!("b3")),
            Err(IceError::NotCallDevice)
        );
    }

    #[test]
    fn device_lost_cancels_a_ringing_caller_and_finishes_a_call() {
        let system = Actor::SYSTEM;
        let mut c = call(Status::Ring);
        let fx = apply(
            &mut c,
            Action::DeviceLost { role: Role::Caller },
            &system,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(c.status, Status::Canceled);
        assert!(fx.contains(&Effect::TellCalleeCanceled));
        let mut c = call(Status::InCall);
        apply(
            &mut c,
            Action::DeviceLost { role: Role::Callee },
            &system,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(c.status, Status::Finished);
        let mut c = call(Status::Ring);
        assert!(apply(
            &mut c,
            Action::DeviceLost { role: Role::Callee },
            &system,
            Utc::now()
        )
        .is_err());
        assert_eq!(c.ended_at, None, "refused: unchanged");
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("offline"), None);
    }
}
