//! Soak: mixed call + chat load with random disconnects against a release vchat-signal, for a
//! set time, printing the server's memory and live state as it goes, then checking that memory
//! and state return to baseline once every client is gone.
//!
//! ```sh
//! cargo run --release --example soak                        # 10 minutes, 600 users
//! cargo run --release --example soak -- --minutes 2         # a short run
//! cargo run --release --example soak -- --rounds            # 5 rounds of 3000 fresh users
//! cargo run --release --example soak -- --help
//! ```
//!
//! The server is `target/release/vchat-signal` (built when missing), on 127.0.0.1 port 0 with a
//! fresh data directory under `target/soak/`, its abuse limits off. It is a child process with
//! `kill_on_drop`, so it dies with the soak. All traffic stays on 127.0.0.1, and the run stops
//! by itself.
//!
//! Every simulated user is one task holding one socket (token with a `did`, like a phone), that
//! behaves like a V Chat app: `v1MyOnline` every 10 s, text messages with typing before them,
//! delivered/seen receipts for what it receives, calls (create → ring → accept / reject / cancel
//! / ring timeout → ICE both ways → end), and network blips: the socket is cut and the same
//! device reconnects, mostly within the server's grace and sometimes past it. Users leave after
//! a random lifetime and fresh ones take their place, so a run sees thousands of distinct users.
//!
//! Every `--interval` seconds one table row: RSS (/proc VmRSS), the server's live gauges from
//! `/metrics`, and the client's counts. After the load every user ends its call and closes its
//! socket; the soak waits until `/metrics` shows no sockets, calls or outboxes, samples RSS for
//! `--settle` seconds, and compares it with the idle baseline. With gdb installed it also asks
//! the idle server's glibc for its heap totals (`malloc_stats()`), which tells live memory (a
//! leak, a map that keeps departed users) from freed memory the allocator keeps, and finally
//! runs `malloc_trim(0)` to show how much of RSS that is. `--rounds` repeats the issue's
//! measurement: rounds of fresh users connecting and leaving, RSS and heap after each.
//!
//! The output is tables plus `soak key=value` lines. The exit status is 1 when the client saw a
//! 5xx, the server crashed or logged a panic, or it did not drain (sockets, calls, outboxes back
//! to 0 within 120 s).

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use vchat_signal::auth::{mint, Claims};

use support::api::Api;
use support::procfs::{loadavg, proc_cpu_secs, proc_status_kib};
use support::server::{limits_off_line, start_vchat, Proc, VchatOpts, SECRET};
use support::sio::{Ev, Sio, CLOSED};

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Opts {
    minutes: f64,
    users: usize,
    interval: u64,
    lifetime: f64,
    call_every: f64,
    message_every: f64,
    blip_every: f64,
    long_blips: f64,
    rounds: Option<usize>,
    round_users: usize,
    settle: u64,
    gdb: bool,
    tolerance_mib: f64,
    seed: u64,
    client_threads: usize,
    vchat_bin: Option<PathBuf>,
    build: bool,
    env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            minutes: 10.0,
            users: 600,
            interval: 10,
            lifetime: 150.0,
            call_every: 60.0,
            message_every: 15.0,
            blip_every: 120.0,
            long_blips: 0.15,
            rounds: None,
            round_users: 3000,
            settle: 30,
            gdb: true,
            tolerance_mib: 8.0,
            seed: 0,
            client_threads: 1,
            vchat_bin: None,
            build: false,
            env: Vec::new(),
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo run --release --example soak -- [options]\n\
         \n\
         mixed load (default):\n\
         \x20 --minutes N          load time (default 10; fractions allowed)\n\
         \x20 --users N            users online at once (default 600); each leaves after its\n\
         \x20                      lifetime and a fresh user takes its place\n\
         \x20 --lifetime S         mean user lifetime in seconds (default 150; uniform 0.4–1.6×)\n\
         \x20 --call-every S       mean seconds between one user's call attempts (default 60)\n\
         \x20 --message-every S    mean seconds between one user's messages (default 15)\n\
         \x20 --blip-every S       mean seconds between one user's network blips (default 120)\n\
         \x20 --long-blips P       share of blips that outlast the server's grace (default 0.15)\n\
         \x20 --interval S         seconds between report lines (default 10)\n\
         \n\
         rounds (the issue's measurement):\n\
         \x20 --rounds [R]         R rounds (default 5) of K fresh users connecting and leaving\n\
         \x20 --round-users K      users per round (default 3000)\n\
         \n\
         both:\n\
         \x20 --settle S           seconds of RSS sampling after the load (default 30)\n\
         \x20 --no-gdb             do not ask the server's allocator for its heap totals (by\n\
         \x20                      default gdb, when installed, makes the idle server run glibc's\n\
         \x20                      malloc_stats(), and malloc_trim(0) at the very end)\n\
         \x20 --tolerance-mib M    RSS above baseline still called baseline (default 8)\n\
         \x20 --seed N             random seed (default: from the clock)\n\
         \x20 --env KEY=VALUE      extra server environment, repeatable (e.g. MALLOC_ARENA_MAX=2,\n\
         \x20                      VCHAT_RECONNECT_GRACE_MS=10000)\n\
         \x20 --vchat-bin PATH     soak another vchat-signal binary\n\
         \x20 --build              cargo build --release --bin vchat-signal first\n\
         \x20 --client-threads N   tokio worker threads of the load generator (default 1)"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        ..Opts::default()
    };
    let mut args = std::env::args().skip(1).peekable();
    fn num<T: std::str::FromStr>(v: Option<String>) -> T {
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--minutes" => o.minutes = num::<f64>(args.next()).max(0.05),
            "--users" => o.users = num::<usize>(args.next()).max(2),
            "--interval" => o.interval = num::<u64>(args.next()).max(1),
            "--lifetime" => o.lifetime = num::<f64>(args.next()).max(5.0),
            "--call-every" => o.call_every = num::<f64>(args.next()).max(1.0),
            "--message-every" => o.message_every = num::<f64>(args.next()).max(0.5),
            "--blip-every" => o.blip_every = num::<f64>(args.next()).max(1.0),
            "--long-blips" => o.long_blips = num::<f64>(args.next()).clamp(0.0, 1.0),
            "--rounds" => {
                let r = match args.peek().and_then(|v| v.parse::<usize>().ok()) {
                    Some(r) => {
                        args.next();
                        r
                    }
                    None => 5,
                };
                o.rounds = Some(r.max(1));
            }
            "--round-users" => o.round_users = num::<usize>(args.next()).max(2),
            "--settle" => o.settle = num(args.next()),
            "--no-gdb" => o.gdb = false,
            "--tolerance-mib" => o.tolerance_mib = num(args.next()),
            "--seed" => o.seed = num(args.next()),
            "--client-threads" => o.client_threads = num::<usize>(args.next()).max(1),
            "--vchat-bin" => o.vchat_bin = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--build" => o.build = true,
            "--env" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let Some((k, v)) = kv.split_once('=') else {
                    usage()
                };
                o.env.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other}");
                usage()
            }
        }
    }
    o
}

/// The server's timing, as configured (defaults unless `--env` changes them).
#[derive(Clone, Copy)]
struct ServerTiming {
    ring_timeout: Duration,
    caller_grace: Duration,
    reconnect_grace: Duration,
}

impl ServerTiming {
    fn of(o: &Opts) -> ServerTiming {
        let ms = |key: &str, default: u64| {
            let v = o
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.parse().ok());
            Duration::from_millis(v.unwrap_or(default))
        };
        ServerTiming {
            ring_timeout: ms("VCHAT_CALL_TIMEOUT_MS", 30_000),
            caller_grace: ms("VCHAT_CALLER_GRACE_MS", 5_000),
            reconnect_grace: ms("VCHAT_RECONNECT_GRACE_MS", 30_000),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        #[derive(Default)]
        struct Stats { $($name: AtomicU64,)* samples: Mutex<Vec<String>> }
        #[derive(Default, Clone, Copy)]
        struct Snap { $($name: u64,)* }
        impl Stats {
            fn snap(&self) -> Snap { Snap { $($name: self.$name.load(Relaxed),)* } }
        }
        impl Snap {
            fn pairs(&self) -> Vec<(&'static str, u64)> { vec![$((stringify!($name), self.$name),)*] }
        }
    };
}

counters!(
    users_started,
    users_left,
    connects,
    blips_short,
    blips_long,
    calls_created,
    calls_busy,
    calls_answered,
    calls_rejected,
    calls_canceled,
    calls_timeout,
    calls_dropped,
    calls_stuck,
    ice_sent,
    ice_received,
    ice_short_calls,
    messages_sent,
    messages_received,
    receipts_received,
    typing_received,
    polls_sent,
    polls_answered,
    polls_unanswered,
    http_ok,
    http_race_4xx,
    http_unexpected,
    http_5xx,
    http_transport,
    socket_connect_failed,
    socket_closed_by_server,
    exceptions_expected,
    exceptions_unexpected,
    rounds_errors,
);

impl Stats {
    fn add(&self, c: fn(&Stats) -> &AtomicU64, n: u64) {
        c(self).fetch_add(n, Relaxed);
    }
    fn inc(&self, c: fn(&Stats) -> &AtomicU64) {
        self.add(c, 1)
    }
    fn sample(&self, s: String) {
        let mut g = self.samples.lock().unwrap();
        if g.len() < 25 {
            g.push(s);
        }
    }
}

impl Snap {
    fn calls_done(&self) -> u64 {
        self.calls_answered
            + self.calls_rejected
            + self.calls_canceled
            + self.calls_timeout
            + self.calls_dropped
    }
    /// Client-side errors: unexpected HTTP statuses, 5xx, transport failures, socket errors,
    /// events that never came.
    fn errors(&self) -> u64 {
        self.http_unexpected
            + self.http_5xx
            + self.http_transport
            + self.socket_connect_failed
            + self.socket_closed_by_server
            + self.exceptions_unexpected
            + self.calls_stuck
            + self.polls_unanswered
            + self.ice_short_calls
            + self.rounds_errors
    }
}

// ---------------------------------------------------------------------------------------------
// The shared world of one run
// ---------------------------------------------------------------------------------------------

/// Users online now (a user is listed once connected, so others may open rooms with them).
#[derive(Default)]
struct Directory {
    subs: Vec<String>,
    pos: HashMap<String, usize>,
}

impl Directory {
    fn add(&mut self, sub: &str) {
        self.pos.insert(sub.to_string(), self.subs.len());
        self.subs.push(sub.to_string());
    }
    fn remove(&mut self, sub: &str) {
        if let Some(i) = self.pos.remove(sub) {
            self.subs.swap_remove(i);
            if let Some(moved) = self.subs.get(i) {
                self.pos.insert(moved.clone(), i);
            }
        }
    }
    fn contains(&self, sub: &str) -> bool {
        self.pos.contains_key(sub)
    }
    fn pick(&self, rng: &mut StdRng, n: usize, not: &str) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n * 3 {
            if out.len() >= n || self.subs.is_empty() {
                break;
            }
            let s = &self.subs[rng.gen_range(0..self.subs.len())];
            if s != not && !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }
}

/// ICE accounting of one call: candidates each side sent and received, whether a side's
/// socket was cut during it, and whether each side is done with it.
struct Track {
    sent: [u64; 2],
    recv: [u64; 2],
    blip: bool,
    done: [bool; 2],
    done_at: Option<Instant>,
    born: Instant,
}

struct World {
    api: Api,
    addr: SocketAddr,
    o: Opts,
    timing: ServerTiming,
    st: Stats,
    dir: Mutex<Directory>,
    tracks: Mutex<HashMap<String, Track>>,
    next_user: AtomicU64,
    /// Machine-readable lines kept for the end, so the tables print whole.
    machine: Mutex<Vec<String>>,
}

const CALLER: usize = 0;
const CALLEE: usize = 1;

impl World {
    fn later(&self, line: String) {
        self.machine.lock().unwrap().push(line);
    }

    fn track(&self, meet: &str, f: impl FnOnce(&mut Track)) {
        let mut g = self.tracks.lock().unwrap();
        let t = g.entry(meet.to_string()).or_insert_with(|| Track {
            sent: [0; 2],
            recv: [0; 2],
            blip: false,
            done: [false; 2],
            done_at: None,
            born: Instant::now(),
        });
        f(t);
        if t.done == [true, true] && t.done_at.is_none() {
            t.done_at = Some(Instant::now());
        }
    }

    /// Checks calls both sides finished a few seconds ago: without a blip, every candidate one
    /// side sent (and the server did not refuse) must have reached the other.
    fn check_tracks(&self) {
        let now = Instant::now();
        let mut g = self.tracks.lock().unwrap();
        g.retain(|meet, t| {
            let settled = t
                .done_at
                .is_some_and(|d| now.duration_since(d) > Duration::from_secs(5));
            if settled {
                if !t.blip && (t.recv[CALLEE] < t.sent[CALLER] || t.recv[CALLER] < t.sent[CALLEE]) {
                    self.st.inc(|s| &s.ice_short_calls);
                    self.st.sample(format!(
                        "call {meet}: ICE caller→callee {}/{} delivered, callee→caller {}/{}, \
                         no blip",
                        t.recv[CALLEE], t.sent[CALLER], t.recv[CALLER], t.sent[CALLEE]
                    ));
                }
                return false;
            }
            now.duration_since(t.born) < Duration::from_secs(600)
        });
    }
}

fn token(sub: &str, device: &str) -> String {
    let claims = Claims {
        sub: sub.to_string(),
        exp: vchat_signal::auth::now_unix() + 6 * 3600,
        name: Some(format!("Soak {sub}")),
        identifier: None,
        img: None,
        did: Some(device.to_string()),
    };
    mint(SECRET.as_bytes(), &claims)
}

fn sdp(kind: &str) -> Value {
    let mut s =
        String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    s.push_str("a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8\r\n");
    s.push_str("c=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n");
    s.push_str("a=fingerprint:sha-256 ");
    s.push_str(&"AB:".repeat(31));
    s.push_str("CD\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n");
    for pt in 0..12 {
        s.push_str(&format!(
            "a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} minptime=10;useinbandfec=1\r\n"
        ));
    }
    json!({ "type": kind, "sdp": s })
}

/// How a REST request ended.
enum Rest {
    Ok(Value),
    /// 400 where a race makes it expected (the call ended or changed meanwhile, peer busy).
    Race,
    Failed,
}

async fn rest(w: &World, post: bool, path: &str, token: &str, body: Value, race_ok: bool) -> Rest {
    match w.api.raw(post, path, token, &body).await {
        Err(e) => {
            w.st.inc(|s| &s.http_transport);
            w.st.sample(format!("transport: {e}"));
            Rest::Failed
        }
        Ok((status, v)) => {
            let code = v.as_ref().ok().and_then(|v| v["code"].as_u64());
            if status == 200 && code == Some(200) {
                w.st.inc(|s| &s.http_ok);
                return Rest::Ok(v.map(|mut v| v["data"].take()).unwrap_or(Value::Null));
            }
            let what = match &v {
                Ok(v) => v["data"].to_string(),
                Err(e) => format!("(not JSON: {e})"),
            };
            let path = path.split('/').take(2).collect::<Vec<_>>().join("/");
            if status >= 500 || code.is_some_and(|c| c >= 500) {
                w.st.inc(|s| &s.http_5xx);
                w.st.sample(format!("{path}: HTTP {status} {what}"));
                Rest::Failed
            } else if status == 400 && race_ok {
                w.st.inc(|s| &s.http_race_4xx);
                Rest::Race
            } else {
                w.st.inc(|s| &s.http_unexpected);
                w.st.sample(format!("{path}: HTTP {status} {what}"));
                Rest::Failed
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One simulated user
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    Accept,
    Reject,
    Ignore,
}

enum CallSt {
    Idle,
    /// I called; waiting for the callee.
    Calling {
        meet: String,
        cancel_at: Option<Instant>,
        watch: Instant,
    },
    /// I am rung.
    Ringing {
        meet: String,
        answer: Answer,
        act_at: Instant,
        watch: Instant,
    },
    InCall {
        meet: String,
        role: usize,
        end_at: Instant,
    },
}

impl CallSt {
    fn meet(&self) -> Option<&str> {
        match self {
            CallSt::Idle => None,
            CallSt::Calling { meet, .. }
            | CallSt::Ringing { meet, .. }
            | CallSt::InCall { meet, .. } => Some(meet),
        }
    }
}

struct Agent {
    w: Arc<World>,
    sub: String,
    token: String,
    rng: StdRng,
    sio: Option<Sio>,
    /// room id → peer
    rooms: Vec<(String, String)>,
    room_ids: HashSet<String>,
    call: CallSt,
    /// The socket was cut during the current call.
    call_blip: bool,
    next_msg: Instant,
    next_call: Instant,
    next_poll: Instant,
    next_blip: Instant,
    leave_at: Instant,
    poll_sent: Option<Instant>,
    msgs: u64,
}

enum Wake {
    Event(Option<Ev>),
    Timer,
    Stop,
}

impl Agent {
    fn new(w: Arc<World>) -> Agent {
        let n = w.next_user.fetch_add(1, Relaxed);
        let mut rng = StdRng::seed_from_u64(w.o.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let sub = format!("u{n}");
        let device = format!("phone-{n}");
        let now = Instant::now();
        let o = &w.o;
        let jitter = |rng: &mut StdRng, mean: f64| {
            Duration::from_secs_f64(mean * rng.gen_range(0.0..2.0f64).max(0.02))
        };
        let next_msg = now + jitter(&mut rng, o.message_every);
        let next_call = now + jitter(&mut rng, o.call_every);
        let next_poll = now + Duration::from_secs_f64(rng.gen_range(0.5..10.0));
        let next_blip = now + jitter(&mut rng, o.blip_every);
        let leave_at = now + Duration::from_secs_f64(o.lifetime * rng.gen_range(0.4..1.6));
        Agent {
            token: token(&sub, &device),
            w,
            sub,
            rng,
            sio: None,
            rooms: Vec::new(),
            room_ids: HashSet::new(),
            call: CallSt::Idle,
            call_blip: false,
            next_msg,
            next_call,
            next_poll,
            next_blip,
            leave_at,
            poll_sent: None,
            msgs: 0,
        }
    }

    fn jitter(&mut self, mean: f64) -> Duration {
        Duration::from_secs_f64(mean * self.rng.gen_range(0.0..2.0f64).max(0.02))
    }

    fn emit(&self, event: &str, payload: Value) {
        if let Some(s) = &self.sio {
            s.emit(event, &payload);
        }
    }

    async fn rest(&self, post: bool, path: &str, body: Value, race_ok: bool) -> Rest {
        rest(&self.w, post, path, &self.token, body, race_ok).await
    }

    async fn connect(&mut self) -> bool {
        for attempt in 0..3 {
            match Sio::connect(self.w.addr, &self.token).await {
                Ok(s) => {
                    self.w.st.inc(|s| &s.connects);
                    self.sio = Some(s);
                    return true;
                }
                Err(e) => {
                    self.w.st.inc(|s| &s.socket_connect_failed);
                    self.w.st.sample(format!("connect {}: {e}", self.sub));
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        false
    }

    fn learn_room(&mut self, room: &str, peer: &str) {
        if !room.is_empty() && peer != self.sub && self.room_ids.insert(room.to_string()) {
            self.rooms.push((room.to_string(), peer.to_string()));
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let w = self.w.clone();
        w.st.inc(|s| &s.users_started);
        if !self.connect().await {
            w.st.inc(|s| &s.users_left);
            return;
        }
        // What the SDK does at start: the ringing-call poll (which also makes us known).
        self.rest(false, "call/active", Value::Null, false).await;
        let friends = {
            let d = w.dir.lock().unwrap();
            let n = self.rng.gen_range(2..=5);
            d.pick(&mut self.rng, n, &self.sub)
        };
        w.dir.lock().unwrap().add(&self.sub);
        for f in friends {
            if let Rest::Ok(room) = self
                .rest(true, &format!("channel/peer-room/{f}"), json!({}), false)
                .await
            {
                if let Some(r) = room["rId"].as_str() {
                    self.learn_room(r, &f);
                }
            }
        }
        loop {
            if *stop.borrow() || Instant::now() >= self.leave_at {
                break;
            }
            let due = self.next_due();
            let wake = {
                let sio = &mut self.sio;
                tokio::select! {
                    ev = async {
                        match sio.as_mut() {
                            Some(s) => s.events.recv().await,
                            None => std::future::pending().await,
                        }
                    } => Wake::Event(ev),
                    _ = tokio::time::sleep_until(due) => Wake::Timer,
                    _ = stop.changed() => Wake::Stop,
                }
            };
            match wake {
                Wake::Event(Some(ev)) => self.on_event(ev).await,
                Wake::Event(None) => {
                    self.sio = None;
                    self.connect().await;
                }
                Wake::Timer => self.on_timer(&mut stop).await,
                Wake::Stop => break,
            }
        }
        self.leave().await;
    }

    fn next_due(&self) -> Instant {
        let mut t = self
            .next_msg
            .min(self.next_call)
            .min(self.next_poll)
            .min(self.next_blip)
            .min(self.leave_at);
        match &self.call {
            CallSt::Idle => {}
            CallSt::Calling {
                cancel_at, watch, ..
            } => {
                t = t.min(*watch);
                if let Some(c) = cancel_at {
                    t = t.min(*c);
                }
            }
            CallSt::Ringing { act_at, watch, .. } => t = t.min(*act_at).min(*watch),
            CallSt::InCall { end_at, .. } => t = t.min(*end_at),
        }
        t
    }

    fn set_call(&mut self, c: CallSt) {
        if let Some(m) = self.call.meet() {
            if c.meet() != Some(m) {
                let role = match &self.call {
                    CallSt::Calling { .. } => CALLER,
                    CallSt::InCall { role, .. } => *role,
                    _ => CALLEE,
                };
                self.w.track(m, |t| t.done[role] = true);
            }
        }
        if matches!(c, CallSt::Idle) || c.meet() != self.call.meet() {
            self.call_blip = false;
        }
        self.call = c;
    }

    /// The caller's view of how a call ended.
    fn outcome(&self, c: fn(&Stats) -> &AtomicU64) {
        self.w.st.inc(c);
    }

    async fn on_timer(&mut self, stop: &mut watch::Receiver<bool>) {
        let now = Instant::now();
        let o = self.w.o.clone();
        if now >= self.next_blip {
            self.next_blip = now + self.jitter(o.blip_every);
            self.blip(stop).await;
            return;
        }
        if now >= self.next_poll {
            self.next_poll = now + Duration::from_secs(10);
            self.poll();
        }
        if now >= self.next_msg {
            self.next_msg = now + self.jitter(o.message_every);
            self.send_message().await;
        }
        if now >= self.next_call {
            self.next_call = now + self.jitter(o.call_every);
            if matches!(self.call, CallSt::Idle) {
                self.place_call().await;
            }
        }
        self.call_timers().await;
    }

    fn poll(&mut self) {
        if let Some(sent) = self.poll_sent {
            if sent.elapsed() > Duration::from_secs(5) {
                self.w.st.inc(|s| &s.polls_unanswered);
                self.w.st.sample(format!(
                    "{}: v1MyOnline unanswered after {:.1} s",
                    self.sub,
                    sent.elapsed().as_secs_f64()
                ));
            }
        }
        let list: Vec<Value> = self
            .rooms
            .iter()
            .take(20)
            .map(|(r, p)| json!({ "peerId": p, "extra": r }))
            .collect();
        self.emit("v1MyOnline", Value::Array(list));
        self.poll_sent = Some(Instant::now());
        self.w.st.inc(|s| &s.polls_sent);
    }

    async fn send_message(&mut self) {
        if self.rooms.is_empty() {
            return;
        }
        let (room, _) = self.rooms[self.rng.gen_range(0..self.rooms.len())].clone();
        self.msgs += 1;
        self.emit(
            "v1RoomStatusChange",
            json!({ "roomId": room, "status": "typing" }),
        );
        let body = json!({
            "content": format!("soak message {} from {}", self.msgs, self.sub),
            "localId": format!("{}-{}-{}", self.sub, self.msgs, self.rng.gen::<u32>()),
            "messageType": "text",
        });
        if let Rest::Ok(_) = self
            .rest(true, &format!("channel/{room}/message/"), body, false)
            .await
        {
            self.w.st.inc(|s| &s.messages_sent);
        }
        self.emit(
            "v1RoomStatusChange",
            json!({ "roomId": room, "status": "stop" }),
        );
    }

    async fn place_call(&mut self) {
        if self.rooms.is_empty() {
            return;
        }
        // Mostly someone online, as people do; sometimes whoever (who may be gone: the call
        // then rings nobody and is canceled or times out).
        let mut pick = self.rng.gen_range(0..self.rooms.len());
        for _ in 0..3 {
            if self.w.dir.lock().unwrap().contains(&self.rooms[pick].1) {
                break;
            }
            pick = self.rng.gen_range(0..self.rooms.len());
        }
        let room = self.rooms[pick].0.clone();
        let body = json!({ "payload": sdp("offer"), "withVideo": self.rng.gen_bool(0.3) });
        match self
            .rest(true, &format!("call/create/{room}"), body, true)
            .await
        {
            Rest::Ok(d) => {
                let Some(meet) = d["meetId"].as_str().map(str::to_string) else {
                    self.w.st.inc(|s| &s.http_unexpected);
                    self.w.st.sample(format!("call/create: no meetId in {d}"));
                    return;
                };
                self.w.st.inc(|s| &s.calls_created);
                self.w.track(&meet, |_| {});
                let now = Instant::now();
                let cancel_at = self
                    .rng
                    .gen_bool(0.6)
                    .then(|| now + Duration::from_secs_f64(self.rng.gen_range(4.0..12.0)));
                let t = self.w.timing;
                self.set_call(CallSt::Calling {
                    meet,
                    cancel_at,
                    watch: now + t.ring_timeout + t.caller_grace + Duration::from_secs(20),
                });
            }
            Rest::Race => self.w.st.inc(|s| &s.calls_busy),
            Rest::Failed => {}
        }
    }

    fn send_ice(&mut self, meet: &str, role: usize) {
        let n = self.rng.gen_range(2..=6u64);
        for i in 0..n {
            let cand = format!(
                "candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host generation 0 ufrag abcd",
                40000 + i
            );
            self.emit(
                "v1IceCandidate",
                json!({ "meetId": meet, "data": { "candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0 } }),
            );
        }
        self.w.st.add(|s| &s.ice_sent, n);
        self.w.track(meet, |t| t.sent[role] += n);
    }

    fn talk_time(&mut self) -> Instant {
        Instant::now() + Duration::from_secs_f64(self.rng.gen_range(3.0..20.0))
    }

    async fn call_timers(&mut self) {
        let now = Instant::now();
        match &mut self.call {
            CallSt::Idle => {}
            CallSt::Calling {
                meet,
                cancel_at,
                watch,
            } => {
                let meet = meet.clone();
                if cancel_at.is_some_and(|c| now >= c) {
                    *cancel_at = None;
                    match self
                        .rest(true, &format!("call/cancel/{meet}"), json!({}), true)
                        .await
                    {
                        Rest::Ok(_) => {
                            self.outcome(|s| &s.calls_canceled);
                            self.set_call(CallSt::Idle);
                        }
                        // Accepted, rejected or timed out meanwhile: its event is on its way.
                        Rest::Race => {}
                        Rest::Failed => self.set_call(CallSt::Idle),
                    }
                } else if now >= *watch {
                    self.stuck(&meet, "caller");
                }
            }
            CallSt::Ringing {
                meet,
                answer,
                act_at,
                watch,
            } => {
                let meet = meet.clone();
                if now >= *act_at && *answer != Answer::Ignore {
                    let answer = *answer;
                    *act_at = *watch;
                    if answer == Answer::Accept {
                        let body = json!({ "payload": sdp("answer") });
                        match self
                            .rest(true, &format!("call/accept/{meet}"), body, true)
                            .await
                        {
                            Rest::Ok(_) => {
                                let end_at = self.talk_time();
                                self.set_call(CallSt::InCall {
                                    meet: meet.clone(),
                                    role: CALLEE,
                                    end_at,
                                });
                                self.send_ice(&meet, CALLEE);
                            }
                            _ => self.set_call(CallSt::Idle),
                        }
                    } else {
                        self.rest(true, &format!("call/reject/{meet}"), json!({}), true)
                            .await;
                        self.set_call(CallSt::Idle);
                    }
                } else if now >= *watch {
                    self.stuck(&meet, "callee");
                }
            }
            CallSt::InCall { meet, role, end_at } => {
                if now >= *end_at {
                    let (meet, role) = (meet.clone(), *role);
                    // Both end routes the SDK uses.
                    let path = if self.rng.gen_bool(0.5) {
                        format!("call/end/{meet}")
                    } else {
                        format!("call/end/v2/{meet}")
                    };
                    let r = self.rest(true, &path, json!({}), true).await;
                    if role == CALLER && !matches!(r, Rest::Failed) {
                        self.outcome(|s| &s.calls_answered);
                    }
                    self.set_call(CallSt::Idle);
                }
            }
        }
    }

    /// No ending event came for a call in time.
    fn stuck(&mut self, meet: &str, role: &str) {
        if self.call_blip {
            // Events of a call can be lost past a grace: not an error.
            self.outcome(|s| &s.calls_dropped);
        } else {
            self.w.st.inc(|s| &s.calls_stuck);
            self.w.st.sample(format!(
                "{} ({role}): no ending event for call {meet}",
                self.sub
            ));
        }
        self.set_call(CallSt::Idle);
    }

    async fn on_event(&mut self, ev: Ev) {
        let p = &ev.payload;
        let meet = p["meetId"].as_str().unwrap_or("").to_string();
        let mine = self.call.meet() == Some(meet.as_str());
        match ev.name.as_str() {
            "v1OnNewCall" => {
                if mine {
                    return; // rung again after a reconnect
                }
                let room = p["roomId"].as_str().unwrap_or("");
                let peer = p["userData"]["_id"]
                    .as_str()
                    .or(p["userData"]["id"].as_str())
                    .unwrap_or("");
                let (room, peer) = (room.to_string(), peer.to_string());
                self.learn_room(&room, &peer);
                let r: f64 = self.rng.gen();
                let answer = if r < 0.65 {
                    Answer::Accept
                } else if r < 0.8 {
                    Answer::Reject
                } else {
                    Answer::Ignore
                };
                let now = Instant::now();
                let watch = now + self.w.timing.ring_timeout + Duration::from_secs(20);
                // Who ignores the call lets it ring: nothing to do until the watch.
                let act_at = match answer {
                    Answer::Ignore => watch,
                    _ => now + Duration::from_secs_f64(self.rng.gen_range(0.5..3.0)),
                };
                self.set_call(CallSt::Ringing {
                    meet,
                    answer,
                    act_at,
                    watch,
                });
            }
            "v1OnCallAccepted" if mine => {
                if let CallSt::Calling { .. } = self.call {
                    let end_at = self.talk_time();
                    self.set_call(CallSt::InCall {
                        meet: meet.clone(),
                        role: CALLER,
                        end_at,
                    });
                    self.send_ice(&meet, CALLER);
                }
            }
            "v1OnCallRejected" | "v1OnCallCanceled" | "v1OnCallTimeout" | "v1OnCallEnded"
                if mine =>
            {
                if let CallSt::Calling { .. } | CallSt::InCall { role: CALLER, .. } = self.call {
                    let in_call = matches!(self.call, CallSt::InCall { .. });
                    self.outcome(match ev.name.as_str() {
                        "v1OnCallRejected" => |s| &s.calls_rejected,
                        "v1OnCallTimeout" => |s| &s.calls_timeout,
                        "v1OnCallEnded" if in_call => |s| &s.calls_answered,
                        "v1OnCallCanceled" => |s| &s.calls_canceled,
                        _ => |s| &s.calls_dropped,
                    });
                }
                self.set_call(CallSt::Idle);
            }
            "v1OnIceCandidate" => {
                self.w.st.inc(|s| &s.ice_received);
                let role = match self.call {
                    CallSt::InCall { role, .. } if mine => role,
                    CallSt::Calling { .. } if mine => CALLER,
                    _ => CALLEE,
                };
                self.w.track(&meet, |t| t.recv[role] += 1);
            }
            "v1OnNewMessage" => {
                let room = p["rId"].as_str().unwrap_or("").to_string();
                let sender = p["sId"].as_str().unwrap_or("").to_string();
                if sender != self.sub {
                    self.w.st.inc(|s| &s.messages_received);
                    self.learn_room(&room, &sender);
                    self.emit("v1DeliverChatRoom", json!({ "roomId": room }));
                    if self.rng.gen_bool(0.5) {
                        self.emit("v1EnterChatRoom", json!({ "roomId": room }));
                    }
                }
            }
            "v1OnDeliverChatRoom" | "v1OnEnterChatRoom" => self.w.st.inc(|s| &s.receipts_received),
            "v1OnRoomStatusChange" => self.w.st.inc(|s| &s.typing_received),
            "v1OnMyOnline" => {
                self.poll_sent = None;
                self.w.st.inc(|s| &s.polls_answered);
            }
            "v1OnException" => {
                let e = p["error"].as_str().unwrap_or("").to_string();
                // ICE racing the call's end is refused: expected.
                if e.starts_with("v1IceCandidate") {
                    self.w.st.inc(|s| &s.exceptions_expected);
                    // A refused candidate was counted as sent: leave the call out of the check.
                    if let Some(m) = e.split('"').nth(1) {
                        self.w.track(m, |t| t.blip = true);
                    }
                } else {
                    self.w.st.inc(|s| &s.exceptions_unexpected);
                    self.w.st.sample(format!("{}: v1OnException {e}", self.sub));
                }
            }
            CLOSED => {
                self.w.st.inc(|s| &s.socket_closed_by_server);
                self.w
                    .st
                    .sample(format!("{}: the server closed the socket", self.sub));
                self.sio = None;
                if self.call.meet().is_some() {
                    self.call_blip = true;
                }
                self.connect().await;
            }
            _ => {}
        }
    }

    /// The network drops: the socket is cut (no goodbye), and the same device comes back after
    /// a moment, or after the server's grace is over.
    async fn blip(&mut self, stop: &mut watch::Receiver<bool>) {
        let t = self.w.timing;
        let long = self.rng.gen_bool(self.w.o.long_blips);
        let away = if long {
            self.w.st.inc(|s| &s.blips_long);
            t.reconnect_grace.max(t.caller_grace) + Duration::from_secs(3)
        } else {
            self.w.st.inc(|s| &s.blips_short);
            Duration::from_secs_f64(self.rng.gen_range(0.3..3.0))
        };
        if let Some(m) = self.call.meet() {
            self.call_blip = true;
            self.w.track(m, |t| t.blip = true);
        }
        drop(self.sio.take());
        self.poll_sent = None;
        tokio::select! {
            _ = tokio::time::sleep(away) => {}
            _ = stop.changed() => {}
        }
        if !self.connect().await {
            return;
        }
        // The SDK polls for a ringing call when it comes back.
        self.rest(false, "call/active", Value::Null, false).await;
        match &self.call {
            // A ringing callee is rung again if the call still rings.
            CallSt::Ringing { .. } => self.set_call(CallSt::Idle),
            CallSt::InCall { meet, role, .. } if long => {
                let (meet, role) = (meet.clone(), *role);
                self.rest(true, &format!("call/end/{meet}"), json!({}), true)
                    .await;
                if role == CALLER {
                    self.outcome(|s| &s.calls_dropped);
                }
                self.set_call(CallSt::Idle);
            }
            CallSt::Calling { meet, .. } if away > t.caller_grace => {
                let meet = meet.clone();
                self.rest(true, &format!("call/cancel/{meet}"), json!({}), true)
                    .await;
                self.outcome(|s| &s.calls_dropped);
                self.set_call(CallSt::Idle);
            }
            _ => {}
        }
    }

    /// The user signs out: their call is ended, the socket closed cleanly.
    async fn leave(&mut self) {
        match &self.call {
            CallSt::Idle => {}
            CallSt::Calling { meet, .. } => {
                let meet = meet.clone();
                if let Rest::Ok(_) = self
                    .rest(true, &format!("call/cancel/{meet}"), json!({}), true)
                    .await
                {
                    self.outcome(|s| &s.calls_canceled);
                } else {
                    self.outcome(|s| &s.calls_dropped);
                }
            }
            CallSt::Ringing { meet, .. } => {
                let meet = meet.clone();
                self.rest(true, &format!("call/reject/{meet}"), json!({}), true)
                    .await;
            }
            CallSt::InCall { meet, role, .. } => {
                let (meet, role) = (meet.clone(), *role);
                self.rest(true, &format!("call/end/{meet}"), json!({}), true)
                    .await;
                if role == CALLER {
                    self.outcome(|s| &s.calls_answered);
                }
            }
        }
        self.set_call(CallSt::Idle);
        self.w.dir.lock().unwrap().remove(&self.sub);
        if let Some(s) = self.sio.take() {
            s.close().await;
        }
        self.w.st.inc(|s| &s.users_left);
    }
}

// ---------------------------------------------------------------------------------------------
// Server readings
// ---------------------------------------------------------------------------------------------

#[derive(Default, Clone)]
struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0.0) as u64
    }
    /// Every series of a family, summed (e.g. all reasons of `vchat_limited_total`).
    fn sum(&self, family: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == family || k.starts_with(&format!("{family}{{")))
            .map(|(_, v)| *v)
            .sum::<f64>() as u64
    }
}

async fn metrics(http: &reqwest::Client, addr: SocketAddr) -> Result<Metrics, String> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let mut m = HashMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = l.rsplit_once(' ') {
            if let Ok(v) = v.parse::<f64>() {
                m.insert(k.to_string(), v);
            }
        }
    }
    Ok(Metrics(m))
}

/// Refusals the server counted: every limit reason, refused sockets, refused TURN allocations.
fn refusals(m: &Metrics) -> u64 {
    m.sum("vchat_limited_total") + m.get("vchat_sockets_refused_total")
}

fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(&pid.to_string(), "VmRSS:").map_or(f64::NAN, |k| k / 1024.0)
}

/// Samples the server's RSS every second, keeping the peak.
struct RssWatch {
    peak: Arc<Mutex<f64>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let peak = Arc::new(Mutex::new(0.0f64));
        let p = peak.clone();
        tokio::spawn(async move {
            loop {
                let r = rss_mib(pid);
                if r.is_finite() {
                    let mut g = p.lock().unwrap();
                    *g = g.max(r);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        RssWatch { peak }
    }
    fn peak(&self) -> f64 {
        *self.peak.lock().unwrap()
    }
}

/// Runs one gdb command in the server (attached for a moment; the server is stopped while
/// gdb is attached). A failure is told on stderr.
async fn gdb_call(pid: u32, cmd: &str) -> bool {
    let run = tokio::process::Command::new("gdb")
        // The program from /proc: it still reads when the binary was rebuilt meanwhile.
        .args(["-batch", "-nx", &format!("/proc/{pid}/exe")])
        .args(["-p", &pid.to_string(), "-ex", cmd])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let why = match tokio::time::timeout(Duration::from_secs(120), run).await {
        Ok(Ok(out)) if out.status.success() => return true,
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            format!("{}: {}", out.status, err.lines().last().unwrap_or(""))
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 120 s".into(),
    };
    eprintln!("warning: gdb {cmd:?} in pid {pid} failed: {why}");
    false
}

fn have_gdb() -> bool {
    std::process::Command::new("gdb")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The server's glibc heap: (MiB held from the system, MiB in use by live allocations), from
/// `malloc_stats()`, which gdb makes the server print on its stderr (drained by us). RSS
/// minus "in use" is memory the allocator keeps although it is free.
async fn heap(proc: &Proc, enabled: bool) -> Option<(f64, f64)> {
    if !enabled {
        return None;
    }
    for _attempt in 0..2 {
        let before = proc.log.lock().unwrap().malloc_reads;
        if !gdb_call(proc.target.pid, "call (void)malloc_stats()").await {
            continue;
        }
        for _ in 0..100 {
            {
                let g = proc.log.lock().unwrap();
                if g.malloc_reads > before {
                    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                    return g.malloc_total.map(|(sys, used)| (mib(sys), mib(used)));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("warning: no malloc_stats() report on the server's stderr");
    }
    None
}

fn opt_mib(v: Option<f64>) -> String {
    v.map_or("n/a".into(), mib)
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for (n, r) in rows.iter().enumerate() {
        println!("{}", table_line(r, &w));
        if n == 0 {
            let dashes: Vec<String> = w.iter().map(|&k| "-".repeat(k)).collect();
            println!("|-{}-|", dashes.join("-|-"));
        }
    }
}

fn table_line(r: &[String], w: &[usize]) -> String {
    let cells: Vec<String> = r
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let pad = w[i].saturating_sub(c.chars().count());
            if i == 0 {
                format!("{c}{}", " ".repeat(pad))
            } else {
                format!("{}{c}", " ".repeat(pad))
            }
        })
        .collect();
    format!("| {} |", cells.join(" | "))
}

fn kv(key: &str, v: impl std::fmt::Display) {
    println!("soak {key}={v}");
}

fn mib(v: f64) -> String {
    format!("{v:.1}")
}

/// Waits until the server holds no sockets, calls or outboxes. Returns the seconds it took and
/// the last reading.
async fn wait_quiet(
    http: &reqwest::Client,
    addr: SocketAddr,
    limit: Duration,
) -> (Option<f64>, Metrics) {
    let t0 = Instant::now();
    let mut last = Metrics::default();
    while t0.elapsed() < limit {
        if let Ok(m) = metrics(http, addr).await {
            let quiet = m.get("vchat_sockets") == 0
                && m.get("vchat_live_calls") == 0
                && m.get("vchat_busy_users") == 0
                && m.get("vchat_outbox_devices") == 0;
            last = m;
            if quiet {
                return (Some(t0.elapsed().as_secs_f64()), last);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (None, last)
}

/// RSS once a second for `secs`: (min, median, max, last).
async fn settle_rss(pid: u32, secs: u64) -> (f64, f64, f64, f64) {
    let mut v = Vec::new();
    for i in 0..secs.max(1) {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        v.push(rss_mib(pid));
    }
    let last = *v.last().unwrap();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1], last)
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn main() {
    let opts = parse_opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let data_dir = support::server::data_dir("soak");
    let outcome = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            r = run(opts, data_dir.clone()) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
        }
    });
    drop(rt);
    let _ = std::fs::remove_dir_all(&data_dir);
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("soak FAILED (see above)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("soak failed: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs the soak; `Ok(false)` when it saw a 5xx, a server crash or a server that did not drain.
async fn run(o: Opts, data_dir: PathBuf) -> Result<bool, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        // Idle keep-alive connections close soon, so the server's memory after the load is
        // not held by our own connection pool.
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    if o.build {
        support::server::build_release()?;
    }
    let vo = VchatOpts {
        bin: o.vchat_bin.clone(),
        build_if_missing: true,
        limits_off: true,
        env: &o.env,
        purpose: "soak",
    };
    let mut proc = start_vchat(&vo, &data_dir, &http).await?;
    let t = proc.target.clone();
    let timing = ServerTiming::of(&o);
    println!(
        "vchat-signal pid {} on {} (data {}), limits off: {}",
        t.pid,
        t.addr,
        data_dir.display(),
        limits_off_line()
    );
    if !o.env.is_empty() {
        let env: Vec<String> = o.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("extra server environment: {}", env.join(" "));
    }
    println!(
        "server timing: ring timeout {} s, caller grace {} s, reconnect grace {} s; seed {}; \
         load average {}; {} CPUs",
        timing.ring_timeout.as_secs_f64(),
        timing.caller_grace.as_secs_f64(),
        timing.reconnect_grace.as_secs_f64(),
        o.seed,
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Baseline: the idle server, settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, baseline, _, _) = settle_rss(t.pid, 3).await;
    let probe = o.gdb && have_gdb();
    let heap0 = heap(&proc, probe).await;
    if let Some((sys, used)) = heap0 {
        println!(
            "glibc heap at baseline: {} MiB in use, {} MiB held from the system",
            mib(used),
            mib(sys)
        );
    }
    let watch = RssWatch::start(t.pid);
    let world = Arc::new(World {
        api: t.api.clone(),
        addr: t.addr,
        o: o.clone(),
        timing,
        st: Stats::default(),
        dir: Mutex::new(Directory::default()),
        tracks: Mutex::new(HashMap::new()),
        next_user: AtomicU64::new(0),
        machine: Mutex::new(Vec::new()),
    });
    let cpu0 = proc_cpu_secs(&t.pid.to_string());
    let began = Instant::now();
    let (crashed, mode_rows) = match o.rounds {
        Some(r) => rounds(&world, &mut proc, &http, baseline, heap0, probe, r).await,
        None => mixed(&world, &mut proc, &http, baseline).await,
    };
    let load_secs = began.elapsed().as_secs_f64();

    // After the load: every client is gone (mixed mode closed them); wait for the server to
    // drain, then watch RSS settle.
    let (drained, last) = if crashed {
        (None, Metrics::default())
    } else {
        wait_quiet(&http, t.addr, Duration::from_secs(120)).await
    };
    let (after_min, after_med, after_max, after) = if crashed {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    } else {
        println!(
            "load stopped; server drained in {}; sampling RSS for {} s ...",
            drained.map_or("— (not within 120 s)".to_string(), |s| format!(
                "{s:.1} s"
            )),
            o.settle
        );
        settle_rss(t.pid, o.settle).await
    };
    // Live heap against what the allocator holds, then what giving free pages back leaves.
    let heap1 = if crashed {
        None
    } else {
        heap(&proc, probe).await
    };
    let trimmed = if heap1.is_some() && gdb_call(t.pid, "call (int)malloc_trim(0)").await {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some(rss_mib(t.pid))
    } else {
        None
    };
    let m = metrics(&http, t.addr).await.unwrap_or(last);
    let pid = t.pid.to_string();
    let peak = watch.peak().max(
        proc_status_kib(&pid, "VmHWM:")
            .map(|k| k / 1024.0)
            .unwrap_or(0.0),
    );
    let server_cpu = proc_cpu_secs(&pid) - cpu0;
    let client_cpu = proc_cpu_secs("self");
    let exited = proc.child.try_wait().ok().flatten();
    let crashed = crashed || exited.is_some();
    let log = proc.log.lock().unwrap();
    let s = world.st.snap();
    let retained = after - baseline;
    let returned = after.is_finite() && retained <= o.tolerance_mib;

    println!();
    println!("summary");
    let mut rows: Vec<Vec<String>> = vec![vec!["metric".into(), "value".into()]];
    let mut row = |k: &str, v: String| rows.push(vec![k.to_string(), v]);
    row("mode", mode_rows.0.clone());
    row("load time (s)", format!("{load_secs:.0}"));
    row("RSS baseline, idle before load (MiB)", mib(baseline));
    row("RSS peak (MiB)", mib(peak));
    row(
        &format!("RSS after load, {} s: min / median / max (MiB)", o.settle),
        format!(
            "{} / {} / {}",
            mib(after_min),
            mib(after_med),
            mib(after_max)
        ),
    );
    row("RSS after load, last sample (MiB)", mib(after));
    row(
        "glibc heap in use: baseline / after load (MiB)",
        format!(
            "{} / {}",
            opt_mib(heap0.map(|h| h.1)),
            opt_mib(heap1.map(|h| h.1))
        ),
    );
    row(
        "glibc heap held from the system after load (MiB)",
        opt_mib(heap1.map(|h| h.0)),
    );
    row(
        "RSS after the allocator gives free pages back, malloc_trim(0) (MiB)",
        opt_mib(trimmed),
    );
    row(
        "RSS kept above baseline (MiB)",
        format!(
            "{:.1} ({:.0}% of the peak's growth)",
            retained,
            100.0 * retained / (peak - baseline).max(0.001)
        ),
    );
    row(
        &format!("returned to baseline (±{} MiB)", o.tolerance_mib),
        if returned { "yes" } else { "no" }.into(),
    );
    let diagnosis = diagnose(returned, baseline, after, heap0, heap1, o.tolerance_mib);
    row("diagnosis", diagnosis.clone());
    row(
        "server drained (sockets, calls, outboxes 0)",
        drained.map_or("no".into(), |d| format!("yes, {d:.1} s")),
    );
    row(
        "server at the end: sockets / live calls / busy / outbox devices / events",
        format!(
            "{} / {} / {} / {} / {}",
            m.get("vchat_sockets"),
            m.get("vchat_live_calls"),
            m.get("vchat_busy_users"),
            m.get("vchat_outbox_devices"),
            m.get("vchat_outbox_events")
        ),
    );
    row("distinct users", s.users_started.to_string());
    for (k, v) in mode_rows.1 {
        row(&k, v);
    }
    row(
        "server: calls created / ended (answered+finished, rejected, canceled, missed, ...)",
        format!(
            "{} / {}",
            m.get("vchat_calls_created_total"),
            m.sum("vchat_calls_ended_total")
        ),
    );
    row(
        "server: messages / socket events / ICE relayed / outbox kept / outbox dropped",
        format!(
            "{} / {} / {} / {} / {}",
            m.get("vchat_messages_sent_total"),
            m.get("vchat_socket_events_total"),
            m.get("vchat_ice_relayed_total"),
            m.get("vchat_outbox_kept_total"),
            m.get("vchat_outbox_dropped_total")
        ),
    );
    row(
        "server refusals (limits, refused sockets)",
        refusals(&m).to_string(),
    );
    row(
        "client errors: unexpected HTTP / 5xx / transport",
        format!(
            "{} / {} / {}",
            s.http_unexpected, s.http_5xx, s.http_transport
        ),
    );
    row(
        "client errors: connect failed / closed by server / unexpected v1OnException",
        format!(
            "{} / {} / {}",
            s.socket_connect_failed, s.socket_closed_by_server, s.exceptions_unexpected
        ),
    );
    row(
        "client errors: calls with no ending event / polls unanswered / calls short of ICE",
        format!(
            "{} / {} / {}",
            s.calls_stuck, s.polls_unanswered, s.ice_short_calls
        ),
    );
    row("client errors (all)", s.errors().to_string());
    row(
        "expected races: 400 on a call action / ICE after the end",
        format!("{} / {}", s.http_race_4xx, s.exceptions_expected),
    );
    row(
        "server CPU / client CPU (s)",
        format!("{server_cpu:.1} / {client_cpu:.1}"),
    );
    row(
        "server log lines (warn+) / panics",
        format!("{} / {}", log.lines, log.panics),
    );
    row(
        "server crashed",
        match exited {
            Some(st) => format!("yes: {st}"),
            None if crashed => "yes".into(),
            None => "no".into(),
        },
    );
    table(&rows);
    if log.lines > 0 {
        println!("server log tail:\n    {}", log.last.join("\n    "));
    }
    let samples = world.st.samples.lock().unwrap();
    if !samples.is_empty() {
        println!("error samples (first {}):", samples.len());
        for e in samples.iter() {
            println!("    - {e}");
        }
    }
    println!();
    for l in world.machine.lock().unwrap().iter() {
        println!("{l}");
    }
    kv("mode", &mode_rows.0);
    kv("load_secs", format!("{load_secs:.0}"));
    kv("rss_baseline_mib", mib(baseline));
    kv("rss_peak_mib", mib(peak));
    kv("rss_after_mib", mib(after));
    kv("rss_after_min_mib", mib(after_min));
    kv("rss_after_median_mib", mib(after_med));
    kv("rss_after_max_mib", mib(after_max));
    kv("rss_retained_mib", format!("{retained:.1}"));
    kv("returned_to_baseline", returned);
    kv("heap_in_use_baseline_mib", opt_mib(heap0.map(|h| h.1)));
    kv("heap_in_use_after_mib", opt_mib(heap1.map(|h| h.1)));
    kv("heap_system_after_mib", opt_mib(heap1.map(|h| h.0)));
    kv("rss_after_malloc_trim_mib", opt_mib(trimmed));
    kv("diagnosis", diagnosis.replace(' ', "_"));
    kv(
        "drained_secs",
        drained.map_or("none".into(), |d| format!("{d:.1}")),
    );
    for (k, v) in s.pairs() {
        kv(k, v);
    }
    kv("calls_completed", s.calls_done());
    kv("client_errors", s.errors());
    kv("server_refusals", refusals(&m));
    kv("server_calls_created", m.get("vchat_calls_created_total"));
    kv("server_messages", m.get("vchat_messages_sent_total"));
    kv("server_cpu_secs", format!("{server_cpu:.1}"));
    kv("client_cpu_secs", format!("{client_cpu:.1}"));
    kv("server_log_lines", log.lines);
    kv("server_panics", log.panics);
    kv("server_crashed", crashed);
    let ok = !crashed && s.http_5xx == 0 && log.panics == 0 && drained.is_some();
    kv("ok", ok);
    Ok(ok)
}

type ModeRows = (String, Vec<(String, String)>);

/// Why RSS did or did not come back: live allocations (a leak, or a map that keeps its users)
/// or free memory the allocator keeps.
fn diagnose(
    returned: bool,
    baseline: f64,
    after: f64,
    heap0: Option<(f64, f64)>,
    heap1: Option<(f64, f64)>,
    tolerance: f64,
) -> String {
    if returned {
        return "RSS back at baseline".into();
    }
    let (Some((_, used0)), Some((_, used1))) = (heap0, heap1) else {
        return "no heap figures (gdb missing or --no-gdb): cannot tell a leak from the \
                allocator keeping freed pages"
            .into();
    };
    let live = used1 - used0;
    let kept = (after - baseline) - live;
    if live <= tolerance {
        format!(
            "allocator keeps freed pages: live heap +{live:.1} MiB only, {kept:.1} MiB of RSS \
             is free memory glibc has not returned"
        )
    } else {
        format!(
            "live heap grew by {live:.1} MiB (allocations still held: a leak or an unbounded \
             map), plus {kept:.1} MiB free memory glibc keeps"
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Mixed load
// ---------------------------------------------------------------------------------------------

async fn mixed(
    w: &Arc<World>,
    proc: &mut Proc,
    http: &reqwest::Client,
    baseline: f64,
) -> (bool, ModeRows) {
    let o = &w.o;
    let t = proc.target.clone();
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    println!(
        "mixed load: {} users at once for {:.1} min (lifetime ~{} s, a call every ~{} s, a \
         message every ~{} s, a blip every ~{} s, {:.0}% past the grace); RSS baseline {} MiB",
        o.users,
        o.minutes,
        o.lifetime,
        o.call_every,
        o.message_every,
        o.blip_every,
        o.long_blips * 100.0,
        mib(baseline)
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let pop = {
        let (w, stop) = (w.clone(), stop_rx.clone());
        tokio::spawn(async move { population(w, stop, total).await })
    };
    let header: Vec<String> = [
        "elapsed",
        "RSS MiB",
        "live calls",
        "busy",
        "sockets",
        "outbox dev/ev",
        "users",
        "calls done",
        "msgs sent",
        "errors",
        "refusals",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let widths: Vec<usize> = vec![7, 7, 10, 5, 7, 13, 6, 10, 9, 6, 8];
    println!();
    println!("{}", table_line(&header, &widths));
    let dashes: Vec<String> = widths.iter().map(|&k| "-".repeat(k)).collect();
    println!("|-{}-|", dashes.join("-|-"));
    let began = Instant::now();
    let mut crashed = false;
    let mut lines: Vec<(f64, f64, Metrics, Snap)> = Vec::new();
    loop {
        let next = began + Duration::from_secs(o.interval * (lines.len() as u64 + 1));
        tokio::time::sleep_until(next.min(began + total)).await;
        w.check_tracks();
        let elapsed = began.elapsed().as_secs_f64();
        if let Ok(Some(st)) = proc.child.try_wait() {
            println!("SERVER EXITED at {elapsed:.0} s: {st}");
            crashed = true;
            break;
        }
        let rss = rss_mib(t.pid);
        let m = metrics(http, t.addr).await.unwrap_or_default();
        let s = w.st.snap();
        let active = s.users_started - s.users_left;
        let cells = vec![
            format!("{elapsed:.0} s"),
            mib(rss),
            m.get("vchat_live_calls").to_string(),
            m.get("vchat_busy_users").to_string(),
            m.get("vchat_sockets").to_string(),
            format!(
                "{}/{}",
                m.get("vchat_outbox_devices"),
                m.get("vchat_outbox_events")
            ),
            active.to_string(),
            s.calls_done().to_string(),
            s.messages_sent.to_string(),
            s.errors().to_string(),
            refusals(&m).to_string(),
        ];
        println!("{}", table_line(&cells, &widths));
        w.later(format!(
            "soak tick t={elapsed:.0} rss_mib={} live_calls={} busy_users={} sockets={} \
             outbox_devices={} outbox_events={} users={active} distinct_users={} \
             calls_completed={} messages_sent={} client_errors={} http_5xx={} \
             server_refusals={}",
            mib(rss),
            m.get("vchat_live_calls"),
            m.get("vchat_busy_users"),
            m.get("vchat_sockets"),
            m.get("vchat_outbox_devices"),
            m.get("vchat_outbox_events"),
            s.users_started,
            s.calls_done(),
            s.messages_sent,
            s.errors(),
            s.http_5xx,
            refusals(&m)
        ));
        lines.push((elapsed, rss, m, s));
        if began.elapsed() >= total {
            break;
        }
    }
    let _ = stop_tx.send(true);
    println!("stopping: every user ends its call and closes its socket ...");
    let _ = tokio::time::timeout(Duration::from_secs(90), pop).await;
    w.check_tracks();
    let s = w.st.snap();
    let rss: Vec<f64> = lines.iter().map(|l| l.1).collect();
    let max_of = |f: &dyn Fn(&Metrics) -> u64| lines.iter().map(|l| f(&l.2)).max().unwrap_or(0);
    let mut r = vec![
        (
            "per interval: RSS min / max (MiB)".to_string(),
            format!(
                "{} / {}",
                mib(rss.iter().copied().fold(f64::INFINITY, f64::min)),
                mib(rss.iter().copied().fold(0.0, f64::max))
            ),
        ),
        (
            "per interval: max live calls / busy users / sockets".into(),
            format!(
                "{} / {} / {}",
                max_of(&|m| m.get("vchat_live_calls")),
                max_of(&|m| m.get("vchat_busy_users")),
                max_of(&|m| m.get("vchat_sockets"))
            ),
        ),
        (
            "per interval: max outbox devices / events".into(),
            format!(
                "{} / {}",
                max_of(&|m| m.get("vchat_outbox_devices")),
                max_of(&|m| m.get("vchat_outbox_events"))
            ),
        ),
    ];
    if rss.len() >= 4 {
        // Growth over the second half of the load, when the population is steady.
        let half = rss.len() / 2;
        r.push((
            "RSS in the second half of the load: first / last (MiB)".into(),
            format!("{} / {}", mib(rss[half]), mib(rss[rss.len() - 1])),
        ));
    }
    r.extend([
        (
            "calls: created / busy (peer in a call)".into(),
            format!("{} / {}", s.calls_created, s.calls_busy),
        ),
        (
            "calls completed: answered / rejected / canceled / timeout / dropped".into(),
            format!(
                "{} = {} / {} / {} / {} / {}",
                s.calls_done(),
                s.calls_answered,
                s.calls_rejected,
                s.calls_canceled,
                s.calls_timeout,
                s.calls_dropped
            ),
        ),
        (
            "ICE candidates sent / received".into(),
            format!("{} / {}", s.ice_sent, s.ice_received),
        ),
        (
            "messages sent / received; receipts; typing events".into(),
            format!(
                "{} / {}; {}; {}",
                s.messages_sent, s.messages_received, s.receipts_received, s.typing_received
            ),
        ),
        (
            "presence polls sent / answered".into(),
            format!("{} / {}", s.polls_sent, s.polls_answered),
        ),
        (
            "connects / blips within grace / blips past grace".into(),
            format!("{} / {} / {}", s.connects, s.blips_short, s.blips_long),
        ),
        ("HTTP requests answered 200".into(), s.http_ok.to_string()),
    ]);
    (crashed, ("mixed".into(), r))
}

/// Keeps `users` users online: ramps them up, replaces each one that leaves, and on stop waits
/// for all of them to sign out.
async fn population(w: Arc<World>, stop: watch::Receiver<bool>, total: Duration) {
    let mut set = JoinSet::new();
    let ramp = Duration::from_secs(20).min(total / 4);
    let step = ramp / w.o.users as u32;
    for _ in 0..w.o.users {
        if *stop.borrow() {
            break;
        }
        set.spawn(Agent::new(w.clone()).run(stop.clone()));
        tokio::time::sleep(step).await;
    }
    let mut stop2 = stop.clone();
    loop {
        tokio::select! {
            r = set.join_next() => {
                match r {
                    None => break,
                    Some(_) if !*stop.borrow() => {
                        set.spawn(Agent::new(w.clone()).run(stop.clone()));
                    }
                    Some(_) => {}
                }
            }
            _ = stop2.changed() => break,
        }
    }
    while set.join_next().await.is_some() {}
}

// ---------------------------------------------------------------------------------------------
// Rounds: K fresh users connect, poll, message, and leave; RSS after each round
// ---------------------------------------------------------------------------------------------

async fn rounds(
    w: &Arc<World>,
    proc: &mut Proc,
    http: &reqwest::Client,
    baseline: f64,
    heap0: Option<(f64, f64)>,
    probe: bool,
    n: usize,
) -> (bool, ModeRows) {
    let t = proc.target.clone();
    let k = w.o.round_users;
    println!(
        "rounds: {n} rounds of {k} fresh users (one socket each, a presence poll, one message in \
         a room, then all leave); RSS baseline {} MiB",
        mib(baseline)
    );
    println!();
    let header: Vec<String> = [
        "round",
        "users",
        "connected",
        "RSS all online",
        "RSS after leaving",
        "Δ vs previous",
        "Δ vs baseline",
        "heap in use",
        "Δ heap",
        "sockets after",
        "errors",
        "secs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let widths = vec![5, 5, 9, 14, 17, 13, 13, 11, 6, 13, 6, 4];
    println!("{}", table_line(&header, &widths));
    let dashes: Vec<String> = widths.iter().map(|&k| "-".repeat(k)).collect();
    println!("|-{}-|", dashes.join("-|-"));
    let mut afters = vec![baseline];
    let mut heaps = vec![heap0.map(|h| h.1)];
    let mut crashed = false;
    for r in 1..=n {
        let t0 = Instant::now();
        let err0 = w.st.snap().errors();
        let sem = Arc::new(Semaphore::new(100));
        let mut set = JoinSet::new();
        for i in 0..k / 2 {
            let (w, sem) = (w.clone(), sem.clone());
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                round_pair(&w, r, i).await
            });
        }
        let mut socks = Vec::new();
        while let Some(res) = set.join_next().await {
            match res {
                Ok(Ok(pair)) => socks.extend(pair),
                Ok(Err(e)) => {
                    w.st.inc(|s| &s.rounds_errors);
                    w.st.sample(format!("round {r}: {e}"));
                }
                Err(e) => {
                    w.st.inc(|s| &s.rounds_errors);
                    w.st.sample(format!("round {r}: task: {e}"));
                }
            }
        }
        let connected = socks.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_on = rss_mib(t.pid);
        // Everyone leaves, cleanly.
        let mut set = JoinSet::new();
        for s in socks {
            set.spawn(s.close());
        }
        while set.join_next().await.is_some() {}
        let (drained, m) = wait_quiet(http, t.addr, Duration::from_secs(60)).await;
        if drained.is_none() {
            w.st.inc(|s| &s.rounds_errors);
            w.st.sample(format!(
                "round {r}: server not drained after 60 s: {} sockets",
                m.get("vchat_sockets")
            ));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let Ok(Some(st)) = proc.child.try_wait() {
            println!("SERVER EXITED in round {r}: {st}");
            crashed = true;
            break;
        }
        let after = rss_mib(t.pid);
        let prev = *afters.last().unwrap();
        afters.push(after);
        let used = heap(proc, probe).await.map(|h| h.1);
        let used_prev = *heaps.last().unwrap();
        heaps.push(used);
        let d_used = used.zip(used_prev).map(|(a, b)| a - b);
        let errs = w.st.snap().errors() - err0;
        let cells = vec![
            r.to_string(),
            k.to_string(),
            connected.to_string(),
            mib(rss_on),
            mib(after),
            format!("{:+.1}", after - prev),
            format!("{:+.1}", after - baseline),
            opt_mib(used),
            d_used.map_or("n/a".into(), |d| format!("{d:+.1}")),
            m.get("vchat_sockets").to_string(),
            errs.to_string(),
            format!("{:.0}", t0.elapsed().as_secs_f64()),
        ];
        println!("{}", table_line(&cells, &widths));
        w.later(format!(
            "soak round={r} users={k} connected={connected} rss_online_mib={} \
             rss_after_mib={} delta_prev_mib={:.1} delta_baseline_mib={:.1} \
             heap_in_use_mib={} errors={errs}",
            mib(rss_on),
            mib(after),
            after - prev,
            after - baseline,
            opt_mib(used)
        ));
    }
    let verdict = growth_verdict("RSS", &afters);
    let heap_verdict = if heaps.iter().all(Option::is_some) {
        let h: Vec<f64> = heaps.iter().flatten().copied().collect();
        growth_verdict("live heap", &h)
    } else {
        "no heap figures".into()
    };
    w.later(format!(
        "soak rounds_heap_verdict={}",
        heap_verdict.replace(' ', "_")
    ));
    w.later(format!("soak rounds_verdict={}", verdict.replace(' ', "_")));
    let rows = vec![
        (
            "RSS after each round (MiB)".to_string(),
            afters[1..]
                .iter()
                .map(|a| mib(*a))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("rounds verdict".into(), verdict),
        (
            "glibc heap in use after each round (MiB)".to_string(),
            heaps[1..]
                .iter()
                .map(|h| opt_mib(*h))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("rounds verdict, live heap".into(), heap_verdict),
    ];
    (crashed, (format!("rounds {n}×{k}"), rows))
}

/// Whether a value measured after each round (index 0: before round 1) keeps growing. Round
/// 1 is set-up (pools, caches, allocator arenas reach their working size), so rounds 2 on
/// count: growth of more than 0.2 MiB in each of them is growth every round.
fn growth_verdict(what: &str, v: &[f64]) -> String {
    let d: Vec<f64> = v.windows(2).map(|p| p[1] - p[0]).collect();
    if d.len() < 3 {
        return format!("{what}: too few rounds to tell");
    }
    let tail = &d[1..];
    let list = tail
        .iter()
        .map(|x| format!("{x:+.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    let avg = tail.iter().sum::<f64>() / tail.len() as f64;
    let late = &tail[tail.len() / 2..];
    let late_avg = late.iter().sum::<f64>() / late.len() as f64;
    let rounds = format!("rounds 2–{}: {list} MiB", d.len());
    if tail.iter().all(|x| *x > 0.2) {
        format!("{what} grows every round, {avg:+.1} MiB a round on average ({rounds})")
    } else if late_avg <= 0.2 {
        format!("{what} levels off ({rounds})")
    } else {
        format!("{what} grows in steps, {avg:+.1} MiB a round on average ({rounds})")
    }
}

/// Two fresh users of a round: both connect, one opens a room with the other and writes once,
/// both poll presence. Returns both sockets (still open).
async fn round_pair(w: &World, round: usize, i: usize) -> Result<[Sio; 2], String> {
    let subs = [format!("r{round}-{i}a"), format!("r{round}-{i}b")];
    let toks = [
        token(&subs[0], &format!("{}-phone", subs[0])),
        token(&subs[1], &format!("{}-phone", subs[1])),
    ];
    w.st.add(|s| &s.users_started, 2);
    let mut a = Sio::connect(w.addr, &toks[0])
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut b = Sio::connect(w.addr, &toks[1])
        .await
        .map_err(|e| format!("connect: {e}"))?;
    w.st.add(|s| &s.connects, 2);
    let ok = |r: Rest, what: &str| match r {
        Rest::Ok(v) => Ok(v),
        _ => Err(format!("{what} failed")),
    };
    ok(
        rest(w, false, "call/active", &toks[0], Value::Null, false).await,
        "call/active",
    )?;
    ok(
        rest(w, false, "call/active", &toks[1], Value::Null, false).await,
        "call/active",
    )?;
    let room = ok(
        rest(
            w,
            true,
            &format!("channel/peer-room/{}", subs[1]),
            &toks[0],
            json!({}),
            false,
        )
        .await,
        "peer-room",
    )?;
    let room = room["rId"].as_str().ok_or("peer-room: no rId")?.to_string();
    let body =
        json!({ "content": "hello", "localId": format!("{}-1", subs[0]), "messageType": "text" });
    ok(
        rest(
            w,
            true,
            &format!("channel/{room}/message/"),
            &toks[0],
            body,
            false,
        )
        .await,
        "message",
    )?;
    w.st.inc(|s| &s.messages_sent);
    let timeout = Duration::from_secs(10);
    b.wait("v1OnNewMessage", |_| true, timeout).await?;
    for (s, peer) in [(&mut a, &subs[1]), (&mut b, &subs[0])] {
        s.emit(
            "v1MyOnline",
            &json!([{ "peerId": peer, "extra": room.clone() }]),
        );
        w.st.inc(|s| &s.polls_sent);
        let ev = s.wait("v1OnMyOnline", |_| true, timeout).await?;
        w.st.inc(|s| &s.polls_answered);
        if ev.payload[0]["isOnline"] != true {
            return Err(format!("v1OnMyOnline: {peer} not online: {}", ev.payload));
        }
    }
    w.st.add(|s| &s.users_left, 2);
    Ok([a, b])
}
