//! A cluster under test: Redis (`VCHAT_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`, or a
//! `redis-server` started on a free port), a fresh PostgreSQL database, N `vchat-signal` nodes on
//! loopback, and nginx in front of them running the shipped `deploy/nginx-vchat.conf`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::*;

/// Runs a cluster test only when Redis and PostgreSQL can be had; under `CI=true` their absence
/// fails instead (`.ci/run` provides both).
pub fn must_run(what: &str, missing: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what}: {missing} (CI must provide it)");
    }
    eprintln!("SKIPPED {what}: {missing}");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a Redis answers PING at `host:port`.
fn redis_answers(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("host:port"),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// A Redis for the cluster: the configured one, else our own `redis-server`.
pub struct TestRedis {
    pub url: String,
    child: Option<Child>,
}

impl TestRedis {
    /// A `redis-server` of our own on a free port (to stop and start under a cluster).
    pub fn own() -> Option<TestRedis> {
        let port = free_port();
        let mut r = TestRedis {
            url: format!("redis://127.0.0.1:{port}"),
            child: None,
        };
        r.start_own().then_some(r)
    }

    fn start_own(&mut self) -> bool {
        let addr = self.url.trim_start_matches("redis://").to_string();
        let port = addr.rsplit(':').next().unwrap_or_default().to_string();
        let Ok(child) = Command::new("redis-server")
            .args(["--port", &port, "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        for _ in 0..100 {
            if redis_answers(&addr) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Our own `redis-server`'s process id (to stop and resume it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("our own redis-server").id()
    }

    /// Kills our own Redis and starts it again, empty, on the same port.
    pub fn restart_empty(&mut self) {
        let mut old = self.child.take().expect("our own redis-server");
        let _ = old.kill();
        let _ = old.wait();
        assert!(self.start_own(), "redis-server did not come back");
    }

    pub fn get() -> Option<TestRedis> {
        let url = std::env::var("VCHAT_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let addr = url
            .trim_start_matches("redis://")
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .to_string();
        if redis_answers(&addr) {
            return Some(TestRedis { url, child: None });
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if redis_answers(&addr) {
                return Some(TestRedis {
                    url: format!("redis://{addr}"),
                    child: Some(child),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP link to Redis whose requests arrive `delay` late (its answers are not delayed): a
/// Redis far away, or too busy, that still answers every command. It can also be cut: its
/// connections close, and new ones close at once, until it is mended.
pub struct RedisLink {
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl RedisLink {
    /// Listens on a free port and forwards to `redis_url`; returns the link and its URL.
    pub fn start(redis_url: &str) -> (RedisLink, String) {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let target = redis_url.trim_start_matches("redis://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let delay_ms = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (delay, cut, conns) = (delay_ms.clone(), down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                {
                    // Under the lock `cut` takes: a connection is either closed by it or
                    // refused here.
                    let mut conns = conns.lock().unwrap();
                    if cut.load(Ordering::SeqCst) {
                        continue; // both dropped: closed at once
                    }
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                let (mut up_in, mut up_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut down_in, mut down_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_in, &mut down_out);
                    let _ = down_out.shutdown(std::net::Shutdown::Both);
                });
                // Each chunk is written `delay` after it was read, whatever came before it:
                // the link adds latency, not a queue.
                let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
                let delay = delay.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = up_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let due = std::time::Instant::now()
                            + Duration::from_millis(delay.load(Ordering::Relaxed));
                        if tx.send((due, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    use std::io::Write;
                    for (due, chunk) in rx {
                        std::thread::sleep(
                            due.saturating_duration_since(std::time::Instant::now()),
                        );
                        if up_out.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                    let _ = up_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        (
            RedisLink {
                delay_ms,
                down,
                open,
            },
            url,
        )
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Closes every connection through the link, and each new one at once, until [`mend`].
    ///
    /// [`mend`]: RedisLink::mend
    pub fn cut(&self) {
        let mut open = self.open.lock().unwrap();
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in open.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn mend(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

// nginx in front of the nodes (shared with the bench, `examples/support/nginx.rs`).
#[path = "../../examples/support/nginx.rs"]
mod nginx;
pub use nginx::Nginx;

/// N nodes sharing one Redis prefix and one PostgreSQL database.
pub struct TestCluster {
    pub nodes: Vec<Option<TestServer>>,
    pub nginx: Option<Nginx>,
    pub db_url: String,
    pub prefix: String,
    env: Vec<(String, String)>,
    /// The Redis URL of each node.
    urls: Vec<String>,
    addrs: Vec<String>,
    _redis: TestRedis,
}

impl TestCluster {
    /// `None` (skipped, said on stderr) when Redis or PostgreSQL is missing outside CI.
    pub fn start(what: &str, n: usize, extra: &[(&str, &str)]) -> Option<TestCluster> {
        let Some(redis) = TestRedis::get() else {
            must_run(
                what,
                "no Redis at VCHAT_TEST_REDIS_URL and no redis-server to start",
            );
            return None;
        };
        Self::start_on(what, redis, n, extra)
    }

    /// On a Redis of our own, which the test may restart ([`TestCluster::redis`]).
    pub fn start_own_redis(what: &str, n: usize, extra: &[(&str, &str)]) -> Option<TestCluster> {
        let Some(redis) = TestRedis::own() else {
            must_run(what, "no redis-server to start");
            return None;
        };
        Self::start_on(what, redis, n, extra)
    }

    /// On a Redis of our own that node `i` reaches at `link(i, url)` (a [`RedisLink`] to slow
    /// it down or cut it, or `url` itself).
    pub fn start_behind(
        what: &str,
        n: usize,
        extra: &[(&str, &str)],
        mut link: impl FnMut(usize, &str) -> String,
    ) -> Option<TestCluster> {
        let Some(redis) = TestRedis::own() else {
            must_run(what, "no redis-server to start");
            return None;
        };
        let urls = (0..n).map(|i| link(i, &redis.url)).collect();
        Self::start_at(what, redis, urls, n, extra)
    }

    pub fn redis(&mut self) -> &mut TestRedis {
        &mut self._redis
    }

    fn start_on(
        what: &str,
        redis: TestRedis,
        n: usize,
        extra: &[(&str, &str)],
    ) -> Option<TestCluster> {
        let urls = vec![redis.url.clone(); n];
        Self::start_at(what, redis, urls, n, extra)
    }

    /// Node `i` reaches `redis` at `urls[i]`.
    fn start_at(
        what: &str,
        redis: TestRedis,
        urls: Vec<String>,
        n: usize,
        extra: &[(&str, &str)],
    ) -> Option<TestCluster> {
        let admin = postgres_admin_url();
        let reachable = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    use sqlx::Connection;
                    sqlx::PgConnection::connect(&admin).await.is_ok()
                })
        })
        .join()
        .unwrap();
        if !reachable {
            must_run(what, "no PostgreSQL at VCHAT_TEST_DATABASE_URL");
            return None;
        }
        let db_url = fresh_postgres_database();
        let prefix = format!("vchat-t-{}", vchat_signal::ids::random_hex(6));
        let mut env: Vec<(String, String)> = vec![
            ("VCHAT_DATABASE_URL".into(), db_url.clone()),
            ("VCHAT_REDIS_PREFIX".into(), prefix.clone()),
            (
                "VCHAT_TURN_SECRET".into(),
                "cluster-test-turn-secret".into(),
            ),
            ("VCHAT_NODE_TTL_MS".into(), "2000".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut c = TestCluster {
            nodes: Vec::new(),
            nginx: None,
            db_url,
            prefix,
            env,
            urls,
            addrs: Vec::new(),
            _redis: redis,
        };
        for i in 0..n {
            let node = c.spawn_node(i, "127.0.0.1:0");
            c.addrs
                .push(node.url.trim_start_matches("http://").to_string());
            c.nodes.push(Some(node));
        }
        Some(c)
    }

    fn spawn_node(&self, i: usize, listen: &str) -> TestServer {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let id = format!("n{i}");
        env.push(("VCHAT_REDIS_URL", &self.urls[i]));
        env.push(("VCHAT_NODE_ID", &id));
        env.push(("VCHAT_LISTEN", listen));
        TestServer::start_with(&env)
    }

    /// nginx in front of every node (round-robin).
    pub fn with_nginx(mut self) -> Self {
        let ups: Vec<String> = self.addrs.clone();
        self.nginx = Some(Nginx::start(&ups).expect("nginx (apt install nginx-light)"));
        self
    }

    pub fn node(&self, i: usize) -> &TestServer {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn lb_url(&self) -> String {
        self.nginx.as_ref().expect("nginx").url.clone()
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.kill();
        }
    }

    /// SIGTERM: the node stops gracefully (leaves the cluster first).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.terminate();
        }
    }

    /// Starts node `i` again on its old address, with its old id.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let addr = self.addrs[i].clone();
        self.nodes[i] = Some(self.spawn_node(i, &addr));
    }

    /// Waits until every running node sees `n` live nodes and `sockets` sockets elsewhere in
    /// the cluster (presence has spread).
    pub async fn settle(&self, sockets: &[usize]) {
        let live = self.nodes.iter().filter(|n| n.is_some()).count() as f64;
        let total: usize = sockets.iter().sum();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            node.wait_metric("vchat_cluster_nodes", |v| v == live).await;
            let mine = sockets.get(i).copied().unwrap_or(0);
            node.wait_metric("vchat_remote_sockets", |v| v as usize == total - mine)
                .await;
        }
    }
}

impl TestCluster {
    /// Waits until `n` Socket.IO adapters listen on the cluster's request channel.
    pub async fn wait_adapters(&self, n: usize) {
        self.wait_subscribers(&format!("{}-socket.io-request#/#", self.prefix), n)
            .await;
    }

    /// The cluster's Redis key `{prefix}:{name}`.
    pub fn redis_key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The channel of a chat room, which the nodes with a member socket there listen to.
    pub fn room_channel(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    /// The channel node `i` reads requests and events for it on.
    pub fn bus_channel(&self, i: usize) -> String {
        format!("{}:bus:n{i}", self.prefix)
    }

    /// Waits until node `i` listens on its bus channel: it has subscribed since Redis last
    /// started, and reads who is where right after.
    pub async fn wait_bus(&self, i: usize) {
        self.wait_subscribers(&self.bus_channel(i), 1).await;
    }

    /// Waits until `n` connections subscribe to `chan`.
    pub async fn wait_subscribers(&self, chan: &str, n: usize) {
        let client = redis::Client::open(self._redis.url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, subs): (String, usize) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(chan)
                .query_async(&mut con)
                .await
                .unwrap();
            if subs == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{subs} subscribers on {chan}, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the cluster's Redis hash `{prefix}:{name}` satisfies `ok`, and returns it.
    pub async fn wait_hash(
        &self,
        name: &str,
        ok: impl Fn(&std::collections::HashMap<String, u64>) -> bool,
    ) -> std::collections::HashMap<String, u64> {
        let client = redis::Client::open(self._redis.url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{}:{name}", self.prefix);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let h: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            if ok(&h) {
                return h;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key} is still {h:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running node sees every live node and `total` sockets in all (its
    /// own and the others'), wherever the load balancer put them.
    pub async fn settle_total(&self, total: usize) {
        let live = self.nodes.iter().filter(|n| n.is_some()).count() as f64;
        for node in self.nodes.iter().flatten() {
            node.wait_metric("vchat_cluster_nodes", |v| v == live).await;
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let m = node.metrics().await;
                let seen = metric_value(&m, "vchat_cluster_sockets");
                if seen as usize == total {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} sees {seen} sockets, not {total}",
                    node.url
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Deletes a test cluster's keys from a shared Redis (heartbeats and presence would expire by
/// themselves; the node list and busy marks would not).
pub fn drop_redis_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut con) = client.get_connection() else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.nginx.take();
        for n in self.nodes.iter_mut() {
            if let Some(mut n) = n.take() {
                n.kill();
            }
        }
        drop_postgres_database(&self.db_url);
        drop_redis_keys(&self._redis.url, &self.prefix);
    }
}

// ---------------- the single-node suites, spread over a cluster ----------------

/// `VCHAT_TEST_NODES=N` (N > 1): every `TestServer` of the single-node suites is N nodes on
/// Redis and one PostgreSQL database behind nginx, so their clients and requests spread over the
/// nodes. Tests that need one process (crash and restart, files in the data dir) say so with
/// [`single_node_only`] and are skipped.
pub fn spread_nodes() -> usize {
    std::env::var("VCHAT_TEST_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// True (and says SKIPPED) when the suites run spread over a cluster and this test needs one
/// process.
pub fn single_node_only(why: &str) -> bool {
    if spread_nodes() > 1 {
        eprintln!("SKIPPED in a cluster: {why}");
        return true;
    }
    false
}

pub struct Spread {
    peers: Vec<TestServer>,
    nginx: Option<Nginx>,
    node_urls: Vec<String>,
    prefix: String,
    redis: TestRedis,
    _s3: super::s3::TestS3,
}

impl Spread {
    pub fn start(data_dir: PathBuf, mut env: Vec<(String, String)>) -> TestServer {
        let redis = TestRedis::get().expect("VCHAT_TEST_NODES needs Redis (VCHAT_TEST_REDIS_URL)");
        let prefix = format!("vchat-t-{}", vchat_signal::ids::random_hex(6));
        let owns_db = !env.iter().any(|(k, _)| k == "VCHAT_DATABASE_URL");
        if owns_db {
            env.push(("VCHAT_DATABASE_URL".into(), fresh_postgres_database()));
        }
        // Every node serves every file: media lives in a bucket.
        let s3 = super::s3::TestS3::get("VCHAT_TEST_NODES")
            .expect("VCHAT_TEST_NODES needs an S3 server (VCHAT_TEST_S3_URL or moto_server)");
        let bucket = (!env.iter().any(|(k, _)| k == "VCHAT_MEDIA_STORE")).then(|| {
            let b = s3.bucket("media");
            env.extend(b.env.iter().cloned());
            b
        });
        // nginx's port first: links the nodes build (images, media) point at it.
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}");
        for (k, v) in [
            ("VCHAT_PUBLIC_URL", public.as_str()),
            ("VCHAT_REDIS_URL", redis.url.as_str()),
            ("VCHAT_REDIS_PREFIX", prefix.as_str()),
            ("VCHAT_TURN_SECRET", "spread-test-turn-secret"),
            ("VCHAT_NODE_TTL_MS", "2000"),
        ] {
            if !env.iter().any(|(key, _)| key == k) {
                env.push((k.into(), v.into()));
            }
        }
        let node_env = |i: usize| {
            let mut e = env.clone();
            e.push(("VCHAT_NODE_ID".into(), format!("n{i}")));
            e
        };
        let mut first = TestServer::spawn_one(data_dir, node_env(0));
        first.owns_db = owns_db;
        first.bucket = bucket;
        let peers: Vec<TestServer> = (1..spread_nodes())
            .map(|i| TestServer::spawn_one(super::temp_dir(), node_env(i)))
            .collect();
        let node_urls: Vec<String> = std::iter::once(first.url.clone())
            .chain(peers.iter().map(|p| p.url.clone()))
            .collect();
        let ups: Vec<String> = node_urls
            .iter()
            .map(|u| u.trim_start_matches("http://").to_string())
            .collect();
        let nginx = Nginx::start_on(port, &ups).expect("VCHAT_TEST_NODES needs nginx");
        first.url = nginx.url.clone();
        let spread = Spread {
            peers,
            nginx: Some(nginx),
            node_urls,
            prefix,
            redis,
            _s3: s3,
        };
        // Every node sees every other before the test starts.
        let urls = spread.node_urls.clone();
        let n = urls.len() as f64;
        for u in urls {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                let text = reqwest::blocking_get_text(&format!("{u}/metrics"));
                if metric_value(&text, "vchat_cluster_nodes") == n {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{u} never saw {n} nodes"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        first.spread = Some(Box::new(spread));
        first
    }

    pub fn peer_data_dirs(&self) -> Vec<PathBuf> {
        self.peers.iter().map(|p| p.data_dir.clone()).collect()
    }

    /// The other nodes' embedded TURN servers.
    pub fn peer_turns(&self) -> Vec<String> {
        self.peers.iter().filter_map(|p| p.turn.clone()).collect()
    }

    /// Every node's `/metrics`, each sample summed over the nodes, except who is online:
    /// `vchat_sockets` and `vchat_online_users` are the cluster's, as every node sees it (-1
    /// while the nodes disagree), so a test waiting for the server to have seen a socket go
    /// waits until every node has.
    pub async fn metrics(&self) -> String {
        let mut sums: Vec<(String, f64)> = Vec::new();
        let mut views: Vec<(f64, f64)> = Vec::new();
        for u in &self.node_urls {
            let text = reqwest::get(format!("{u}/metrics"))
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics body");
            views.push((
                metric_value(&text, "vchat_cluster_sockets"),
                metric_value(&text, "vchat_cluster_online_users"),
            ));
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let Some((name, v)) = line.rsplit_once(' ') else {
                    continue;
                };
                let v: f64 = v.parse().unwrap_or(0.0);
                match sums.iter_mut().find(|(n, _)| n == name) {
                    Some((_, s)) => *s += v,
                    None => sums.push((name.to_string(), v)),
                }
            }
        }
        let agreed = |pick: fn(&(f64, f64)) -> f64| {
            let first = pick(&views[0]);
            if views.iter().all(|v| pick(v) == first) {
                first
            } else {
                -1.0
            }
        };
        let (sockets, users) = (agreed(|v| v.0), agreed(|v| v.1));
        sums.into_iter()
            .map(|(n, v)| match n.as_str() {
                "vchat_sockets" => format!("{n} {sockets}\n"),
                "vchat_online_users" => format!("{n} {users}\n"),
                _ => format!("{n} {v}\n"),
            })
            .collect()
    }
}

impl Drop for Spread {
    fn drop(&mut self) {
        self.nginx.take();
        self.peers.clear();
        drop_redis_keys(&self.redis.url, &self.prefix);
    }
}

mod reqwest {
    pub use ::reqwest::*;

    /// A GET from synchronous code (the harness starts servers outside the test's runtime).
    pub fn blocking_get_text(url: &str) -> String {
        let url = url.to_string();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    match ::reqwest::get(&url).await {
                        Ok(r) => r.text().await.unwrap_or_default(),
                        Err(_) => String::new(),
                    }
                })
        })
        .join()
        .unwrap()
    }
}
