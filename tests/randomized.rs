//! Randomised protocol testing against the real server: a seeded random driver plays six users
//! (some with two devices, some with tokens that name no device) over real npm
//! `socket.io-client` sockets (`tests/support/chaos-driver.mjs`) and the REST API, in single
//! rooms between several pairs and one group, and checks the server's invariants while it runs
//! and after everything settles.
//!
//! Each step is one of: call create / accept / reject / cancel / end / end-v2 (also on old and
//! unknown meetIds, by the wrong user, with junk bodies and `X-Socket-Id` hints, several at once
//! on one call, and racing creates that share a user), `v1IceCandidate` (valid and junk),
//! messages (text, custom, location, multipart, replies; sometimes malformed or too large),
//! `v1MyOnline`, `v1RoomStatusChange`, `v1DeliverChatRoom`, `v1EnterChatRoom`, unknown events and
//! junk payloads (wrong types, big and binary-looking strings, binary attachments, raw malformed
//! Socket.IO packets), clean and abrupt socket closes, reconnects of the same device (also
//! overlapping), new devices and tabs, tokens that expire mid-run, presence and history polls,
//! requests with bad tokens, and think time (events keep arriving and being checked). Timers are
//! short (ring 800 ms, graces 300 ms, max call 5 s) so they fire mid-run. The abuse limits on
//! calls, messages and requests per address are off (each has its own tests); the per-socket
//! event limit stays on.
//!
//! While it runs: no REST answer is 5xx, every answer is the `{code, data}` envelope (errors with
//! a string `data`), bad tokens always get 450 and valid ones never do, every server event is one
//! JSON string argument of the documented shape, call events reach only the call's parties
//! (`v1OnNewCall` the callee with the offer as sent, `v1OnCallAccepted` only the caller's
//! creating device with the answer of the accept that won), ICE reaches only the other party's
//! one device and only once the call was accepted, room and message events only room members,
//! presence never reads online across users who share no room, a socket never hears of a call
//! again after its end, never two winners out of `ring` and never two racing creates ringing one
//! user, `GET call/history` never shows a user in two live calls, a socket that connects while
//! `GET call/active` shows a ringing call hears of that call, sockets with expired tokens are
//! closed by the server. Two scenario steps check the grace rules: a call device that blips
//! (closed, back well within its grace) gets every candidate and the end sent meanwhile, in
//! order, on its new socket; a party that leaves for good ends its call within its grace. After
//! quiescence (every socket closed, then polling `/metrics` until no call is live, within the
//! longest timer plus a margin): `vchat_sockets`, `vchat_outbox_devices`, `vchat_live_calls` and
//! `vchat_busy_users` are 0, every stored call is terminal with consistent times and revisions,
//! no user's calls ever overlapped in time, the created/ended counters agree with the creates
//! answered 200, and a fresh call still works end to end.
//!
//! ```text
//! cargo test --release --test randomized -- --nocapture                        # CI size (400 steps)
//! VCHAT_CHAOS_SEED=1234 cargo test --release --test randomized -- --nocapture  # replay a seed
//! VCHAT_CHAOS_STEPS=20000 cargo test --release --test randomized -- --nocapture  # a longer run
//! ```
//!
//! The seed is printed at the start and in any failure, with the last steps taken and every
//! violation. Replaying a seed replays the same choices; what the server's timers do in between
//! can still differ.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::Row;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use common::*;

const RING_MS: u64 = 800;
const CALLER_GRACE_MS: u64 = 300;
const RECONNECT_GRACE_MS: u64 = 300;
const MAX_CALL_MS: u64 = 5_000;
/// What settling may take beyond the longest timer (two loaded cores, the outbox sweep).
const SETTLE_MARGIN: Duration = Duration::from_secs(15);
const DEFAULT_STEPS: usize = 400;
/// Steps shown when something fails.
const LAST_STEPS: usize = 60;
/// Stop collecting after this many violations (the first ones matter).
const MAX_VIOLATIONS: usize = 40;

const USERS: [&str; 6] = ["ann", "ben", "cat", "dan", "eva", "fay"];
/// Single rooms: not every pair has one, so some users share no room.
const PAIRS: [(usize, usize); 8] = [
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 3),
    (3, 4),
    (4, 5),
    (5, 0),
    (2, 4),
];
const GROUP: [usize; 4] = [0, 1, 2, 3];
/// Initial clients: (user, did). `None`: a token that names no device (every socket of it is
/// its own device, like a browser tab).
const CLIENTS: [(usize, Option<&str>); 8] = [
    (0, Some("ann-1")),
    (0, Some("ann-2")),
    (1, Some("ben-1")),
    (2, None),
    (3, Some("dan-1")),
    (3, None),
    (4, None),
    (5, Some("fay-1")),
];
/// Devices that may show up later.
const NEW_DEVICES: [(usize, &str); 4] = [(0, "ann-3"), (1, "ben-2"), (5, "fay-2"), (2, "cat-9")];
/// Most sockets one client keeps open at once.
const MAX_SOCKETS_PER_CLIENT: usize = 2;

const CALL_EVENTS: [&str; 6] = [
    "v1OnNewCall",
    "v1OnCallAccepted",
    "v1OnCallRejected",
    "v1OnCallCanceled",
    "v1OnCallTimeout",
    "v1OnCallEnded",
];

// ------------------------------------------------------------------------------------------
// The model: what the driver knows about users, rooms, sockets and calls.
// ------------------------------------------------------------------------------------------

struct Room {
    id: String,
    members: Vec<usize>,
    single: bool,
}

struct Client {
    user: usize,
    did: Option<String>,
    token: String,
    /// A token that runs out during the run: its sockets must be closed by the server then,
    /// and it is never used over REST.
    expires: Option<std::time::Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SockState {
    Connecting,
    Open,
    /// Closed by us; its `closed` acknowledgment may still be on the way.
    Closing,
    Gone,
}

/// What one socket heard about one call.
#[derive(Default)]
struct SockCall {
    new_calls: u32,
    ended: bool,
}

struct Sock {
    id: String,
    client: usize,
    /// A bad token: the connect must be refused.
    bad_token: bool,
    sid: String,
    state: SockState,
    /// It was sent raw junk packets: the server may drop it.
    sent_raw: bool,
    calls: HashMap<String, SockCall>,
    /// ICE serials this socket received, in arrival order.
    ice_got: Vec<u64>,
}

impl Sock {
    /// The device this socket counts as on the server.
    fn device(&self, clients: &[Client]) -> String {
        match &clients[self.client].did {
            Some(d) => d.clone(),
            None => format!("~{}", self.sid),
        }
    }
}

struct CallM {
    meet: String,
    room: usize,
    caller: usize,
    callee: usize,
    /// The creating client's device (`None`: a token without `did`).
    caller_did: Option<String>,
    payload: Value,
    with_video: bool,
    /// Successful transitions out of `ring` (accept, reject, cancel, end/v2 while ringing).
    ring_exits: u32,
    /// Successful ends of a running call.
    finishes: u32,
    /// The answer of the accept that succeeded.
    answer: Option<Value>,
    /// Known to be over (a REST end succeeded, a socket heard its end, or the history says so).
    over: bool,
    /// The answering client's device, and when it answered.
    callee_did: Option<Option<String>>,
    accepted_at: Option<std::time::Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Act {
    Accept,
    Reject,
    Cancel,
    End,
    EndV2,
}

impl Act {
    fn path(self) -> &'static str {
        match self {
            Act::Accept => "accept",
            Act::Reject => "reject",
            Act::Cancel => "cancel",
            Act::End => "end",
            Act::EndV2 => "end/v2",
        }
    }
}

/// One call action someone tried: on which call (`None`: a junk meetId), by whom, with which
/// answer (accepts), and whether its body was valid.
struct Attempt {
    ci: Option<usize>,
    act: Act,
    user: usize,
    client: usize,
    answer: Option<Value>,
    valid: bool,
}

/// A REST request, built first and sent later (several may race).
#[derive(Clone)]
struct Req {
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Body,
    hint: Option<String>,
    /// The token is bad: the answer must be 450.
    bad_token: bool,
    /// The client whose token it carries.
    client: usize,
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    /// Raw text sent as `application/json` (may be invalid).
    Text(String),
    Form(Vec<(String, String)>),
}

fn body_has_nul(body: &Body) -> bool {
    fn in_value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(in_value),
            Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
            _ => false,
        }
    }
    match body {
        Body::None => false,
        Body::Json(v) => in_value(v),
        Body::Text(t) => t.contains('\0'),
        Body::Form(fields) => fields
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0')),
    }
}

/// An ICE candidate we sent: (its meetId, the sending user, the (user, device)s it reached).
type IceSent = (String, usize, HashSet<(usize, String)>);

struct Chaos {
    seed: u64,
    rng: StdRng,
    url: String,
    http: reqwest::Client,
    node: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    rx: mpsc::UnboundedReceiver<Value>,
    rooms: Vec<Room>,
    room_by_id: HashMap<String, usize>,
    clients: Vec<Client>,
    new_devices: Vec<(usize, &'static str)>,
    socks: Vec<Sock>,
    sock_by_id: HashMap<String, usize>,
    calls: Vec<CallM>,
    call_by_meet: HashMap<String, usize>,
    /// ICE serial → (meet, sender user, recipient devices seen).
    ice: HashMap<u64, IceSent>,
    ice_serial: u64,
    local_ids: Vec<(usize, String)>,
    step: usize,
    log: VecDeque<String>,
    violations: Vec<String>,
    // tallies for the report
    rest_status: BTreeMap<u16, u64>,
    events: BTreeMap<String, u64>,
    server_closed: u64,
    server_closed_clean: u64,
    creates_ok: u64,
    fences: u64,
    /// Steps pick clients with a device id only (set for a moment by the blip-in-call step).
    did_only: bool,
    /// What the steps did, by kind and outcome (for the report).
    tally: BTreeMap<String, u64>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Percent-encodes a path segment (junk ids may hold anything).
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn short(v: &impl std::fmt::Display) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

async fn send(http: &reqwest::Client, base: &str, r: &Req) -> Result<(u16, String), String> {
    let url = format!("{base}/api/v2/{}", r.path);
    let mut req = http
        .request(r.method.parse().unwrap(), url)
        .timeout(Duration::from_secs(20));
    if let Some(t) = &r.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(h) = &r.hint {
        req = req.header("x-socket-id", h);
    }
    req = match &r.body {
        Body::None => req,
        Body::Json(v) => req.json(v),
        Body::Text(t) => req
            .header("content-type", "application/json")
            .body(t.clone()),
        Body::Form(fields) => {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in fields {
                form = form.text(k.clone(), v.clone());
            }
            req.multipart(form)
        }
    };
    let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, text))
}

impl Chaos {
    // ---------------------------------------------------------------- bookkeeping

    fn violation(&mut self, what: String) {
        let line = format!("step {}: {what}", self.step);
        eprintln!("VIOLATION {line}");
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(line);
        }
    }

    fn count(&mut self, what: String) {
        *self.tally.entry(what).or_default() += 1;
    }

    fn note(&mut self, what: String) {
        if self.log.len() == LAST_STEPS {
            self.log.pop_front();
        }
        self.log.push_back(format!("#{} {what}", self.step));
    }

    fn report(&self) -> String {
        format!(
            "seed {seed} (replay: VCHAT_CHAOS_SEED={seed})\nviolations:\n  {}\nlast steps:\n  {}",
            self.violations.join("\n  "),
            self.log.iter().cloned().collect::<Vec<_>>().join("\n  "),
            seed = self.seed
        )
    }

    fn user_clients(&self, user: usize) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&c| self.clients[c].user == user && self.clients[c].expires.is_none())
            .collect()
    }

    fn open_socks(&self) -> Vec<usize> {
        (0..self.socks.len())
            .filter(|&s| self.socks[s].state == SockState::Open)
            .collect()
    }

    fn open_socks_of_user(&self, user: usize) -> Vec<usize> {
        self.open_socks()
            .into_iter()
            .filter(|&s| self.clients[self.socks[s].client].user == user)
            .collect()
    }

    fn shares_room(&self, a: usize, b: usize) -> bool {
        a == b
            || self
                .rooms
                .iter()
                .any(|r| r.members.contains(&a) && r.members.contains(&b))
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> Option<T> {
        v.choose(&mut self.rng).copied()
    }

    // ---------------------------------------------------------------- the Node clients

    async fn cmd(&mut self, c: Value) {
        let line = format!("{c}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            self.violation(format!("node driver gone: {e}"));
        }
        let _ = self.stdin.flush().await;
    }

    /// Handles everything the clients reported so far, without waiting.
    fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.handle(&m);
        }
    }

    /// Handles messages until `hit` matches one (returned) or `within` passes.
    async fn pump_until(
        &mut self,
        hit: impl Fn(&Value) -> bool,
        within: Duration,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()
                .flatten()?;
            self.handle(&m);
            if hit(&m) {
                return Some(m);
            }
        }
    }

    fn handle(&mut self, m: &Value) {
        let id = m["id"].as_str().unwrap_or_default().to_string();
        let ty = m["type"].as_str().unwrap_or_default();
        let Some(&s) = self.sock_by_id.get(&id) else {
            if ty == "fatal" || ty == "driver_error" {
                self.violation(format!("node driver: {m}"));
            }
            return;
        };
        match ty {
            "connect" => {
                self.socks[s].sid = m["sid"].as_str().unwrap_or_default().to_string();
                if self.socks[s].bad_token {
                    self.violation(format!("socket {id} with a bad token was let in"));
                }
                if self.socks[s].state == SockState::Connecting {
                    self.socks[s].state = SockState::Open;
                }
            }
            "connect_error" => {
                let expired = self.clients[self.socks[s].client]
                    .expires
                    .is_some_and(|t| t.elapsed() > Duration::from_millis(500));
                if !self.socks[s].bad_token && !expired {
                    self.violation(format!(
                        "socket {id} of {} refused: {}",
                        USERS[self.clients[self.socks[s].client].user], m["message"]
                    ));
                }
                self.socks[s].state = SockState::Gone;
            }
            // Not asked for: the server dropped it.
            "disconnect" if self.socks[s].state == SockState::Open => {
                self.server_closed += 1;
                let expired = self.clients[self.socks[s].client].expires.is_some();
                if !self.socks[s].sent_raw && !expired {
                    self.server_closed_clean += 1;
                    let reason = m["reason"].as_str().unwrap_or_default().to_string();
                    self.note(format!("server dropped socket {id} ({reason})"));
                }
                self.socks[s].state = SockState::Gone;
            }
            "closed" => self.socks[s].state = SockState::Gone,
            "event" => {
                let event = m["event"].as_str().unwrap_or_default().to_string();
                self.check_event(s, &event, &m["args"]);
            }
            "fatal" | "driver_error" => self.violation(format!("node driver: {m}")),
            _ => {}
        }
    }

    /// Every event a socket hears, against the protocol and the model.
    fn check_event(&mut self, s: usize, event: &str, args: &Value) {
        *self.events.entry(event.to_string()).or_default() += 1;
        let sock_id = self.socks[s].id.clone();
        let client = self.socks[s].client;
        let user = self.clients[client].user;
        let uname = USERS[user];
        let p = match args.as_array().map(Vec::as_slice) {
            Some([Value::String(text)]) => match serde_json::from_str::<Value>(text) {
                Ok(v) => v,
                Err(e) => {
                    return self.violation(format!(
                        "{event} to {sock_id}: payload is not JSON ({e}): {}",
                        short(text)
                    ))
                }
            },
            _ => {
                return self.violation(format!(
                    "{event} to {sock_id}: not one JSON string argument: {}",
                    short(args)
                ))
            }
        };
        let is_str = |v: &Value| v.is_string();
        if CALL_EVENTS.contains(&event) {
            let (Some(meet), Some(room)) = (p["meetId"].as_str(), p["roomId"].as_str()) else {
                return self.violation(format!("{event} to {sock_id}: no meetId/roomId: {p}"));
            };
            let Some(&ci) = self.call_by_meet.get(meet) else {
                return self.violation(format!(
                    "{event} to {sock_id} for a call nobody created: {meet}"
                ));
            };
            let (caller, callee) = (self.calls[ci].caller, self.calls[ci].callee);
            if room != self.rooms[self.calls[ci].room].id {
                self.violation(format!("{event} for {meet}: wrong roomId {room}"));
            }
            let to_caller_only = ["v1OnCallAccepted", "v1OnCallRejected"];
            let to_callee_only = ["v1OnNewCall", "v1OnCallCanceled"];
            if (to_caller_only.contains(&event) && user != caller)
                || (to_callee_only.contains(&event) && user != callee)
                || (user != caller && user != callee)
            {
                self.violation(format!(
                    "{event} for {meet} ({}→{}) reached {uname} ({sock_id})",
                    USERS[caller], USERS[callee]
                ));
            }
            let already_ended = self.socks[s].calls.get(meet).is_some_and(|c| c.ended);
            match event {
                "v1OnNewCall" => {
                    let n = {
                        let seen = self.socks[s].calls.entry(meet.to_string()).or_default();
                        seen.new_calls += 1;
                        seen.new_calls
                    };
                    let c = &self.calls[ci];
                    let ok_shape = p["withVideo"] == json!(c.with_video)
                        && p["payload"] == c.payload
                        && p["userData"]["_id"] == USERS[caller]
                        && ["fullImage", "chatImage", "smallImage"]
                            .iter()
                            .all(|k| p["userData"]["userImages"][k].is_string())
                        && p["userData"]["fullName"].is_string();
                    if !ok_shape {
                        self.violation(format!(
                            "v1OnNewCall for {meet} to {sock_id}: wrong shape or offer {}",
                            short(&p)
                        ));
                    }
                    if n > 1 {
                        self.violation(format!("{sock_id} rung {n} times for {meet}"));
                    }
                    if already_ended {
                        self.violation(format!("{sock_id} rung for {meet} after hearing its end"));
                    }
                }
                "v1OnCallAccepted" => {
                    if already_ended {
                        self.violation(format!(
                            "{sock_id} heard {meet} accepted after hearing its end"
                        ));
                    }
                    let answer = &self.calls[ci].answer;
                    if answer.as_ref() != Some(&p["peerAnswer"]) {
                        let sent = format!("{answer:?}");
                        self.violation(format!(
                            "v1OnCallAccepted for {meet}: peerAnswer {} but the accept that won sent {}",
                            short(&p["peerAnswer"]),
                            short(&sent)
                        ))
                    }
                    let device_ok = match &self.calls[ci].caller_did {
                        Some(d) => self.clients[client].did.as_deref() == Some(d.as_str()),
                        None => self.clients[client].did.is_none(),
                    };
                    if !device_ok {
                        self.violation(format!(
                            "v1OnCallAccepted for {meet} reached {sock_id} (device {:?}), not the creating device {:?}",
                            self.clients[client].did, self.calls[ci].caller_did
                        ));
                    }
                }
                "v1OnCallTimeout" | "v1OnCallEnded" | "v1OnCallRejected" => {
                    self.socks[s]
                        .calls
                        .entry(meet.to_string())
                        .or_default()
                        .ended = true;
                    self.calls[ci].over = true;
                }
                "v1OnCallCanceled" => {
                    // Also "answered on another device": the call may go on, but not for this
                    // socket.
                    self.socks[s]
                        .calls
                        .entry(meet.to_string())
                        .or_default()
                        .ended = true;
                }
                _ => {}
            }
            return;
        }
        match event {
            "v1OnIceCandidate" => {
                let cand = p["data"]["candidate"].as_str().unwrap_or_default();
                let parts: Vec<&str> = cand.split(' ').collect();
                let (Some(serial), Some(meet)) = (
                    parts.get(2).and_then(|n| n.parse::<u64>().ok()),
                    parts.get(1).map(|m| m.to_string()),
                ) else {
                    return self.violation(format!(
                        "v1OnIceCandidate to {sock_id} not sent by us: {}",
                        short(&p)
                    ));
                };
                if p["meetId"] != json!(meet) {
                    self.violation(format!("ICE {serial} relayed with another meetId: {p}"));
                }
                let Some(&ci) = self.call_by_meet.get(&meet) else {
                    return self.violation(format!("ICE {serial} for an unknown call {meet}"));
                };
                let device = self.socks[s].device(&self.clients);
                let (caller, callee) = (self.calls[ci].caller, self.calls[ci].callee);
                let accepted = self.calls[ci].answer.is_some();
                let ended_here = self.socks[s].calls.get(&meet).is_some_and(|c| c.ended);
                let Some((_, from, seen)) = self.ice.get_mut(&serial) else {
                    return self.violation(format!("ICE {serial} was never sent"));
                };
                let from = *from;
                seen.insert((user, device));
                let devices = seen.len();
                self.socks[s].ice_got.push(serial);
                if user == from || (user != caller && user != callee) {
                    self.violation(format!(
                        "ICE {serial} from {} for {meet} reached {uname} ({sock_id})",
                        USERS[from]
                    ));
                }
                if devices > 1 {
                    self.violation(format!("ICE {serial} reached {devices} devices"));
                }
                if !accepted {
                    self.violation(format!("ICE {serial} relayed for {meet}, never accepted"));
                }
                if ended_here {
                    self.violation(format!(
                        "ICE {serial} reached {sock_id} after {meet} ended for it"
                    ));
                }
            }
            "v1OnException" => {
                if !p["error"].is_string() {
                    self.violation(format!("v1OnException without an error text: {p}"));
                }
            }
            "v1OnMyOnline" => {
                let Some(list) = p.as_array() else {
                    return self.violation(format!("v1OnMyOnline not a list: {}", short(&p)));
                };
                for e in list {
                    let ok = e["peerId"].is_string()
                        && e["isOnline"].is_boolean()
                        && is_str(&e["extra"]);
                    if !ok {
                        self.violation(format!("v1OnMyOnline item of the wrong shape: {e}"));
                        continue;
                    }
                    if e["isOnline"] == true {
                        let peer = e["peerId"].as_str().unwrap();
                        match USERS.iter().position(|u| *u == peer) {
                            Some(pu) if self.shares_room(user, pu) => {}
                            _ => self.violation(format!(
                                "presence leak: {uname} sees {peer} online without a shared room"
                            )),
                        }
                    }
                }
            }
            "v1OnRoomStatusChange" => {
                let room = p["roomId"].as_str().unwrap_or_default();
                let ok = is_str(&p["name"])
                    && is_str(&p["userId"])
                    && ["stop", "typing", "recording"]
                        .contains(&p["status"].as_str().unwrap_or(""));
                if !ok {
                    self.violation(format!("v1OnRoomStatusChange of the wrong shape: {p}"));
                }
                self.check_member(event, room, user, &sock_id);
            }
            "v1OnDeliverChatRoom" | "v1OnEnterChatRoom" => {
                let room = p["roomId"].as_str().unwrap_or_default();
                if !(is_str(&p["userId"]) && is_str(&p["date"])) {
                    self.violation(format!("{event} of the wrong shape: {p}"));
                }
                self.check_member(event, room, user, &sock_id);
            }
            "v1OnNewMessage" => {
                let room = p["rId"].as_str().unwrap_or_default().to_string();
                self.check_member(event, &room, user, &sock_id);
                let strings = ["_id", "sId", "rId", "c", "mT", "lId", "createdAt", "sName"];
                if !strings.iter().all(|k| p[k].is_string()) {
                    self.violation(format!("v1OnNewMessage missing fields: {}", short(&p)));
                }
                let att = &p["msgAtt"];
                match p["mT"].as_str().unwrap_or_default() {
                    "text" | "info" => {}
                    "location" => {
                        let ok = att["lat"]
                            .as_f64()
                            .is_some_and(|v| (-90.0..=90.0).contains(&v))
                            && att["long"]
                                .as_f64()
                                .is_some_and(|v| (-180.0..=180.0).contains(&v))
                            && att["linkPreviewData"]
                                .as_object()
                                .is_some_and(|m| m.values().all(Value::is_string));
                        if !ok {
                            self.violation(format!("location message of the wrong shape: {att}"));
                        }
                    }
                    "custom" => {
                        if !(att.as_object().is_some_and(|m| m.len() == 1)
                            && att["data"].is_object())
                        {
                            self.violation(format!("custom message of the wrong shape: {att}"));
                        }
                    }
                    "call" => {
                        let st = att["callStatus"].as_str().unwrap_or_default();
                        if !["canceled", "rejected", "timeout", "finished"].contains(&st) {
                            self.violation(format!("call note with callStatus {st:?}: {att}"));
                        }
                    }
                    other => self.violation(format!("message type {other:?} sent to clients")),
                }
            }
            other => {
                self.note(format!(
                    "unexpected event {other} to {sock_id}: {}",
                    short(&p)
                ));
            }
        }
    }

    fn check_member(&mut self, event: &str, room: &str, user: usize, sock_id: &str) {
        let member = self
            .room_by_id
            .get(room)
            .is_some_and(|&r| self.rooms[r].members.contains(&user));
        if !member {
            self.violation(format!(
                "{event} for room {room:?} reached {} ({sock_id}), not a member",
                USERS[user]
            ));
        }
    }

    // ---------------------------------------------------------------- REST

    /// Checks an answer: never 5xx, always the envelope, 450 exactly for bad tokens.
    fn check_reply(&mut self, r: &Req, res: Result<(u16, String), String>) -> Option<(u16, Value)> {
        let what = format!("{} {}", r.method, short(&r.path));
        let (status, text) = match res {
            Ok(x) => x,
            Err(e) => {
                self.violation(format!("{what}: no answer: {e}"));
                return None;
            }
        };
        *self.rest_status.entry(status).or_default() += 1;
        let body: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                self.violation(format!(
                    "{what}: {status} with a non-JSON body {}",
                    short(&text)
                ));
                return Some((status, Value::Null));
            }
        };
        if status >= 500 {
            self.violation(format!("{what}: {status} {}", short(&body)));
        }
        if body["code"] != json!(status) || body.get("data").is_none() {
            self.violation(format!(
                "{what}: {status} not in the envelope: {}",
                short(&body)
            ));
        }
        if status != 200 && !body["data"].is_string() {
            self.violation(format!(
                "{what}: error data is not a message: {}",
                short(&body)
            ));
        }
        if r.bad_token && status != 450 {
            self.violation(format!("{what} with a bad token: {status}, not 450"));
        }
        if !r.bad_token && status == 450 {
            self.violation(format!("{what}: a valid token got 450: {}", short(&body)));
        }
        Some((status, body["data"].clone()))
    }

    async fn rest(&mut self, r: Req) -> Option<(u16, Value)> {
        let res = send(&self.http, &self.url, &r).await;
        self.check_reply(&r, res)
    }

    fn req(&self, method: &'static str, path: String, client: usize, body: Body) -> Req {
        Req {
            method,
            path,
            token: Some(self.clients[client].token.clone()),
            body,
            hint: None,
            bad_token: false,
            client,
        }
    }

    fn bad_token(&mut self) -> String {
        let now = vchat_signal::auth::now_unix();
        let claims = |exp| vchat_signal::auth::Claims {
            sub: "ann".into(),
            exp,
            name: None,
            identifier: None,
            img: None,
            did: Some("ann-1".into()),
        };
        match self.rng.gen_range(0..5) {
            0 => "garbage".into(),
            1 => token_exp("ann", Some("ann-1"), now.saturating_sub(120)),
            2 => vchat_signal::auth::mint(
                b"another-secret-0123456789abcdef-0123",
                &claims(now + 600),
            ),
            3 => format!("{}x", token("ben", None)),
            _ => String::new(),
        }
    }

    /// The history of a user: the shape of each item, and never two live calls.
    async fn check_history(&mut self, user: usize, why: &str) {
        let client = self.user_clients(user)[0];
        let r = self.req("GET", "call/history".into(), client, Body::None);
        let Some((200, data)) = self.rest(r).await else {
            return self.violation(format!("call/history of {} not 200", USERS[user]));
        };
        let Some(items) = data.as_array() else {
            return self.violation(format!("call/history of {} not a list", USERS[user]));
        };
        let mut live = Vec::new();
        for it in items {
            let st = it["callStatus"].as_str().unwrap_or_default();
            if ![
                "ring", "inCall", "canceled", "rejected", "timeout", "finished",
            ]
            .contains(&st)
            {
                self.violation(format!("history item with callStatus {st:?}"));
            }
            if !(it["peerUser"]["identifier"].is_string()
                && it["peerUser"]["userImages"].is_object())
            {
                self.violation(format!(
                    "history item without peerUser identity: {}",
                    short(it)
                ));
            }
            if st == "ring" || st == "inCall" {
                live.push(it["_id"].as_str().unwrap_or_default().to_string());
            }
        }
        if live.len() > 1 {
            self.violation(format!(
                "{} is in {} live calls at once ({why}): {live:?}",
                USERS[user],
                live.len()
            ));
        }
    }

    // ---------------------------------------------------------------- random values

    fn junk_string(&mut self) -> String {
        match self.rng.gen_range(0..8) {
            0 => String::new(),
            1 => "\u{0}\u{1}\u{7f}\u{ff}\u{fffd}".repeat(self.rng.gen_range(1..50)),
            2 => "x".repeat(self.rng.gen_range(1_000..30_000)),
            3 => "🙂".repeat(self.rng.gen_range(1..200)),
            4 => "\"}]{[\\".into(),
            5 => "%00%ff\\u0000\\ud800".into(),
            6 => "null".into(),
            _ => (0..self.rng.gen_range(1..40))
                .map(|_| char::from_u32(self.rng.gen_range(1..0xD7FF)).unwrap_or('?'))
                .collect(),
        }
    }

    fn junk_value(&mut self) -> Value {
        match self.rng.gen_range(0..10) {
            0 => Value::Null,
            1 => json!(self.rng.gen::<i64>()),
            2 => json!(1e308),
            3 => json!(self.junk_string()),
            4 => json!([1, "2", {"3": [null]}]),
            5 => json!({"roomId": 5, "peerId": [], "meetId": {"x": 1}, "status": true}),
            6 => {
                let mut v = json!("deep");
                for _ in 0..self.rng.gen_range(1..120) {
                    v = json!([v]);
                }
                v
            }
            7 => json!({"data": {"candidate": 1, "sdpMid": [], "sdpMLineIndex": "x"}}),
            8 => json!(true),
            _ => json!({}),
        }
    }

    /// An offer or answer as Gen-A (JSON string) or Gen-B (object or null) clients send it.
    fn sdp_payload(&mut self, kind: &str) -> Value {
        let n = self.rng.gen::<u32>();
        match self.rng.gen_range(0..4) {
            0 => json!(json!({ kind: {"sdp": format!("v=0 {n}"), "type": kind}}).to_string()),
            1 => json!({ kind: {"sdp": format!("v=0 {n}"), "type": kind}}),
            2 => Value::Null,
            _ => json!({"n": n, "big": "s".repeat(self.rng.gen_range(0..5_000))}),
        }
    }

    fn pick_room_for(&mut self, user: usize) -> usize {
        let mine: Vec<usize> = (0..self.rooms.len())
            .filter(|&r| self.rooms[r].members.contains(&user))
            .collect();
        if self.rng.gen_bool(0.85) && !mine.is_empty() {
            self.pick(&mine).unwrap()
        } else {
            self.rng.gen_range(0..self.rooms.len())
        }
    }

    /// A call to act on: mostly recent ones that may still be live.
    fn pick_call(&mut self) -> Option<usize> {
        if self.calls.is_empty() {
            return None;
        }
        let recent: Vec<usize> = (0..self.calls.len())
            .rev()
            .filter(|&c| !self.calls[c].over)
            .take(4)
            .collect();
        if !recent.is_empty() && self.rng.gen_bool(0.8) {
            return self.pick(&recent);
        }
        Some(self.rng.gen_range(0..self.calls.len()))
    }

    fn junk_meet(&mut self) -> String {
        match self.rng.gen_range(0..6) {
            0 => "nope".into(),
            1 => "x".repeat(300),
            2 => "../history".into(),
            3 => "🙂".into(),
            4 => "' OR '1'='1".into(),
            _ => format!("{:024x}", self.rng.gen::<u128>()),
        }
    }

    /// A random client of `user`, with an `X-Socket-Id` hint sometimes (tokens without a
    /// device use it to say which tab acts).
    fn client_of(&mut self, user: usize) -> (usize, Option<String>) {
        let mut cs = self.user_clients(user);
        if self.did_only && cs.iter().any(|&c| self.clients[c].did.is_some()) {
            cs.retain(|&c| self.clients[c].did.is_some());
        }
        let c = self.pick(&cs).unwrap();
        let hint = if self.clients[c].did.is_none() {
            let mine: Vec<usize> = self
                .open_socks_of_user(user)
                .into_iter()
                .filter(|&s| self.socks[s].client == c)
                .collect();
            match self.rng.gen_range(0..10) {
                0..=4 => self.pick(&mine).map(|s| self.socks[s].sid.clone()),
                5 => Some("not-a-socket".into()),
                6 => {
                    // Another user's socket: it must not act for this one.
                    let all = self.open_socks();
                    self.pick(&all).map(|s| self.socks[s].sid.clone())
                }
                _ => None,
            }
        } else if self.rng.gen_bool(0.05) {
            Some("zzz".into())
        } else {
            None
        };
        (c, hint)
    }

    // ---------------------------------------------------------------- steps: calls

    async fn step_create(&mut self) {
        let user = self.rng.gen_range(0..USERS.len());
        let (client, hint) = self.client_of(user);
        let room = self.pick_room_for(user);
        let payload = self.sdp_payload("offer");
        let with_video = self.rng.gen_bool(0.5);
        let (body, valid) = match self.rng.gen_range(0..20) {
            0 => (Body::Text("{\"payload\":".into()), false),
            1 => (Body::Json(json!([1, 2])), false),
            2 => (Body::Json(json!({"withVideo": "yes"})), false),
            3 => (
                Body::Json(
                    json!({"payload": payload, "withVideo": with_video, "meetPlatform": "zoom"}),
                ),
                false,
            ),
            4 => (
                Body::Json(
                    json!({"payload": payload, "withVideo": with_video, "meetPlatform": "agora"}),
                ),
                false,
            ),
            5 => (
                Body::Json(json!({"payload": payload, "withVideo": with_video, "meetPlatform": 7})),
                false,
            ),
            6 | 7 => (
                Body::Json(
                    json!({"payload": payload, "withVideo": with_video, "meetPlatform": "webRtc"}),
                ),
                true,
            ),
            _ => (
                Body::Json(json!({"payload": payload, "withVideo": with_video})),
                true,
            ),
        };
        let room_id = if self.rng.gen_bool(0.04) {
            self.junk_meet()
        } else {
            self.rooms[room].id.clone()
        };
        let mut r = self.req(
            "POST",
            format!("call/create/{}", seg(&room_id)),
            client,
            body,
        );
        r.hint = hint;
        let res = self.rest(r).await;
        let outcome = res.as_ref().map(|(s, d)| format!("{s} {}", short(d)));
        self.note(format!(
            "create by {}{} in room {room} ({}) → {outcome:?}",
            USERS[user],
            self.clients[client]
                .did
                .as_deref()
                .map(|d| format!("/{d}"))
                .unwrap_or_default(),
            if self.rooms[room].single {
                "single"
            } else {
                "group"
            },
        ));
        let Some((status, data)) = res else { return };
        self.count(format!("create {status}"));
        let member = self.rooms[room].members.contains(&user) && room_id == self.rooms[room].id;
        if status == 200 {
            if !(valid && member && self.rooms[room].single) {
                self.violation(format!(
                    "create accepted: valid {valid}, member {member}, room {room}"
                ));
            }
            let Some(meet) = data["meetId"].as_str().map(str::to_string) else {
                return self.violation(format!("create answered without a meetId: {data}"));
            };
            let callee = *self.rooms[room]
                .members
                .iter()
                .find(|&&m| m != user)
                .unwrap();
            self.creates_ok += 1;
            self.call_by_meet.insert(meet.clone(), self.calls.len());
            self.calls.push(CallM {
                meet,
                room,
                caller: user,
                callee,
                caller_did: self.clients[client].did.clone(),
                payload,
                with_video,
                ring_exits: 0,
                finishes: 0,
                answer: None,
                over: false,
                callee_did: None,
                accepted_at: None,
            });
            self.check_history(user, "after a create").await;
            self.check_history(callee, "after a create").await;
        }
    }

    /// A call that gets somewhere: a create in a room whose users look free, the callee answers
    /// at once, and candidates flow both ways. What happens to it next is up to later steps
    /// (and the server's timers).
    async fn step_flow(&mut self) {
        let busy: HashSet<usize> = self
            .calls
            .iter()
            .filter(|c| !c.over)
            .flat_map(|c| [c.caller, c.callee])
            .collect();
        let has_did =
            |ch: &Chaos, u: usize| ch.clients.iter().any(|c| c.user == u && c.did.is_some());
        let free: Vec<usize> = (0..self.rooms.len())
            .filter(|&r| {
                self.rooms[r].single
                    && self.rooms[r].members.iter().all(|m| !busy.contains(m))
                    && (!self.did_only || self.rooms[r].members.iter().all(|&m| has_did(self, m)))
            })
            .collect();
        let Some(room) = self.pick(&free) else {
            return self.step_create().await;
        };
        let members = self.rooms[room].members.clone();
        let caller = members[self.rng.gen_range(0..2)];
        let callee = *members.iter().find(|&&m| m != caller).unwrap();
        let (client, hint) = self.client_of(caller);
        let payload = self.sdp_payload("offer");
        let with_video = self.rng.gen_bool(0.5);
        let mut r = self.req(
            "POST",
            format!("call/create/{}", self.rooms[room].id),
            client,
            Body::Json(json!({"payload": payload, "withVideo": with_video})),
        );
        r.hint = hint;
        let res = self.rest(r).await;
        self.note(format!(
            "flow: create by {} in room {room} → {:?}",
            USERS[caller],
            res.as_ref().map(|(s, d)| format!("{s} {}", short(d)))
        ));
        let Some((status, data)) = res else { return };
        self.count(format!("flow create {status}"));
        if status != 200 {
            return;
        }
        let Some(meet) = data["meetId"].as_str().map(str::to_string) else {
            return self.violation(format!("create answered without a meetId: {data}"));
        };
        let ci = self.calls.len();
        self.creates_ok += 1;
        self.call_by_meet.insert(meet.clone(), ci);
        self.calls.push(CallM {
            meet,
            room,
            caller,
            callee,
            caller_did: self.clients[client].did.clone(),
            payload,
            with_video,
            ring_exits: 0,
            finishes: 0,
            answer: None,
            over: false,
            callee_did: None,
            accepted_at: None,
        });
        self.check_history(caller, "after a create").await;
        self.check_history(callee, "after a create").await;
        if self.rng.gen_bool(0.2) {
            return; // left ringing
        }
        let (r, answer, valid) = self.action_req(Some(ci), Act::Accept, callee);
        let (path, client) = (r.path.clone(), r.client);
        let res = self.rest(r).await;
        self.note(format!(
            "flow: {} by {} → {:?}",
            short(&path),
            USERS[callee],
            res.as_ref().map(|(s, d)| format!("{s} {}", short(d)))
        ));
        self.record_action(
            Attempt {
                ci: Some(ci),
                act: Act::Accept,
                user: callee,
                client,
                answer,
                valid,
            },
            res,
        );
        for _ in 0..self.rng.gen_range(0..6) {
            self.step_ice_for(Some(ci)).await;
        }
    }

    /// One call action as a request, with what it means for the model.
    fn action_req(
        &mut self,
        ci: Option<usize>,
        act: Act,
        user: usize,
    ) -> (Req, Option<Value>, bool) {
        let (client, hint) = self.client_of(user);
        let meet = match ci {
            Some(c) => self.calls[c].meet.clone(),
            None => self.junk_meet(),
        };
        let mut answer = None;
        let (body, valid) = match act {
            Act::Accept => match self.rng.gen_range(0..12) {
                0 => (Body::Text("{oops".into()), false),
                1 => (Body::Json(json!("answer")), false),
                2 => (Body::None, true),
                _ => {
                    let a = self.sdp_payload("answer");
                    answer = Some(a.clone());
                    (Body::Json(json!({ "payload": a })), true)
                }
            },
            // These routes read no body: whatever is sent is ignored.
            _ => match self.rng.gen_range(0..15) {
                0 => (Body::Text("[".into()), true),
                1 => (Body::Json(json!({"junk": true})), true),
                _ => (Body::None, true),
            },
        };
        if matches!(body, Body::None) && act == Act::Accept {
            answer = Some(Value::Null);
        }
        let mut r = self.req(
            "POST",
            format!("call/{}/{}", act.path(), seg(&meet)),
            client,
            body,
        );
        r.hint = hint;
        (r, answer, valid)
    }

    /// Checks one call action's answer and updates the model.
    fn record_action(&mut self, attempt: Attempt, res: Option<(u16, Value)>) {
        let Attempt {
            ci,
            act,
            user,
            client,
            answer,
            valid,
        } = attempt;
        let Some((status, data)) = res else { return };
        self.count(format!("{act:?} {status}"));
        let Some(ci) = ci else {
            if status == 200 {
                self.violation(format!("{act:?} on an unknown meetId succeeded"));
            }
            return;
        };
        let (meet, caller, callee, over) = {
            let c = &self.calls[ci];
            (c.meet.clone(), c.caller, c.callee, c.over)
        };
        let party = user == caller || user == callee;
        if !party {
            if status == 200 || (valid && status != 403) {
                self.violation(format!(
                    "{act:?} on {meet} by stranger {}: {status}, not 403",
                    USERS[user]
                ));
            }
            return;
        }
        if status != 200 {
            return;
        }
        if !valid {
            self.violation(format!("{act:?} on {meet} with a junk body succeeded"));
        }
        if over {
            self.violation(format!(
                "{act:?} on {meet} succeeded after the call was over"
            ));
        }
        let is_caller = user == caller;
        let text = data.as_str().unwrap_or_default().to_string();
        let c = &mut self.calls[ci];
        let (exit, finish, role_ok) = match act {
            Act::Accept => (true, false, !is_caller),
            Act::Reject => (true, false, !is_caller),
            Act::Cancel => (true, false, is_caller),
            Act::End => (false, true, true),
            Act::EndV2 => match text.as_str() {
                "call canceled" => (true, false, is_caller),
                "call rejected" => (true, false, !is_caller),
                "call finished" => (false, true, true),
                _ => (false, false, false),
            },
        };
        if act == Act::Accept {
            c.answer = answer;
            c.callee_did = Some(self.clients[client].did.clone());
            c.accepted_at = Some(std::time::Instant::now());
        } else {
            c.over = true;
        }
        if exit {
            c.ring_exits += 1;
        }
        if finish {
            c.finishes += 1;
        }
        let (exits, finishes, accepted) = (c.ring_exits, c.finishes, c.answer.is_some());
        if !role_ok {
            self.violation(format!(
                "{act:?} on {meet} by {} succeeded ({text:?})",
                USERS[user]
            ));
        }
        if exits > 1 {
            self.violation(format!("{meet}: {exits} transitions out of ring succeeded"));
        }
        if finishes > 1 || (finish && !accepted) {
            self.violation(format!(
                "{meet}: ended {finishes} times, accepted {accepted}"
            ));
        }
    }

    fn random_act(&mut self) -> Act {
        match self.rng.gen_range(0..23) {
            0..=7 => Act::Accept,
            8..=10 => Act::Reject,
            11..=13 => Act::Cancel,
            14..=17 => Act::End,
            _ => Act::EndV2,
        }
    }

    fn actor_for(&mut self, ci: Option<usize>, act: Act) -> usize {
        let Some(ci) = ci else {
            return self.rng.gen_range(0..USERS.len());
        };
        let (caller, callee) = (self.calls[ci].caller, self.calls[ci].callee);
        match self.rng.gen_range(0..10) {
            0 | 1 => self.rng.gen_range(0..USERS.len()),
            _ => match act {
                Act::Accept | Act::Reject => {
                    if self.rng.gen_bool(0.85) {
                        callee
                    } else {
                        caller
                    }
                }
                Act::Cancel => {
                    if self.rng.gen_bool(0.85) {
                        caller
                    } else {
                        callee
                    }
                }
                _ => {
                    if self.rng.gen_bool(0.5) {
                        caller
                    } else {
                        callee
                    }
                }
            },
        }
    }

    async fn step_call_action(&mut self) {
        let ci = if self.rng.gen_bool(0.92) {
            self.pick_call()
        } else {
            None
        };
        let act = self.random_act();
        let user = self.actor_for(ci, act);
        let (r, answer, valid) = self.action_req(ci, act, user);
        let (path, client) = (r.path.clone(), r.client);
        let res = self.rest(r).await;
        self.note(format!(
            "{} by {} → {:?}",
            short(&path),
            USERS[user],
            res.as_ref().map(|(s, d)| format!("{s} {}", short(d)))
        ));
        self.record_action(
            Attempt {
                ci,
                act,
                user,
                client,
                answer,
                valid,
            },
            res,
        );
    }

    /// Several actions on one call at once.
    /// Creates at once that share a user (glare: two users calling each other; two callers
    /// ringing one callee; one caller twice): at most one of them may ring.
    async fn step_create_race(&mut self) {
        let user = self.rng.gen_range(0..USERS.len());
        let mine: Vec<usize> = (0..self.rooms.len())
            .filter(|&r| self.rooms[r].single && self.rooms[r].members.contains(&user))
            .collect();
        let mut planned = Vec::new();
        for _ in 0..self.rng.gen_range(2..=3) {
            let Some(room) = self.pick(&mine) else { return };
            // Either member may place it: all of these share `user`.
            let caller = self.rooms[room].members[self.rng.gen_range(0..2)];
            let (client, hint) = self.client_of(caller);
            let payload = self.sdp_payload("offer");
            let mut r = self.req(
                "POST",
                format!("call/create/{}", self.rooms[room].id),
                client,
                Body::Json(json!({"payload": payload, "withVideo": true})),
            );
            r.hint = hint;
            planned.push((room, caller, payload, r));
        }
        let handles: Vec<_> = planned
            .iter()
            .map(|(.., r)| {
                let (http, url, r) = (self.http.clone(), self.url.clone(), r.clone());
                tokio::spawn(async move { send(&http, &url, &r).await })
            })
            .collect();
        let mut summary = Vec::new();
        let mut winners: Vec<(usize, usize)> = Vec::new();
        for ((room, caller, payload, r), h) in planned.into_iter().zip(handles) {
            let res = h.await.unwrap_or_else(|e| Err(e.to_string()));
            let res = self.check_reply(&r, res);
            summary.push(format!(
                "{} in room {room} → {:?}",
                USERS[caller],
                res.as_ref().map(|(s, d)| format!("{s} {}", short(d)))
            ));
            let Some((200, data)) = res else { continue };
            let Some(meet) = data["meetId"].as_str().map(str::to_string) else {
                self.violation(format!("create answered without a meetId: {data}"));
                continue;
            };
            let callee = *self.rooms[room]
                .members
                .iter()
                .find(|&&m| m != caller)
                .unwrap();
            for &(a, b) in &winners {
                if [a, b].contains(&caller) || [a, b].contains(&callee) {
                    self.violation(format!(
                        "racing creates both rang: {}→{} and {}→{}",
                        USERS[a], USERS[b], USERS[caller], USERS[callee]
                    ));
                }
            }
            winners.push((caller, callee));
            self.creates_ok += 1;
            self.call_by_meet.insert(meet.clone(), self.calls.len());
            self.calls.push(CallM {
                meet,
                room,
                caller,
                callee,
                caller_did: self.clients[r.client].did.clone(),
                payload,
                with_video: true,
                ring_exits: 0,
                finishes: 0,
                answer: None,
                over: false,
                callee_did: None,
                accepted_at: None,
            });
        }
        self.count(format!("create race: {} rang", winners.len()));
        self.note(format!("create race: {}", summary.join("; ")));
        for (a, b) in winners {
            self.check_history(a, "after racing creates").await;
            self.check_history(b, "after racing creates").await;
        }
    }

    async fn step_race(&mut self) {
        if self.rng.gen_bool(0.3) {
            return self.step_create_race().await;
        }
        let Some(ci) = self.pick_call() else { return };
        let n = self.rng.gen_range(2..=4);
        let mut planned = Vec::new();
        for _ in 0..n {
            let act = self.random_act();
            let user = self.actor_for(Some(ci), act);
            let (r, answer, valid) = self.action_req(Some(ci), act, user);
            planned.push((act, user, answer, valid, r));
        }
        let handles: Vec<_> = planned
            .iter()
            .map(|(_, _, _, _, r)| {
                let (http, url, r) = (self.http.clone(), self.url.clone(), r.clone());
                tokio::spawn(async move { send(&http, &url, &r).await })
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        let mut summary = Vec::new();
        let mut outcomes: Vec<_> = planned.into_iter().zip(results).collect();
        // Whatever succeeded happened in a legal order: an accept before any end.
        outcomes.sort_by_key(|((act, ..), _)| *act != Act::Accept);
        for ((act, user, answer, valid, r), res) in outcomes {
            let res = self.check_reply(&r, res);
            summary.push(format!(
                "{act:?} by {} → {:?}",
                USERS[user],
                res.as_ref().map(|(s, d)| format!("{s} {}", short(d)))
            ));
            self.record_action(
                Attempt {
                    ci: Some(ci),
                    act,
                    user,
                    client: r.client,
                    answer,
                    valid,
                },
                res,
            );
        }
        self.note(format!(
            "race on {}: {}",
            self.calls[ci].meet,
            summary.join("; ")
        ));
    }

    // ---------------------------------------------------------------- steps: sockets

    async fn emit(&mut self, s: usize, event: &str, args: Value) {
        let id = self.socks[s].id.clone();
        self.cmd(json!({"op": "emit", "id": id, "event": event, "args": args}))
            .await;
    }

    /// An open socket, preferring those of `user`.
    fn sock_of(&mut self, user: Option<usize>) -> Option<usize> {
        let mine = user.map(|u| self.open_socks_of_user(u)).unwrap_or_default();
        if !mine.is_empty() && self.rng.gen_bool(0.9) {
            return self.pick(&mine);
        }
        let all = self.open_socks();
        self.pick(&all)
    }

    async fn step_ice(&mut self) {
        // Mostly a call that was answered and may still run, where candidates flow.
        let running: Vec<usize> = (0..self.calls.len())
            .filter(|&c| self.calls[c].answer.is_some() && !self.calls[c].over)
            .collect();
        let ci = if !running.is_empty() && self.rng.gen_bool(0.7) {
            self.pick(&running)
        } else {
            self.pick_call()
        };
        self.step_ice_for(ci).await;
    }

    async fn step_ice_for(&mut self, ci: Option<usize>) {
        let sender = ci.map(|c| {
            if self.rng.gen_bool(0.5) {
                self.calls[c].caller
            } else {
                self.calls[c].callee
            }
        });
        let Some(s) = self.sock_of(sender) else {
            return;
        };
        let user = self.clients[self.socks[s].client].user;
        let meet = match ci {
            Some(c) if self.rng.gen_bool(0.9) => self.calls[c].meet.clone(),
            _ => self.junk_meet(),
        };
        self.ice_serial += 1;
        let serial = self.ice_serial;
        self.ice
            .insert(serial, (meet.clone(), user, HashSet::new()));
        let valid = json!({"meetId": meet, "data": {
            "candidate": format!("candidate: {meet} {serial} 1 udp 2122260223 10.0.0.1 5000 typ host"),
            "sdpMid": "0", "sdpMLineIndex": 0}});
        let (args, kind) = match self.rng.gen_range(0..14) {
            0 => (json!([json!({"meetId": meet}).to_string()]), "no data"),
            1 => (
                json!([json!({"meetId": 5, "data": {}}).to_string()]),
                "meetId number",
            ),
            2 => (
                json!([json!({"meetId": meet, "data": "x"}).to_string()]),
                "data string",
            ),
            3 => (json!(["{\"meetId\":"]), "broken JSON"),
            4 => (json!([self.junk_value()]), "junk"),
            5 => (json!([valid]), "object form"),
            6 => {
                let mut v = valid.clone();
                v["data"]["pad"] = json!("p".repeat(self.rng.gen_range(1_000..40_000)));
                (json!([v.to_string()]), "padded")
            }
            _ => (json!([valid.to_string()]), "valid"),
        };
        self.count(format!("ICE {kind}"));
        self.note(format!(
            "ICE {serial} ({kind}) from {} on {} for {meet}",
            USERS[user], self.socks[s].id
        ));
        self.emit(s, "v1IceCandidate", args).await;
    }

    async fn step_message(&mut self) {
        let user = self.rng.gen_range(0..USERS.len());
        let cs = self.user_clients(user);
        let client = self.pick(&cs).unwrap();
        let room = self.pick_room_for(user);
        let room_id = self.rooms[room].id.clone();
        let reused = !self.local_ids.is_empty() && self.rng.gen_bool(0.1);
        let local = if reused {
            let (_, l) = self.local_ids[self.rng.gen_range(0..self.local_ids.len())].clone();
            l
        } else {
            format!("l{}-{}", self.step, self.rng.gen::<u32>())
        };
        let content = match self.rng.gen_range(0..10) {
            0 => self.junk_string(),
            1 => "w".repeat(self.rng.gen_range(10_000..60_000)),
            _ => format!("hello {}", self.rng.gen::<u16>()),
        };
        let content_ok = !content.trim().is_empty() && content.chars().count() <= 32 * 1024;
        let (body, valid, kind) = match self.rng.gen_range(0..20) {
            0 => (
                Body::Json(
                    json!({"content": "📍", "localId": local, "messageType": "location",
                    "attachment": {"lat": self.rng.gen_range(-90.0..90.0), "long": self.rng.gen_range(-180.0..180.0),
                    "linkPreviewData": {"title": content.chars().take(100).collect::<String>(), "x": 1}}}),
                ),
                true,
                "location",
            ),
            1 => (
                Body::Json(
                    json!({"content": "📍", "localId": local, "messageType": "location",
                    "attachment": {"lat": 91, "long": "east"}}),
                ),
                false,
                "bad location",
            ),
            2 => (
                Body::Json(
                    json!({"content": "c", "localId": local, "messageType": "custom",
                    "attachment": {"data": {"k": content.chars().take(200).collect::<String>()}}}),
                ),
                true,
                "custom",
            ),
            3 => (
                Body::Json(json!({"content": "c", "localId": local, "messageType": "custom"})),
                true,
                "custom bare",
            ),
            4 => (
                Body::Json(
                    json!({"content": "c", "localId": local, "messageType": "custom",
                    "attachment": "{not json"}),
                ),
                false,
                "bad custom",
            ),
            5 => (
                Body::Json(
                    json!({"content": "x", "localId": local, "messageType": "call",
                    "attachment": {"callStatus": "ring"}}),
                ),
                false,
                "forged call",
            ),
            6 => (Body::Text("{\"content\":".into()), false, "broken JSON"),
            7 => (
                Body::Json(json!({"content": 5, "localId": [], "messageType": {}})),
                false,
                "wrong types",
            ),
            8 => (
                Body::Json(
                    json!({"content": "x".repeat(300 * 1024), "localId": local, "messageType": "text"}),
                ),
                false,
                "too large",
            ),
            9 => (
                Body::Form(vec![
                    ("content".into(), content.clone()),
                    ("localId".into(), local.clone()),
                    ("messageType".into(), "text".into()),
                    ("isEncrypted".into(), "false".into()),
                ]),
                true,
                "multipart",
            ),
            10 => {
                // A reply names a message of this room, or it is refused.
                let l0 = self
                    .local_ids
                    .first()
                    .map(|l| l.1.clone())
                    .unwrap_or_default();
                let known = l0.is_empty() || self.local_ids.contains(&(room, l0.clone()));
                (
                    Body::Json(
                        json!({"content": content, "localId": local, "messageType": "text",
                        "replyToLocalId": l0}),
                    ),
                    known,
                    "reply",
                )
            }
            11 => (
                Body::Json(
                    json!({"content": content, "localId": local, "messageType": "text", "isEncrypted": "maybe"}),
                ),
                false,
                "bad isEncrypted",
            ),
            _ => (
                Body::Json(json!({"content": content, "localId": local, "messageType": "text"})),
                true,
                "text",
            ),
        };
        // NUL (U+0000) is refused in every string a client sends (PostgreSQL text cannot hold it).
        let valid = valid && !body_has_nul(&body);
        let r = self.req("POST", format!("channel/{room_id}/message/"), client, body);
        let res = self.rest(r).await;
        let member = self.rooms[room].members.contains(&user);
        self.note(format!(
            "message ({kind}) by {} to room {room} → {:?}",
            USERS[user],
            res.as_ref().map(|(s, d)| format!("{s} {}", short(d)))
        ));
        let Some((status, data)) = res else { return };
        // Content rules only bite text messages; a reused localId may be a retry (200, the
        // first message) or taken by another sender (400).
        let text_kind = matches!(kind, "text" | "multipart" | "reply");
        let must_pass = member && valid && !reused && (content_ok || !text_kind);
        let must_fail = !member || !valid;
        if status == 200 {
            if must_fail {
                self.violation(format!(
                    "message ({kind}) accepted: member {member}, valid {valid}"
                ));
            }
            if !reused && data["rId"] != json!(room_id) {
                self.violation(format!("message answer for another room: {}", short(&data)));
            }
            if !self.local_ids.contains(&(room, local.clone())) {
                self.local_ids.push((room, local));
            }
        } else if must_pass {
            self.violation(format!(
                "a valid {kind} message from a member refused: {status} {}",
                short(&data)
            ));
        } else if !member && valid && status != 403 && status != 413 {
            self.violation(format!("a non-member's message: {status}, not 403"));
        }
    }

    async fn step_presence(&mut self) {
        let Some(s) = self.sock_of(None) else { return };
        let mut list = Vec::new();
        for _ in 0..self.rng.gen_range(0..8) {
            let peer = match self.rng.gen_range(0..8) {
                0 => "stranger".to_string(),
                1 => self.junk_string(),
                _ => USERS[self.rng.gen_range(0..USERS.len())].to_string(),
            };
            let room = self.rng.gen_range(0..self.rooms.len());
            list.push(json!({"peerId": peer, "extra": self.rooms[room].id}));
        }
        let args = match self.rng.gen_range(0..8) {
            0 => json!([self.junk_value()]),
            1 => json!([Value::Array(list)]),
            2 => json!(["[{\"peerId\": 1}]"]),
            _ => json!([Value::Array(list).to_string()]),
        };
        self.note(format!("v1MyOnline on {}", self.socks[s].id));
        self.emit(s, "v1MyOnline", args).await;
    }

    async fn step_room_event(&mut self) {
        let Some(s) = self.sock_of(None) else { return };
        let user = self.clients[self.socks[s].client].user;
        let room = self.pick_room_for(user);
        let room_id = self.rooms[room].id.clone();
        let (event, payload) = match self.rng.gen_range(0..7) {
            0 | 1 => {
                let status =
                    ["stop", "typing", "recording", "dancing", ""][self.rng.gen_range(0..5)];
                (
                    "v1RoomStatusChange",
                    json!({"roomId": room_id, "status": status}),
                )
            }
            2 => ("v1RoomStatusChange", json!({"status": "typing"})),
            3 | 4 => ("v1DeliverChatRoom", json!({"roomId": room_id})),
            5 => ("v1EnterChatRoom", json!({"roomId": room_id})),
            _ => (
                ["v1DeliverChatRoom", "v1EnterChatRoom"][self.rng.gen_range(0..2)],
                json!({"roomId": self.junk_value()}),
            ),
        };
        let args = if self.rng.gen_bool(0.15) {
            json!([payload])
        } else {
            json!([payload.to_string()])
        };
        self.note(format!(
            "{event} by {} on {} room {room}",
            USERS[user], self.socks[s].id
        ));
        self.emit(s, event, args).await;
    }

    async fn step_junk_event(&mut self) {
        let Some(s) = self.sock_of(None) else { return };
        let events = [
            "v1MyOnline",
            "v1RoomStatusChange",
            "v1DeliverChatRoom",
            "v1EnterChatRoom",
            "v1IceCandidate",
            "v1OnNewCall",
            "nope",
            "",
            "constructor",
            "__proto__",
        ];
        let event = events[self.rng.gen_range(0..events.len())];
        let args = match self.rng.gen_range(0..9) {
            0 => json!([]),
            1 => json!([self.junk_value(), self.junk_value()]),
            2 => json!([{"$binary": "AAECAwT/"}]),
            3 => json!(["b".repeat(self.rng.gen_range(50_000..70_000))]),
            4 => json!([self.junk_string()]),
            5 => json!([{"$binary": ""}, "tail"]),
            _ => json!([self.junk_value()]),
        };
        self.note(format!("junk event {event:?} on {}", self.socks[s].id));
        self.emit(s, event, args).await;
    }

    async fn step_raw_packet(&mut self) {
        let Some(s) = self.sock_of(None) else { return };
        let raws = [
            "2[\"v1MyOnline\"",
            "2[]",
            "2[1,2]",
            "2{}",
            "9",
            "2/nope,[\"x\"]",
            "21[\"v1MyOnline\",\"[]\"]",
            "3[\"ack\"]",
            "0{\"token\":1}",
            "51-[\"v1MyOnline\",{\"_placeholder\":true,\"num\":0}]",
            "2[\"v1MyOnline\",\"[]\"]",
        ];
        let raw = raws[self.rng.gen_range(0..raws.len())];
        self.socks[s].sent_raw = true;
        let id = self.socks[s].id.clone();
        self.note(format!("raw packet {raw:?} on {id}"));
        self.cmd(json!({"op": "raw", "id": id, "data": raw})).await;
    }

    /// Opens a socket for `client` (or a bad token) and waits for the verdict.
    async fn open(&mut self, client: usize, bad: bool) -> Option<usize> {
        let id = format!("s{}", self.socks.len());
        let token = if bad {
            self.bad_token()
        } else {
            self.clients[client].token.clone()
        };
        let mut c = json!({"op": "connect", "id": id, "url": self.url});
        match self.rng.gen_range(0..3) {
            0 => c["query"] = json!({"auth": format!("Bearer {token}")}),
            1 => c["auth"] = json!({"token": token}),
            _ => c["headers"] = json!({"Authorization": format!("Bearer {token}")}),
        }
        let s = self.socks.len();
        self.sock_by_id.insert(id.clone(), s);
        self.socks.push(Sock {
            id: id.clone(),
            client,
            bad_token: bad,
            sid: String::new(),
            state: SockState::Connecting,
            sent_raw: false,
            calls: HashMap::new(),
            ice_got: Vec::new(),
        });
        self.cmd(c).await;
        let want = id.clone();
        let got = self
            .pump_until(
                move |m| {
                    m["id"] == want.as_str()
                        && (m["type"] == "connect" || m["type"] == "connect_error")
                },
                Duration::from_secs(10),
            )
            .await;
        if got.is_none() {
            self.violation(format!("socket {id}: no connect verdict"));
            self.socks[s].state = SockState::Gone;
        }
        (self.socks[s].state == SockState::Open).then_some(s)
    }

    /// Opens a socket; if `GET call/active` then shows a call ringing for its user, the socket
    /// must hear of that call: `v1OnNewCall` (a callee socket that connects while its call rings
    /// is rung), or its end. The SDK uses both; they must agree.
    async fn open_and_check_ring(&mut self, client: usize) -> Option<usize> {
        let s = self.open(client, false).await?;
        let user = self.clients[client].user;
        let r = self.req("GET", "call/active".into(), client, Body::None);
        let Some((200, data)) = self.rest(r).await else {
            return Some(s);
        };
        let Some(meet) = data["meetId"].as_str().map(str::to_string) else {
            return Some(s);
        };
        if self
            .call_by_meet
            .get(&meet)
            .is_none_or(|&ci| self.calls[ci].callee != user)
        {
            self.violation(format!(
                "call/active of {} gave {meet}, not a call to them",
                USERS[user]
            ));
            return Some(s);
        }
        self.count("ring on connect: checked".into());
        let heard = |ch: &Chaos| {
            ch.socks[s]
                .calls
                .get(&meet)
                .is_some_and(|c| c.new_calls > 0 || c.ended)
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(RING_MS) + Duration::from_secs(5);
        while !heard(self) && self.socks[s].state == SockState::Open {
            if tokio::time::Instant::now() > deadline {
                let id = self.socks[s].id.clone();
                self.violation(format!(
                    "{id} of {} connected while call/active showed {meet} ringing, and never heard of it",
                    USERS[user]
                ));
                break;
            }
            let id = self.socks[s].id.clone();
            self.pump_until(move |m| m["id"] == id.as_str(), Duration::from_millis(200))
                .await;
        }
        Some(s)
    }

    async fn close(&mut self, s: usize, abrupt: bool) {
        let id = self.socks[s].id.clone();
        self.socks[s].state = SockState::Closing;
        let op = if abrupt { "drop" } else { "close" };
        self.cmd(json!({"op": op, "id": id})).await;
        let want = id.clone();
        if self
            .pump_until(
                move |m| m["id"] == want.as_str() && m["type"] == "closed",
                Duration::from_secs(10),
            )
            .await
            .is_none()
        {
            self.violation(format!("socket {id}: close not acknowledged"));
        }
        self.socks[s].state = SockState::Gone;
    }

    fn client_sockets(&self, client: usize) -> Vec<usize> {
        self.open_socks()
            .into_iter()
            .filter(|&s| self.socks[s].client == client)
            .collect()
    }

    async fn step_connect(&mut self) {
        if self.rng.gen_bool(0.05) {
            // A session that runs out in a second or two.
            let user = self.rng.gen_range(0..USERS.len());
            let did = self
                .rng
                .gen_bool(0.5)
                .then(|| format!("short-{}", self.clients.len()));
            let exp = vchat_signal::auth::now_unix() + 2;
            self.clients.push(Client {
                user,
                did: did.clone(),
                token: token_exp(USERS[user], did.as_deref(), exp),
                expires: Some(std::time::Instant::now() + Duration::from_secs(2)),
            });
            let s = self.open(self.clients.len() - 1, false).await;
            self.note(format!(
                "connect {} with a token expiring in 2 s → {s:?}",
                USERS[user]
            ));
            return;
        }
        if self.rng.gen_bool(0.08) {
            let s = self.open(0, true).await;
            self.note(format!("connect with a bad token → {s:?}"));
            return;
        }
        if self.rng.gen_bool(0.06) && !self.new_devices.is_empty() {
            let (user, did) = self.new_devices.remove(0);
            self.clients.push(Client {
                user,
                did: Some(did.to_string()),
                token: token(USERS[user], Some(did)),
                expires: None,
            });
        }
        let candidates: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].expires.is_none())
            .filter(|&c| {
                let n = self.client_sockets(c).len();
                // A device with its own id keeps one socket, except in an overlapping
                // reconnect; tabs of a token without one may be several.
                n < if self.clients[c].did.is_some() {
                    1
                } else {
                    MAX_SOCKETS_PER_CLIENT
                }
            })
            .collect();
        let Some(c) = self.pick(&candidates) else {
            return;
        };
        let s = self.open_and_check_ring(c).await;
        self.note(format!(
            "connect {}{} → {:?}",
            USERS[self.clients[c].user],
            self.clients[c]
                .did
                .as_deref()
                .map(|d| format!("/{d}"))
                .unwrap_or_default(),
            s.map(|s| self.socks[s].id.clone())
        ));
    }

    async fn step_disconnect(&mut self) {
        let Some(s) = self.sock_of(None) else { return };
        let abrupt = self.rng.gen_bool(0.5);
        self.note(format!("close {} (abrupt {abrupt})", self.socks[s].id));
        self.close(s, abrupt).await;
    }

    /// A blip: the same device goes and comes back (a new socket), sometimes overlapping.
    async fn step_blip(&mut self) {
        let Some(s) = self.sock_of(None) else { return };
        let client = self.socks[s].client;
        if self.clients[client].expires.is_some() {
            return self.close(s, true).await;
        }
        let abrupt = self.rng.gen_bool(0.5);
        let overlap = self.rng.gen_bool(0.3);
        let old = self.socks[s].id.clone();
        let new = if overlap {
            let n = self.open_and_check_ring(client).await;
            self.close(s, abrupt).await;
            n
        } else {
            self.close(s, abrupt).await;
            self.open_and_check_ring(client).await
        };
        self.note(format!(
            "blip {old} → {:?} (overlap {overlap}, abrupt {abrupt})",
            new.map(|n| self.socks[n].id.clone())
        ));
    }

    /// A round trip on socket `s` (a presence poll about `peer` with a unique marker): every
    /// event the server sent to `s` before it has arrived when it returns, and the server has
    /// handled every event `s` sent before it. Returns whether `peer` reads as online.
    async fn fence(&mut self, s: usize, peer: usize) -> Option<bool> {
        self.fences += 1;
        let marker = format!("fence-{}", self.fences);
        let q = json!([{"peerId": USERS[peer], "extra": marker}]).to_string();
        self.emit(s, "v1MyOnline", json!([q])).await;
        let id = self.socks[s].id.clone();
        // A socket the server drops meanwhile answers nothing: stop waiting at once.
        let m = self
            .pump_until(
                move |m| {
                    m["id"] == id.as_str()
                        && (m["type"] == "disconnect"
                            || m["type"] == "closed"
                            || (m["event"] == "v1OnMyOnline"
                                && m["args"][0].as_str().is_some_and(|t| t.contains(&marker))))
                },
                Duration::from_secs(10),
            )
            .await?;
        if m["type"] != "event" {
            return None;
        }
        let v: Value = serde_json::from_str(m["args"][0].as_str()?).ok()?;
        v[0]["isOnline"].as_bool()
    }

    /// No call event lost across a blip: a party's call device drops in a running call, the
    /// other party trickles candidates (and sometimes hangs up) meanwhile, the device comes back
    /// within its grace, and its new socket gets all of it, in order.
    async fn step_blip_in_call(&mut self) {
        let fresh = Duration::from_millis(MAX_CALL_MS / 2);
        let running = |ch: &Chaos| -> Vec<usize> {
            (0..ch.calls.len())
                .filter(|&c| {
                    let c = &ch.calls[c];
                    !c.over
                        && c.caller_did.is_some()
                        && matches!(c.callee_did, Some(Some(_)))
                        && c.accepted_at.is_some_and(|t| t.elapsed() < fresh)
                })
                .collect()
        };
        let mut candidates = running(self);
        if candidates.is_empty() {
            // Start one between devices with ids.
            self.did_only = true;
            self.step_flow().await;
            self.did_only = false;
            candidates = running(self);
        }
        let Some(ci) = self.pick(&candidates) else {
            self.count("blip in call: no running call".into());
            return;
        };
        let (caller, callee) = (self.calls[ci].caller, self.calls[ci].callee);
        let caller_did = self.calls[ci].caller_did.clone().unwrap();
        let callee_did = self.calls[ci].callee_did.clone().unwrap().unwrap();
        let blip_caller = self.rng.gen_bool(0.5);
        let (p, p_did, o, o_did) = if blip_caller {
            (caller, caller_did, callee, callee_did)
        } else {
            (callee, callee_did, caller, caller_did)
        };
        let socks_of_did = |ch: &Chaos, did: &str| -> Vec<usize> {
            ch.open_socks()
                .into_iter()
                .filter(|&s| ch.clients[ch.socks[s].client].did.as_deref() == Some(did))
                .collect()
        };
        let p_socks = socks_of_did(self, &p_did);
        // A socket that sent a raw packet may be dropped by the server at its next packet (a
        // binary header whose attachment never came makes the next text packet a protocol
        // error), so neither party may use one here.
        let o_socks: Vec<usize> = socks_of_did(self, &o_did)
            .into_iter()
            .filter(|&s| !self.socks[s].sent_raw)
            .collect();
        // The blipping user has exactly this one socket (so presence tells when it is gone).
        if p_socks.len() != 1 || self.socks[p_socks[0]].sent_raw || o_socks.is_empty() {
            self.count("blip in call: sockets not as needed".into());
            return self.step_ice().await;
        }
        let (sp, so) = (p_socks[0], o_socks[0]);
        let meet = self.calls[ci].meet.clone();
        if self.fence(sp, o).await.is_none() {
            let dropped = self.socks[sp].state == SockState::Gone;
            return self.violation(format!(
                "fence on {} not answered (dropped by the server: {dropped})",
                self.socks[sp].id
            ));
        }
        if self.calls[ci].over || self.socks[sp].calls.get(&meet).is_some_and(|c| c.ended) {
            return;
        }
        let p_client = self.socks[sp].client;
        let abrupt = self.rng.gen_bool(0.5);
        let sockets_before = self.metric("vchat_sockets").await;
        let t0 = std::time::Instant::now();
        self.close(sp, abrupt).await;
        // Until the server has seen it go, events still head for the old socket: wait until it
        // counts one socket less (nothing else connects or leaves meanwhile) and keeps events
        // for some device.
        let mut gone = false;
        for _ in 0..100 {
            if self.metric("vchat_sockets").await == sockets_before - 1.0
                && self.metric("vchat_outbox_devices").await >= 1.0
            {
                gone = true;
                break;
            }
            self.pump_until(|_| false, Duration::from_millis(5)).await;
        }
        let mut serials = Vec::new();
        for _ in 0..self.rng.gen_range(1..5) {
            self.ice_serial += 1;
            let serial = self.ice_serial;
            self.ice.insert(serial, (meet.clone(), o, HashSet::new()));
            let c = json!({"meetId": meet, "data": {
                "candidate": format!("candidate: {meet} {serial} 1 udp 2122260223 10.0.0.2 5000 typ host"),
                "sdpMid": "0", "sdpMLineIndex": 0}});
            self.emit(so, "v1IceCandidate", json!([c.to_string()]))
                .await;
            serials.push(serial);
        }
        // The relay has happened (or been refused) once this round trip returns.
        self.fence(so, p).await;
        let mut ended = false;
        if self.rng.gen_bool(0.3) {
            let o_client = self.socks[so].client;
            let r = self.req(
                "POST",
                format!("call/end/v2/{}", seg(&meet)),
                o_client,
                Body::None,
            );
            let res = self.rest(r).await;
            ended = matches!(res, Some((200, _)));
            self.record_action(
                Attempt {
                    ci: Some(ci),
                    act: Act::EndV2,
                    user: o,
                    client: o_client,
                    answer: None,
                    valid: true,
                },
                res,
            );
        }
        let new = self.open(p_client, false).await;
        let elapsed = t0.elapsed();
        self.note(format!(
            "blip in call {meet}: {} drops {} (abrupt {abrupt}, seen gone {gone}), {} sends ICE {serials:?}, ended {ended}, back as {:?} after {elapsed:?}",
            USERS[p],
            self.socks[sp].id,
            USERS[o],
            new.map(|n| self.socks[n].id.clone())
        ));
        let Some(n) = new else { return };
        // Only a return well within the grace proves anything (the grace starts a little after
        // our close, and a late one legitimately loses what was kept).
        if !gone || elapsed > Duration::from_millis(RECONNECT_GRACE_MS / 2) {
            self.count("blip in call: too slow to judge".into());
            return;
        }
        self.count("blip in call: judged".into());
        let id = self.socks[n].id.clone();
        let want = serials.clone();
        let meet2 = meet.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got_all = want.iter().all(|s| self.socks[n].ice_got.contains(s));
            let heard_end = self.socks[n].calls.get(&meet2).is_some_and(|c| c.ended);
            if got_all && (!ended || heard_end) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let got = self.socks[n].ice_got.clone();
                self.violation(format!(
                    "blip in call {meet}: {id} got ICE {got:?} of {want:?}, end heard {heard_end} (ended {ended}): kept events lost"
                ));
                break;
            }
            let idn = id.clone();
            self.pump_until(move |m| m["id"] == idn.as_str(), Duration::from_millis(200))
                .await;
        }
        let got: Vec<u64> = self.socks[n]
            .ice_got
            .iter()
            .copied()
            .filter(|s| want.contains(s))
            .collect();
        if got != want {
            self.violation(format!(
                "blip in call {meet}: kept ICE out of order or twice: {got:?}, sent {want:?}"
            ));
        }
    }

    /// A party leaves for good (every socket of the user goes) in a call answered a moment ago:
    /// the call must end within that party's grace (a margin added), whatever devices its
    /// tokens name, and not wait for the max-duration safety net.
    async fn step_vanish_in_call(&mut self) {
        let fresh = |ch: &Chaos| -> Vec<usize> {
            (0..ch.calls.len())
                .filter(|&c| {
                    let c = &ch.calls[c];
                    !c.over
                        && c.accepted_at
                            .is_some_and(|t| t.elapsed() < Duration::from_millis(1500))
                })
                .collect()
        };
        let mut candidates = fresh(self);
        if candidates.is_empty() {
            self.step_flow().await;
            candidates = fresh(self);
        }
        let Some(ci) = self.pick(&candidates) else {
            self.count("vanish in call: no running call".into());
            return;
        };
        let c = &self.calls[ci];
        let (meet, caller, callee) = (c.meet.clone(), c.caller, c.callee);
        let devices = format!("caller {:?}, callee {:?}", c.caller_did, c.callee_did);
        let (p, o) = if self.rng.gen_bool(0.5) {
            (caller, callee)
        } else {
            (callee, caller)
        };
        let socks = self.open_socks_of_user(p);
        for s in &socks {
            let abrupt = self.rng.gen_bool(0.5);
            self.close(*s, abrupt).await;
        }
        let t0 = std::time::Instant::now();
        let budget =
            Duration::from_millis(RECONNECT_GRACE_MS.max(CALLER_GRACE_MS)) + Duration::from_secs(2);
        let o_client = self.user_clients(o)[0];
        let status = loop {
            let r = self.req("GET", "call/history".into(), o_client, Body::None);
            let status = match self.rest(r).await {
                Some((200, d)) => d
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["_id"] == meet.as_str()))
                    .and_then(|c| c["callStatus"].as_str())
                    .unwrap_or("?")
                    .to_string(),
                _ => "?".to_string(),
            };
            if !matches!(status.as_str(), "ring" | "inCall") || t0.elapsed() > budget {
                break status;
            }
            self.pump_until(|_| false, Duration::from_millis(50)).await;
        };
        self.note(format!(
            "vanish in call {meet}: {} leaves ({} sockets; {devices}) → {status} after {:?}",
            USERS[p],
            socks.len(),
            t0.elapsed()
        ));
        if matches!(status.as_str(), "ring" | "inCall") {
            self.count("vanish in call: still live".into());
            let how = if socks.is_empty() {
                "had no socket left to lose (its call device was not connected when the call \
                 was answered, so no disconnect ever armed a grace)"
            } else {
                "left entirely"
            };
            self.violation(format!(
                "call {meet} still {status} {:?} after {} {how} ({devices}; {} sockets closed): \
                 no grace ended it",
                t0.elapsed(),
                USERS[p],
                socks.len()
            ));
        } else {
            self.count("vanish in call: ended".into());
            // Known over from the history even when no socket of the other party heard it
            // (one that answered over REST only has none): later steps must not count on it.
            self.calls[ci].over = true;
        }
    }

    // ---------------------------------------------------------------- steps: polls

    async fn step_active(&mut self) {
        let user = self.rng.gen_range(0..USERS.len());
        let (client, _) = self.client_of(user);
        let r = self.req("GET", "call/active".into(), client, Body::None);
        let res = self.rest(r).await;
        self.note(format!("call/active of {}", USERS[user]));
        let Some((200, data)) = res else {
            return self.violation(format!("call/active of {} not 200: {res:?}", USERS[user]));
        };
        if data.is_null() {
            return;
        }
        let meet = data["meetId"].as_str().unwrap_or_default();
        match self.call_by_meet.get(meet) {
            Some(&ci) => {
                let c = &self.calls[ci];
                if c.callee != user || data["payload"] != c.payload {
                    let v = format!(
                        "call/active of {} gave {meet} (callee {}) with payload {}",
                        USERS[user],
                        USERS[c.callee],
                        short(&data["payload"])
                    );
                    self.violation(v);
                }
                if !(data["userData"]["userImages"].is_object() && data["roomId"].is_string()) {
                    self.violation(format!("call/active of the wrong shape: {}", short(&data)));
                }
            }
            None => self.violation(format!("call/active gave an unknown call {meet}")),
        }
    }

    async fn step_history(&mut self) {
        let user = self.rng.gen_range(0..USERS.len());
        self.note(format!("call/history of {}", USERS[user]));
        self.check_history(user, "a poll").await;
        if self.rng.gen_bool(0.3) {
            let (client, _) = self.client_of(user);
            let junk = self.junk_meet();
            let r = self.req(
                "DELETE",
                format!("call/history/clear/{}", seg(&junk)),
                client,
                Body::None,
            );
            self.rest(r).await;
        }
    }

    async fn step_misc_rest(&mut self) {
        let user = self.rng.gen_range(0..USERS.len());
        let (client, _) = self.client_of(user);
        let room = self.rng.gen_range(0..self.rooms.len());
        let room_id = self.rooms[room].id.clone();
        let r = match self.rng.gen_range(0..7) {
            0 => self.req("GET", "channel/?limit=20&page=1".into(), client, Body::None),
            1 => self.req("GET", format!("channel/{room_id}"), client, Body::None),
            2 => self.req(
                "PATCH",
                format!("channel/{room_id}/deliver"),
                client,
                Body::None,
            ),
            3 => self.req(
                "GET",
                format!("channel/{room_id}/message/?limit=5"),
                client,
                Body::None,
            ),
            4 => self.req("GET", "call/ice-servers".into(), client, Body::None),
            5 => {
                let mut r = self.req("POST", format!("call/create/{room_id}"), client, Body::None);
                r.token = Some(self.bad_token());
                r.bad_token = true;
                r
            }
            _ => {
                let mut r = self.req("GET", "call/history".into(), client, Body::None);
                r.token = if self.rng.gen_bool(0.5) {
                    Some(self.bad_token())
                } else {
                    None
                };
                r.bad_token = true;
                r
            }
        };
        let path = r.path.clone();
        let res = self.rest(r).await;
        self.note(format!(
            "{path} by {} → {:?}",
            USERS[user],
            res.map(|r| r.0)
        ));
    }

    /// One value from `/metrics`.
    async fn metric(&mut self, name: &str) -> f64 {
        match reqwest::get(format!("{}/metrics", self.url)).await {
            Ok(r) => metric_value(&r.text().await.unwrap_or_default(), name),
            Err(e) => {
                self.violation(format!("metrics unreachable: {e}"));
                -1.0
            }
        }
    }

    async fn step_metrics(&mut self) {
        let Ok(resp) = reqwest::get(format!("{}/metrics", self.url)).await else {
            return self.violation("metrics unreachable: is the server alive?".into());
        };
        let text = resp.text().await.unwrap_or_default();
        let busy = metric_value(&text, "vchat_busy_users");
        let live = metric_value(&text, "vchat_live_calls");
        if busy > USERS.len() as f64 || live > (USERS.len() / 2) as f64 {
            self.violation(format!(
                "metrics: {busy} busy users, {live} live calls for {} users",
                USERS.len()
            ));
        }
    }

    /// Think time: the users do nothing for a moment while events keep arriving (and are
    /// checked), so the server's timers fire in the middle of everything else. Not a
    /// synchronisation: nothing waits for anything in particular.
    async fn step_think(&mut self) {
        let ms = self.rng.gen_range(10..400);
        self.note(format!("think {ms} ms"));
        self.pump_until(|_| false, Duration::from_millis(ms)).await;
    }

    // ---------------------------------------------------------------- the run

    /// Sockets whose token ran out must have been closed by the server (with a margin for the
    /// whole-second expiry and a loaded machine).
    fn check_expired(&mut self) {
        let late: Vec<String> = self
            .open_socks()
            .into_iter()
            .filter(|&s| {
                self.clients[self.socks[s].client]
                    .expires
                    .is_some_and(|t| t.elapsed() > Duration::from_secs(4))
            })
            .map(|s| self.socks[s].id.clone())
            .collect();
        for id in late {
            self.violation(format!(
                "socket {id} still open 4 s after its token expired"
            ));
            let s = self.sock_by_id[&id];
            self.socks[s].state = SockState::Gone;
        }
    }

    async fn run_step(&mut self) {
        let w = self.rng.gen_range(0..106);
        match w {
            0..=5 => self.step_create().await,
            6..=11 => self.step_flow().await,
            12..=33 => self.step_call_action().await,
            34..=37 => self.step_race().await,
            38..=47 => self.step_ice().await,
            48..=55 => self.step_message().await,
            56..=59 => self.step_presence().await,
            60..=65 => self.step_room_event().await,
            66..=70 => self.step_junk_event().await,
            71 => self.step_raw_packet().await,
            72..=79 => self.step_connect().await,
            80..=83 => self.step_disconnect().await,
            84..=87 => self.step_blip().await,
            88 => self.step_blip_in_call().await,
            89 => self.step_vanish_in_call().await,
            90..=92 => self.step_active().await,
            93..=95 => self.step_history().await,
            96..=99 => self.step_misc_rest().await,
            _ => self.step_think().await,
        }
        self.check_expired();
        if self.step.is_multiple_of(25) {
            self.step_metrics().await;
        }
        self.drain();
    }
}

/// Polls `/metrics` until `ok` holds for `name`, up to `within` (the server's own account of
/// what it has done; no sleeping as synchronisation).
async fn settle(
    server: &TestServer,
    name: &str,
    ok: impl Fn(f64) -> bool,
    within: Duration,
) -> Result<f64, f64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = server.metric(name).await;
        if ok(v) {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(v);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn setup(server: &TestServer, seed: u64) -> Chaos {
    let api = server.api();
    let clients: Vec<Client> = CLIENTS
        .iter()
        .map(|&(user, did)| Client {
            user,
            did: did.map(str::to_string),
            token: token(USERS[user], did),
            expires: None,
        })
        .collect();
    // Users exist from the tokens they present.
    for c in &clients {
        api.touch(&c.token).await;
    }
    let first = |u: usize| clients.iter().position(|c| c.user == u).unwrap();
    let mut rooms = Vec::new();
    for (a, b) in PAIRS {
        let id = api.peer_room(&clients[first(a)].token, USERS[b]).await;
        rooms.push(Room {
            id,
            members: vec![a, b],
            single: true,
        });
    }
    let g = api
        .post(
            "channel/group",
            &clients[first(GROUP[0])].token,
            json!({"groupName": "chaos", "identifiers": GROUP[1..].iter().map(|&u| USERS[u]).collect::<Vec<_>>()}),
        )
        .await
        .ok();
    rooms.push(Room {
        id: g["rId"].as_str().unwrap().to_string(),
        members: GROUP.to_vec(),
        single: false,
    });
    let room_by_id = rooms
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();

    let mut node = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/support/chaos-driver.mjs"))
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed (see README: Tests)");
    let stdout = node.stdout.take().unwrap();
    let stdin = node.stdin.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| json!({"type": "fatal", "message": line}));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    Chaos {
        seed,
        rng: StdRng::seed_from_u64(seed),
        url: server.url.clone(),
        http: reqwest::Client::new(),
        node,
        stdin,
        rx,
        rooms,
        room_by_id,
        clients,
        new_devices: NEW_DEVICES.to_vec(),
        socks: Vec::new(),
        sock_by_id: HashMap::new(),
        calls: Vec::new(),
        call_by_meet: HashMap::new(),
        ice: HashMap::new(),
        ice_serial: 0,
        local_ids: Vec::new(),
        step: 0,
        log: VecDeque::new(),
        violations: Vec::new(),
        rest_status: BTreeMap::new(),
        events: BTreeMap::new(),
        server_closed: 0,
        server_closed_clean: 0,
        creates_ok: 0,
        fences: 0,
        did_only: false,
        tally: BTreeMap::new(),
    }
}

/// After the run: everything settles, every call is over, the books balance.
async fn quiesce_and_check(server: &TestServer, ch: &mut Chaos) {
    ch.step = usize::MAX;
    // Every socket goes (a clean close or a drop, as they come).
    for s in 0..ch.socks.len() {
        if matches!(ch.socks[s].state, SockState::Open | SockState::Connecting) {
            let abrupt = ch.rng.gen_bool(0.5);
            ch.close(s, abrupt).await;
        }
    }
    let longest =
        Duration::from_millis(MAX_CALL_MS.max(RING_MS) + RECONNECT_GRACE_MS.max(CALLER_GRACE_MS));
    let t = std::time::Instant::now();
    for name in ["vchat_live_calls", "vchat_busy_users"] {
        if let Err(v) = settle(server, name, |v| v == 0.0, longest + SETTLE_MARGIN).await {
            ch.violation(format!(
                "{name} still {v} after {:?}: a call is stuck",
                t.elapsed()
            ));
        }
    }
    for name in [
        "vchat_sockets",
        "vchat_outbox_devices",
        "vchat_outbox_events",
    ] {
        if let Err(v) = settle(server, name, |v| v == 0.0, SETTLE_MARGIN).await {
            ch.violation(format!(
                "{name} still {v} after everyone left (a ghost socket? see \
                 sockets_closed_right_after_connect_leave_no_ghost)"
            ));
        }
    }
    println!("settled in {:?}", t.elapsed());
    ch.drain();

    // Every stored call is over, with consistent times, and no user was ever in two at once.
    let db = server.db().await;
    let rows = sqlx::query(
        "SELECT id, caller_id, callee_id, status, rev, created_at, accepted_at, ended_at FROM calls",
    )
    .fetch_all(&db)
    .await
    .expect("read calls");
    let mut spans: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for row in &rows {
        let id: String = row.get("id");
        let status: String = row.get("status");
        let rev: i64 = row.get("rev");
        let created: String = row.get("created_at");
        let accepted: Option<String> = row.get("accepted_at");
        let ended: Option<String> = row.get("ended_at");
        *by_status.entry(status.clone()).or_default() += 1;
        if !["canceled", "rejected", "timeout", "finished"].contains(&status.as_str()) {
            ch.violation(format!("call {id} left {status}"));
        }
        let Some(ended) = ended else {
            ch.violation(format!("call {id} ({status}) has no end time"));
            continue;
        };
        if accepted.is_some() != (status == "finished") {
            ch.violation(format!("call {id}: {status} with acceptedAt {accepted:?}"));
        }
        if rev != 2 + i64::from(accepted.is_some()) {
            ch.violation(format!(
                "call {id}: rev {rev} for {status} (accepted {})",
                accepted.is_some()
            ));
        }
        let a = accepted.clone().unwrap_or_else(|| created.clone());
        if !(created <= a && a <= ended) {
            ch.violation(format!(
                "call {id}: times out of order {created} {a} {ended}"
            ));
        }
        if let Some(&ci) = ch.call_by_meet.get(&id) {
            let c = &ch.calls[ci];
            let expect_accepted = c.answer.is_some();
            if expect_accepted != accepted.is_some() {
                ch.violation(format!("call {id}: accept answered 200 {expect_accepted}, stored acceptedAt {accepted:?}"));
            }
        } else {
            ch.violation(format!(
                "call {id} stored but never answered 200 to a create"
            ));
        }
        for u in [
            row.get::<String, _>("caller_id"),
            row.get::<String, _>("callee_id"),
        ] {
            spans
                .entry(u)
                .or_default()
                .push((created.clone(), ended.clone(), id.clone()));
        }
    }
    for (user, mut s) in spans {
        s.sort();
        for w in s.windows(2) {
            if w[1].0 < w[0].1 {
                ch.violation(format!(
                    "{user} was in two calls at once: {} [{}, {}] and {} [{}, {}]",
                    w[0].2, w[0].0, w[0].1, w[1].2, w[1].0, w[1].1
                ));
            }
        }
    }
    if rows.len() as u64 != ch.creates_ok {
        ch.violation(format!(
            "{} calls stored, {} creates answered 200",
            rows.len(),
            ch.creates_ok
        ));
    }
    let metrics = server.metrics().await;
    let created = metric_value(&metrics, "vchat_calls_created_total");
    let ended: f64 = ["canceled", "rejected", "timeout", "finished"]
        .iter()
        .map(|s| {
            metric_value(
                &metrics,
                &format!("vchat_calls_ended_total{{status=\"{s}\"}}"),
            )
        })
        .sum();
    if created != ch.creates_ok as f64 || ended != created {
        ch.violation(format!(
            "counters: {created} created, {ended} ended, {} creates answered 200",
            ch.creates_ok
        ));
    }
    for (u, name) in USERS.iter().enumerate() {
        ch.check_history(u, "after quiescence").await;
        let client = ch.user_clients(u)[0];
        let r = ch.req("GET", "call/active".into(), client, Body::None);
        if let Some((200, d)) = ch.rest(r).await {
            if !d.is_null() {
                ch.violation(format!("{name} still has a ringing call: {d}"));
            }
        }
    }
    println!("calls by final status: {by_status:?}");
}

/// The server still does its job: a fresh call, end to end, on fresh sockets.
async fn fresh_call(server: &TestServer, driver: &Driver) {
    let api = server.api();
    let (z, y) = (token("zed", Some("z-1")), token("yan", Some("y-1")));
    api.touch(&y).await;
    let room = api.peer_room(&z, "yan").await;
    let mut zs = driver.connect("fresh-z", &z).await;
    let mut ys = driver.connect("fresh-y", &y).await;
    let d = api
        .post(
            &format!("call/create/{room}"),
            &z,
            json!({"payload": {"offer": 1}, "withVideo": false}),
        )
        .await
        .ok();
    let meet = d["meetId"].as_str().unwrap().to_string();
    assert_eq!(ys.expect("v1OnNewCall").await["meetId"], meet.as_str());
    api.post(
        &format!("call/accept/{meet}"),
        &y,
        json!({"payload": {"answer": 2}}),
    )
    .await
    .ok();
    assert_eq!(
        zs.expect("v1OnCallAccepted").await["peerAnswer"],
        json!({"answer": 2})
    );
    api.post(&format!("call/end/v2/{meet}"), &z, json!({}))
        .await
        .ok();
    for s in [&mut zs, &mut ys] {
        assert_eq!(s.expect("v1OnCallEnded").await["meetId"], meet.as_str());
    }
    zs.close().await;
    ys.close().await;
    server.wait_metric("vchat_live_calls", |v| v == 0.0).await;
    server.wait_metric("vchat_sockets", |v| v == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_clients_keep_every_invariant() {
    let seed: u64 = env_or("VCHAT_CHAOS_SEED", rand::random::<u64>() % 1_000_000_000);
    let steps: usize = env_or("VCHAT_CHAOS_STEPS", DEFAULT_STEPS);
    println!("randomized: seed {seed}, {steps} steps (replay: VCHAT_CHAOS_SEED={seed} VCHAT_CHAOS_STEPS={steps})");
    let (ring, cg, rg, max) = (
        RING_MS.to_string(),
        CALLER_GRACE_MS.to_string(),
        RECONNECT_GRACE_MS.to_string(),
        MAX_CALL_MS.to_string(),
    );
    let server = TestServer::start_with(&[
        ("VCHAT_CALL_TIMEOUT_MS", &ring),
        ("VCHAT_CALLER_GRACE_MS", &cg),
        ("VCHAT_RECONNECT_GRACE_MS", &rg),
        ("VCHAT_MAX_CALL_MS", &max),
        // The abuse limits would refuse most of a random run's calls and messages (each limit
        // has its own tests); the per-socket event limit stays on.
        ("VCHAT_MAX_CALLS_PER_MINUTE", "0"),
        ("VCHAT_MAX_UNANSWERED_CALLS", "0"),
        ("VCHAT_MAX_MESSAGES_PER_10S", "0"),
        ("VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND", "0"),
    ]);
    // The harness's driver: installs the npm clients if needed, and makes the last call.
    let driver = Driver::new(&server).await;
    let mut ch = setup(&server, seed).await;
    let started = std::time::Instant::now();
    // Everyone's first devices come online.
    for c in 0..ch.clients.len() {
        ch.open(c, false).await;
    }
    for step in 1..=steps {
        ch.step = step;
        ch.run_step().await;
        if ch.violations.len() >= MAX_VIOLATIONS {
            break;
        }
    }
    let ran = started.elapsed();
    quiesce_and_check(&server, &mut ch).await;
    let _ = ch.node.start_kill();
    println!(
        "ran {} steps in {ran:?}; {} calls created; steps {:?}; REST statuses {:?}; events {:?}; sockets opened {}, dropped by the server {} ({} neither sent junk packets nor holding an expiring token)",
        steps,
        ch.creates_ok,
        ch.tally,
        ch.rest_status,
        ch.events,
        ch.socks.len(),
        ch.server_closed,
        ch.server_closed_clean
    );
    if !ch.violations.is_empty() {
        panic!("{}", ch.report());
    }
    fresh_call(&server, &driver).await;
}

/// A client that closes the moment it is let in must leave no trace. (Found by this driver:
/// socketioxide spawns the connect handler, which adds the socket to presence, and the
/// disconnect handler, which removes it, as separate tasks; when the disconnect ran first the
/// socket was added after it was removed and stayed in presence for good, its device online
/// forever and its call without a grace.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_closed_right_after_connect_leave_no_ghost() {
    let server = TestServer::start();
    let _ensure_npm = Driver::new(&server).await;
    let mut node = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/support/chaos-driver.mjs"))
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut stdin = node.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let tokens: Vec<String> = (0..3)
        .map(|i| token(&format!("flash{i}"), Some(&format!("f{i}"))))
        .collect();
    // The race is a matter of scheduling: up to three thousand tries, checking after each
    // thousand.
    let (rounds, batch) = (100, 10);
    for attempt in 0..3 {
        let mut connected = 0;
        for round in 0..rounds {
            for i in 0..batch {
                let n = (attempt * rounds + round) * batch + i;
                let cmd = json!({"op": "flash", "id": format!("f{n}"), "url": server.url,
                    "headers": {"Authorization": format!("Bearer {}", tokens[n % tokens.len()])}});
                stdin
                    .write_all(format!("{cmd}\n").as_bytes())
                    .await
                    .unwrap();
            }
            stdin.flush().await.unwrap();
            for _ in 0..batch {
                let line = tokio::time::timeout(WAIT, lines.next_line())
                    .await
                    .expect("a flash verdict")
                    .unwrap()
                    .unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                connected += usize::from(v["connected"] == true);
            }
        }
        assert_eq!(connected, rounds * batch, "every flash got in");
        // Every one of them left: presence must say so (disconnects are quick; allow plenty).
        let left = settle(
            &server,
            "vchat_sockets",
            |v| v == 0.0,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            left,
            Ok(0.0),
            "sockets still counted after every client left (ghosts in presence), \
             after {} flashes",
            (attempt + 1) * rounds * batch
        );
    }
}

/// Found by the random driver (the "vanish in call" step): a party whose token names no device
/// answers (or places) a call over REST while it has two sockets, so its call device stays
/// unbound (nothing binds it but ICE, and Agora calls send none). When every socket of that
/// party goes, the call must still get its grace and end, not wait for the max-duration net
/// (12 h by default) with both users busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_call_ends_when_a_party_without_a_device_id_leaves() {
    for callee_without_did in [true, false] {
        let server = TestServer::start_with(&[
            ("VCHAT_RECONNECT_GRACE_MS", "300"),
            ("VCHAT_CALLER_GRACE_MS", "300"),
        ]);
        let api = server.api();
        let (dan, eva) = (token("dan", Some("dan-1")), token("eva", None));
        api.touch(&eva).await;
        let room = api.peer_room(&dan, "eva").await;
        let d = Driver::new(&server).await;
        let _dan_phone = d.connect("dan", &dan).await;
        let eva_tab1 = d.connect("eva1", &eva).await;
        let eva_tab2 = d.connect("eva2", &eva).await;
        let (caller, callee) = if callee_without_did {
            (&dan, &eva)
        } else {
            (&eva, &dan)
        };
        let meet = api
            .post(
                &format!("call/create/{room}"),
                caller,
                json!({"payload": null, "withVideo": false}),
            )
            .await
            .ok()["meetId"]
            .as_str()
            .unwrap()
            .to_string();
        api.post(
            &format!("call/accept/{meet}"),
            callee,
            json!({"payload": null}),
        )
        .await
        .ok();
        eva_tab1.close().await;
        eva_tab2.close().await;
        // eva is gone for good: the call must end within her grace (`wait_metric` allows 8 s).
        server.wait_metric("vchat_live_calls", |v| v == 0.0).await;
    }
}

/// Found by the random driver too: a callee answers over REST from a device that has no socket
/// (an app woken by a push that accepts before its socket is up, then dies). No socket of that
/// device ever disconnects, so the accept itself must start its grace, as `create` does for a
/// caller with no socket; otherwise only the max-duration net (12 h by default) ends the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_call_answered_from_a_device_with_no_socket_still_ends() {
    let server = TestServer::start_with(&[
        ("VCHAT_RECONNECT_GRACE_MS", "300"),
        ("VCHAT_CALLER_GRACE_MS", "300"),
    ]);
    let api = server.api();
    let (dan, ann) = (token("dan", Some("dan-1")), token("ann", Some("ann-2")));
    api.touch(&ann).await;
    let room = api.peer_room(&dan, "ann").await;
    let d = Driver::new(&server).await;
    let mut dan_phone = d.connect("dan", &dan).await;
    let meet = api
        .post(
            &format!("call/create/{room}"),
            &dan,
            json!({"payload": null, "withVideo": false}),
        )
        .await
        .ok()["meetId"]
        .as_str()
        .unwrap()
        .to_string();
    // ann-2 has no socket: it answers over REST and is never heard from again.
    api.post(
        &format!("call/accept/{meet}"),
        &ann,
        json!({"payload": null}),
    )
    .await
    .ok();
    assert_eq!(
        dan_phone.expect("v1OnCallAccepted").await["meetId"],
        meet.as_str()
    );
    // ann-2 never connects: within its grace (`wait_metric` allows 8 s) the call must end.
    server.wait_metric("vchat_live_calls", |v| v == 0.0).await;
    assert_eq!(
        dan_phone.expect("v1OnCallEnded").await["meetId"],
        meet.as_str()
    );
}
