//! Property tests of the pure parts: the call state machine and its ICE routing, the lenient
//! event decoder, the per-device outboxes and the attachment checker. No server, no sockets.
//!
//! Each property runs 256 random cases by default (CI). A longer run is one command:
//!
//! ```text
//! PROPTEST_CASES=10000 cargo test --release --test properties
//! ```
//!
//! A failure prints the minimal failing input (proptest shrinks it) and keeps its seed in
//! `tests/properties.proptest-regressions`, so the next run tries it first.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use serde_json::{json, Map, Value};

use vchat_signal::calls::machine::{
    apply, route_ice, Action, Actor, Call, CallError, Effect, IceError, Role, Status, MAX_HELD_ICE,
    UNBOUND,
};
use vchat_signal::chat::attachments::{self, MAX_CUSTOM_BYTES};
use vchat_signal::realtime::outbox::{Offer, Outboxes, MAX_BYTES, MAX_EVENTS};
use vchat_signal::wire::decode::{decode, to_value};
use vchat_signal::wire::shapes::{OnlineQuery, RoomRef, RoomStatusIn};

/// 256 cases unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // Next to this file, as `properties.proptest-regressions` (commit it if one appears).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// =====================================================================================
// The call machine
// =====================================================================================

const CALLER: &str = "alice";
const CALLEE: &str = "bob";
const STRANGER: &str = "eve";

/// Devices an actor may act or send ICE from. `UNBOUND` is a token without `did` acting over
/// REST while it had several sockets; `~s…` are sockets of tokens without `did`.
const CALLER_DEVICES: [&str; 4] = ["a-phone", "a-tablet", UNBOUND, "~s1"];
const CALLEE_DEVICES: [&str; 5] = ["b-phone", "b-tablet", UNBOUND, "~s2", "~s3"];
const STRANGER_DEVICES: [&str; 2] = ["e-phone", UNBOUND];

#[derive(Clone, Debug)]
enum Who {
    Caller(usize),
    Callee(usize),
    Stranger(usize),
    System,
}

impl Who {
    fn actor(&self) -> Actor<'static> {
        match self {
            Who::Caller(d) => Actor {
                user: Some(CALLER),
                device: CALLER_DEVICES[*d],
            },
            Who::Callee(d) => Actor {
                user: Some(CALLEE),
                device: CALLEE_DEVICES[*d],
            },
            Who::Stranger(d) => Actor {
                user: Some(STRANGER),
                device: STRANGER_DEVICES[*d],
            },
            Who::System => Actor::SYSTEM,
        }
    }
    fn role(&self) -> Role {
        match self {
            Who::Caller(_) => Role::Caller,
            Who::Callee(_) => Role::Callee,
            Who::Stranger(_) => Role::Stranger,
            Who::System => Role::System,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// `apply` after `dt_ms` milliseconds.
    Act {
        who: Who,
        action: Action,
        dt_ms: u32,
    },
    /// `route_ice` from a party (or a stranger) on a device.
    Ice { who: Who, may_bind: bool },
}

fn arb_who() -> impl Strategy<Value = Who> {
    prop_oneof![
        3 => (0..CALLER_DEVICES.len()).prop_map(Who::Caller),
        4 => (0..CALLEE_DEVICES.len()).prop_map(Who::Callee),
        1 => (0..STRANGER_DEVICES.len()).prop_map(Who::Stranger),
        2 => Just(Who::System),
    ]
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![
        4 => Just(Role::Caller),
        4 => Just(Role::Callee),
        1 => Just(Role::Stranger),
        1 => Just(Role::System),
    ]
}

/// Answers as clients send them: Gen-A a JSON string, Gen-B an object or null.
fn arb_answer() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        ".{0,12}".prop_map(Value::String),
        (any::<i64>(), ".{0,8}").prop_map(|(n, s)| json!({"answer": {"sdp": s, "n": n}})),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => arb_answer().prop_map(|answer| Action::Accept { answer }),
        2 => Just(Action::Reject),
        2 => Just(Action::Cancel),
        2 => Just(Action::End),
        3 => Just(Action::Hangup),
        2 => Just(Action::RingTimeout),
        2 => arb_role().prop_map(|role| Action::DeviceLost { role }),
        1 => Just(Action::MaxDurationReached),
    ]
}

/// An ICE sender is a socket, so it always has a device (its token's `did`, or `~<sid>`):
/// never `UNBOUND`, and never the server.
fn arb_ice_who() -> impl Strategy<Value = Who> {
    let sockets = |devices: &'static [&'static str]| {
        let ok: Vec<usize> = (0..devices.len())
            .filter(|&d| devices[d] != UNBOUND)
            .collect();
        prop::sample::select(ok)
    };
    prop_oneof![
        3 => sockets(&CALLER_DEVICES).prop_map(Who::Caller),
        4 => sockets(&CALLEE_DEVICES).prop_map(Who::Callee),
        1 => sockets(&STRANGER_DEVICES).prop_map(Who::Stranger),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (arb_who(), arb_action(), 0u32..120_000).prop_map(|(who, action, dt_ms)| Op::Act { who, action, dt_ms }),
        4 => (arb_ice_who(), any::<bool>()).prop_map(|(who, may_bind)| Op::Ice { who, may_bind }),
    ]
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

/// A call as `create` makes it: ringing, the caller's device known (or `UNBOUND`), the
/// callee's not (every callee device rings).
fn new_call(caller_device: &str, payload: Value) -> Call {
    Call {
        meet_id: "m1".into(),
        room_id: "r1".into(),
        caller: CALLER.into(),
        callee: CALLEE.into(),
        caller_device: caller_device.into(),
        callee_device: None,
        with_video: false,
        platform: "webRtc".into(),
        status: Status::Ring,
        payload,
        answer: None,
        created_at: t0(),
        accepted_at: None,
        ended_at: None,
        rev: 1,
        held_ice: Vec::new(),
    }
}

/// The shell keeps one deadline timer per call (`LiveCall::deadline`): the ring timeout from
/// creation, replaced by the max-duration timer on accept. This models that slot from the
/// effects alone, in the order the shell performs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deadline {
    Ring,
    MaxDuration,
}

/// Where an ICE candidate came from (its payload carries a serial number).
#[derive(Clone, Debug)]
struct Sent {
    from: Role,
    device: String,
}

/// Everything the checker remembers across one sequence.
struct Model {
    deadline: Option<Deadline>,
    /// Transitions that left `Ring`.
    left_ring: usize,
    accepted: bool,
    /// Candidates the machine took (Ok from `route_ice`), by serial.
    sent: BTreeMap<u64, Sent>,
    delivered: HashSet<u64>,
    /// Last serial delivered per origin role (candidates from one party arrive in order).
    /// (indexed caller 0, callee 1)
    last_delivered: [Option<u64>; 2],
    terminal_at: Option<DateTime<Utc>>,
}

fn serial_of(v: &Value) -> u64 {
    v["data"]["n"].as_u64().expect("a test payload")
}

fn held_serials(c: &Call) -> Vec<u64> {
    c.held_ice.iter().map(|h| serial_of(&h.payload)).collect()
}

/// Checks the ICE deliveries in `effects` and the fate of candidates no longer held.
fn check_ice_effects(
    m: &mut Model,
    before: &Call,
    after: &Call,
    effects: &[Effect],
) -> Result<(), TestCaseError> {
    let mut this_round = HashSet::new();
    for e in effects {
        if let Effect::DeliverIce {
            to,
            device,
            payload,
        } = e
        {
            let n = serial_of(payload);
            let sent = m
                .sent
                .get(&n)
                .ok_or_else(|| TestCaseError::fail(format!("delivered unknown candidate {n}")))?;
            prop_assert_eq!(after.status, Status::InCall, "ICE only flows in a call");
            prop_assert!(
                matches!(to, Role::Caller | Role::Callee),
                "ICE to a non-party {:?}",
                to
            );
            prop_assert_eq!(*to, sent.from.other(), "ICE goes to the other party only");
            prop_assert_ne!(device.as_str(), UNBOUND, "never to an unknown device");
            prop_assert_ne!(device, &sent.device, "never back to the sending device");
            prop_assert_eq!(
                Some(device.as_str()),
                after.device_of(*to),
                "only to the other party's bound call device"
            );
            prop_assert_eq!(
                Some(sent.device.as_str()),
                after.device_of(sent.from),
                "only candidates from the sender's call device"
            );
            prop_assert!(m.delivered.insert(n), "candidate {} delivered twice", n);
            this_round.insert(n);
            let slot = &mut m.last_delivered[usize::from(sent.from != Role::Caller)];
            if let Some(last) = slot.replace(n) {
                prop_assert!(
                    last < n,
                    "candidates of one party in order: {} then {}",
                    last,
                    n
                );
            }
        }
    }
    // A candidate that leaves the held list without being delivered was dropped: only allowed
    // when the call ended or its sender's device is not the call device.
    let still: HashSet<u64> = held_serials(after).into_iter().collect();
    for h in &before.held_ice {
        let n = serial_of(&h.payload);
        if still.contains(&n) || this_round.contains(&n) {
            continue;
        }
        let bound = after.device_of(h.from).filter(|d| *d != UNBOUND);
        prop_assert!(
            !after.status.is_live() || bound.is_some_and(|d| d != h.from_device),
            "held candidate {} from {:?}/{} dropped while its device may still get the call ({:?})",
            n,
            h.from,
            h.from_device,
            after
        );
    }
    Ok(())
}

/// Invariants that hold after every step, whatever happened.
fn check_state(m: &Model, c: &Call) -> Result<(), TestCaseError> {
    prop_assert!(
        c.held_ice.len() <= MAX_HELD_ICE,
        "held {}",
        c.held_ice.len()
    );
    if c.status.is_live() {
        prop_assert!(c.ended_at.is_none(), "a live call has no end");
    } else {
        prop_assert!(c.ended_at.is_some(), "a terminal call records its end");
        prop_assert!(c.held_ice.is_empty(), "nothing held once over");
    }
    // Never a live call without its timer.
    match c.status {
        Status::Ring => prop_assert_eq!(m.deadline, Some(Deadline::Ring)),
        Status::InCall => prop_assert_eq!(m.deadline, Some(Deadline::MaxDuration)),
        _ => {}
    }
    prop_assert_eq!(
        c.accepted_at.is_some(),
        m.accepted,
        "acceptedAt iff accepted"
    );
    prop_assert_eq!(c.answer.is_some(), m.accepted, "answer iff accepted");
    if m.accepted {
        prop_assert!(
            c.callee_device.is_some(),
            "an accepted call knows its callee device"
        );
    } else {
        prop_assert!(
            c.callee_device.is_none(),
            "every callee device rings until one answers"
        );
    }
    if let (Some(a), Some(e)) = (c.accepted_at, c.ended_at) {
        prop_assert!(a <= e);
    }
    if c.status == Status::InCall
        && c.caller_device != UNBOUND
        && c.callee_device.as_deref() != Some(UNBOUND)
    {
        prop_assert!(
            c.held_ice.is_empty(),
            "both ends known in a call: nothing waits"
        );
    }
    prop_assert!(m.left_ring <= 1, "never two winners");
    Ok(())
}

fn run_machine(caller_device: usize, payload: Value, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut call = new_call(CALLER_DEVICES[caller_device], payload);
    let mut m = Model {
        deadline: Some(Deadline::Ring), // armed by create, before anyone hears of the call
        left_ring: 0,
        accepted: false,
        sent: BTreeMap::new(),
        delivered: HashSet::new(),
        last_delivered: [None, None],
        terminal_at: None,
    };
    let mut now = t0();
    let mut serial = 0u64;
    for op in ops {
        let before = call.clone();
        let before_text = format!("{before:?}");
        match op {
            Op::Act { who, action, dt_ms } => {
                now += chrono::Duration::milliseconds(dt_ms as i64);
                let role = who.role();
                let name = action.name();
                let accept_answer = match &action {
                    Action::Accept { answer } => Some(answer.clone()),
                    _ => None,
                };
                let actor = who.actor();
                match apply(&mut call, action, &actor, now) {
                    Err(e) => {
                        prop_assert_eq!(&call, &before, "refused {} changed the call", name);
                        prop_assert_eq!(format!("{call:?}"), before_text);
                        if role == Role::Stranger {
                            prop_assert!(e.is_forbidden(), "a stranger gets 403: {}", e);
                        }
                        if !before.status.is_live() {
                            // Terminal states are final: refused as a state error, or by role.
                            prop_assert!(
                                e.is_forbidden()
                                    || matches!(
                                        e,
                                        CallError::NotRinging(_) | CallError::NotInCall(_)
                                    ),
                                "{}",
                                e
                            );
                        }
                    }
                    Ok(effects) => {
                        prop_assert!(
                            before.status.is_live(),
                            "{} accepted on a {:?} call",
                            name,
                            before.status
                        );
                        prop_assert_eq!(call.rev, before.rev + 1, "rev +1 per transition");
                        prop_assert_ne!(call.status, before.status, "a transition moves");
                        prop_assert!(
                            matches!(role, Role::Caller | Role::Callee | Role::System),
                            "{:?} moved the call",
                            role
                        );
                        if before.status == Status::Ring {
                            m.left_ring += 1;
                        }
                        // A timer's action only lands while that timer is armed.
                        if name == "ring timeout" {
                            prop_assert_eq!(m.deadline, Some(Deadline::Ring));
                        }
                        if name == "max duration reached" {
                            prop_assert_eq!(m.deadline, Some(Deadline::MaxDuration));
                        }
                        // The deadline slot, effect by effect, as the shell performs them.
                        let mut starts = 0;
                        for e in &effects {
                            match e {
                                Effect::StopRingTimer => m.deadline = None,
                                Effect::StartMaxDurationTimer => {
                                    starts += 1;
                                    m.deadline = Some(Deadline::MaxDuration);
                                }
                                _ => {}
                            }
                        }
                        if call.status == Status::InCall {
                            prop_assert_eq!(before.status, Status::Ring);
                            prop_assert!(effects.contains(&Effect::StopRingTimer));
                            prop_assert_eq!(starts, 1, "one max-duration timer per call");
                            prop_assert_eq!(role, Role::Callee, "only the callee answers");
                            m.accepted = true;
                            prop_assert_eq!(call.accepted_at, Some(now));
                            prop_assert_eq!(call.answer.clone(), accept_answer);
                            prop_assert_eq!(call.callee_device.as_deref(), Some(actor.device));
                            prop_assert!(effects.contains(&Effect::TellCallerAccepted));
                        } else {
                            prop_assert_eq!(starts, 0, "max duration only armed on accept");
                            prop_assert_eq!(
                                call.accepted_at,
                                before.accepted_at,
                                "acceptedAt is set once"
                            );
                        }
                        if !call.status.is_live() {
                            m.deadline = None; // the shell drops the whole live call
                            m.terminal_at = Some(now);
                            prop_assert_eq!(call.ended_at, Some(now));
                            prop_assert!(
                                effects.iter().any(|e| matches!(e, Effect::Note(_))),
                                "every ending leaves a chat note"
                            );
                        }
                        // Who may do what.
                        match (&call.status, role) {
                            (Status::Timeout, r) => prop_assert_eq!(r, Role::System),
                            (Status::Rejected, r) => prop_assert_eq!(r, Role::Callee),
                            (Status::Canceled, r) => {
                                prop_assert!(matches!(r, Role::Caller | Role::System))
                            }
                            _ => {}
                        }
                        check_ice_effects(&mut m, &before, &call, &effects)?;
                    }
                }
            }
            Op::Ice { who, may_bind } => {
                serial += 1;
                let actor = who.actor();
                let user = actor.user.unwrap_or("");
                let role = call.role_of(user);
                let payload = json!({"meetId": "m1", "data": {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 0, "n": serial}});
                let held_before = before.held_ice.len();
                match route_ice(&mut call, user, actor.device, may_bind, payload) {
                    Err(e) => {
                        prop_assert_eq!(&call, &before, "refused ICE changed the call");
                        prop_assert_eq!(format!("{call:?}"), before_text);
                        match e {
                            IceError::NotAParty => prop_assert_eq!(role, Role::Stranger),
                            IceError::NotLive(_) => prop_assert!(!before.status.is_live()),
                            IceError::TooManyHeld => {
                                prop_assert_eq!(held_before, MAX_HELD_ICE)
                            }
                            IceError::NotCallDevice => {
                                let d = before.device_of(role);
                                prop_assert!(d.is_some_and(|d| d != actor.device));
                            }
                        }
                    }
                    Ok(effects) => {
                        prop_assert!(before.status.is_live(), "ICE on a terminal call");
                        prop_assert!(matches!(role, Role::Caller | Role::Callee));
                        prop_assert_eq!(call.status, before.status, "ICE moves no state");
                        prop_assert_eq!(call.rev, before.rev, "ICE is no transition");
                        m.sent.insert(
                            serial,
                            Sent {
                                from: role,
                                device: actor.device.to_string(),
                            },
                        );
                        let deliveries = effects
                            .iter()
                            .filter(|e| matches!(e, Effect::DeliverIce { .. }))
                            .count();
                        prop_assert!(
                            deliveries <= held_before + 1,
                            "{} deliveries with {} held",
                            deliveries,
                            held_before
                        );
                        for e in &effects {
                            match e {
                                Effect::DeliverIce { .. } => {}
                                Effect::DeviceBound { role: r, device } => {
                                    prop_assert!(may_bind, "bound without may_bind");
                                    prop_assert_eq!(*r, role);
                                    prop_assert_eq!(before.device_of(role), Some(UNBOUND));
                                    prop_assert_eq!(call.device_of(role), Some(device.as_str()));
                                }
                                other => prop_assert!(false, "route_ice emitted {:?}", other),
                            }
                        }
                        // The sender is (now) the party's call device, or a ringing callee.
                        match call.device_of(role) {
                            None => {
                                prop_assert!(role == Role::Callee && call.status == Status::Ring)
                            }
                            Some(d) => prop_assert_eq!(d, actor.device),
                        }
                        check_ice_effects(&mut m, &before, &call, &effects)?;
                    }
                }
            }
        }
        check_state(&m, &call)?;
        if !before.status.is_live() {
            prop_assert_eq!(&call, &before, "a terminal call never changes");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random action sequences from random actors, interleaved with ICE from random devices.
    #[test]
    fn call_machine_sequences(
        caller_device in 0..CALLER_DEVICES.len(),
        payload in arb_answer(),
        ops in prop::collection::vec(arb_op(), 1..60),
    ) {
        run_machine(caller_device, payload, ops)?;
    }

    /// Sequences that mostly stay ringing with lots of ICE: exercises the held-ICE bound.
    #[test]
    fn call_machine_ice_floods(
        caller_device in 0..CALLER_DEVICES.len(),
        ice in prop::collection::vec((arb_ice_who(), any::<bool>()), 50..160),
        tail in prop::collection::vec(arb_op(), 0..30),
    ) {
        let mut ops: Vec<Op> = ice
            .into_iter()
            .map(|(who, may_bind)| Op::Ice { who, may_bind })
            .collect();
        ops.extend(tail);
        run_machine(caller_device, Value::Null, ops)?;
    }
}

// =====================================================================================
// Wire decoders
// =====================================================================================

/// Any JSON value, nested up to a few levels, with awkward strings and numbers.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        "[\\u{0}-\\u{7f}]{0,12}".prop_map(Value::String),
        Just(json!("roomId")),
        Just(json!("peerId")),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("roomId".to_string()),
                    Just("peerId".to_string()),
                    Just("status".to_string()),
                    Just("extra".to_string()),
                    any::<String>(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that is JSON-ish: fragments of payloads, broken escapes, huge numbers, deep nesting.
fn arb_jsonish_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"roomId\"".to_string()),
        Just("\"peerId\"".to_string()),
        Just("\"status\"".to_string()),
        Just("\"extra\"".to_string()),
        Just("\"typing\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1e999999".to_string()),
        Just("-1e400".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1".repeat(400)),
        Just("0.".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\udc00\\ud800\"".to_string()),
        Just("\"\\uZZZZ\"".to_string()),
        Just("\"\\u00\"".to_string()),
        Just("\"\\x41\"".to_string()),
        Just("\"\u{0}\"".to_string()),
        Just("\"\u{1F600}\"".to_string()),
        Just("\u{FEFF}".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        ".{0,6}".prop_map(|s| format!("{s:?}")),
        ".{0,6}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn deep(open: &str, close: &str, depth: usize, inner: &str) -> String {
    format!("{}{}{}", open.repeat(depth), inner, close.repeat(depth))
}

const EVENTS: [&str; 4] = [
    "v1MyOnline",
    "v1RoomStatusChange",
    "v1DeliverChatRoom",
    "v1EnterChatRoom",
];

/// Runs every decoder the socket handlers use; none may panic, and an error always names the
/// event (it becomes the `v1OnException` text).
fn decode_all(payload: &Value) -> Result<(), TestCaseError> {
    fn named<T>(event: &str, r: Result<T, String>) -> Result<(), TestCaseError> {
        if let Err(e) = r {
            prop_assert!(e.starts_with(event), "error does not name {}: {}", event, e);
        }
        Ok(())
    }
    named(
        EVENTS[0],
        decode::<Vec<OnlineQuery>>(EVENTS[0], payload).map(|_| ()),
    )?;
    named(EVENTS[1], decode::<RoomStatusIn>(EVENTS[1], payload))?;
    named(EVENTS[2], decode::<RoomRef>(EVENTS[2], payload))?;
    named(EVENTS[3], decode::<RoomRef>(EVENTS[3], payload))?;
    named("v1IceCandidate", to_value("v1IceCandidate", payload))?;
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoders_never_panic_on_any_value(v in arb_json()) {
        decode_all(&v)?;
        // The same value as the JSON string V Chat clients send.
        decode_all(&Value::String(v.to_string()))?;
    }

    #[test]
    fn decoders_never_panic_on_any_text(s in any::<String>(), t in arb_jsonish_text()) {
        decode_all(&Value::String(s))?;
        decode_all(&Value::String(t))?;
    }

    /// The string form and the object form of one payload are refused or accepted alike.
    #[test]
    fn string_and_object_forms_agree(v in arb_json()) {
        // A string is itself the text form; its "object form" would be its JSON encoding.
        prop_assume!(!v.is_string());
        let s = Value::String(v.to_string());
        prop_assert_eq!(
            decode::<RoomRef>("e", &v).map(|r| r.room_id).ok(),
            decode::<RoomRef>("e", &s).map(|r| r.room_id).ok()
        );
        prop_assert_eq!(
            decode::<RoomStatusIn>("e", &v).map(|r| (r.room_id, r.status)).ok(),
            decode::<RoomStatusIn>("e", &s).map(|r| (r.room_id, r.status)).ok()
        );
        prop_assert_eq!(
            // (`extra` numbers may differ in the last bit: text is read with serde_json's fast
            // float parser; `valid_payloads_round_trip` checks them against that reading.)
            decode::<Vec<OnlineQuery>>("e", &v).map(|q| q.into_iter().map(|q| q.peer_id).collect::<Vec<_>>()).ok(),
            decode::<Vec<OnlineQuery>>("e", &s).map(|q| q.into_iter().map(|q| q.peer_id).collect::<Vec<_>>()).ok()
        );
    }

    /// Valid payloads, with unknown keys around them, decode to what was sent in both forms.
    #[test]
    fn valid_payloads_round_trip(
        room in any::<String>(),
        status in prop_oneof![
            Just("stop".to_string()),
            Just("typing".to_string()),
            Just("recording".to_string()),
            ".{0,10}",
        ],
        peers in prop::collection::vec((any::<String>(), prop::option::of(arb_json())), 0..6),
        junk in arb_json(),
    ) {
        // NUL is refused in every client string (see wire::nul); valid payloads have none.
        let nul = vchat_signal::wire::nul::in_value;
        prop_assume!(!room.contains('\0') && !status.contains('\0') && !nul(&junk));
        prop_assume!(peers
            .iter()
            .all(|(p, e)| !p.contains('\0') && !e.as_ref().is_some_and(nul)));
        let with_junk = |mut o: Map<String, Value>| {
            o.insert("zzUnknown".into(), junk.clone());
            Value::Object(o)
        };
        let mut r = Map::new();
        r.insert("roomId".into(), json!(room));
        let room_ref = with_junk(r.clone());
        r.insert("status".into(), json!(status));
        let room_status = with_junk(r);
        for form in [room_ref.clone(), Value::String(room_ref.to_string())] {
            let got: RoomRef = decode("e", &form).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&got.room_id, &room);
        }
        for form in [room_status.clone(), Value::String(room_status.to_string())] {
            let got: RoomStatusIn = decode("e", &form).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&got.room_id, &room);
            prop_assert_eq!(&got.status, &status);
        }
        let list = Value::Array(
            peers
                .iter()
                .map(|(p, extra)| {
                    let mut o = Map::new();
                    o.insert("peerId".into(), json!(p));
                    if let Some(e) = extra {
                        o.insert("extra".into(), e.clone());
                    }
                    with_junk(o)
                })
                .collect(),
        );
        for (i, form) in [list.clone(), Value::String(list.to_string())].into_iter().enumerate() {
            let got: Vec<OnlineQuery> = decode("e", &form).map_err(TestCaseError::fail)?;
            prop_assert_eq!(got.len(), peers.len());
            for (q, (p, extra)) in got.iter().zip(&peers) {
                prop_assert_eq!(&q.peer_id, p);
                // In text form a number means what its text says (serde_json's float reading).
                let want = match extra {
                    None => Value::Null,
                    Some(e) if i == 1 => serde_json::from_str::<Value>(&e.to_string()).unwrap(),
                    Some(e) => e.clone(),
                };
                prop_assert_eq!(&q.extra, &want);
            }
        }
    }
}

/// Pathological inputs, once each: deep nesting far past serde_json's recursion limit (as
/// text: that is all a client can send), and values nested as deep as the wire allows.
#[test]
fn decoders_survive_deep_and_huge_inputs() {
    for depth in [127, 128, 129, 1_000, 100_000] {
        for (o, c, inner) in [
            ("[", "]", ""),
            ("{\"roomId\":", "}", "\"r\""),
            ("[{\"peerId\":\"p\",\"extra\":", "}]", "1"),
        ] {
            decode_all(&Value::String(deep(o, c, depth, inner))).unwrap();
        }
    }
    // A value as deep as one the gateway's parser can produce (serde_json stops at 128).
    let mut v = json!("r");
    for _ in 0..126 {
        v = json!([{ "peerId": "p", "extra": v, "roomId": v.clone() }]);
        if v.to_string().len() > 4_000_000 {
            break;
        }
    }
    decode_all(&v).unwrap();
    let mut v = json!(1);
    for _ in 0..126 {
        v = json!({ "extra": v });
    }
    decode_all(&v).unwrap();
    decode_all(&Value::String(format!(
        "[{{\"peerId\":\"p\",\"extra\":{v}}}]"
    )))
    .unwrap();
    // Huge numbers and strings.
    for text in [
        format!("{{\"roomId\": {}}}", "9".repeat(100_000)),
        format!("{{\"roomId\": \"{}\"}}", "x".repeat(1 << 20)),
        format!("[{{\"peerId\": \"p\", \"extra\": 1e{}}}]", "9".repeat(1000)),
        "[{\"peerId\": \"\\ud800\\ud800\"}]".to_string(),
        "{\"roomId\": \"\\udfff\", \"status\": \"typing\"}".to_string(),
    ] {
        decode_all(&Value::String(text)).unwrap();
    }
}

// =====================================================================================
// Outboxes
// =====================================================================================

const OB_USERS: [&str; 2] = ["u0", "u1"];
const OB_DEVICES: [&str; 3] = ["d0", "d1", "~s9"];
const OB_EVENTS: [&str; 3] = ["v1OnCallAccepted", "v1OnIceCandidate", "v1OnCallEnded"];

#[derive(Clone, Debug)]
enum ObOp {
    /// `expired`: a grace that is already over (`until` = now).
    Open {
        u: usize,
        d: usize,
        expired: bool,
    },
    Offer {
        u: usize,
        d: usize,
        e: usize,
        len: usize,
    },
    /// `n` small offers in a row (to reach `MAX_EVENTS`).
    Burst {
        u: usize,
        d: usize,
        n: usize,
    },
    OfferUser {
        u: usize,
        e: usize,
        len: usize,
    },
    Flush {
        u: usize,
        d: usize,
    },
    Close {
        u: usize,
        d: usize,
    },
    Sweep,
}

fn arb_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..64,
        2 => 1_000usize..20_000,
        1 => 60_000usize..(MAX_BYTES / 4),
        1 => Just(MAX_BYTES),
        1 => Just(MAX_BYTES + 1),
    ]
}

fn arb_ob_op() -> impl Strategy<Value = ObOp> {
    let u = 0..OB_USERS.len();
    let d = 0..OB_DEVICES.len();
    let e = 0..OB_EVENTS.len();
    prop_oneof![
        3 => (u.clone(), d.clone(), prop::bool::weighted(0.2)).prop_map(|(u, d, expired)| ObOp::Open { u, d, expired }),
        6 => (u.clone(), d.clone(), e.clone(), arb_len()).prop_map(|(u, d, e, len)| ObOp::Offer { u, d, e, len }),
        1 => (u.clone(), d.clone(), 100usize..600).prop_map(|(u, d, n)| ObOp::Burst { u, d, n }),
        3 => (u.clone(), e, arb_len()).prop_map(|(u, e, len)| ObOp::OfferUser { u, e, len }),
        2 => (u.clone(), d.clone()).prop_map(|(u, d)| ObOp::Flush { u, d }),
        1 => (u, d).prop_map(|(u, d)| ObOp::Close { u, d }),
        1 => Just(ObOp::Sweep),
    ]
}

#[derive(Default, Debug)]
struct ModelBox {
    live: bool,
    events: Vec<(&'static str, String)>,
    bytes: usize,
}

#[derive(Default)]
struct ObModel {
    boxes: BTreeMap<(usize, usize), ModelBox>,
    kept: u64,
    dropped: u64,
    serial: u64,
}

impl ObModel {
    fn text(&mut self, len: usize) -> String {
        self.serial += 1;
        let mut t = format!("{}:", self.serial);
        let fill = len.saturating_sub(t.len());
        t.push_str(&"x".repeat(fill));
        t
    }
    fn keep(&mut self, k: (usize, usize), event: &'static str, text: &str) -> Offer {
        let b = self.boxes.get_mut(&k).expect("a live box");
        if b.events.len() >= MAX_EVENTS || b.bytes + text.len() > MAX_BYTES {
            self.dropped += 1;
            Offer::Dropped
        } else {
            b.bytes += text.len();
            b.events.push((event, text.to_string()));
            self.kept += 1;
            Offer::Kept
        }
    }
    fn live(&self, k: (usize, usize)) -> bool {
        self.boxes.get(&k).is_some_and(|b| b.live)
    }
}

fn run_outboxes(ops: Vec<ObOp>) -> Result<(), TestCaseError> {
    let o = Outboxes::default();
    let mut m = ObModel::default();
    let far = || Instant::now() + Duration::from_secs(3600);
    for op in ops {
        match op {
            ObOp::Open { u, d, expired } => {
                o.open(
                    OB_USERS[u],
                    OB_DEVICES[d],
                    if expired { Instant::now() } else { far() },
                );
                let b = m.boxes.entry((u, d)).or_default();
                b.live |= !expired;
                prop_assert_eq!(o.is_open(OB_USERS[u], OB_DEVICES[d]), b.live);
            }
            ObOp::Offer { u, d, e, len } => {
                let text = m.text(len);
                let got = o.offer(OB_USERS[u], OB_DEVICES[d], OB_EVENTS[e], &text);
                let want = if m.live((u, d)) {
                    m.keep((u, d), OB_EVENTS[e], &text)
                } else {
                    Offer::SendNow
                };
                prop_assert_eq!(got, want);
            }
            ObOp::Burst { u, d, n } => {
                for _ in 0..n {
                    let text = m.text(8);
                    let got = o.offer(OB_USERS[u], OB_DEVICES[d], OB_EVENTS[1], &text);
                    let want = if m.live((u, d)) {
                        m.keep((u, d), OB_EVENTS[1], &text)
                    } else {
                        Offer::SendNow
                    };
                    prop_assert_eq!(got, want);
                }
            }
            ObOp::OfferUser { u, e, len } => {
                let text = m.text(len);
                let mut got = o.offer_user(OB_USERS[u], OB_EVENTS[e], &text);
                got.sort();
                let mut want = Vec::new();
                for (d, device) in OB_DEVICES.iter().enumerate() {
                    if m.live((u, d)) {
                        m.keep((u, d), OB_EVENTS[e], &text);
                        want.push(device.to_string());
                    }
                }
                want.sort();
                prop_assert_eq!(got, want, "devices in a grace keep it, the rest send now");
            }
            ObOp::Flush { u, d } => {
                let mut got = Vec::new();
                let n = o.flush(OB_USERS[u], OB_DEVICES[d], |e, t| {
                    got.push((e.to_string(), t.to_string()))
                });
                let want: Vec<(String, String)> = match m.boxes.remove(&(u, d)) {
                    Some(b) if b.live => b
                        .events
                        .into_iter()
                        .map(|(e, t)| (e.to_string(), t))
                        .collect(),
                    _ => Vec::new(),
                };
                prop_assert_eq!(n, want.len());
                prop_assert!(got == want, "flushed out of offer order or not all");
                prop_assert_eq!(
                    o.offer(OB_USERS[u], OB_DEVICES[d], OB_EVENTS[0], "after"),
                    Offer::SendNow,
                    "a flushed device sends now"
                );
                prop_assert!(!o
                    .offer_user(OB_USERS[u], OB_EVENTS[0], "after")
                    .contains(&OB_DEVICES[d].to_string()));
                // Keep the model in step with those two offers.
                for dd in 0..OB_DEVICES.len() {
                    if m.live((u, dd)) {
                        m.keep((u, dd), OB_EVENTS[0], "after");
                    }
                }
            }
            ObOp::Close { u, d } => {
                o.close(OB_USERS[u], OB_DEVICES[d]);
                m.boxes.remove(&(u, d));
                prop_assert_eq!(
                    o.offer(OB_USERS[u], OB_DEVICES[d], OB_EVENTS[0], "after"),
                    Offer::SendNow,
                    "a closed device sends now"
                );
                prop_assert!(!o.is_open(OB_USERS[u], OB_DEVICES[d]));
            }
            ObOp::Sweep => {
                o.sweep();
                m.boxes.retain(|_, b| b.live);
            }
        }
        // Bounds and bookkeeping after every step.
        for b in m.boxes.values() {
            prop_assert!(b.events.len() <= MAX_EVENTS);
            prop_assert!(b.bytes <= MAX_BYTES);
        }
        let want_size = (
            m.boxes.len(),
            m.boxes.values().map(|b| b.events.len()).sum::<usize>(),
        );
        prop_assert_eq!(o.size(), want_size);
        prop_assert_eq!(o.kept_total(), m.kept);
        prop_assert_eq!(o.dropped_total(), m.dropped);
    }
    // Everything closes down to nothing.
    for user in OB_USERS {
        for device in OB_DEVICES {
            o.close(user, device);
        }
    }
    prop_assert_eq!(o.size(), (0, 0));
    Ok(())
}

/// What was kept for a device whose grace ran out is never sent (it went with the call's end),
/// and the sweep forgets it. (The property above cannot let a grace run out: its graces are an
/// hour or already over.)
#[test]
fn an_outbox_past_its_grace_sends_nothing() {
    let o = Outboxes::default();
    let until = Instant::now() + Duration::from_millis(30);
    o.open("u", "d", until);
    o.open("u", "other", Instant::now() + Duration::from_secs(3600));
    for i in 0..3 {
        assert_eq!(o.offer("u", "d", OB_EVENTS[0], &i.to_string()), Offer::Kept);
    }
    assert_eq!(o.size(), (2, 3));
    // The outbox's own clock is the thing under test: wait for it to pass `until`.
    while Instant::now() <= until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!o.is_open("u", "d"));
    assert_eq!(o.offer("u", "d", OB_EVENTS[0], "late"), Offer::SendNow);
    assert_eq!(
        o.offer_user("u", OB_EVENTS[0], "all"),
        vec!["other".to_string()]
    );
    let mut sent = 0;
    assert_eq!(o.flush("u", "d", |_, _| sent += 1), 0);
    assert_eq!(sent, 0, "nothing kept past the grace is delivered");
    o.open("u", "d", Instant::now());
    o.sweep();
    assert_eq!(o.size(), (1, 1), "only the live outbox is left");
}

proptest! {
    #![proptest_config(config())]

    /// Random open/offer/offer_user/flush/close/sweep sequences against a model.
    #[test]
    fn outboxes_match_the_model(ops in prop::collection::vec(arb_ob_op(), 1..80)) {
        run_outboxes(ops)?;
    }
}

// =====================================================================================
// Attachments
// =====================================================================================

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-200.0f64..200.0).prop_map(|f| json!(f)),
        (-200i64..200).prop_map(|n| json!(n)),
        Just(json!(90)),
        Just(json!(-90.0)),
        Just(json!(180)),
        Just(json!(-180.0)),
        Just(json!(90.000001)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(f64::MAX)),
        any::<String>().prop_map(Value::String),
        Just(Value::Null),
    ]
}

fn arb_preview_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,20}".prop_map(Value::String),
        (2040usize..2060).prop_map(|n| Value::String("y".repeat(n))),
        (680usize..690).prop_map(|n| Value::String("€".repeat(n))),
        Just(Value::Null),
        arb_json(),
    ]
}

fn arb_location() -> impl Strategy<Value = Value> {
    let preview = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        arb_json().prop_map(Some),
        prop::collection::btree_map(
            prop_oneof![
                Just("image".to_string()),
                Just("title".to_string()),
                Just("desc".to_string()),
                Just("link".to_string()),
                ".{0,6}",
            ],
            arb_preview_field(),
            0..6
        )
        .prop_map(|m| Some(Value::Object(m.into_iter().collect()))),
    ];
    (
        prop::option::of(arb_number()),
        prop::option::of(arb_number()),
        preview,
        prop::option::of(arb_json()),
    )
        .prop_map(|(lat, long, preview, junk)| {
            let mut o = Map::new();
            if let Some(v) = lat {
                o.insert("lat".into(), v);
            }
            if let Some(v) = long {
                o.insert("long".into(), v);
            }
            if let Some(p) = preview {
                o.insert("linkPreviewData".into(), p);
            }
            if let Some(j) = junk {
                o.insert("filePath".into(), j);
            }
            Value::Object(o)
        })
}

fn arb_custom() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_json().prop_map(|d| json!({ "data": d })),
        prop::collection::btree_map(".{0,6}", arb_json(), 0..6)
            .prop_map(|m| json!({ "data": Value::Object(m.into_iter().collect()), "x": 1 })),
        (MAX_CUSTOM_BYTES - 20..MAX_CUSTOM_BYTES + 20)
            .prop_map(|n| json!({ "data": { "k": "z".repeat(n) } })),
        Just(json!({})),
        Just(json!({ "data": null })),
    ]
}

/// A location that is valid but for the length of its preview fields, which straddle the
/// 2048-byte limit in one-, two- and three-byte characters: accepted exactly when every field
/// fits in bytes.
fn arb_valid_location() -> impl Strategy<Value = (Value, bool)> {
    let field = prop_oneof![
        ".{0,20}".prop_map(Some),
        (2040usize..2060).prop_map(|n| Some("y".repeat(n))),
        (1018usize..1030).prop_map(|n| Some("é".repeat(n))),
        (677usize..690).prop_map(|n| Some("€".repeat(n))),
        Just(None),
    ];
    (
        prop_oneof![-90.0f64..=90.0, Just(90.0), Just(-90.0)],
        prop_oneof![-180.0f64..=180.0, Just(180.0), Just(-180.0)],
        prop::collection::vec(field, 4),
    )
        .prop_map(|(lat, long, fields)| {
            let mut preview = Map::new();
            let mut fits = true;
            for (key, f) in ["image", "title", "desc", "link"].iter().zip(fields) {
                match f {
                    Some(s) => {
                        fits &= s.len() <= 2048;
                        preview.insert(key.to_string(), Value::String(s));
                    }
                    None => {
                        preview.insert(key.to_string(), Value::Null);
                    }
                }
            }
            (
                json!({"lat": lat, "long": long, "linkPreviewData": preview}),
                fits,
            )
        })
}

const KINDS: [&str; 8] = [
    "text", "location", "custom", "info", "call", "image", "", "Location",
];

/// The documented shapes; panics with the reason otherwise.
fn check_accepted(kind: &str, given: &Option<Value>, out: &Option<Value>) {
    match kind {
        "text" => {
            assert!(given.is_none() && out.is_none(), "text carries nothing")
        }
        "location" => {
            let o = out.as_ref().and_then(Value::as_object).expect("an object");
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                ["lat", "linkPreviewData", "long"],
                "exactly these keys"
            );
            let lat = o["lat"].as_f64().expect("lat a number");
            let long = o["long"].as_f64().expect("long a number");
            assert!((-90.0..=90.0).contains(&lat), "lat {lat}");
            assert!((-180.0..=180.0).contains(&long), "long {long}");
            let g = given.as_ref().unwrap();
            assert_eq!(Some(lat), g["lat"].as_f64(), "lat kept");
            assert_eq!(Some(long), g["long"].as_f64(), "long kept");
            let p = o["linkPreviewData"].as_object().expect("preview an object");
            for (k, v) in p {
                assert!(
                    ["image", "title", "desc", "link"].contains(&k.as_str()),
                    "preview key {k}"
                );
                let s = v.as_str().expect("preview values are strings");
                assert!(s.len() <= 2048, "preview field {} bytes", s.len());
                assert_eq!(&g["linkPreviewData"][k], v, "preview field kept");
            }
        }
        "custom" => {
            let o = out.as_ref().and_then(Value::as_object).expect("an object");
            assert_eq!(o.len(), 1, "only data: {o:?}");
            let data = o.get("data").and_then(Value::as_object).expect("data map");
            assert!(Value::Object(data.clone()).to_string().len() <= MAX_CUSTOM_BYTES);
            let want = match given.as_ref().map(|g| &g["data"]) {
                None | Some(Value::Null) => json!({}),
                Some(d) => d.clone(),
            };
            assert_eq!(Value::Object(data.clone()), want, "data kept as sent");
        }
        other => panic!("{other:?} messages must be refused"),
    }
}

fn run_attachment(kind: &str, given: Option<Value>) {
    match attachments::check(kind, given.clone()) {
        Ok(out) => {
            check_accepted(kind, &given, &out);
            // What was accepted is a fixed point: checking it again gives it back.
            if let Some(o) = &out {
                assert_eq!(
                    attachments::check(kind, Some(o.clone())).unwrap().as_ref(),
                    Some(o)
                );
            }
        }
        Err(e) => assert_eq!(e.status(), 400, "refused as a bad request: {e}"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn attachments_any_json(kind in prop::sample::select(&KINDS[..]), given in prop::option::of(arb_json())) {
        run_attachment(kind, given);
    }

    #[test]
    fn attachments_preview_limit_in_bytes((loc, fits) in arb_valid_location()) {
        let got = attachments::check("location", Some(loc.clone()));
        prop_assert_eq!(got.is_ok(), fits, "{}", loc);
        run_attachment("location", Some(loc));
    }

    #[test]
    fn attachments_near_valid(loc in arb_location(), custom in arb_custom()) {
        run_attachment("location", Some(loc.clone()));
        run_attachment("custom", Some(custom.clone()));
        // Swapped: each kind's shape sent as the other one.
        run_attachment("custom", Some(loc));
        run_attachment("location", Some(custom));
    }
}
