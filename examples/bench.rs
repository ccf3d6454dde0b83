//! Side-by-side benchmark: vchat-signal against the Node.js reference peer, same machine, same run,
//! same client.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example bench -- [--node-reference PATH] [--quick]
//! ```
//!
//! `--cluster`: instead, one node against two nodes (`--nodes N`: N) on Redis and PostgreSQL,
//! each behind nginx running `deploy/nginx-vchat.conf`, same client, same run (see README,
//! Running as a cluster).
//!
//! See `bench/README.md` for what every figure means. Both servers are child processes bound to
//! 127.0.0.1 with `kill_on_drop`, so they die with the bench, also when it panics.
//!
//! The load generator is a minimal Socket.IO v4 client over a raw websocket: tungstenite's frame
//! codec (through tokio-tungstenite's re-export) on split tokio TCP halves, one reader task and one
//! writer task per socket, so no futures/Stream plumbing is needed. It lives in
//! `examples/support/`, shared with the soak (`examples/soak.rs`).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use vchat_signal::auth::{mint, Claims};

use support::ceiling;
use support::procfs::{loadavg, proc_cpu_secs, proc_status_kib};
use support::server::{
    limits_off_line, spawn_server, start_vchat, target_dir, Proc, Target, VchatOpts, SECRET,
};
use support::sio::{Sio, CLOSED};

const DEVICE: &str = "bench-device";

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

struct Opts {
    quick: bool,
    /// One node against `nodes` nodes behind nginx, instead of against the Node reference.
    cluster: bool,
    nodes: usize,
    node_reference: PathBuf,
    no_node: bool,
    vchat_bin: Option<PathBuf>,
    /// Another vchat-signal binary in the second column instead of the Node reference (a change
    /// measured against the build before it, side by side in one run).
    against: Option<PathBuf>,
    /// Pin every server to this core, and the load generator to `load_core`.
    server_core: Option<usize>,
    load_core: Option<usize>,
    /// Run only these scenarios (connections, setup, relay, presence); all when empty.
    only: Vec<String>,
    client_threads: usize,
    connect_concurrency: Option<usize>,
    /// Run the relay scenarios against the bare-WebSocket ceiling too (a third column).
    ceiling: bool,
    /// Offered rates of the open-loop relay (msgs/s); by default fractions of the second
    /// column's closed-loop maximum measured in the same run.
    relay_rates: Option<Vec<f64>>,
    /// Offered rates of the open-loop call setup (flows/s).
    setup_rates: Vec<f64>,
    /// Socket counts of the idle scenario (one step each).
    idle_sizes: Option<Vec<usize>>,
    /// How long each open-loop step offers its load (seconds): longer runs for a profiler.
    open_secs: Option<f64>,
    /// Every step this many times, alternating which server goes first; the table shows
    /// medians and spreads.
    repeat: usize,
    /// Machine-readable results: one JSON object per line.
    json: Option<PathBuf>,
    /// Where to write the plots (SVG).
    plot: Option<PathBuf>,
}

/// Sizes of every scenario; `--quick` shrinks them.
#[derive(Clone, Copy)]
struct Sizes {
    connections: usize,
    connect_concurrency: usize,
    call_pairs: usize,
    calls_per_pair: usize,
    ice_pairs: usize,
    ice_per_pair: usize,
    ice_burst: usize,
    presence_askers: usize,
    presence_peers: usize,
    presence_polls: usize,
    /// Pairs of the open-loop relay and how long each offered rate is held.
    open_relay_pairs: usize,
    open_relay_secs: f64,
    /// Pairs the open-loop call setup takes free ones from, and how long each rate is held.
    open_setup_pairs: usize,
    open_setup_secs: f64,
    event_timeout: Duration,
    scenario_timeout: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                connections: 300,
                connect_concurrency: 100,
                call_pairs: 10,
                calls_per_pair: 5,
                ice_pairs: 10,
                ice_per_pair: 300,
                ice_burst: 20,
                presence_askers: 5,
                presence_peers: 50,
                presence_polls: 60,
                open_relay_pairs: 10,
                open_relay_secs: 0.5,
                open_setup_pairs: 20,
                open_setup_secs: 1.0,
                event_timeout: Duration::from_secs(5),
                scenario_timeout: Duration::from_secs(30),
            }
        } else {
            Sizes {
                connections: 2000,
                connect_concurrency: 100,
                call_pairs: 50,
                calls_per_pair: 20,
                ice_pairs: 50,
                ice_per_pair: 2000,
                ice_burst: 20,
                presence_askers: 20,
                presence_peers: 50,
                presence_polls: 500,
                open_relay_pairs: 50,
                open_relay_secs: 2.0,
                open_setup_pairs: 100,
                open_setup_secs: 5.0,
                event_timeout: Duration::from_secs(10),
                scenario_timeout: Duration::from_secs(120),
            }
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo run --release --example bench -- [--quick] [--node-reference PATH] [--no-node]\n\
         \x20                                          [--vchat-bin PATH] [--client-threads N]\n\
         \x20                                          [--connect-concurrency N] [--cluster [--nodes N]]\n\
         \x20                                          [--against OTHER-VCHAT-BINARY]\n\
         \x20                                          [--server-core N] [--load-core N]\n\
         \x20                                          [--only connections,setup,setup-open,relay,relay-open,presence,rooms]\n\
         \x20                                          [--no-ceiling] [--relay-rates R,..] [--setup-rates R,..]\n\
         \x20                                          [--idle-sizes N,..] [--open-secs S] [--repeat K]\n\
         \x20                                          [--json FILE] [--plot DIR]"
    );
    std::process::exit(2)
}

/// The scenarios `--only` picks from, in the order they run.
const SCENARIOS: [&str; 7] = [
    "connections",
    "setup",
    "setup-open",
    "relay",
    "relay-open",
    "presence",
    "rooms",
];

/// A comma-separated list of positive numbers, or the usage.
fn list<T: std::str::FromStr + PartialOrd + Default>(v: Option<String>) -> Vec<T> {
    let v = v.unwrap_or_else(|| usage());
    let l: Vec<T> = v
        .split(',')
        .map(|x| x.trim().parse::<T>().ok().filter(|n| *n > T::default()))
        .collect::<Option<_>>()
        .unwrap_or_else(|| usage());
    if l.is_empty() {
        usage()
    }
    l
}

fn parse_opts() -> Opts {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Opts {
        quick: false,
        cluster: false,
        nodes: 2,
        node_reference: manifest.join("../shared/bench/node-reference"),
        no_node: false,
        vchat_bin: None,
        against: None,
        server_core: None,
        load_core: None,
        only: Vec::new(),
        client_threads: 1,
        connect_concurrency: None,
        ceiling: true,
        relay_rates: None,
        setup_rates: vec![200.0],
        idle_sizes: None,
        open_secs: None,
        repeat: 1,
        json: None,
        plot: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--cluster" => o.cluster = true,
            "--nodes" => {
                o.nodes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n >= 2)
                    .unwrap_or_else(|| usage())
            }
            "--no-node" => o.no_node = true,
            "--no-ceiling" => o.ceiling = false,
            "--relay-rates" => o.relay_rates = Some(list(args.next())),
            "--setup-rates" => o.setup_rates = list(args.next()),
            "--idle-sizes" => o.idle_sizes = Some(list(args.next())),
            "--open-secs" => o.open_secs = Some(list::<f64>(args.next())[0]),
            "--repeat" => o.repeat = list::<usize>(args.next())[0],
            "--json" => o.json = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--plot" => o.plot = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--node-reference" => o.node_reference = args.next().unwrap_or_else(|| usage()).into(),
            "--vchat-bin" => o.vchat_bin = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--against" => o.against = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--client-threads" => {
                o.client_threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| usage())
            }
            "--connect-concurrency" => {
                o.connect_concurrency = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|n| *n > 0)
                        .unwrap_or_else(|| usage()),
                )
            }
            "--server-core" | "--load-core" => {
                let core = args.next().and_then(|v| v.parse().ok());
                let core = Some(core.unwrap_or_else(|| usage()));
                if a == "--server-core" {
                    o.server_core = core;
                } else {
                    o.load_core = core;
                }
            }
            "--only" => {
                let list = args.next().unwrap_or_else(|| usage());
                o.only = list.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = o.only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    eprintln!("unknown scenario {bad}; one of {SCENARIOS:?}");
                    usage()
                }
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

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

fn data_dir() -> PathBuf {
    support::server::data_dir("bench")
}

/// Copies the reference peer into target/bench and runs `npm ci` there when needed.
async fn prepare_node(src: &Path) -> Result<PathBuf, String> {
    let dst = target_dir().join("bench/node-reference");
    std::fs::create_dir_all(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    let lock = |p: &Path| std::fs::read(p.join("package-lock.json")).ok();
    let src_lock = lock(src).ok_or_else(|| {
        format!(
            "{}: no package-lock.json (use --node-reference PATH)",
            src.display()
        )
    })?;
    let fresh = lock(&dst).as_ref() == Some(&src_lock)
        && dst.join("node_modules/.package-lock.json").exists();
    for e in std::fs::read_dir(src).map_err(|e| e.to_string())?.flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).map_err(|e| e.to_string())?;
        }
    }
    if !fresh {
        eprintln!("node-reference: npm ci in {} ...", dst.display());
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dst)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let st = tokio::time::timeout(Duration::from_secs(180), cmd.status())
            .await
            .map_err(|_| "npm ci took over 180 s".to_string())?
            .map_err(|e| format!("npm: {e}"))?;
        if !st.success() {
            return Err(format!("npm ci failed ({st})"));
        }
    }
    Ok(dst)
}

async fn start_node(dir: &Path, http: &reqwest::Client) -> Result<Proc, String> {
    let mut cmd = Command::new("node");
    cmd.arg("server.js")
        .current_dir(dir)
        .env("VCHAT_LISTEN", "127.0.0.1:0")
        .env("VCHAT_JWT_SECRET", SECRET);
    spawn_server("node-reference", cmd, http).await
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A prefix no scenario has used yet in this run, so every step (and every repeat) gets users,
/// rooms and calls of its own.
fn fresh(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{n}x")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Lower,
    Higher,
}

/// What one scenario measured on one server.
#[derive(Default)]
struct Res {
    metrics: Vec<(String, f64, Option<Better>)>,
    errors: u64,
    samples: Vec<String>,
    wall: f64,
    client_cpu: f64,
}

impl Res {
    fn m(&mut self, name: impl Into<String>, v: f64, b: Better) {
        self.metrics.push((name.into(), v, Some(b)));
    }
    fn info(&mut self, name: impl Into<String>, v: f64) {
        self.metrics.push((name.into(), v, None));
    }
    fn err(&mut self, e: String) {
        self.errors += 1;
        if self.samples.len() < 5 {
            self.samples.push(e);
        }
    }
    fn lat(&mut self, label: &str, v: &mut [f64]) {
        v.sort_by(|a, b| a.total_cmp(b));
        self.m(format!("{label} p50 (ms)"), pct(v, 50.0), Better::Lower);
        self.m(format!("{label} p99 (ms)"), pct(v, 99.0), Better::Lower);
    }
    /// p50 and p99, and the far tail: p99.9 and the worst.
    fn tail(&mut self, label: &str, v: &mut [f64]) {
        self.lat(label, v);
        self.m(format!("{label} p99.9 (ms)"), pct(v, 99.9), Better::Lower);
        self.m(format!("{label} max (ms)"), pct(v, 100.0), Better::Lower);
    }
}

/// Shared per-run collector for concurrent tasks.
#[derive(Default)]
struct Collect {
    lat: HashMap<&'static str, Vec<f64>>,
    errors: u64,
    samples: Vec<String>,
}

type Shared = Arc<Mutex<Collect>>;

fn record(c: &Shared, key: &'static str, v: f64) {
    c.lock().unwrap().lat.entry(key).or_default().push(v);
}

fn fail(c: &Shared, e: String) {
    let mut g = c.lock().unwrap();
    g.errors += 1;
    if g.samples.len() < 5 {
        g.samples.push(e);
    }
}

fn finish(c: Shared, res: &mut Res) -> HashMap<&'static str, Vec<f64>> {
    let mut g = c.lock().unwrap();
    res.errors += g.errors;
    res.samples.append(&mut g.samples);
    std::mem::take(&mut g.lat)
}

// ---------------------------------------------------------------------------------------------
// Scenario helpers
// ---------------------------------------------------------------------------------------------

struct User {
    sub: String,
    token: String,
}

fn user(sub: String) -> User {
    let claims = Claims {
        sub: sub.clone(),
        exp: vchat_signal::auth::now_unix() + 3600,
        name: Some(format!("Bench {sub}")),
        identifier: None,
        img: None,
        did: Some(DEVICE.into()),
    };
    User {
        token: mint(SECRET.as_bytes(), &claims),
        sub,
    }
}

/// Connects the user's socket and makes sure the server knows the user (REST upsert).
async fn online(t: &Target, u: &User) -> Result<Sio, String> {
    let s = Sio::connect_lazy_ice(t.addr, &u.token).await?;
    t.api.get("call/active", &u.token).await?;
    Ok(s)
}

struct Pair {
    a: Sio,
    b: Sio,
    ua: User,
    ub: User,
    room: String,
}

async fn make_pair(t: Arc<Target>, tag: String) -> Result<Pair, String> {
    let (ua, ub) = (user(format!("{tag}a")), user(format!("{tag}b")));
    let a = online(&t, &ua).await?;
    let b = online(&t, &ub).await?;
    let room = t
        .api
        .post(
            &format!("channel/peer-room/{}", ub.sub),
            &ua.token,
            json!({}),
        )
        .await?;
    let room = room["rId"].as_str().ok_or("peer-room: no rId")?.to_string();
    Ok(Pair { a, b, ua, ub, room })
}

async fn make_pairs(t: &Arc<Target>, prefix: &str, n: usize, res: &mut Res) -> Vec<Pair> {
    let mut set = JoinSet::new();
    let sem = Arc::new(Semaphore::new(25));
    for i in 0..n {
        let (t, sem, tag) = (t.clone(), sem.clone(), format!("{prefix}{i}"));
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            make_pair(t, tag).await
        });
    }
    let mut pairs = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.expect("pair task") {
            Ok(p) => pairs.push(p),
            Err(e) => res.err(format!("setup: {e}")),
        }
    }
    pairs
}

fn is_meet(id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |p: &Value| p["meetId"] == id
}

fn sdp(kind: &str) -> Value {
    // A realistic audio offer/answer is about 1.5 KiB of SDP text.
    let mut s =
        String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    s.push_str("a=group:BUNDLE 0\r\na=msid-semantic: WMS stream\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n");
    s.push_str("c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n");
    s.push_str("a=fingerprint:sha-256 ");
    s.push_str(&"AB:".repeat(31));
    s.push_str("CD\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n");
    for pt in 0..24 {
        s.push_str(&format!(
            "a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} minptime=10;useinbandfec=1\r\n"
        ));
    }
    json!({ "type": kind, "sdp": s })
}

/// Runs `f`, stamping wall time and client CPU.
async fn timed<F: std::future::Future<Output = Res>>(f: F) -> Res {
    let (t0, c0) = (Instant::now(), proc_cpu_secs("self"));
    let mut r = f.await;
    r.wall = t0.elapsed().as_secs_f64();
    r.client_cpu = proc_cpu_secs("self") - c0;
    r
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// `n` idle sockets. RSS per connection counts from `rss0`, the server's RSS when it was fresh
/// (before any scenario), so memory an earlier step left with the allocator counts against it.
async fn s_connections(t: Arc<Target>, z: Sizes, n: usize, rss0: f64) -> Res {
    let mut res = Res::default();
    let pid = t.pid.to_string();
    let prefix = fresh("c");
    let users: Vec<User> = (0..n).map(|i| user(format!("{prefix}{i}"))).collect();
    let cpu0 = t.cpu_secs();
    let sem = Arc::new(Semaphore::new(z.connect_concurrency));
    let mut set = JoinSet::new();
    let start = Instant::now();
    for u in users {
        let (t, sem) = (t.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let t0 = Instant::now();
            let s = Sio::connect(t.addr, &u.token).await;
            (s, ms(t0.elapsed()))
        });
    }
    let (mut socks, mut lat) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r.expect("connect task") {
            (Ok(s), l) => {
                socks.push(s);
                lat.push(l);
            }
            (Err(e), _) => res.err(format!("connect: {e}")),
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = t.cpu_secs() - cpu0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = proc_status_kib(&pid, "VmRSS:").unwrap_or(f64::NAN);
    let n = socks.len() as f64;
    res.info("sockets connected", n);
    res.m("time to connect all (s)", wall, Better::Lower);
    res.m("connects/s", n / wall, Better::Higher);
    res.lat("connect handshake", &mut lat);
    res.m("server CPU per connect (µs)", cpu * 1e6 / n, Better::Lower);
    res.m("RSS when fresh (MiB)", rss0 / 1024.0, Better::Lower);
    res.m("RSS with all sockets (MiB)", rss1 / 1024.0, Better::Lower);
    res.m("RSS per connection (KiB)", (rss1 - rss0) / n, Better::Lower);
    // Every socket should still be up (no server-side drops while idle).
    let closed = socks
        .iter_mut()
        .filter_map(|s| s.events.try_recv().ok())
        .filter(|ev| ev.name == CLOSED)
        .count();
    if closed > 0 {
        res.err(format!("{closed} sockets closed by the server while idle"));
    }
    drop(socks);
    tokio::time::sleep(Duration::from_secs(1)).await;
    res
}

/// When each step of one complete call flow was sent, and when its event arrived.
struct Flow {
    created: Instant,
    rang: Instant,
    accept_sent: Instant,
    accepted: Instant,
    end_sent: Instant,
    /// When the later of the two sockets read `v1OnCallEnded`.
    ended: Instant,
}

/// One complete call on pair `p`: `create` → callee's `v1OnNewCall`, `accept` → caller's
/// `v1OnCallAccepted`, `end` → `v1OnCallEnded` on both. A call that cannot be accepted is ended,
/// so the pair is free for the next one.
async fn call_flow(t: &Target, p: &mut Pair, z: Sizes) -> Result<Flow, String> {
    let api = &t.api;
    let created = Instant::now();
    let body = json!({ "payload": sdp("offer"), "withVideo": false });
    let d = api
        .post(&format!("call/create/{}", p.room), &p.ua.token, body)
        .await?;
    let meet = d["meetId"].as_str().unwrap_or_default().to_string();
    let ring = p.b.wait("v1OnNewCall", is_meet(&meet), z.event_timeout);
    let rang = ring.await.map_err(|e| format!("callee: {e}"))?.at;
    let accept_sent = Instant::now();
    let body = json!({ "payload": sdp("answer") });
    if let Err(e) = api
        .post(&format!("call/accept/{meet}"), &p.ub.token, body)
        .await
    {
        let _ = api
            .post(&format!("call/end/v2/{meet}"), &p.ua.token, json!({}))
            .await;
        return Err(e);
    }
    let accepted =
        p.a.wait("v1OnCallAccepted", is_meet(&meet), z.event_timeout);
    let accepted = accepted.await.map_err(|e| format!("caller: {e}"))?.at;
    let end_sent = Instant::now();
    api.post(&format!("call/end/{meet}"), &p.ua.token, json!({}))
        .await?;
    let a = p.a.wait("v1OnCallEnded", is_meet(&meet), z.event_timeout);
    let a = a.await.map_err(|e| format!("caller: {e}"))?.at;
    let b = p.b.wait("v1OnCallEnded", is_meet(&meet), z.event_timeout);
    let b = b.await.map_err(|e| format!("callee: {e}"))?.at;
    Ok(Flow {
        created,
        rang,
        accept_sent,
        accepted,
        end_sent,
        ended: a.max(b),
    })
}

async fn s_calls(t: Arc<Target>, z: Sizes) -> Res {
    let mut res = Res::default();
    let pairs = make_pairs(&t, &fresh("k"), z.call_pairs, &mut res).await;
    let cpu0 = t.cpu_secs();
    let col: Shared = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for mut p in pairs {
        let (t, col, calls) = (t.clone(), col.clone(), calls.clone());
        set.spawn(async move {
            for _ in 0..z.calls_per_pair {
                match call_flow(&t, &mut p, z).await {
                    Ok(f) => {
                        record(&col, "new", ms(f.rang - f.created));
                        record(&col, "accepted", ms(f.accepted - f.accept_sent));
                        record(&col, "ended", ms(f.ended - f.end_sent));
                    }
                    Err(e) => {
                        fail(&col, e);
                        continue;
                    }
                }
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while set.join_next().await.is_some() {}
    let wall = start.elapsed().as_secs_f64();
    let cpu = t.cpu_secs() - cpu0;
    let n = calls.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let mut lat = finish(col, &mut res);
    res.info("calls completed", n);
    res.lat("create→v1OnNewCall", lat.entry("new").or_default());
    res.lat(
        "accept→v1OnCallAccepted",
        lat.entry("accepted").or_default(),
    );
    res.lat("end→v1OnCallEnded (both)", lat.entry("ended").or_default());
    res.m("calls/s", n / wall, Better::Higher);
    res.m("server CPU per call (µs)", cpu * 1e6 / n, Better::Lower);
    res
}

/// Two sockets that relay to each other, and what their candidates carry as `meetId`.
struct Link {
    a: Sio,
    b: Sio,
    meet: String,
}

/// `n` links: pairs in an accepted call, or on the ceiling two sockets paired by token.
async fn relay_links(t: &Arc<Target>, z: Sizes, n: usize, res: &mut Res) -> Vec<Link> {
    let prefix = fresh("i");
    let mut links = Vec::new();
    if t.name == ceiling::NAME {
        for i in 0..n {
            let pair = format!("{prefix}{i}");
            let a = Sio::connect_lazy_ice(t.addr, &ceiling::token(&pair, 'a')).await;
            let b = Sio::connect_lazy_ice(t.addr, &ceiling::token(&pair, 'b')).await;
            match (a, b) {
                (Ok(a), Ok(b)) => links.push(Link { a, b, meet: pair }),
                (Err(e), _) | (_, Err(e)) => res.err(format!("ceiling connect: {e}")),
            }
        }
        return links;
    }
    for mut p in make_pairs(t, &prefix, n, res).await {
        let api = &t.api;
        let set_up = async {
            let body = json!({ "payload": sdp("offer"), "withVideo": false });
            let d = api
                .post(&format!("call/create/{}", p.room), &p.ua.token, body)
                .await?;
            let meet = d["meetId"].as_str().ok_or("no meetId")?.to_string();
            p.b.wait("v1OnNewCall", is_meet(&meet), z.event_timeout)
                .await?;
            let body = json!({ "payload": sdp("answer") });
            api.post(&format!("call/accept/{meet}"), &p.ub.token, body)
                .await?;
            p.a.wait("v1OnCallAccepted", is_meet(&meet), z.event_timeout)
                .await?;
            Ok::<_, String>(meet)
        };
        match set_up.await {
            Ok(meet) => links.push(Link {
                a: p.a,
                b: p.b,
                meet,
            }),
            Err(e) => res.err(format!("relay setup: {e}")),
        }
    }
    links
}

/// A candidate as a client sends it; `ts` (µs since the bench's epoch) is when it was sent, or
/// in the open loop when it was due, and comes back in the relayed copy.
fn candidate(meet: &str, i: usize, seq: usize, ts: u128) -> Value {
    let cand = format!(
        "candidate:{seq} 1 udp 2122260223 192.168.{}.{} {} typ host generation 0 ufrag abcd network-id 1 ts{ts}",
        i / 250,
        i % 250 + 1,
        40000 + seq % 20000
    );
    json!({ "meetId": meet, "data": { "candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0 } })
}

/// The stamp of a relayed candidate of call `meet`, if it came through unaltered. The frame is
/// searched, not decoded (the load generator's core is the bench's bottleneck); every 64th
/// candidate (`check`) is decoded in full and checked field by field.
fn stamp(ev: &support::sio::Ev, meet: &str, check: bool) -> Option<u128> {
    let raw = ev.raw.as_deref()?;
    if check {
        let (_, p) = support::sio::decode_event(raw)?;
        let cand = p["data"]["candidate"].as_str()?;
        if p["meetId"] != meet || p["data"]["sdpMid"] != "0" || !cand.starts_with("candidate:") {
            return None;
        }
    } else if !raw.contains(meet) {
        return None;
    }
    let at = raw.rfind(" ts")? + 3;
    let digits = raw[at..].find(|c: char| !c.is_ascii_digit())?;
    raw[at..at + digits].parse().ok()
}

async fn s_ice(t: Arc<Target>, z: Sizes, epoch: Instant) -> Res {
    let mut res = Res::default();
    let links = relay_links(&t, z, z.ice_pairs, &mut res).await;
    if links.len() < z.ice_pairs {
        return res;
    }
    let cpu0 = t.cpu_secs();
    let col: Shared = Arc::default();
    let relayed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, mut l) in links.into_iter().enumerate() {
        let (col, relayed) = (col.clone(), relayed.clone());
        set.spawn(async move {
            let mut seq = 0usize;
            while seq < z.ice_per_pair {
                let burst = z.ice_burst.min(z.ice_per_pair - seq);
                for _ in 0..burst {
                    let ts = epoch.elapsed().as_micros();
                    l.a.emit("v1IceCandidate", &candidate(&l.meet, i, seq, ts));
                    seq += 1;
                }
                for k in 0..burst {
                    match l
                        .b
                        .wait("v1OnIceCandidate", |_| true, z.event_timeout)
                        .await
                    {
                        Ok(ev) => match stamp(&ev, &l.meet, (seq + k).is_multiple_of(64)) {
                            Some(us) => {
                                let got = (ev.at - epoch).as_micros();
                                record(&col, "ice", got.saturating_sub(us) as f64 / 1e3);
                                relayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            None => fail(&col, format!("candidate altered in relay: {:?}", ev.raw)),
                        },
                        Err(e) => {
                            fail(&col, format!("callee: {e} (pair {i}, after {seq} sent)"));
                            return;
                        }
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let wall = start.elapsed().as_secs_f64();
    let cpu = t.cpu_secs() - cpu0;
    let n = relayed.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let mut lat = finish(col, &mut res);
    res.info("candidates relayed", n);
    res.lat("relay latency", lat.entry("ice").or_default());
    res.m("relayed msgs/s", n / wall, Better::Higher);
    res.m("server CPU per msg (µs)", cpu * 1e6 / n, Better::Lower);
    res
}

/// Open loop: candidates go out at `rate` per second whatever the server does (a pacer thread
/// sends each one when it is due, round-robin over the pairs), and each one's latency counts
/// from when it was due, so a server that falls behind pays for the whole queue it built
/// (no coordinated omission).
async fn s_relay_open(t: Arc<Target>, z: Sizes, epoch: Instant, rate: f64) -> Res {
    let mut res = Res::default();
    let links = relay_links(&t, z, z.open_relay_pairs, &mut res).await;
    if links.len() < z.open_relay_pairs {
        return res;
    }
    let total = (rate * z.open_relay_secs).round().max(1.0) as usize;
    let p = links.len();
    let senders: Vec<_> = links
        .iter()
        .map(|l| (l.a.out.clone(), l.meet.clone()))
        .collect();
    let cpu0 = t.cpu_secs();
    let col: Shared = Arc::default();
    let relayed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    // When the last candidate arrived (µs since the epoch): the delivered rate is over the
    // time candidates were arriving, not over the wait for ones that never came.
    let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for (i, mut l) in links.into_iter().enumerate() {
        // Candidates k with k % p == i go through this pair.
        let want = (total + p - 1 - i) / p;
        let (col, relayed, last) = (col.clone(), relayed.clone(), last.clone());
        set.spawn(async move {
            for got in 0..want {
                // Candidates arrive continuously, however late: a gap this long means the rest
                // of this pair's are not coming (counted below).
                match l
                    .b
                    .wait("v1OnIceCandidate", |_| true, Duration::from_secs(3))
                    .await
                {
                    Ok(ev) => match stamp(&ev, &l.meet, got.is_multiple_of(64)) {
                        Some(us) => {
                            let at = (ev.at - epoch).as_micros();
                            record(&col, "ice", at.saturating_sub(us) as f64 / 1e3);
                            relayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            last.fetch_max(at as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        None => fail(&col, format!("candidate altered in relay: {:?}", ev.raw)),
                    },
                    Err(_) => break,
                }
            }
            // What the server refused to the sender (its inbox was full), if anything.
            let mut refused = 0u64;
            while let Ok(ev) = l.a.events.try_recv() {
                if ev.name == "v1OnException" && ev.payload.to_string().contains("in flight") {
                    refused += 1;
                }
            }
            refused
        });
    }
    // The pacer: a thread of its own (on the load's core), waking every 100 µs; tokio's timer
    // would round every wait up to a millisecond.
    let pacer = std::thread::spawn(move || {
        let t0 = Instant::now();
        let (mut sent, mut max_lag) = (0usize, Duration::ZERO);
        while sent < total {
            let due = ((t0.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
            while sent < due {
                let at = t0 + Duration::from_secs_f64(sent as f64 / rate);
                max_lag = max_lag.max(at.elapsed());
                let (out, meet) = &senders[sent % p];
                let c = candidate(meet, sent % p, sent / p, (at - epoch).as_micros());
                let text = format!("42{}", json!(["v1IceCandidate", c.to_string()]));
                let _ = out.send(support::sio::Out::Text(text));
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        max_lag
    });
    let mut refused = 0;
    while let Some(r) = set.join_next().await {
        refused += r.unwrap_or(0);
    }
    let cpu = t.cpu_secs() - cpu0;
    let lag = pacer.join().unwrap_or_default();
    let n = relayed.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let until = Duration::from_micros(last.load(std::sync::atomic::Ordering::Relaxed));
    let wall = (epoch + until)
        .saturating_duration_since(start)
        .as_secs_f64();
    let mut lat = finish(col, &mut res);
    if (n as usize) < total {
        res.err(format!(
            "{} of {total} candidates not delivered ({refused} refusals told to the senders: their inbox on \
             the server was full)",
            total - n as usize
        ));
    }
    res.info("offered msgs/s", rate);
    res.info("candidates relayed", n);
    res.info(
        "refusals the sender was told of (inbox full)",
        refused as f64,
    );
    res.tail("relay latency", lat.entry("ice").or_default());
    res.m("delivered msgs/s", n / wall, Better::Higher);
    res.m("server CPU per msg (µs)", cpu * 1e6 / n, Better::Lower);
    res.info("pacer's worst lag (ms)", ms(lag));
    res
}

/// Open-loop call setup: complete flows (create → ring → accept → accepted → end → ended on
/// both) start at `rate` per second, each on a pair not in a call; latencies count from when
/// the flow was due, so waiting for a free pair counts too.
async fn s_setup_open(t: Arc<Target>, z: Sizes, rate: f64) -> Res {
    let mut res = Res::default();
    let pairs = make_pairs(&t, &fresh("q"), z.open_setup_pairs, &mut res).await;
    if pairs.len() < z.open_setup_pairs {
        return res;
    }
    let total = (rate * z.open_setup_secs).round().max(1.0) as usize;
    let (free_tx, mut free_rx) = tokio::sync::mpsc::unbounded_channel::<Pair>();
    for p in pairs {
        let _ = free_tx.send(p);
    }
    let cpu0 = t.cpu_secs();
    let col: Shared = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut waited = 0usize;
    let start = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due).await;
        let mut p = match free_rx.try_recv() {
            Ok(p) => p,
            Err(_) => {
                waited += 1;
                free_rx.recv().await.expect("the pool outlives the flows")
            }
        };
        let (t, col, done, free) = (t.clone(), col.clone(), done.clone(), free_tx.clone());
        let due = due.into_std();
        set.spawn(async move {
            match call_flow(&t, &mut p, z).await {
                Ok(f) => {
                    record(&col, "ring", ms(f.rang - due));
                    record(&col, "flow", ms(f.ended - due));
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => fail(&col, e),
            }
            let _ = free.send(p);
        });
    }
    while set.join_next().await.is_some() {}
    let wall = start.elapsed().as_secs_f64();
    let cpu = t.cpu_secs() - cpu0;
    let n = done.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let mut lat = finish(col, &mut res);
    res.info("offered flows/s", rate);
    res.info("flows completed", n);
    res.tail(
        "due→v1OnNewCall (time to ring)",
        lat.entry("ring").or_default(),
    );
    res.lat(
        "due→v1OnCallEnded (whole flow)",
        lat.entry("flow").or_default(),
    );
    res.m("flows/s", n / wall, Better::Higher);
    res.m("server CPU per flow (µs)", cpu * 1e6 / n, Better::Lower);
    res.info("flows that waited for a free pair", waited as f64);
    res
}

/// Room emits: in each pair's room one side sends typing events in bursts (the ICE relay's
/// sizes) and the other waits for every one. Every member socket gets each, the sender's own
/// included. In a cluster this is the traffic that room channels keep from nodes holding no
/// member socket of the room.
async fn s_rooms(t: Arc<Target>, z: Sizes) -> Res {
    let mut res = Res::default();
    let pairs = make_pairs(&t, &fresh("rm"), z.ice_pairs, &mut res).await;
    if pairs.len() < z.ice_pairs {
        return res;
    }
    let cpu0 = t.cpu_secs();
    let col: Shared = Arc::default();
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, mut p) in pairs.into_iter().enumerate() {
        let (col, delivered) = (col.clone(), delivered.clone());
        set.spawn(async move {
            let typing = json!({ "roomId": p.room, "status": "typing" });
            let mut sent = 0usize;
            while sent < z.ice_per_pair {
                let burst = z.ice_burst.min(z.ice_per_pair - sent);
                let t0 = Instant::now();
                for _ in 0..burst {
                    p.a.emit("v1RoomStatusChange", &typing);
                    sent += 1;
                }
                for _ in 0..burst {
                    let heard =
                        p.b.wait("v1OnRoomStatusChange", |_| true, z.event_timeout)
                            .await;
                    if let Err(e) = heard {
                        fail(&col, format!("member: {e} (pair {i}, after {sent} sent)"));
                        return;
                    }
                    delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                record(&col, "burst", ms(t0.elapsed()));
            }
        });
    }
    while set.join_next().await.is_some() {}
    let wall = start.elapsed().as_secs_f64();
    let cpu = t.cpu_secs() - cpu0;
    let n = delivered.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let mut lat = finish(col, &mut res);
    res.info("room emits delivered to the other member", n);
    res.lat("burst round trip", lat.entry("burst").or_default());
    res.m("room emits/s", n / wall, Better::Higher);
    res.m(
        "server CPU per room emit (µs)",
        cpu * 1e6 / n,
        Better::Lower,
    );
    res
}

async fn s_presence(t: Arc<Target>, z: Sizes) -> Res {
    let mut res = Res::default();
    let peers: Vec<User> = (0..z.presence_peers)
        .map(|i| user(format!("{}{i}", fresh("pp"))))
        .collect();
    let mut peer_socks = Vec::new();
    for u in &peers {
        match online(&t, u).await {
            Ok(s) => peer_socks.push(s),
            Err(e) => res.err(format!("peer: {e}")),
        }
    }
    let peers: Arc<Vec<User>> = Arc::new(peers);
    // Askers: each shares a room with every peer, so every peer reports online.
    let mut set = JoinSet::new();
    let askers = fresh("pa");
    for i in 0..z.presence_askers {
        let (t, peers, u) = (t.clone(), peers.clone(), user(format!("{askers}{i}")));
        set.spawn(async move {
            let s = online(&t, &u).await?;
            let mut list = Vec::new();
            for p in peers.iter() {
                let room = t
                    .api
                    .post(&format!("channel/peer-room/{}", p.sub), &u.token, json!({}))
                    .await?;
                list.push(json!({ "peerId": p.sub, "extra": room["rId"] }));
            }
            Ok::<_, String>((s, Value::Array(list)))
        });
    }
    let mut askers = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.expect("asker task") {
            Ok(a) => askers.push(a),
            Err(e) => res.err(format!("asker setup: {e}")),
        }
    }
    let cpu0 = t.cpu_secs();
    let col: Shared = Arc::default();
    let start = Instant::now();
    let mut set = JoinSet::new();
    let want = z.presence_peers;
    for (mut s, list) in askers {
        let col = col.clone();
        set.spawn(async move {
            for _ in 0..z.presence_polls {
                let t0 = Instant::now();
                s.emit("v1MyOnline", &list);
                match s.wait("v1OnMyOnline", |_| true, z.event_timeout).await {
                    Ok(ev) => {
                        record(&col, "poll", ms(ev.at - t0));
                        let online = ev
                            .payload
                            .as_array()
                            .map_or(0, |a| a.iter().filter(|e| e["isOnline"] == true).count());
                        if online != want {
                            fail(
                                &col,
                                format!("v1OnMyOnline reported {online} of {want} peers online"),
                            );
                        }
                    }
                    Err(e) => {
                        fail(&col, e);
                        return;
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let wall = start.elapsed().as_secs_f64();
    let cpu = t.cpu_secs() - cpu0;
    let mut lat = finish(col, &mut res);
    let polls = lat.get("poll").map_or(0, Vec::len) as f64;
    res.info("polls answered", polls);
    res.lat("v1MyOnline round trip", lat.entry("poll").or_default());
    res.m("polls/s", polls / wall, Better::Higher);
    res.m("server CPU per poll (µs)", cpu * 1e6 / polls, Better::Lower);
    drop(peer_socks);
    res
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

struct Row {
    scenario: String,
    metric: String,
    better: Option<Better>,
    /// The series and x value of a step of a sweep (open-loop rate, idle socket count), for
    /// the plots and the machine-readable lines.
    x: Option<(&'static str, f64)>,
    /// Every repeat's value, per column.
    v: Vec<Vec<f64>>,
    text: Vec<Option<String>>,
}

impl Row {
    fn median(&self, col: usize) -> Option<f64> {
        let mut v = self.v.get(col)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let m = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        })
    }
}

struct Table {
    names: Vec<String>,
    rows: Vec<Row>,
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Table {
    fn new(names: &[&str]) -> Self {
        Table {
            names: names.iter().map(|n| n.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, scenario: &str, metric: &str, better: Option<Better>) -> &mut Row {
        let cols = self.names.len();
        let i = match self
            .rows
            .iter()
            .position(|r| r.scenario == scenario && r.metric == metric)
        {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    scenario: scenario.into(),
                    metric: metric.into(),
                    better,
                    x: None,
                    v: vec![Vec::new(); cols],
                    text: vec![None; cols],
                });
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }

    fn add(&mut self, step: &Step, col: usize, r: &Res) {
        let scenario = step.label();
        for (m, v, b) in &r.metrics {
            let row = self.row(&scenario, m, *b);
            row.v[col].push(*v);
            row.x = step.x();
        }
        self.row(&scenario, "errors (see notes)", None).v[col].push(r.errors as f64);
    }

    fn cell(&self, r: &Row, col: usize) -> String {
        if let Some(t) = &r.text[col] {
            return t.clone();
        }
        let v = &r.v[col];
        match (v.len() > 1, r.median(col)) {
            (_, None) => "-".into(),
            (false, Some(m)) => num(m),
            (true, Some(m)) => {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{} ({}–{})", num(m), num(lo), num(hi))
            }
        }
    }

    fn print(&self) {
        let names = &self.names;
        let mut head = vec!["scenario".to_string(), "metric".into()];
        head.extend(names.iter().cloned());
        head.push(format!("ratio {}/{}", &names[0][..1], &names[1][..1]));
        head.push("better".into());
        let mut lines = vec![head];
        for r in &self.rows {
            let (ratio, better) = match (r.median(0), r.median(1), r.better) {
                (Some(a), Some(b), Some(dir)) if a.is_finite() && b.is_finite() && b != 0.0 => {
                    let q = a / b;
                    let w = if (0.95..=1.05).contains(&q) {
                        "≈"
                    } else if (q < 1.0) == (dir == Better::Lower) {
                        &names[0]
                    } else {
                        &names[1]
                    };
                    (format!("{q:.2}"), w.to_string())
                }
                _ => (String::new(), String::new()),
            };
            let mut l = vec![r.scenario.clone(), r.metric.clone()];
            l.extend((0..names.len()).map(|c| self.cell(r, c)));
            l.push(ratio);
            l.push(better);
            lines.push(l);
        }
        let cols = lines[0].len();
        let mut w = vec![0usize; cols];
        for l in &lines {
            for (i, c) in l.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        for (n, l) in lines.iter().enumerate() {
            let cells: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = w[i] - c.chars().count();
                    if (2..cols - 1).contains(&i) {
                        format!("{}{c}", " ".repeat(pad))
                    } else {
                        format!("{c}{}", " ".repeat(pad))
                    }
                })
                .collect();
            println!("| {} |", cells.join(" | "));
            if n == 0 {
                let dashes: Vec<String> = w.iter().map(|&k| "-".repeat(k)).collect();
                println!("|-{}-|", dashes.join("-|-"));
            }
        }
    }

    /// One JSON object per value: scenario, metric, server, repeat, value, and for a sweep its
    /// series and x.
    fn json_lines(&self) -> String {
        let mut out = String::new();
        for r in &self.rows {
            for (col, vals) in r.v.iter().enumerate() {
                for (rep, v) in vals.iter().enumerate() {
                    let mut o = json!({
                        "scenario": r.scenario, "metric": r.metric, "server": self.names[col],
                        "repeat": rep, "value": if v.is_finite() { json!(v) } else { Value::Null },
                    });
                    if let Some((series, x)) = r.x {
                        o["series"] = json!(series);
                        o["x"] = json!(x);
                    }
                    out.push_str(&o.to_string());
                    out.push('\n');
                }
            }
        }
        out
    }

    /// (x, median) of one metric of one sweep, per column.
    fn series(&self, series: &str, metric: &str) -> Vec<Vec<(f64, f64)>> {
        (0..self.names.len())
            .map(|col| {
                let mut pts: Vec<(f64, f64)> = self
                    .rows
                    .iter()
                    .filter(|r| r.metric == metric && r.x.is_some_and(|(s, _)| s == series))
                    .filter_map(|r| Some((r.x?.1, r.median(col)?)))
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                pts
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn main() {
    if std::env::var_os(ceiling::SERVE_ENV).is_some() {
        ceiling::serve();
    }
    let opts = parse_opts();
    raise_fd_limit();
    if let Some(core) = opts.server_core {
        let _ = support::server::SERVER_CORE.set(core);
    }
    if let Some(core) = opts.load_core {
        // Before the runtime starts its threads, so they all inherit it.
        if let Err(e) = support::server::pin_to_core(core) {
            eprintln!("bench failed: cannot pin the load to core {core}: {e}");
            std::process::exit(1);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // On Ctrl-C or SIGTERM the run future is dropped, and with it both servers (kill_on_drop).
    let outcome = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            r = run(opts) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
        }
    });
    drop(rt);
    let _ = std::fs::remove_dir_all(data_dir());
    if let Err(e) = outcome {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

/// Idle sockets by the ten thousand need as many descriptors, in the bench and in the servers
/// it starts (they inherit the limit): the soft limit goes up to the hard one, and as root the
/// hard one too.
fn raise_fd_limit() {
    const WANT: libc::rlim_t = 1 << 20;
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: WANT.max(l.rlim_cur),
            rlim_max: WANT.max(l.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

async fn run(opts: Opts) -> Result<(), String> {
    let began = Instant::now();
    let mut z = Sizes::new(opts.quick);
    if let Some(c) = opts.connect_concurrency {
        z.connect_concurrency = c;
    }
    if let Some(secs) = opts.open_secs {
        z.open_relay_secs = secs;
        z.open_setup_secs = secs;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())?;
    let data_dir = data_dir();

    if opts.cluster {
        return run_cluster(opts, z, http, began).await;
    }
    let mut procs: Vec<Option<Proc>> = Vec::new();
    let vchat = VchatOpts {
        bin: opts.vchat_bin.clone(),
        build_if_missing: false,
        limits_off: true,
        env: &[],
        purpose: "bench",
    };
    procs.push(Some(start_vchat(&vchat, &data_dir, &http).await?));
    let mut notes = pinning(&opts);
    // The second column: another build of ours (`--against`), else the Node reference.
    let (second, second_name) = if let Some(other) = &opts.against {
        let before = VchatOpts {
            bin: Some(other.clone()),
            ..vchat
        };
        let dir = support::server::data_dir("bench-against");
        let mut p = start_vchat(&before, &dir, &http).await?;
        let mut named = (*p.target).clone();
        named.name = "against";
        p.target = Arc::new(named);
        notes.push(format!("against: {}", other.display()));
        (Some(p), "against")
    } else if opts.no_node {
        (None, "node-reference")
    } else {
        let node = match prepare_node(&opts.node_reference).await {
            Ok(dir) => match start_node(&dir, &http).await {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("warning: node-reference not started: {e}");
                    None
                }
            },
            Err(e) => {
                eprintln!("warning: node-reference not prepared: {e}");
                None
            }
        };
        (node, "node-reference")
    };
    procs.push(second);
    let mut names = vec!["vchat-signal", second_name];
    let relays = opts.only.is_empty() || opts.only.iter().any(|o| o.starts_with("relay"));
    if opts.ceiling && relays {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.env(ceiling::SERVE_ENV, "1");
        procs.push(Some(spawn_server(ceiling::NAME, cmd, &http).await?));
        names.push(ceiling::NAME);
    }
    for p in procs.iter().flatten() {
        eprintln!(
            "{} pid {} on {}",
            p.target.name, p.target.pid, p.target.addr
        );
    }
    let setup_secs = began.elapsed().as_secs_f64();

    report(&opts, z, procs, &names, began, setup_secs, notes).await
}

/// Where servers and load ran, for the report.
fn pinning(opts: &Opts) -> Vec<String> {
    let core = |c: Option<usize>| c.map_or("any core".to_string(), |c| format!("core {c}"));
    vec![format!(
        "servers on {}, load on {}",
        core(opts.server_core),
        core(opts.load_core)
    )]
}

/// The plots: latency against offered load (each open-loop sweep) and RSS per idle socket
/// against the number of sockets, one line per server. Files written, if any had data.
fn plots(table: &Table, dir: &Path) -> Result<Vec<PathBuf>, String> {
    use support::plot::{chart, Line};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let sweeps = [
        (
            "relay-open",
            "relay latency",
            "offered candidates/s",
            "ICE relay, open loop: latency from when each candidate was due",
        ),
        (
            "setup-open",
            "due→v1OnNewCall (time to ring)",
            "offered call flows/s",
            "Call setup, open loop: time to ring from when each flow was due",
        ),
    ];
    for (series, metric, x_desc, title) in sweeps {
        let mut lines = Vec::new();
        for (pct, dashed) in [("p50", true), ("p99", false)] {
            for (col, pts) in table
                .series(series, &format!("{metric} {pct} (ms)"))
                .into_iter()
                .enumerate()
            {
                if !pts.is_empty() {
                    lines.push(Line {
                        name: format!("{} {pct}", table.names[col]),
                        points: pts,
                        dashed,
                        color: col,
                    });
                }
            }
        }
        if !lines.is_empty() {
            let f = dir.join(format!("{series}.svg"));
            chart(&f, title, x_desc, "latency (ms, log scale)", &lines, true)?;
            written.push(f);
        }
    }
    let lines: Vec<Line> = table
        .series("idle", "RSS per connection (KiB)")
        .into_iter()
        .enumerate()
        .filter(|(_, pts)| !pts.is_empty())
        .map(|(col, points)| Line {
            name: table.names[col].clone(),
            points,
            dashed: false,
            color: col,
        })
        .collect();
    if !lines.is_empty() {
        let f = dir.join("rss-per-socket.svg");
        chart(
            &f,
            "Memory per idle socket (RSS growth from the fresh server ÷ sockets)",
            "idle sockets",
            "KiB per socket",
            &lines,
            false,
        )?;
        written.push(f);
    }
    Ok(written)
}

/// How late this machine wakes a thread: a thread on the load's core sleeps 100 µs at a time
/// for `secs` and records how much longer each sleep took (p50, p99, p99.9, worst, in ms). On a
/// virtual machine whose host takes its cores away now and then, this is the floor under every
/// latency the bench reports.
fn machine_jitter(secs: f64) -> [f64; 4] {
    let t = std::thread::spawn(move || {
        let (start, mut over) = (Instant::now(), Vec::new());
        while start.elapsed().as_secs_f64() < secs {
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_micros(100));
            over.push((t0.elapsed().as_secs_f64() * 1e3 - 0.1).max(0.0));
        }
        over.sort_by(|a, b| a.total_cmp(b));
        [
            pct(&over, 50.0),
            pct(&over, 99.0),
            pct(&over, 99.9),
            pct(&over, 100.0),
        ]
    });
    t.join().unwrap_or([f64::NAN; 4])
}

/// One measured step: a scenario, at a size or rate where it has one.
#[derive(Clone, Copy)]
enum Step {
    Idle(usize),
    Setup,
    SetupOpen(f64),
    Relay,
    RelayOpen(f64),
    Presence,
    Rooms,
}

impl Step {
    /// Its name in `--only`.
    fn scenario(&self) -> &'static str {
        match self {
            Step::Idle(_) => "connections",
            Step::Setup => "setup",
            Step::SetupOpen(_) => "setup-open",
            Step::Relay => "relay",
            Step::RelayOpen(_) => "relay-open",
            Step::Presence => "presence",
            Step::Rooms => "rooms",
        }
    }
    fn label(&self) -> String {
        match self {
            Step::Idle(n) => format!("1 connections, {n} idle"),
            Step::Setup => "2 call setup".into(),
            Step::SetupOpen(r) => format!("2b call setup, open loop {r:.0}/s"),
            Step::Relay => "3 ICE relay".into(),
            Step::RelayOpen(r) => format!("3b ICE relay, open loop {r:.0}/s"),
            Step::Presence => "4 presence poll".into(),
            Step::Rooms => "5 room emits (typing)".into(),
        }
    }
    fn x(&self) -> Option<(&'static str, f64)> {
        match *self {
            Step::Idle(n) => Some(("idle", n as f64)),
            Step::SetupOpen(r) => Some(("setup-open", r)),
            Step::RelayOpen(r) => Some(("relay-open", r)),
            _ => None,
        }
    }
    /// Whether the bare-WebSocket ceiling (which only relays) takes part.
    fn relays(&self) -> bool {
        matches!(self, Step::Relay | Step::RelayOpen(_))
    }
}

/// Offered rates of the open-loop relay when `--relay-rates` is not given: fractions of the
/// second column's closed-loop maximum from this run (the issue's target is set at half the
/// Node reference's maximum), else of the first column's, else fixed rates.
fn default_relay_rates(table: &Table) -> (Vec<f64>, String) {
    const FRACTIONS: [f64; 6] = [0.25, 0.5, 1.0, 1.5, 2.0, 2.5];
    let max = table
        .rows
        .iter()
        .find(|r| r.scenario == Step::Relay.label() && r.metric == "relayed msgs/s");
    for col in [1, 0] {
        if let Some(m) = max
            .and_then(|r| r.median(col))
            .filter(|m| m.is_finite() && *m > 0.0)
        {
            // Rounded to 1,000 msgs/s so runs line up.
            let rates = FRACTIONS
                .iter()
                .map(|f| ((f * m / 1000.0).round() * 1000.0).max(1000.0))
                .collect();
            let why = format!(
                "open-loop relay rates: {FRACTIONS:?} × {}'s closed-loop maximum in this run ({m:.0} msgs/s)",
                table.names[col]
            );
            return (rates, why);
        }
    }
    let rates = vec![10e3, 20e3, 40e3, 60e3, 80e3, 100e3];
    (
        rates,
        "open-loop relay rates: fixed (no closed-loop relay ran)".into(),
    )
}

async fn run_step(step: Step, t: Arc<Target>, z: Sizes, epoch: Instant, rss0: f64) -> Res {
    match step {
        Step::Idle(n) => timed(s_connections(t, z, n, rss0)).await,
        Step::Setup => timed(s_calls(t, z)).await,
        Step::SetupOpen(r) => timed(s_setup_open(t, z, r)).await,
        Step::Relay => timed(s_ice(t, z, epoch)).await,
        Step::RelayOpen(r) => timed(s_relay_open(t, z, epoch, r)).await,
        Step::Presence => timed(s_presence(t, z)).await,
        Step::Rooms => timed(s_rooms(t, z)).await,
    }
}

/// Runs every step on every column (`--repeat` times, alternating which column goes first)
/// and prints the table.
#[allow(clippy::too_many_arguments)]
async fn report(
    opts: &Opts,
    z: Sizes,
    mut procs: Vec<Option<Proc>>,
    names: &[&str],
    began: Instant,
    setup_secs: f64,
    mut notes: Vec<String>,
) -> Result<(), String> {
    let load0 = loadavg();
    let jitter = machine_jitter(if opts.quick { 0.5 } else { 2.0 });
    notes.push(format!(
        "machine: a 100 µs sleep on the load's core overslept by p50 {:.3} ms, p99 {:.2} ms, \
         p99.9 {:.2} ms, worst {:.2} ms (no server load yet): latencies below these are not \
         measurable here",
        jitter[0], jitter[1], jitter[2], jitter[3]
    ));
    let epoch = Instant::now();
    let mut table = Table::new(names);
    for (m, v) in ["p50", "p99", "p99.9", "max"].iter().zip(jitter) {
        let row = table.row("0 machine", &format!("sleep overshoot {m} (ms)"), None);
        row.v[0].push(v);
    }
    let fresh_rss: Vec<f64> = procs
        .iter()
        .map(|p| {
            p.as_ref()
                .and_then(|p| proc_status_kib(&p.target.pid.to_string(), "VmRSS:"))
                .unwrap_or(f64::NAN)
        })
        .collect();
    let wanted = |s: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == s);
    let mut steps: Vec<Step> = Vec::new();
    for n in opts.idle_sizes.clone().unwrap_or(vec![z.connections]) {
        steps.push(Step::Idle(n));
    }
    steps.push(Step::Setup);
    steps.extend(opts.setup_rates.iter().map(|&r| Step::SetupOpen(r)));
    steps.push(Step::Relay);
    // The open-loop relay steps are added once the closed loop has run (see below).
    steps.push(Step::RelayOpen(f64::NAN));
    steps.push(Step::Presence);
    steps.push(Step::Rooms);
    let mut k = 0;
    while k < steps.len() {
        let step = steps[k];
        k += 1;
        if let Step::RelayOpen(r) = step {
            if r.is_nan() {
                let rates = match &opts.relay_rates {
                    Some(r) => r.clone(),
                    None => {
                        let (rates, why) = default_relay_rates(&table);
                        notes.push(why);
                        rates
                    }
                };
                let opened: Vec<Step> = rates.into_iter().map(Step::RelayOpen).collect();
                steps.splice(k..k, opened);
                continue;
            }
        }
        if !wanted(step.scenario()) {
            continue;
        }
        let scen = step.label();
        for rep in 0..opts.repeat {
            let mut order: Vec<usize> = (0..procs.len()).collect();
            if rep % 2 == 1 {
                order.reverse();
            }
            for col in order {
                let Some(p) = &mut procs[col] else { continue };
                if p.target.name == ceiling::NAME && !step.relays() {
                    continue;
                }
                let t = p.target.clone();
                eprintln!("[{scen}] {} ...", t.name);
                let fut = run_step(step, t.clone(), z, epoch, fresh_rss[col]);
                match tokio::time::timeout(z.scenario_timeout, fut).await {
                    Ok(r) => {
                        eprintln!(
                            "[{scen}] {}: {:.1} s, {} errors, client CPU {:.0}% of one core",
                            t.name,
                            r.wall,
                            r.errors,
                            100.0 * r.client_cpu / r.wall
                        );
                        notes.push(format!(
                            "{scen} / {}: {:.1} s wall incl. setup, client CPU {:.0}% of one core, {} errors{}",
                            t.name,
                            r.wall,
                            100.0 * r.client_cpu / r.wall,
                            r.errors,
                            r.samples
                                .iter()
                                .map(|s| format!("\n    - {s}"))
                                .collect::<String>()
                        ));
                        table.add(&step, col, &r);
                    }
                    Err(_) => {
                        let msg = format!("TIMEOUT after {} s", z.scenario_timeout.as_secs());
                        eprintln!("[{scen}] {}: {msg}", t.name);
                        notes.push(format!("{scen} / {}: {msg}", t.name));
                        table.row(&scen, "status", None).text[col] = Some("timeout".into());
                    }
                }
                if let Ok(Some(st)) = p.child.try_wait() {
                    notes.push(format!("{} EXITED during {scen}: {st}", t.name));
                }
            }
        }
        // How close the first column comes to the ceiling, per repeat.
        if let Some(c) = names.iter().position(|n| *n == ceiling::NAME) {
            let metric = match step {
                Step::Relay => "relayed msgs/s",
                Step::RelayOpen(_) => "delivered msgs/s",
                _ => continue,
            };
            let Some(r) = table
                .rows
                .iter()
                .find(|r| r.scenario == scen && r.metric == metric)
            else {
                continue;
            };
            let shares: Vec<f64> = r.v[0]
                .iter()
                .zip(&r.v[c])
                .map(|(a, b)| 100.0 * a / b)
                .collect();
            table
                .row(
                    &scen,
                    &format!("{} as % of {}", names[0], ceiling::NAME),
                    None,
                )
                .v[0] = shares;
        }
    }
    for (col, p) in procs.iter().enumerate() {
        let Some(p) = p else { continue };
        let pid = p.target.pid.to_string();
        let hwm = proc_status_kib(&pid, "VmHWM:").map(|k| k / 1024.0);
        table
            .row("server", "peak RSS, VmHWM (MiB)", Some(Better::Lower))
            .v[col]
            .extend(hwm);
        table.row("server", "total CPU (s)", Some(Better::Lower)).v[col].push(proc_cpu_secs(&pid));
        let log = p.log.lock().unwrap();
        table.row("server", "log lines (warn+)", None).v[col].push(log.lines as f64);
        if log.lines > 0 {
            notes.push(format!(
                "{} log tail:\n    {}",
                p.target.name,
                log.last.join("\n    ")
            ));
        }
    }

    println!();
    println!(
        "{} ({} run, {} repeat(s), {} client thread(s), {} CPUs)",
        names.join(" vs "),
        if opts.quick { "quick" } else { "full" },
        opts.repeat,
        opts.client_threads,
        // SAFETY: sysconf has no preconditions. (available_parallelism would count only the
        // load's core once the bench is pinned.)
        unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }
    );
    if opts.repeat > 1 {
        println!("cells: median (lowest–highest) of the repeats; the ratio is of the medians");
    }
    println!();
    table.print();
    println!();
    println!("notes:");
    println!(
        "  load average (1/5/15 min) at start: {load0}, at end: {}",
        loadavg()
    );
    println!(
        "  vchat-signal runs with its abuse limits off: {}",
        limits_off_line()
    );
    for n in &notes {
        println!("  {n}");
    }
    if let Some(path) = &opts.json {
        std::fs::write(path, table.json_lines()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("  results, one JSON object per line: {}", path.display());
    }
    if let Some(dir) = &opts.plot {
        for f in plots(&table, dir)? {
            println!("  plot: {}", f.display());
        }
    }

    for p in procs.iter_mut().flatten() {
        let _ = p.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
    }
    let _ = std::fs::remove_dir_all(data_dir());
    println!(
        "  total {:.1} s (setup {:.1} s)",
        began.elapsed().as_secs_f64(),
        setup_secs
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// --cluster: one node against two nodes, each behind nginx
// ---------------------------------------------------------------------------------------------

/// A fresh PostgreSQL database for one column; its URL.
async fn fresh_database(admin: &str, name: &str) -> Result<String, String> {
    use sqlx::{Connection, Executor};
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .map_err(|e| format!("PostgreSQL at {admin} (VCHAT_BENCH_DATABASE_URL): {e}"))?;
    c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .map_err(|e| e.to_string())?;
    c.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(|e| e.to_string())?;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// What a cluster run leaves behind once its nodes are gone: its databases, and its keys in
/// Redis (the node list and the keys' birth mark never expire by themselves).
async fn clean_up_cluster(admin: &str, redis: &str, databases: &[String], prefix: &str) {
    use sqlx::{Connection, Executor};
    if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
        for name in databases {
            let _ = c
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
    let Ok(client) = redis::Client::open(redis) else {
        return;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut c).await;
    }
}

async fn run_cluster(
    opts: Opts,
    z: Sizes,
    http: reqwest::Client,
    began: Instant,
) -> Result<(), String> {
    let admin = std::env::var("VCHAT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis =
        std::env::var("VCHAT_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut keep: Vec<Proc> = Vec::new();
    let mut fronts: Vec<support::nginx::Nginx> = Vec::new();
    let mut procs: Vec<Option<Proc>> = Vec::new();
    let mut databases: Vec<String> = Vec::new();
    let prefix = format!("vchat-bench-{}", std::process::id());
    // Column names live as long as the report; the bench makes two.
    let many: &'static str = Box::leak(format!("{} nodes", opts.nodes).into_boxed_str());
    for (col, nodes) in [1usize, opts.nodes].into_iter().enumerate() {
        let name = format!("vchat_bench_{}_{col}", std::process::id());
        let db = fresh_database(&admin, &name).await?;
        databases.push(name);
        let mut started: Vec<Proc> = Vec::new();
        for i in 0..nodes {
            let mut env: Vec<(String, String)> = vec![
                ("VCHAT_DATABASE_URL".into(), db.clone()),
                ("VCHAT_TURN_SECRET".into(), "bench-turn-secret".into()),
            ];
            if nodes > 1 {
                env.push(("VCHAT_REDIS_URL".into(), redis.clone()));
                env.push(("VCHAT_REDIS_PREFIX".into(), prefix.clone()));
                env.push(("VCHAT_NODE_ID".into(), format!("b{i}")));
            }
            let o = VchatOpts {
                bin: opts.vchat_bin.clone(),
                build_if_missing: false,
                limits_off: true,
                env: &env,
                purpose: "bench",
            };
            let dir = data_dir().join(format!("c{col}-n{i}"));
            started.push(start_vchat(&o, &dir, &http).await?);
        }
        let ups: Vec<String> = started.iter().map(|p| p.target.addr.to_string()).collect();
        let front = support::nginx::Nginx::start(&ups)
            .ok_or("nginx not found (apt install nginx-light)")?;
        let addr: std::net::SocketAddr = front
            .url
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut first = started.remove(0);
        first.target = Arc::new(Target {
            name: if nodes == 1 { "1 node" } else { many },
            addr,
            pid: first.target.pid,
            others: started.iter().map(|p| p.target.pid).collect(),
            api: support::api::Api {
                http: http.clone(),
                base: format!("http://{addr}/api/v2/"),
            },
        });
        keep.extend(started);
        fronts.push(front);
        procs.push(Some(first));
    }
    // The nodes of the cluster see each other within a heartbeat.
    wait_cluster(&http, &keep, opts.nodes).await?;
    let setup_secs = began.elapsed().as_secs_f64();
    let notes = vec![
        "both columns: PostgreSQL store (synchronous_commit on), nginx in front (round-robin); \
         nginx's own CPU is not counted; server CPU is every node's"
            .to_string(),
        format!(
            "{many}: Redis pub/sub between the nodes; nginx spreads the sockets over the nodes \
             (round-robin), and work on a call placed on another node is forwarded to it"
        ),
    ];
    let r = report(&opts, z, procs, &["1 node", many], began, setup_secs, notes).await;
    drop(fronts);
    for mut p in keep {
        let _ = p.child.start_kill();
        // Gone before its keys are: a live node would write its heartbeat back.
        let _ = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
    }
    clean_up_cluster(&admin, &redis, &databases, &prefix).await;
    r
}

/// Waits until every node of the cluster reports `n` live nodes.
async fn wait_cluster(http: &reqwest::Client, nodes: &[Proc], n: usize) -> Result<(), String> {
    let all = format!("vchat_cluster_nodes {n}");
    for p in nodes {
        let url = format!("http://{}/metrics", p.target.addr);
        for _ in 0..200 {
            let text = match http.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.lines().any(|l| l == all) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    Ok(())
}
