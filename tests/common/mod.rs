//! Test harness: the real `vchat-signal` binary on an ephemeral port, real Socket.IO clients
//! (npm `socket.io-client`, driven through `tests/support/sio-driver.mjs`), and a REST client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const WAIT: Duration = Duration::from_secs(8);

/// A running server process. Killed on drop.
pub struct TestServer {
    pub url: String,
    pub turn: Option<String>,
    /// Where `/metrics` is served when it has its own listener.
    pub metrics_addr: Option<String>,
    pub data_dir: PathBuf,
    child: Child,
    env: Vec<(String, String)>,
    keep_dir: bool,
    /// The harness made this server's PostgreSQL database (and drops it with the server).
    owns_db: bool,
    /// `VCHAT_TEST_NODES=2`: this "server" is a cluster behind nginx (`url` is nginx's); the
    /// other nodes, nginx and Redis live here.
    spread: Option<Box<cluster::Spread>>,
    /// Where this server keeps media when it is a bucket (spread over a cluster).
    pub bucket: Option<s3::Bucket>,
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "vchat-test-{}-{}",
        std::process::id(),
        vchat_signal::ids::random_hex(6)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// Extra `VCHAT_*` settings, e.g. `("VCHAT_CALL_TIMEOUT_MS", "1000")`.
    pub fn start_with(env: &[(&str, &str)]) -> TestServer {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(temp_dir(), env)
    }

    fn spawn(data_dir: PathBuf, env: Vec<(String, String)>) -> TestServer {
        if cluster::spread_nodes() > 1 && !env.iter().any(|(k, _)| k == "VCHAT_REDIS_URL") {
            return cluster::Spread::start(data_dir, env);
        }
        Self::spawn_one(data_dir, env)
    }

    fn spawn_one(data_dir: PathBuf, mut env: Vec<(String, String)>) -> TestServer {
        // With VCHAT_TEST_STORE=postgres every server gets a fresh PostgreSQL database (kept
        // across restarts, like the data dir).
        let owns_db = store_is_postgres() && !env.iter().any(|(k, _)| k == "VCHAT_DATABASE_URL");
        if owns_db {
            env.push(("VCHAT_DATABASE_URL".into(), fresh_postgres_database()));
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vchat-signal"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VCHAT_LISTEN", "127.0.0.1:0")
            .env("VCHAT_TURN_LISTEN", "127.0.0.1:0")
            .env("VCHAT_DATA_DIR", &data_dir)
            .env("VCHAT_JWT_SECRET", SECRET)
            // Every test user comes from 127.0.0.1, like users behind a proxy, and tests ring
            // and send far faster than people: the per-address and per-user rate limits are off
            // here unless a test sets them (tests/limits.rs checks each, and the defaults).
            .env("VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND", "0")
            .env("VCHAT_MAX_SOCKETS_PER_ADDRESS", "0")
            .env("VCHAT_MAX_CALLS_PER_MINUTE", "0")
            .env("VCHAT_MAX_UNANSWERED_CALLS", "0")
            .env("VCHAT_MAX_MESSAGES_PER_10S", "0")
            .env(
                "VCHAT_LOG",
                std::env::var("VCHAT_TEST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped());
        // `VCHAT_TEST_STDERR=<file>`: the server's log goes there (for tests that read it).
        match env.iter().find(|(k, _)| k == "VCHAT_TEST_STDERR") {
            Some((_, path)) => cmd.stderr(std::fs::File::create(path).expect("log file")),
            None => cmd.stderr(Stdio::inherit()),
        };
        for (k, v) in env.iter().filter(|(k, _)| k != "VCHAT_TEST_STDERR") {
            // An empty value removes a default setting (e.g. run without the JWT secret).
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let mut child = cmd.spawn().expect("start vchat-signal");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("server printed its address")
            .expect("readable stdout");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let turn = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("turn="))
            .map(str::to_string);
        let metrics_addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("metrics="))
            .map(str::to_string);
        TestServer {
            url,
            turn,
            metrics_addr,
            data_dir,
            child,
            env,
            keep_dir: false,
            owns_db,
            spread: None,
            bucket: None,
        }
    }

    /// The PostgreSQL URL this server stores in, if it does.
    pub fn database_url(&self) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == "VCHAT_DATABASE_URL")
            .map(|(_, v)| v.clone())
    }

    /// Holds the database's write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the calls and
    /// messages tables locked against writes) until the blocker is released: the server's
    /// writes then fail after its lock timeout, a real store failure.
    pub async fn block_writes(&self) -> WriteBlocker {
        use sqlx::Connection;
        match self.database_url() {
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut c).await.unwrap();
                sqlx::query("LOCK TABLE calls, messages IN EXCLUSIVE MODE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                WriteBlocker::Postgres(c)
            }
            None => {
                let url = format!("sqlite://{}", self.data_dir.join("vchat.db").display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                WriteBlocker::Sqlite(c)
            }
        }
    }

    /// A server on a fresh data dir holding a copy of `db` as its database (a restored backup).
    pub fn start_on_copy(db: &std::path::Path) -> TestServer {
        let dir = temp_dir();
        std::fs::copy(db, dir.join("vchat.db")).expect("copy the database");
        Self::spawn(dir, Vec::new())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, like a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), 15);
        self.child.wait().unwrap()
    }

    /// Every node's data dir (one, unless spread over a cluster).
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.data_dir.clone()];
        if let Some(spread) = &self.spread {
            dirs.extend(spread.peer_data_dirs());
        }
        dirs
    }

    /// Every node's embedded TURN server (one, unless spread over a cluster).
    pub fn turn_addrs(&self) -> Vec<String> {
        let mut turns: Vec<String> = self.turn.iter().cloned().collect();
        if let Some(spread) = &self.spread {
            turns.extend(spread.peer_turns());
        }
        turns
    }

    /// The names of the files kept under `folder` (`m`: media messages), wherever the server
    /// keeps them: its bucket, else its data dir.
    pub async fn kept_files(&self, folder: &str) -> Vec<String> {
        match &self.bucket {
            Some(b) => {
                let under = format!("{}/{folder}/", b.prefix);
                b.keys()
                    .await
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&under).map(str::to_string))
                    .collect()
            }
            None => std::fs::read_dir(self.data_dir.join("media").join(folder))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A new process on the same data dir (after `kill` or `terminate`).
    pub fn restart(mut self) -> TestServer {
        self.kill();
        self.keep_dir = true;
        let (dir, env, owns_db) = (self.data_dir.clone(), self.env.clone(), self.owns_db);
        drop(self);
        let mut s = Self::spawn(dir, env);
        s.owns_db = owns_db;
        s
    }

    /// One value from `/metrics` (a gauge or counter, optionally with labels), 0 if absent.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics().await, name)
    }

    /// Polls `/metrics` until `name` satisfies `ok` (the server's own account of what it has
    /// done, so tests wait on facts rather than on time). Panics after `WAIT`.
    pub async fn wait_metric(&self, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
        self.wait_metric_within(name, ok, WAIT).await
    }

    /// [`Self::wait_metric`] for what the server does on its own clock (a heartbeat, a grace):
    /// `limit` is that clock's period plus margin, not a guess at speed.
    pub async fn wait_metric_within(
        &self,
        name: &str,
        ok: impl Fn(f64) -> bool,
        limit: Duration,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = self.metric(name).await;
            if ok(v) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("metric {name} never got there (last {v})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `/metrics` text (of a spread cluster: every node's values, summed).
    pub async fn metrics(&self) -> String {
        if let Some(spread) = &self.spread {
            return spread.metrics().await;
        }
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The server's SQLite database, read-only (to check what was stored, or not).
    /// The server's database (SQLite read-only, or its PostgreSQL database), to check what was
    /// stored, or not. Queries must suit both (`$1` placeholders).
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = self.database_url().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=ro",
                self.data_dir.join("vchat.db").display()
            )
        });
        sqlx::AnyPool::connect(&url)
            .await
            .expect("open the database")
    }

    pub fn api(&self) -> Api {
        Api {
            base: self.url.clone(),
            http: reqwest::Client::new(),
        }
    }
}

/// A value from Prometheus text, by exact series name (`name` or `name{labels}`).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            (series == name).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A spread cluster's other nodes and nginx go first.
        self.spread.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
            if let Some(url) = self.database_url().filter(|_| self.owns_db) {
                drop_postgres_database(&url);
            }
        }
    }
}

/// A signed token for a test user. `did` is the device.
pub fn token(sub: &str, did: Option<&str>) -> String {
    token_exp(sub, did, vchat_signal::auth::now_unix() + 3600)
}

pub fn token_exp(sub: &str, did: Option<&str>, exp: u64) -> String {
    vchat_signal::auth::mint(
        SECRET.as_bytes(),
        &vchat_signal::auth::Claims {
            sub: sub.into(),
            exp,
            name: Some(format!("{} Name", capitalize(sub))),
            identifier: None,
            img: Some(format!("https://img.example/{sub}.png")),
            did: did.map(str::to_string),
        },
    )
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

// ---------------- REST ----------------

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(
            self.status, 200,
            "expected 200, got {}: {}",
            self.status, self.body
        );
        assert_eq!(self.body["code"], 200);
        self.body["data"].clone()
    }
    /// Asserts an error status with the V Chat envelope and returns its message.
    #[track_caller]
    pub fn err(&self, status: u16) -> String {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.body
        );
        assert_eq!(self.body["code"], status, "envelope code: {}", self.body);
        self.body["data"]
            .as_str()
            .unwrap_or_else(|| panic!("error data must be a string: {}", self.body))
            .to_string()
    }
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let url = format!("{}/api/v2/{}", self.base, path.trim_start_matches('/'));
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .timeout(WAIT);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("http request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("body must be JSON, got {status} {text:?}"));
        Reply { status, body }
    }
    /// A multipart request, as the V Chat SDK sends sign-ins, uploads and messages.
    pub async fn multipart(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        form: reqwest::multipart::Form,
    ) -> Reply {
        let url = format!("{}/api/v2/{}", self.base, path.trim_start_matches('/'));
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .timeout(WAIT)
            .multipart(form);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.expect("http request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("body must be JSON, got {status} {text:?}"));
        Reply { status, body }
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("PATCH", path, Some(token), Some(body)).await
    }
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("POST", path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call("DELETE", path, Some(token), None).await
    }
    /// Opens (or gets) the single room between `me` and the user with `identifier`.
    pub async fn peer_room(&self, me: &str, identifier: &str) -> String {
        let d = self
            .call(
                "POST",
                &format!("channel/peer-room/{identifier}"),
                Some(me),
                None,
            )
            .await
            .ok();
        d["rId"].as_str().unwrap().to_string()
    }
    /// Makes a user known to the server (users exist from the tokens they present).
    pub async fn touch(&self, token: &str) {
        self.get("call/active", token).await.ok();
    }
}

pub mod cluster;
pub mod s3;
pub mod uploads;

// ---------------- Socket.IO clients through the Node driver ----------------

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>;

/// One Node process hosting any number of real Socket.IO clients.
pub struct Driver {
    stdin: tokio::sync::Mutex<tokio::process::ChildStdin>,
    routes: Routes,
    _child: tokio::process::Child,
    url: String,
}

pub struct Conn<'d> {
    pub id: String,
    /// The Socket.IO socket id the server gave this socket.
    pub sid: String,
    driver: &'d Driver,
    rx: mpsc::UnboundedReceiver<Value>,
    /// Events read while looking for another one, kept in arrival order.
    backlog: Vec<Value>,
}

#[derive(Default, Clone)]
pub struct ConnectOpts {
    pub headers: Option<Value>,
    pub query: Option<Value>,
    pub auth: Option<Value>,
    pub version: Option<u8>,
    pub transports: Option<Vec<&'static str>>,
}

impl ConnectOpts {
    pub fn header(token: &str) -> Self {
        ConnectOpts {
            headers: Some(json!({ "Authorization": format!("Bearer {token}") })),
            ..Default::default()
        }
    }
    pub fn query(token: &str) -> Self {
        ConnectOpts {
            query: Some(json!({ "auth": format!("Bearer {token}") })),
            ..Default::default()
        }
    }
    pub fn auth(token: &str) -> Self {
        ConnectOpts {
            auth: Some(json!({ "token": token })),
            ..Default::default()
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo test` alone must work on a fresh checkout: install the npm clients once if missing.
fn ensure_node_modules() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let root = repo_root();
        if root
            .join("node_modules/socket.io-client/package.json")
            .exists()
            && root
                .join("node_modules/socket.io-client-v2/package.json")
                .exists()
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&root)
            .status()
            .expect("npm must be installed to run the Socket.IO client tests");
        assert!(status.success(), "npm ci failed");
    });
}

impl Driver {
    pub async fn new(server: &TestServer) -> Driver {
        Self::new_at(&server.url).await
    }

    /// Clients of the server (or load balancer) at `url`.
    pub async fn new_at(url: &str) -> Driver {
        ensure_node_modules();
        let mut child = tokio::process::Command::new("node")
            .arg(repo_root().join("tests/support/sio-driver.mjs"))
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed (see README: Tests)");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let routes: Routes = Arc::default();
        let r = routes.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).expect("driver speaks JSON");
                if v["type"] == "fatal" {
                    panic!("driver: {v}");
                }
                let id = v["id"].as_str().unwrap_or_default().to_string();
                if let Some(tx) = r.lock().unwrap().get(&id) {
                    let _ = tx.send(v);
                }
            }
        });
        Driver {
            stdin: tokio::sync::Mutex::new(stdin),
            routes,
            _child: child,
            url: url.to_string(),
        }
    }

    async fn send(&self, cmd: Value) {
        let mut s = self.stdin.lock().await;
        s.write_all(format!("{cmd}\n").as_bytes()).await.unwrap();
        s.flush().await.unwrap();
    }

    /// Opens a socket and waits for `connect` or `connect_error`.
    pub async fn open(&self, id: &str, opts: ConnectOpts) -> Result<Conn<'_>, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.lock().unwrap().insert(id.to_string(), tx);
        let mut cmd = json!({ "op": "connect", "id": id, "url": self.url });
        if let Some(h) = opts.headers {
            cmd["headers"] = h;
        }
        if let Some(q) = opts.query {
            cmd["query"] = q;
        }
        if let Some(a) = opts.auth {
            cmd["auth"] = a;
        }
        if let Some(v) = opts.version {
            cmd["version"] = json!(v);
        }
        if let Some(t) = opts.transports {
            cmd["transports"] = json!(t);
        }
        self.send(cmd).await;
        let mut conn = Conn {
            id: id.to_string(),
            sid: String::new(),
            driver: self,
            rx,
            backlog: Vec::new(),
        };
        loop {
            let m = conn.next_raw().await.expect("connect outcome");
            match m["type"].as_str() {
                Some("connect") => {
                    conn.sid = m["sid"].as_str().unwrap_or_default().to_string();
                    return Ok(conn);
                }
                Some("connect_error") => return Err(m["message"].as_str().unwrap_or("").into()),
                _ => conn.backlog.push(m),
            }
        }
    }

    /// A connected socket for `token` (header auth), panicking if refused.
    pub async fn connect(&self, id: &str, token: &str) -> Conn<'_> {
        self.open(id, ConnectOpts::header(token))
            .await
            .unwrap_or_else(|e| panic!("{id} refused: {e}"))
    }
}

impl Conn<'_> {
    async fn next_raw(&mut self) -> Option<Value> {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Emits with the payload as a JSON string, as V Chat clients send it.
    pub async fn emit(&self, event: &str, payload: &Value) {
        self.emit_raw(event, json!([payload.to_string()])).await
    }

    /// Emits the same event `n` times, as fast as the client can.
    pub async fn emit_repeated(&self, event: &str, payload: &Value, n: usize) {
        self.driver
            .send(json!({ "op": "emit", "id": self.id, "event": event,
                          "args": [payload.to_string()], "repeat": n }))
            .await
    }

    /// Stops reading the socket's TCP stream, as a client that hangs: the server's writes to
    /// it back up.
    pub async fn pause_reading(&mut self) {
        self.driver
            .send(json!({ "op": "pause", "id": self.id }))
            .await;
        loop {
            let m = self.next_raw().await.expect("pause outcome");
            match m["type"].as_str() {
                Some("paused") => return,
                Some("fatal") => panic!("{}: {m}", self.id),
                _ => self.backlog.push(m),
            }
        }
    }

    /// Emits with exactly these Socket.IO arguments.
    pub async fn emit_raw(&self, event: &str, args: Value) {
        self.driver
            .send(json!({ "op": "emit", "id": self.id, "event": event, "args": args }))
            .await
    }

    /// Waits for `event` (earlier other events stay queued) and returns its payload, decoded
    /// from the JSON string the server sends.
    pub async fn expect(&mut self, event: &str) -> Value {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|m| m["type"] == "event" && m["event"] == event)
        {
            return decode(self.backlog.remove(i), event);
        }
        loop {
            match self.next_raw().await {
                None => panic!(
                    "{}: no {event} within {WAIT:?}; pending: {}",
                    self.id,
                    brief(&self.backlog)
                ),
                Some(m) if m["type"] == "event" && m["event"] == event => return decode(m, event),
                Some(m) => self.backlog.push(m),
            }
        }
    }

    /// The next event of any name, in arrival order: (name, decoded payload).
    pub async fn next_event(&mut self) -> (String, Value) {
        loop {
            if let Some(i) = self.backlog.iter().position(|m| m["type"] == "event") {
                let m = self.backlog.remove(i);
                let name = m["event"].as_str().unwrap_or_default().to_string();
                return (name.clone(), decode(m, &name));
            }
            let m = self
                .next_raw()
                .await
                .unwrap_or_else(|| panic!("{}: no event within {WAIT:?}", self.id));
            self.backlog.push(m);
        }
    }

    /// The raw Socket.IO arguments of the next `event` (to check the wire form).
    pub async fn expect_args(&mut self, event: &str) -> Value {
        loop {
            if let Some(i) = self
                .backlog
                .iter()
                .position(|m| m["type"] == "event" && m["event"] == event)
            {
                return self.backlog.remove(i)["args"].clone();
            }
            let m = self
                .next_raw()
                .await
                .unwrap_or_else(|| panic!("{}: no {event}", self.id));
            self.backlog.push(m);
        }
    }

    /// Proves `event` was *not* received: asks the server a question on this socket and waits
    /// for the answer. The server answers in order on a socket, so anything sent to this socket
    /// before the answer has arrived by then. No sleep involved.
    pub async fn assert_none(&mut self, event: &str) {
        self.fence().await;
        let seen: Vec<_> = self
            .backlog
            .iter()
            .filter(|m| m["type"] == "event" && m["event"] == event)
            .collect();
        assert!(
            seen.is_empty(),
            "{}: unexpected {event}: {}",
            self.id,
            brief(&seen.into_iter().cloned().collect::<Vec<_>>())
        );
    }

    /// Round trip through the server on this socket (a presence poll with a unique marker).
    pub async fn fence(&mut self) {
        let marker = vchat_signal::ids::random_hex(8);
        self.emit(
            "v1MyOnline",
            &json!([{ "peerId": "fence", "extra": marker }]),
        )
        .await;
        loop {
            let m = self
                .next_raw()
                .await
                .unwrap_or_else(|| panic!("{}: fence not answered", self.id));
            if m["type"] == "event" && m["event"] == "v1OnMyOnline" {
                let v = decode(m.clone(), "v1OnMyOnline");
                if v[0]["extra"] == marker.as_str() {
                    return;
                }
            }
            self.backlog.push(m);
        }
    }

    /// Every event of this name received so far (after a fence), removed from the queue.
    pub async fn drain(&mut self, event: &str) -> Vec<Value> {
        self.fence().await;
        let (hit, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.backlog)
            .into_iter()
            .partition(|m| m["type"] == "event" && m["event"] == event);
        self.backlog = rest;
        hit.into_iter().map(|m| decode(m, event)).collect()
    }

    /// Waits for the server to drop this socket.
    pub async fn expect_disconnect(&mut self) -> String {
        loop {
            let m = self
                .next_raw()
                .await
                .unwrap_or_else(|| panic!("{}: not disconnected", self.id));
            if m["type"] == "disconnect" {
                return m["reason"].as_str().unwrap_or_default().to_string();
            }
            self.backlog.push(m);
        }
    }

    pub async fn close(mut self) {
        self.driver
            .send(json!({ "op": "close", "id": self.id }))
            .await;
        while let Some(m) = self.next_raw().await {
            if m["type"] == "closed" {
                break;
            }
        }
    }
}

/// Queued events for a failure message, each cut short.
fn brief(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            let s = e.to_string();
            if s.len() > 300 {
                format!("{}…", &s[..300])
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Server payloads are one JSON string argument; decode it.
fn decode(m: Value, event: &str) -> Value {
    let arg = &m["args"][0];
    let text = arg
        .as_str()
        .unwrap_or_else(|| panic!("{event}: payload must be a JSON string, got {arg}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{event}: bad JSON {text:?}: {e}"))
}

// ---------------- real media bytes ----------------

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real PNG (RGB, a colour gradient) that any decoder opens.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend([
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                128,
            ]);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let idat = z.finish().unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A file part for a multipart form.
pub fn file_part(bytes: Vec<u8>, name: &str, mime: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap()
}

/// The claims of a JWT (no verification: the test reads what the server put in).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The V Chat SDK's sign-in password: lowercase hex SHA-512 of "<key>_<identifier>".
pub fn sdk_password(key: &str, identifier: &str) -> String {
    vchat_signal::auth::signin::expected_password(key, identifier)
}

/// Runs the server binary with this environment and expects it to refuse to start; returns
/// what it printed on stderr.
pub fn refused_start(env: &[(&str, &str)]) -> String {
    let dir = temp_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vchat-signal"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VCHAT_LISTEN", "127.0.0.1:0")
        .env("VCHAT_TURN_LISTEN", "127.0.0.1:0")
        .env("VCHAT_DATA_DIR", &dir)
        .env("VCHAT_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vchat-signal");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "it started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------- the store under test ----------------

/// `VCHAT_TEST_STORE=postgres`: the suites run against PostgreSQL (`VCHAT_TEST_DATABASE_URL`,
/// default `postgres://postgres@127.0.0.1:5432/postgres`, a fresh database per server).
pub fn store_is_postgres() -> bool {
    std::env::var("VCHAT_TEST_STORE").as_deref() == Ok("postgres")
}

pub fn postgres_admin_url() -> String {
    std::env::var("VCHAT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs `f` on a runtime of its own (the harness's setup and teardown are synchronous).
fn on_own_runtime<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
    .join()
    .unwrap()
}

/// Creates an empty database and returns its URL.
pub fn fresh_postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = format!("vchat_t_{}", vchat_signal::ids::random_hex(8));
    let (a, n) = (admin.clone(), name.clone());
    on_own_runtime(move || {
        Box::pin(async move {
            use sqlx::{Connection, Executor};
            let mut c = sqlx::PgConnection::connect(&a)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {a}: {e} (VCHAT_TEST_DATABASE_URL)"));
            c.execute(format!("CREATE DATABASE {n}").as_str())
                .await
                .unwrap();
        })
    });
    match admin.rfind('/') {
        Some(i) if admin[..i].contains("://") && !admin[..i].ends_with('/') => {
            format!("{}/{name}", &admin[..i])
        }
        _ => format!("{}/{name}", admin.trim_end_matches('/')),
    }
}

pub fn drop_postgres_database(url: &str) {
    let Some(name) = url.rsplit('/').next().map(str::to_string) else {
        return;
    };
    if !name.starts_with("vchat_t_") {
        return;
    }
    let admin = postgres_admin_url();
    on_own_runtime(move || {
        Box::pin(async move {
            use sqlx::{Connection, Executor};
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let _ = c
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
            }
        })
    });
}

/// See [`TestServer::block_writes`].
pub enum WriteBlocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteBlocker {
    pub async fn release(self) {
        match self {
            WriteBlocker::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
            WriteBlocker::Postgres(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
        }
    }
}
