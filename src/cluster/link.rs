//! This node's link to the others: Redis for heartbeats, presence hashes, busy marks, and the
//! pub/sub bus requests and answers travel on. Knows nothing of calls or sockets; `node`
//! runs the node on top of it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use dashmap::DashMap;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::sync::oneshot;

use super::wire::{EmitOut, Msg, Reply, Request, RoomOut, Told, BUS_VERSION};

impl Outgoing {
    fn new(channel: String, msg: &impl serde::Serialize) -> Outgoing {
        let text = serde_json::to_string(msg).expect("bus messages serialize");
        Outgoing { channel, text }
    }
}

/// How long a busy mark lives before its call is stored (see [`Cluster::hold`]).
const HOLD_MS: u64 = 30_000;

/// Why a request to another node got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("node {0} did not answer")]
    NoAnswer(String),
    /// No node reads the node's channel (it is gone, or subscribing again): nothing was run.
    #[error("node {0} is not listening")]
    Unheard(String),
    #[error("cluster bus: {0}")]
    Bus(String),
}

pub struct Cluster {
    pub node: String,
    /// This run of the node (`<node>#<random>`): presence entries carry it, so the sockets of an
    /// earlier run of a node restarted under the same id are never taken for this run's.
    pub incarnation: String,
    prefix: String,
    pub(super) ttl: Duration,
    pub(super) client: redis::Client,
    conn: ConnectionManager,
    /// Nodes whose heartbeat was there at the last look (this one always is), and the runs
    /// those heartbeats named.
    alive: RwLock<Alive>,
    /// One look at a time, read and applied together: a look that read before another must
    /// not be applied after it (it would bring back a run the later one saw replaced).
    looking: tokio::sync::Mutex<()>,
    pub(super) pending: DashMap<u64, oneshot::Sender<Reply>>,
    /// Owners of other nodes' calls, as last read from the store.
    pub owners: super::owners::Owners,
    /// Candidates other nodes told this node, waiting for their call's lock.
    pub lanes: super::lanes::Lanes<super::lanes::Candidate>,
    next: AtomicU64,
    release: redis::Script,
    /// Forgets a node only while its heartbeat is gone (see [`Cluster::forget_node`]).
    forget: redis::Script,
    /// Tells whether the cluster's keys in Redis are younger than a TTL (see
    /// [`Cluster::data_is_young`]).
    data_age: redis::Script,
    /// Set on a graceful stop: the heartbeat must not come back.
    pub(super) stopping: AtomicBool,
}

/// An answer a node owes this one (see [`Cluster::member`]).
pub struct Awaited {
    node: String,
    id: u64,
    rx: oneshot::Receiver<Reply>,
}

impl Awaited {
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// A bus message made and not sent yet: several go out in one round trip with
/// [`Cluster::publish_all`].
pub struct Outgoing {
    channel: String,
    text: String,
}

#[derive(Default)]
struct Alive {
    nodes: HashSet<String>,
    runs: HashSet<String>,
    /// The bus version each live node announced (none: a build from before versions, 1).
    versions: HashMap<String, u32>,
    /// At the last look Redis had been up, or had held the cluster's keys, for less than one
    /// heartbeat TTL: a missing heartbeat proved nothing then, so nobody was taken for dead.
    young: bool,
    /// Read from Redis (not the state before this node's first look).
    looked: bool,
}

impl Alive {
    /// What a look found, judged against the last look. A Redis (or its keys) younger than one
    /// TTL may have lost every heartbeat, and a live node writes its own only every TTL/3: its
    /// heartbeat missing then is no sign of death. Taking it for dead would drop its sockets from
    /// presence and let a request take its live calls over. So while Redis is young, every
    /// node alive at the last look stays alive; one that really died is found a TTL later.
    /// Every run stays too, also one whose node's heartbeat names another run: a young Redis
    /// may be one restored from a snapshot or a lagging replica, whose heartbeat names the run
    /// the node had before it restarted, so the run named is not proof the other one ended.
    /// Returns the runs that are gone.
    fn next(&mut self, mut seen: Alive) -> Vec<String> {
        if seen.young {
            seen.nodes.extend(self.nodes.iter().cloned());
            seen.runs.extend(self.runs.iter().cloned());
            for (node, v) in &self.versions {
                seen.versions.entry(node.clone()).or_insert(*v);
            }
        }
        let lost = self.runs.difference(&seen.runs).cloned().collect();
        *self = seen;
        lost
    }
}

/// The node a run belongs to (a run is `<node>#<random>`, see [`Cluster::incarnation`]).
pub fn node_of_run(run: &str) -> &str {
    run.rsplit_once('#').map_or(run, |(node, _)| node)
}

/// Runs a Redis operation, and once more if the connection had dropped: the connection
/// manager reconnects behind a dead socket, but the first command after a Redis restart or a
/// network cut meets it.
async fn retried<T, F>(op: impl Fn() -> F) -> redis::RedisResult<T>
where
    F: std::future::Future<Output = redis::RedisResult<T>>,
{
    match op().await {
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            op().await
        }
        r => r,
    }
}

/// Whether Redis answers a ping on `conn` (within the connection's response timeout).
pub async fn pings(conn: &ConnectionManager) -> bool {
    let mut c = conn.clone();
    redis::cmd("PING")
        .query_async::<String>(&mut c)
        .await
        .is_ok()
}

/// A Redis client for `url` whose connections send each command at once. redis-rs leaves
/// Nagle's algorithm on, so a small command written while the previous one is unacknowledged
/// waits for that ACK, which Redis's side may delay by up to 40 ms: an event relayed to a
/// socket on another node would wait with it.
pub fn redis_client(url: &str) -> Result<redis::Client, String> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()
        .map_err(|e| format!("redis url {url:?}: {e}"))?;
    let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    redis::Client::open(info.set_tcp_settings(tcp)).map_err(|e| format!("redis url {url:?}: {e}"))
}

/// The URL the Socket.IO adapter connects with: its driver needs RESP3 push messages.
pub fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}protocol=resp3")
}

impl Cluster {
    /// Connects to Redis and announces this node.
    pub async fn connect(
        url: &str,
        node: String,
        prefix: &str,
        ttl: Duration,
    ) -> Result<Cluster, String> {
        let client = redis_client(url)?;
        let conn = client
            .get_connection_manager()
            .await
            .map_err(|e| format!("cannot reach Redis: {e}"))?;
        let incarnation = format!("{node}#{}", crate::ids::random_hex(6));
        let c = Cluster {
            alive: RwLock::new(Alive {
                nodes: HashSet::from([node.clone()]),
                runs: HashSet::from([incarnation.clone()]),
                versions: HashMap::from([(node.clone(), BUS_VERSION)]),
                young: false,
                looked: false,
            }),
            incarnation,
            node,
            prefix: prefix.to_string(),
            ttl,
            client,
            conn,
            pending: DashMap::new(),
            owners: Default::default(),
            lanes: Default::default(),
            // Request ids start anywhere: answers are addressed by node id, so a late answer
            // to an earlier run of this node must not match a request of this run.
            next: AtomicU64::new(rand::random::<u64>() >> 1),
            looking: tokio::sync::Mutex::new(()),
            // A node restarted under the same id meanwhile is back in the list with its
            // heartbeat: it stays, and so does its presence hash.
            forget: redis::Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) redis.call('DEL', KEYS[3]) return 1 else return 0 end",
            ),
            stopping: AtomicBool::new(false),
            // Frees a user only from this call: a newer call may hold them already.
            release: redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            ),
            // The first look at a Redis without the cluster's birth mark sets it, and a
            // "settling" mark that lives one TTL; while that lives the data is young.
            data_age: redis::Script::new(
                "if redis.call('SET', KEYS[1], '1', 'NX') then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end return redis.call('EXISTS', KEYS[2])",
            ),
        };
        // What an earlier run of this node left in presence is gone with it.
        let mut conn = c.conn.clone();
        conn.del::<_, ()>(c.presence_hash(&c.node))
            .await
            .map_err(|e| format!("cannot write to Redis: {e}"))?;
        c.beat()
            .await
            .map_err(|e| format!("cannot write to Redis: {e}"))?;
        Ok(c)
    }

    pub(super) fn key(&self, parts: &str) -> String {
        format!("{}:{parts}", self.prefix)
    }
    /// How long a node may be silent before it is taken for dead.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
    pub(super) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
    pub(super) fn bus_channel(&self, node: &str) -> String {
        self.key(&format!("bus:{node}"))
    }
    pub(super) fn presence_channel(&self) -> String {
        self.key("presence")
    }
    /// The channel of a chat room's emits (bus version 4), read by the nodes holding a member
    /// socket of the room.
    pub fn room_channel(&self, room: &str) -> String {
        self.key(&format!("room:{room}"))
    }
    fn bus_version_key(&self, node: &str) -> String {
        self.key(&format!("bus-version:{node}"))
    }
    fn presence_hash(&self, node: &str) -> String {
        self.key(&format!("pn:{node}"))
    }
    /// The prefix of socketioxide-redis's channels.
    pub fn socketio_prefix(&self) -> String {
        format!("{}-socket.io", self.prefix)
    }

    /// Renews this node's heartbeat and the expiry of its presence hash.
    /// Returns whether the heartbeat had lapsed (the cluster took this node for dead: its
    /// calls may have been taken over and its sockets dropped from other nodes' presence).
    pub(super) async fn beat(&self) -> redis::RedisResult<bool> {
        let mut c = self.conn.clone();
        let ms = self.ttl.as_millis() as u64;
        let (previous,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.key(&format!("node:{}", self.node)))
            .arg(&self.incarnation)
            .arg("PX")
            .arg(ms)
            .arg("GET")
            .cmd("SET")
            .arg(self.bus_version_key(&self.node))
            .arg(BUS_VERSION)
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("SADD")
            .arg(self.key("nodes"))
            .arg(&self.node)
            .ignore()
            .cmd("PEXPIRE")
            .arg(self.presence_hash(&self.node))
            .arg(ms * 3)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(previous.as_deref() != Some(self.incarnation.as_str()))
    }

    /// Reads which nodes are alive; returns those that were alive and are not any more.
    pub(super) async fn look(&self) -> redis::RedisResult<Vec<String>> {
        let _one = self.looking.lock().await;
        let mut c = self.conn.clone();
        // Both, always: the keys' birth mark is set at the first look after they were lost,
        // so a restarted Redis's window is not followed by a second one.
        let (new_redis, new_keys) = (self.redis_is_young().await?, self.data_is_young().await?);
        let young = new_redis || new_keys;
        let nodes: Vec<String> = c.smembers(self.key("nodes")).await?;
        let mut now = Alive {
            nodes: HashSet::from([self.node.clone()]),
            runs: HashSet::from([self.incarnation.clone()]),
            versions: HashMap::from([(self.node.clone(), BUS_VERSION)]),
            young,
            looked: true,
        };
        if !nodes.is_empty() {
            // Each node's heartbeat, then each node's bus version, in one MGET (never of a
            // single key, which answers a bare value, not a list).
            let keys: Vec<String> = nodes
                .iter()
                .map(|n| self.key(&format!("node:{n}")))
                .chain(nodes.iter().map(|n| self.bus_version_key(n)))
                .collect();
            let read: Vec<Option<String>> = c.mget(&keys).await?;
            let (beats, versions) = read.split_at(nodes.len());
            for ((n, b), v) in nodes.iter().zip(beats).zip(versions) {
                if let Some(run) = b {
                    now.nodes.insert(n.clone());
                    now.runs.insert(run.clone());
                    let v = v.as_deref().and_then(|v| v.parse().ok()).unwrap_or(1);
                    now.versions.insert(n.clone(), v);
                }
            }
        }
        let mut alive = self.alive.write().expect("not poisoned");
        // Not at this node's first look: a new cluster's keys are young too.
        if young && !alive.young && alive.looked {
            tracing::warn!(
                "Redis restarted or lost the cluster's keys less than a heartbeat TTL ago: \
                 no node is taken for dead until it has held them that long"
            );
        }
        Ok(alive.next(now))
    }

    /// Whether the cluster's keys have been in Redis for less than one TTL: Redis may have
    /// lost them without restarting (`FLUSHALL`, a failover to an empty replica), which its
    /// uptime does not show. Heartbeats are gone then just as after an empty restart.
    async fn data_is_young(&self) -> redis::RedisResult<bool> {
        let mut c = self.conn.clone();
        let settling: redis::RedisResult<bool> = self
            .data_age
            .key(self.key("born"))
            .key(self.key("settling"))
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await;
        match settling {
            Ok(young) => Ok(young),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell how old the cluster's keys are");
                Ok(false)
            }
        }
    }

    /// Whether Redis has been up for less than one heartbeat TTL (see [`Alive::next`]). A
    /// Redis that refuses to say (INFO not allowed) is taken as old: missing heartbeats count
    /// at once then, as they did before this check. A Redis that cannot be reached is an
    /// error: the look judges nobody.
    async fn redis_is_young(&self) -> redis::RedisResult<bool> {
        // Retried: after a restart, this is often the first command to meet the dead socket.
        let info = retried(|| {
            let mut c = self.conn.clone();
            async move {
                redis::cmd("INFO")
                    .arg("server")
                    .query_async::<redis::InfoDict>(&mut c)
                    .await
            }
        })
        .await;
        match info {
            // Whole seconds, rounded down: young until a whole TTL has passed.
            Ok(i) => Ok(i
                .get::<u64>("uptime_in_seconds")
                .is_some_and(|up| u128::from(up) * 1000 < self.ttl.as_millis())),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "Redis does not say how long it has been up");
                Ok(false)
            }
        }
    }

    /// Nodes in the node list whose heartbeat is gone (their calls want an owner): not alive
    /// at the last look, and without a heartbeat now (a node that joined, or came back under
    /// its id, since that look has one).
    pub async fn dead_nodes(&self) -> redis::RedisResult<Vec<String>> {
        let mut c = self.conn.clone();
        let nodes: Vec<String> = c.smembers(self.key("nodes")).await?;
        let unseen: Vec<String> = {
            let alive = self.alive.read().expect("not poisoned");
            if alive.young {
                // Nothing is known dead until Redis has held heartbeats for a whole TTL.
                return Ok(Vec::new());
            }
            nodes
                .into_iter()
                .filter(|n| !alive.nodes.contains(n))
                .collect()
        };
        if unseen.is_empty() {
            return Ok(unseen);
        }
        let beats: Vec<String> = unseen
            .iter()
            .map(|n| self.key(&format!("node:{n}")))
            .collect();
        // MGET always answers a list, also for one key.
        let now: Vec<Option<String>> = redis::cmd("MGET").arg(&beats).query_async(&mut c).await?;
        Ok(unseen
            .into_iter()
            .zip(now)
            .filter_map(|(n, beat)| beat.is_none().then_some(n))
            .collect())
    }

    /// Drops a dead node from the node list once nothing of it is left to take over; not if it
    /// has a heartbeat again by then (restarted under the same id). Whether it was dropped.
    pub async fn forget_node(&self, node: &str) -> redis::RedisResult<bool> {
        let mut c = self.conn.clone();
        let dropped: i64 = self
            .forget
            .key(self.key(&format!("node:{node}")))
            .key(self.key("nodes"))
            .key(self.presence_hash(node))
            .arg(node)
            .invoke_async(&mut c)
            .await?;
        Ok(dropped == 1)
    }

    /// Looks at the heartbeats now (a node did not answer: is it dead?).
    pub async fn refresh(&self) {
        if let Err(e) = self.look().await {
            tracing::warn!(error = %e, "cannot read the node list");
        }
    }

    pub fn is_alive(&self, node: &str) -> bool {
        self.alive
            .read()
            .expect("not poisoned")
            .nodes
            .contains(node)
    }

    /// Whether `node` is alive and reads bus messages of `version`.
    pub fn speaks(&self, node: &str, version: u32) -> bool {
        let alive = self.alive.read().expect("not poisoned");
        alive.nodes.contains(node) && alive.versions.get(node).is_some_and(|v| *v >= version)
    }

    /// Whether a run of a node (a presence entry's origin) is the live one.
    pub fn is_live_run(&self, run: &str) -> bool {
        self.alive.read().expect("not poisoned").runs.contains(run)
    }

    /// Whether every live node reads what bus `version` carries.
    pub fn all_speak(&self, version: u32) -> bool {
        let alive = self.alive.read().expect("not poisoned");
        alive
            .nodes
            .iter()
            .all(|n| alive.versions.get(n).is_some_and(|v| *v >= version))
    }

    /// The other live nodes that read what bus `version` carries.
    pub fn others_speaking(&self, version: u32) -> Vec<String> {
        let alive = self.alive.read().expect("not poisoned");
        alive
            .nodes
            .iter()
            .filter(|n| **n != self.node)
            .filter(|n| alive.versions.get(*n).is_some_and(|v| *v >= version))
            .cloned()
            .collect()
    }

    pub fn alive_count(&self) -> usize {
        self.alive.read().expect("not poisoned").nodes.len()
    }

    async fn publish(&self, channel: String, msg: &Msg) -> Result<(), AskError> {
        let text = serde_json::to_string(msg).expect("bus messages serialize");
        retried(|| {
            let (mut c, channel, text) = (self.conn.clone(), &channel, &text);
            async move { c.publish::<_, _, ()>(channel, text).await }
        })
        .await
        .map_err(|e| AskError::Bus(e.to_string()))
    }

    /// Whether Redis answers a ping on this node's connection.
    pub async fn answers(&self) -> bool {
        pings(&self.conn).await
    }

    /// An event for sockets on `node`: only that node hears it (nobody does while it subscribes
    /// again, after a Redis restart).
    pub fn emit_on(&self, node: &str, sids: &[String], event: &str, text: &str) -> Outgoing {
        // Borrowed: the text is copied once, into the bus message.
        let msg = EmitOut { sids, event, text };
        Outgoing::new(self.bus_channel(node), &msg)
    }

    /// An event for the member sockets of a chat room on the nodes listening to its channel
    /// (this node's own were sent theirs already).
    pub fn emit_to_room(&self, room: &str, event: &str, text: &str) -> Outgoing {
        let msg = RoomOut {
            from: &self.incarnation,
            room,
            event,
            text,
        };
        Outgoing::new(self.room_channel(room), &msg)
    }

    /// A user's sockets on `node` join or leave a chat room. `answered`: the node answers once
    /// done, and the answer is waited for with [`Cluster::answered`] (or given up with
    /// [`Cluster::abandon`], as it must be when the message was not heard).
    pub fn member(
        &self,
        node: &str,
        user: &str,
        room: &str,
        join: bool,
        answered: bool,
    ) -> (Outgoing, Option<Awaited>) {
        let expected = answered.then(|| self.expect_answer());
        let msg = Msg::Member {
            id: expected.as_ref().map(|(id, _)| *id),
            from: self.node.clone(),
            user: user.to_string(),
            room: room.to_string(),
            join,
        };
        let awaited = expected.map(|(id, rx)| Awaited {
            node: node.to_string(),
            id,
            rx,
        });
        (Outgoing::new(self.bus_channel(node), &msg), awaited)
    }

    /// Closes a socket on `node`.
    pub fn kick(&self, node: &str, sid: String) -> Outgoing {
        Outgoing::new(self.bus_channel(node), &Msg::Kick { sid })
    }

    /// Publishes every message in one round trip, in their order. For each: whether some node
    /// read its channel, or why Redis refused it. `Err`: none may have gone out. Sent again
    /// once if the connection had dropped, as a single publish is: if it dropped partway
    /// through, the part Redis had run is delivered twice.
    pub async fn publish_all(
        &self,
        out: &[Outgoing],
    ) -> Result<Vec<Result<bool, String>>, AskError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for o in out {
            pipe.cmd("PUBLISH").arg(&o.channel).arg(&o.text);
        }
        let read: Vec<redis::RedisResult<i64>> = retried(|| {
            let (mut c, pipe) = (self.conn.clone(), &pipe);
            async move { pipe.query_async(&mut c).await }
        })
        .await
        .map_err(|e| AskError::Bus(e.to_string()))?;
        if read.len() != out.len() {
            return Err(AskError::Bus(format!(
                "{} answers to {} publishes",
                read.len(),
                out.len()
            )));
        }
        Ok(read
            .into_iter()
            .map(|r| r.map(|n| n > 0).map_err(|e| e.to_string()))
            .collect())
    }

    /// Answers no longer waited for.
    pub fn abandon(&self, awaited: Vec<Awaited>) {
        for a in awaited {
            self.pending.remove(&a.id);
        }
    }

    /// Waits for the answers, each at most a heartbeat TTL (a node that does not answer by
    /// then is being taken for dead, and its sockets with it). Returns the nodes that did not.
    pub async fn answered(&self, awaited: Vec<Awaited>) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + self.ttl;
        let mut silent = Vec::new();
        for a in awaited {
            if tokio::time::timeout_at(deadline, a.rx).await.is_err() {
                self.pending.remove(&a.id);
                silent.push(a.node);
            }
        }
        silent.sort_unstable();
        silent.dedup();
        silent
    }

    /// A local socket joined presence: tell every node, and keep it in this node's hash for
    /// nodes that start later.
    pub async fn socket_up(&self, user: &str, device: &str, sid: &str) {
        self.remember_socket(user, device, sid).await;
        let msg = Msg::Up {
            node: self.incarnation.clone(),
            user: user.into(),
            device: device.into(),
            sid: sid.into(),
        };
        if let Err(e) = self.publish(self.presence_channel(), &msg).await {
            tracing::warn!(error = %e, "presence not published");
        }
    }

    /// Writes a local socket into this node's presence hash (read by nodes that start later).
    pub async fn remember_socket(&self, user: &str, device: &str, sid: &str) {
        let mut c = self.conn.clone();
        let r = redis::pipe()
            .cmd("HSET")
            .arg(self.presence_hash(&self.node))
            .arg(sid)
            .arg(format!("{user}\u{1f}{device}"))
            .ignore()
            .cmd("PEXPIRE")
            .arg(self.presence_hash(&self.node))
            .arg(self.ttl.as_millis() as u64 * 3)
            .ignore()
            .query_async::<()>(&mut c)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "presence not written to Redis");
        }
    }

    pub async fn socket_down(&self, user: &str, sid: &str) {
        let mut c = self.conn.clone();
        if let Err(e) = c
            .hdel::<_, _, ()>(self.presence_hash(&self.node), sid)
            .await
        {
            tracing::warn!(error = %e, "presence not removed from Redis");
        }
        let msg = Msg::Down {
            node: self.incarnation.clone(),
            user: user.into(),
            sid: sid.into(),
        };
        if let Err(e) = self.publish(self.presence_channel(), &msg).await {
            tracing::warn!(error = %e, "presence not published");
        }
    }

    /// A user's name or picture changed here: other nodes' cached copies go stale.
    pub async fn profile_changed(&self, user: &str) {
        let msg = Msg::Profile {
            node: self.incarnation.clone(),
            user: user.into(),
        };
        if let Err(e) = self.publish(self.presence_channel(), &msg).await {
            tracing::warn!(error = %e, "profile change not published");
        }
    }

    /// Sends a request to `node` and waits for its answer. A node that does not read its
    /// channel right now gets the whole wait too: it may be subscribing again after a Redis
    /// restart, and an asker that gave up at once would take a live node's call over.
    pub async fn ask(&self, node: &str, req: Request) -> Result<Reply, AskError> {
        self.request(node, req, false).await
    }

    /// [`ask`](Self::ask), but [`AskError::Unheard`] at once when no node reads `node`'s
    /// channel: then nothing was run, and the asker may run the request elsewhere.
    pub async fn ask_if_heard(&self, node: &str, req: Request) -> Result<Reply, AskError> {
        self.request(node, req, true).await
    }

    /// A new request id, and where its answer will arrive (see `Msg::Answer` in `node`).
    fn expect_answer(&self) -> (u64, oneshot::Receiver<Reply>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        (id, rx)
    }

    async fn request(&self, node: &str, req: Request, if_heard: bool) -> Result<Reply, AskError> {
        let (id, rx) = self.expect_answer();
        let msg = Msg::Ask {
            id,
            from: self.node.clone(),
            req,
        };
        match self.publish_heard(self.bus_channel(node), &msg).await {
            Ok(false) if if_heard => {
                self.pending.remove(&id);
                return Err(AskError::Unheard(node.to_string()));
            }
            Ok(_) => {}
            Err(e) => {
                self.pending.remove(&id);
                return Err(e);
            }
        }
        match tokio::time::timeout(self.ttl, rx).await {
            Ok(Ok(rep)) => Ok(rep),
            _ => {
                self.pending.remove(&id);
                Err(AskError::NoAnswer(node.to_string()))
            }
        }
    }

    /// Sends a request to `node` without waiting for it to be run. False when no node reads
    /// `node`'s channel (it is gone, or subscribing again): the request was lost, and the
    /// caller should [`ask`](Self::ask) instead, which finds the call's next owner.
    pub async fn tell(&self, node: &str, sid: &str, req: Request) -> Result<bool, AskError> {
        let msg = Msg::Tell(Told {
            sid: sid.to_string(),
            req,
        });
        self.publish_heard(self.bus_channel(node), &msg).await
    }

    /// Publishes `msg`; whether any node read the channel.
    async fn publish_heard(
        &self,
        channel: String,
        msg: &impl serde::Serialize,
    ) -> Result<bool, AskError> {
        let text = serde_json::to_string(msg).expect("bus messages serialize");
        let heard: i64 = retried(|| {
            let (mut c, channel, text) = (self.conn.clone(), &channel, &text);
            async move { c.publish(channel, text).await }
        })
        .await
        .map_err(|e| AskError::Bus(e.to_string()))?;
        Ok(heard > 0)
    }

    pub(super) async fn answer(&self, to: &str, id: u64, rep: Reply) {
        if let Err(e) = self
            .publish(self.bus_channel(to), &Msg::Answer { id, rep })
            .await
        {
            tracing::warn!(error = %e, to, "answer not sent");
        }
    }

    // ---- busy users ----

    fn busy_key(&self, user: &str) -> String {
        self.key(&format!("busy:{user}"))
    }

    /// Marks `user` busy with `meet_id` unless someone else holds them. Returns the holder.
    /// The mark first lives [`HOLD_MS`]: long enough to store the call, short enough that a node
    /// dying before it stored it frees its users soon; [`Cluster::confirm`] extends it.
    pub async fn hold(&self, user: &str, meet_id: &str) -> redis::RedisResult<Option<String>> {
        retried(|| self.hold_once(user, meet_id)).await
    }

    async fn hold_once(&self, user: &str, meet_id: &str) -> redis::RedisResult<Option<String>> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.busy_key(user))
            .arg(meet_id)
            .arg("NX")
            .arg("PX")
            .arg(HOLD_MS)
            .query_async(&mut c)
            .await?;
        if set.is_some() {
            return Ok(None);
        }
        let holder: Option<String> = c.get(self.busy_key(user)).await?;
        Ok(Some(holder.unwrap_or_default()))
    }

    /// The call is stored: its users' marks last as long as the call can (it frees them when
    /// it ends; the expiry only cleans up after a cluster that lost the call's row).
    pub async fn confirm(&self, users: [&str; 2], lifetime: Duration) {
        let mut c = self.conn.clone();
        let ms = lifetime.as_millis() as u64;
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("PEXPIRE").arg(self.busy_key(u)).arg(ms).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut c).await {
            tracing::warn!(error = %e, "busy marks not extended");
        }
    }

    pub async fn unhold(&self, user: &str, meet_id: &str) {
        let r = retried(|| {
            let mut c = self.conn.clone();
            let mut inv = self.release.key(self.busy_key(user));
            inv.arg(meet_id);
            async move { inv.invoke_async::<i64>(&mut c).await }
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, user, "busy mark not released");
        }
    }

    pub async fn held_by(&self, user: &str) -> Option<String> {
        retried(|| {
            let mut c = self.conn.clone();
            let key = self.busy_key(user);
            async move { c.get::<_, Option<String>>(key).await }
        })
        .await
        .ok()
        .flatten()
    }

    /// Every live node's sockets, from their presence hashes: (run, sid, user, device).
    pub(super) async fn snapshot(
        &self,
    ) -> redis::RedisResult<Vec<(String, String, String, String)>> {
        let mut c = self.conn.clone();
        let nodes: Vec<String> = c.smembers(self.key("nodes")).await?;
        let mut out = Vec::new();
        for node in nodes {
            if node == self.node {
                continue;
            }
            let run: Option<String> = c.get(self.key(&format!("node:{node}"))).await?;
            let Some(run) = run else { continue };
            let entries: Vec<(String, String)> = c.hgetall(self.presence_hash(&node)).await?;
            for (sid, v) in entries {
                if let Some((user, device)) = v.split_once('\u{1f}') {
                    out.push((run.clone(), sid, user.to_string(), device.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Leaves the cluster on a graceful stop: the heartbeat goes at once, so live nodes take
    /// this node's calls over without waiting for it to expire.
    pub async fn leave(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let gone = Msg::Gone {
            node: self.incarnation.clone(),
        };
        let _ = self.publish(self.presence_channel(), &gone).await;
        let mut c = self.conn.clone();
        let _ = redis::pipe()
            .cmd("DEL")
            .arg(self.key(&format!("node:{}", self.node)))
            .ignore()
            .cmd("DEL")
            .arg(self.bus_version_key(&self.node))
            .ignore()
            .cmd("DEL")
            .arg(self.presence_hash(&self.node))
            .ignore()
            .query_async::<()>(&mut c)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_connections_have_nagle_off_and_keep_the_url() {
        let c = redis_client(&resp3_url("redis://127.0.0.1:6390/3")).unwrap();
        let info = c.get_connection_info();
        assert!(info.tcp_settings().nodelay());
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(
            info.redis_settings().protocol(),
            redis::ProtocolVersion::RESP3
        );
        assert!(redis_client("no-scheme").is_err());
    }

    fn seen(nodes: &[&str], young: bool) -> Alive {
        Alive {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            runs: nodes.iter().map(|n| format!("{n}#1")).collect(),
            versions: nodes.iter().map(|n| (n.to_string(), BUS_VERSION)).collect(),
            young,
            looked: true,
        }
    }

    #[test]
    fn a_missing_heartbeat_kills_a_node_only_once_redis_is_a_ttl_old() {
        let mut alive = seen(&["a", "b"], false);
        // Redis came back empty: only "a" has beaten since. "b" is still taken for alive,
        // with its run and bus version, and a node first seen now is added.
        assert!(alive.next(seen(&["a", "c"], true)).is_empty());
        assert_eq!(alive.nodes, seen(&["a", "b", "c"], true).nodes);
        assert!(alive.runs.contains("b#1"));
        assert_eq!(alive.versions.get("b"), Some(&BUS_VERSION));
        assert!(alive.young);
        // A TTL later "b" has not beaten: now it is dead.
        assert_eq!(
            alive.next(seen(&["a", "c"], false)),
            vec!["b#1".to_string()]
        );
        assert!(!alive.nodes.contains("b") && !alive.young);
        // Without a young Redis a missing heartbeat counts at once.
        assert_eq!(alive.next(seen(&["a"], false)), vec!["c#1".to_string()]);
    }

    #[test]
    fn a_young_redis_naming_an_earlier_run_ends_no_run() {
        // "b" restarted as "b#2"; then Redis came back from a snapshot taken before that, whose
        // heartbeat still names "b#1". The live run keeps its sockets.
        let mut alive = seen(&["a"], false);
        alive.nodes.insert("b".into());
        alive.runs.insert("b#2".into());
        assert!(alive.next(seen(&["a", "b"], true)).is_empty());
        assert!(alive.runs.contains("b#2"));
    }
}
