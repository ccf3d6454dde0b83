//! Cluster mode: the one task that does this node's socket work in order (see [`Remote`]), and
//! what it does while Redis does not answer.
//!
//! A publish to a hung Redis waits for the connection's response timeout (half a second), and
//! this node's own sockets' events wait in the same queue behind it (they must, to keep their
//! order with room emits). So when a publish fails and Redis does not answer a ping within
//! 100 ms either (one slow answer is not an outage), Redis is taken for unanswered until a ping
//! is answered again, and meanwhile the task does only this node's part of each operation:
//! events for sockets here are sent, room emits and membership changes are done for the
//! sockets here. Events for other nodes are counted as unsent (each would have waited half a
//! second and failed); room joins and leaves and socket closes for other nodes are kept (see
//! [`Kept`]) and done once Redis answers, and until they are, nothing later goes to other
//! nodes either: a member removed during the outage stops hearing the room everywhere before
//! the room's next emit reaches another node. (The Socket.IO adapter, which carries room
//! emits while a node of an older build is live, sends nothing locally when its publish fails,
//! so without this a room emit was lost for this node's sockets too.)
//!
//! The task takes what is queued in batches: each operation's part here is done at once, and
//! the publishes of the whole batch go to Redis in one round trip (see [`Reacher::send`]). A
//! slow Redis that still answers therefore slows this node's traffic to other nodes by a round
//! trip per batch, not per operation; and an event that has waited a heartbeat TTL in the
//! queue all the same is dropped for other nodes and counted (see [`Reach::late`]), so that
//! such a Redis holds up the node's own sockets, and fills its memory, by at most about a
//! TTL's worth of work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::ConnectionManager;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SendError, SocketError};
use tokio::sync::{mpsc, oneshot};

use super::room_names::{chat_room, socket_room, user_room};
use crate::cluster::driver::{Adapter, Io};
use crate::cluster::link::{node_of_run, pings, Awaited, Cluster, Outgoing};
use crate::cluster::wire::{EMITS_SINCE, ROOMS_SINCE};

/// Counts an emit refused because the socket's send buffer was full (one to a closed socket
/// is not counted: its client is gone).
pub(super) fn count_full(emitted: Result<(), SendError>, dropped: &Counter) {
    if let Err(SendError::Socket(SocketError::InternalChannelFull)) = emitted {
        dropped.inc();
    }
}

/// Cluster mode: every socket operation of this node, done in order by one task, so a room
/// emit is never overtaken by a leave after it, a join is made here before the emits after it
/// (on another node, before those sent once the change's answers are in: see
/// [`Remote::Membership`]), and one call's events leave in the order the machine decided them. An event for sockets on
/// another node goes to that node's bus channel only ([`EMITS_SINCE`]), so the other nodes
/// never read it; a room emit goes to the room's channel, read by the nodes with a member
/// socket there ([`ROOMS_SINCE`], see `listening`), and a membership change to each node's
/// bus channel. All of these leave on the cluster's one connection and are read on each
/// node's one subscriber connection, so they keep their order between two nodes. While some
/// live node is of an older build, room emits and membership changes go through the Socket.IO
/// adapter's channel, which every node reads, and so do events for sockets whose node does not
/// read them on the bus (an older build, or one subscribing again after a Redis restart).
pub(super) enum Remote {
    /// Sockets on this node.
    Local {
        sids: Vec<Sid>,
        event: String,
        text: String,
    },
    /// Sockets on other nodes, each with the run presence has it on.
    Elsewhere {
        sids: Vec<(Sid, Option<Arc<str>>)>,
        event: String,
        text: String,
    },
    /// A chat room's member sockets, on every node.
    Emit {
        room: String,
        event: String,
        text: String,
    },
    /// Every socket of a user (its user room), on every node, joins or leaves a chat room;
    /// `done` is told once the change is made here and has gone out, so what is sent after it
    /// comes after it, with the answers other nodes owe for it.
    Membership {
        user: String,
        room: String,
        join: bool,
        done: oneshot::Sender<Moved>,
    },
    /// A socket here, or on the run presence has it on.
    Disconnect(Sid, Option<Arc<str>>),
    /// Redis answers again: do what was kept for other nodes.
    Resumed,
}

/// What a membership change did.
pub(super) struct Moved {
    /// Whether the user has a socket here (which joined or left).
    pub here: bool,
    /// The answers of the nodes that listen to room channels: each answers once its sockets
    /// have moved and, for a join, it listens to the room's channel.
    pub awaited: Vec<Awaited>,
}

/// Whether this node takes Redis for unanswered, and what it left unsent for other nodes
/// meanwhile (exported in `/metrics`).
#[derive(Clone, Default)]
pub struct Reach {
    /// 1 while Redis is taken for unanswered.
    pub unanswered: Gauge,
    /// Operations whose part for other nodes was not sent because Redis did not answer.
    pub unsent: Counter,
    /// Room changes and socket closes kept for other nodes until Redis answers (see [`Kept`]);
    /// back to 0 once they are done everywhere.
    pub kept: Gauge,
    /// Events for other nodes dropped because they waited in this node's queue for a heartbeat
    /// TTL: Redis answers, but too slowly for the node's load.
    pub late: Counter,
}

/// How often a node that takes Redis for unanswered asks it again.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The task's queue. Each operation carries the time it was queued: an event for other nodes
/// that waited a heartbeat TTL is dropped (see [`Reach::late`]).
#[derive(Clone)]
pub(super) struct Queue(mpsc::UnboundedSender<(Instant, Remote)>);

impl Queue {
    pub(super) fn send(&self, r: Remote) {
        let _ = self.0.send((Instant::now(), r));
    }
}

/// Starts the task; returns its queue. `adapter`: the Socket.IO adapter's own Redis
/// connection, which its publishes go through (pinged with the cluster's own).
pub(super) fn start(
    io: Io,
    cluster: Arc<Cluster>,
    adapter: Option<ConnectionManager>,
    dropped: Counter,
    reach: Reach,
) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = Reacher {
        io,
        probe: Arc::new(Probe { cluster, adapter }),
        dropped,
        reach,
        kept: Kept::default(),
        retry_after: PROBE_EVERY,
        wake: tx.downgrade(),
        out: Vec::new(),
        then: Vec::new(),
        retrying: false,
        held_until: Instant::now(),
    };
    tokio::spawn(task.run(rx));
    Queue(tx)
}

/// What went wrong with one operation.
enum Failed {
    /// Redis did not take the publish.
    Redis(String),
    /// Anything else (logged).
    Other(String),
}

/// Work for other nodes that must not be lost to an outage: room joins and leaves (a member
/// removed must stop hearing the room on every node) and socket closes (a logout, a ban).
/// Their part here is done at once; their part for other nodes waits until Redis answers.
/// Only the last change of each user and room is kept: that is the state this node has
/// already, so the kept changes can be done in any order, and a catch-up cut short by Redis
/// failing again leaves nothing here undone.
#[derive(Default)]
struct Kept {
    /// (user, chat room) → join (true) or leave.
    rooms: HashMap<(String, String), bool>,
    closes: HashMap<Sid, Option<Arc<str>>>,
}

impl Kept {
    fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.closes.is_empty()
    }
}

/// Distinct room changes, and distinct closes, kept at most: beyond, counted as unsent.
const KEPT_MAX: usize = 10_000;

/// How long a failed publish waits for Redis to answer a ping before Redis is taken for
/// unanswered: a single slow answer (a fork, an fsync stall) is not an outage.
const CHECK_WITHIN: Duration = Duration::from_millis(100);

/// The longest wait before kept work is tried again while Redis answers pings but refuses
/// publishes.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Asks both of this node's Redis connections whether Redis answers.
struct Probe {
    cluster: Arc<Cluster>,
    adapter: Option<ConnectionManager>,
}

impl Probe {
    async fn answers(&self) -> bool {
        let adapter = async {
            match &self.adapter {
                Some(c) => pings(c).await,
                None => true,
            }
        };
        let (cluster, adapter) = tokio::join!(self.cluster.answers(), adapter);
        cluster && adapter
    }
}

struct Reacher {
    io: Io,
    probe: Arc<Probe>,
    dropped: Counter,
    reach: Reach,
    kept: Kept,
    /// How long until kept work is tried again after Redis answered a ping but refused it.
    retry_after: Duration,
    /// Wakes the task when kept work may be done (weak: the queue still closes when the
    /// notifier goes).
    wake: mpsc::WeakUnboundedSender<(Instant, Remote)>,
    /// Publishes made and not sent yet, in the order of their operations, and what each
    /// operation does once they are sent (see [`Reacher::send`]).
    out: Vec<Outgoing>,
    then: Vec<Then>,
    /// A wake-up to try kept work again is pending (see [`Reacher::retry_later`]).
    retrying: bool,
    /// When the catch-up last stopped holding the queue for other nodes' answers: waiting
    /// for those is not lateness (see [`Reacher::late`]).
    held_until: Instant,
}

/// Operations taken from the queue at once. Their publishes go out together, in one round
/// trip to Redis: the node's throughput to other nodes is then a batch per round trip, not
/// one operation per round trip (a Redis 10 ms away would otherwise cap it at 100/s).
const BATCH_MAX: usize = 256;

/// Publishes sent in one round trip at most (a membership change has one per node).
const PIPELINE_MAX: usize = 1024;

/// An operation whose publishes are `out[at..at + len]`, and what it does with their results.
struct Then {
    at: usize,
    len: usize,
    what: After,
}

enum After {
    /// A room emit.
    Room,
    /// An event for sockets on other nodes, one publish per node: the sockets of a node that
    /// did not hear it go through the adapter.
    Elsewhere {
        nodes: Vec<Vec<Sid>>,
        event: String,
        text: String,
    },
    /// A membership change, one publish per node that reads room channels. `adapter`: it also
    /// goes through the adapter (some live node reads no room channels), as it does when a
    /// node did not hear it.
    Member {
        user: String,
        room: String,
        join: bool,
        here: bool,
        awaited: Vec<Option<Awaited>>,
        adapter: bool,
        done: oneshot::Sender<Moved>,
    },
    /// A close of a socket on another node: through the adapter if that node did not hear it.
    Close { sid: Sid, run: Option<Arc<str>> },
}

impl Reacher {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(Instant, Remote)>) {
        let late_after = self.probe.cluster.ttl();
        let mut batch = Vec::with_capacity(BATCH_MAX);
        while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
            let now = Instant::now();
            for (queued, r) in batch.drain(..) {
                if now.saturating_duration_since(queued.max(self.held_until)) < late_after {
                    self.one(r).await;
                } else {
                    self.late(r).await;
                }
            }
            self.send().await;
        }
    }

    /// An operation that waited a heartbeat TTL in the queue: Redis answers too slowly for
    /// this node's load (each round trip carries a batch, so it is very slow). Its part here
    /// is done, and so are room changes and closes for other nodes, which must not be lost; an
    /// event for other nodes is dropped and counted: it is stale by now, and sending it would
    /// hold up what comes after it by as long again.
    async fn late(&mut self, r: Remote) {
        match r {
            Remote::Elsewhere { .. } => {
                self.reach.late.inc();
            }
            Remote::Emit { room, event, text } => {
                let _ = self
                    .io
                    .local()
                    .to(chat_room(&room))
                    .emit(&event, &text)
                    .await;
                self.reach.late.inc();
            }
            r => self.one(r).await,
        }
    }

    fn up(&self) -> bool {
        self.reach.unanswered.get() == 0
    }

    /// Whether work for other nodes may leave now: Redis is taken for answering, and no kept
    /// work waits (later work must not overtake it: it is kept, or not sent, too).
    fn open(&self) -> bool {
        self.up() && self.kept.is_empty()
    }

    /// Does an operation's part here, and makes its publishes for other nodes (sent with the
    /// rest of the batch).
    async fn one(&mut self, r: Remote) {
        let open = self.open();
        match r {
            Remote::Local { sids, event, text } => {
                for sid in sids {
                    if let Some(s) = self.io.get_socket(sid) {
                        count_full(s.emit(&event, &text), &self.dropped);
                    }
                }
            }
            Remote::Resumed => {
                self.retrying = false;
                self.send().await;
                if self.up() && !self.kept.is_empty() {
                    self.catch_up().await;
                }
            }
            // A close of a socket here needs no Redis.
            Remote::Disconnect(sid, run) => match self.io.get_socket(sid) {
                Some(s) => {
                    let _ = s.disconnect();
                }
                None if open => self.close_elsewhere(sid, run).await,
                None => self.keep_close(sid, run),
            },
            Remote::Elsewhere { .. } if !open => {
                self.reach.unsent.inc();
            }
            Remote::Elsewhere { sids, event, text } => self.emit_elsewhere(sids, event, text).await,
            Remote::Emit { room, event, text } if !open => {
                let _ = self
                    .io
                    .local()
                    .to(chat_room(&room))
                    .emit(&event, &text)
                    .await;
                self.reach.unsent.inc();
            }
            Remote::Emit { room, event, text } => self.emit_to_room(room, event, text).await,
            Remote::Membership {
                user,
                room,
                join,
                done,
            } => {
                let here = move_here(&self.io, &user, &room, join);
                self.membership(user, room, join, here, done, open).await;
            }
        }
    }

    /// Queues an operation's publishes, from `at` on, and sends them once there are many.
    async fn then(&mut self, at: usize, what: After) {
        let len = self.out.len() - at;
        self.then.push(Then { at, len, what });
        if self.out.len() >= PIPELINE_MAX {
            self.send().await;
        }
    }

    /// A room emit: sent to the room's sockets here, and to the other nodes on the room's
    /// channel, or, while some node does not read room channels, through the Socket.IO adapter.
    async fn emit_to_room(&mut self, room: String, event: String, text: String) {
        let cluster = self.probe.cluster.clone();
        if cluster.all_speak(ROOMS_SINCE) {
            let _ = self
                .io
                .local()
                .to(chat_room(&room))
                .emit(&event, &text)
                .await;
            let at = self.out.len();
            self.out.push(cluster.emit_to_room(&room, &event, &text));
            return self.then(at, After::Room).await;
        }
        // The adapter publishes on its own connection: what is queued goes first, and if that
        // failed, this must not overtake what it kept.
        self.send().await;
        if !self.open() {
            let _ = self
                .io
                .local()
                .to(chat_room(&room))
                .emit(&event, &text)
                .await;
            self.reach.unsent.inc();
            return;
        }
        let r = match self.io.to(chat_room(&room)).emit(&event, &text).await {
            // Sent (a socket here may have refused it: closed, or not reading).
            Ok(()) | Err(BroadcastError::Socket(_)) => Ok(()),
            // Not published, so not sent here either.
            Err(BroadcastError::Adapter(e)) => {
                let _ = self
                    .io
                    .local()
                    .to(chat_room(&room))
                    .emit(&event, &text)
                    .await;
                self.reach.unsent.inc();
                Err(Failed::Redis(e.to_string()))
            }
            Err(e) => Err(Failed::Other(e.to_string())),
        };
        self.settle(r).await;
    }

    /// An event for sockets on other nodes: on each node's own channel where that node reads
    /// it, through the adapter for the rest.
    async fn emit_elsewhere(
        &mut self,
        sids: Vec<(Sid, Option<Arc<str>>)>,
        event: String,
        text: String,
    ) {
        let cluster = self.probe.cluster.clone();
        let (nodes, adapter) = by_node(sids, |n| cluster.speaks(n, EMITS_SINCE));
        if !adapter.is_empty() {
            self.send().await;
            if self.open() {
                let r = self.adapter_emit(adapter, &event, &text).await;
                self.settle(r).await;
            }
            if !self.open() {
                self.reach.unsent.inc();
                return;
            }
        }
        if nodes.is_empty() {
            return;
        }
        let at = self.out.len();
        let mut lists = Vec::with_capacity(nodes.len());
        for (node, sids) in nodes {
            let names: Vec<String> = sids.iter().map(Sid::to_string).collect();
            self.out.push(cluster.emit_on(&node, &names, &event, &text));
            lists.push(sids);
        }
        let what = After::Elsewhere {
            nodes: lists,
            event,
            text,
        };
        self.then(at, what).await;
    }

    async fn adapter_emit(&self, sids: Vec<Sid>, event: &str, text: &str) -> Result<(), Failed> {
        let r = self
            .io
            .to(sids.into_iter().map(socket_room).collect::<Vec<_>>())
            .emit(event, text)
            .await
            .map_err(broadcast_failed);
        if matches!(r, Err(Failed::Redis(_))) {
            self.reach.unsent.inc();
        }
        r
    }

    /// A user's sockets on the other nodes join or leave a chat room: told to each node that
    /// listens to room channels (each answers once done), and through the Socket.IO adapter
    /// while some node does not, or when a node does not read its channel right now (it is
    /// subscribing again: its adapter may be back already, and it subscribes every room of
    /// its sockets once it is). `done` is told once all of that has gone out. `open`: false
    /// keeps it for later.
    async fn membership(
        &mut self,
        user: String,
        room: String,
        join: bool,
        here: bool,
        done: oneshot::Sender<Moved>,
        open: bool,
    ) {
        if !open {
            self.keep_room(user, room, join);
            let awaited = Vec::new();
            let _ = done.send(Moved { here, awaited });
            return;
        }
        let cluster = self.probe.cluster.clone();
        let at = self.out.len();
        let mut awaited = Vec::new();
        for node in cluster.others_speaking(ROOMS_SINCE) {
            let (out, answer) = cluster.member(&node, &user, &room, join, true);
            self.out.push(out);
            awaited.push(answer);
        }
        let what = After::Member {
            user,
            room,
            join,
            here,
            awaited,
            adapter: !cluster.all_speak(ROOMS_SINCE),
            done,
        };
        self.then(at, what).await;
    }

    /// Closes a socket on the node presence has it on (through the adapter when that node
    /// does not hear it on its channel).
    async fn close_elsewhere(&mut self, sid: Sid, run: Option<Arc<str>>) {
        let cluster = self.probe.cluster.clone();
        if let Some(node) = bus_node(run.as_deref(), |n| cluster.speaks(n, EMITS_SINCE)) {
            let at = self.out.len();
            self.out.push(cluster.kick(node, sid.to_string()));
            return self.then(at, After::Close { sid, run }).await;
        }
        self.send().await;
        if !self.open() {
            return self.keep_close(sid, run);
        }
        let r = self.adapter_close(sid, run).await;
        self.settle(r).await;
    }

    async fn adapter_close(&mut self, sid: Sid, run: Option<Arc<str>>) -> Result<(), Failed> {
        let r = self
            .io
            .to(socket_room(sid))
            .disconnect()
            .await
            .map_err(broadcast_failed);
        if matches!(r, Err(Failed::Redis(_))) {
            self.keep_close(sid, run);
        }
        r
    }

    /// Sends the queued publishes in one round trip, then does what their operations do with
    /// the results: a message a node did not hear goes through the adapter; one Redis
    /// refused is counted as unsent (an event) or kept (a room change, a close).
    ///
    /// The adapter's fallbacks run after the whole pipeline, where one at a time they ran
    /// before the next publish. A node that did not hear a message was not subscribed when
    /// Redis ran it; Redis runs a pipeline's commands back to back, except where it reads
    /// a large one in several parts, so a node subscribing again right then could hear a later
    /// message of the pipeline before the fallback of an earlier one. That node was reading
    /// neither of its connections a moment before, which loses more than this.
    async fn send(&mut self) {
        if self.then.is_empty() {
            return;
        }
        let cluster = self.probe.cluster.clone();
        let sent = if self.out.is_empty() {
            Ok(Vec::new())
        } else {
            cluster.publish_all(&self.out).await
        };
        self.out.clear();
        let then = std::mem::take(&mut self.then);
        let mut error = None;
        match sent {
            Err(e) => {
                for t in then {
                    self.refused(t.what);
                }
                let e = e.to_string();
                self.judge(&e).await;
                error = Some(e);
            }
            Ok(all) => {
                for Then { at, len, what } in then {
                    let heard = all[at..at + len].iter().cloned().collect();
                    match self.after(what, heard).await {
                        Ok(()) => {}
                        Err(Failed::Other(e)) => {
                            tracing::warn!(error = %e, "could not reach another node")
                        }
                        // Judged at once: if Redis does not answer, the fallbacks after this
                        // one are not tried (each would wait for its own timeout).
                        Err(Failed::Redis(e)) if error.is_none() => {
                            self.judge(&e).await;
                            error = Some(e);
                        }
                        Err(Failed::Redis(_)) => {}
                    }
                }
            }
        }
        if error.is_some() {
            self.retry_later();
        }
    }

    /// An operation whose publishes Redis refused: an event is counted as unsent, a room
    /// change or a close is kept.
    fn refused(&mut self, what: After) {
        match what {
            After::Room | After::Elsewhere { .. } => {
                self.reach.unsent.inc();
            }
            After::Close { sid, run } => self.keep_close(sid, run),
            After::Member {
                user,
                room,
                join,
                here,
                awaited,
                done,
                ..
            } => {
                let answers = awaited.into_iter().flatten().collect();
                self.keep_member(user, room, join, here, answers, done);
            }
        }
    }

    /// A membership change not done on other nodes: kept, its answers no longer waited for.
    fn keep_member(
        &mut self,
        user: String,
        room: String,
        join: bool,
        here: bool,
        answers: Vec<Awaited>,
        done: oneshot::Sender<Moved>,
    ) {
        self.probe.cluster.abandon(answers);
        self.keep_room(user, room, join);
        let awaited = Vec::new();
        let _ = done.send(Moved { here, awaited });
    }

    /// What an operation does once its publishes were sent: `heard` says, for each, whether
    /// a node read it, or why Redis refused one of them. A fallback through the adapter is
    /// not tried once Redis is taken for unanswered (it is refused, as above).
    async fn after(&mut self, what: After, heard: Result<Vec<bool>, String>) -> Result<(), Failed> {
        let cluster = self.probe.cluster.clone();
        let heard = match heard {
            Ok(heard) => heard,
            Err(e) => {
                self.refused(what);
                return Err(Failed::Redis(e));
            }
        };
        match what {
            After::Room => Ok(()),
            // Unheard: the node is subscribing again, and its adapter's subscription may be
            // back already.
            After::Elsewhere { nodes, event, text } => {
                let unheard: Vec<Sid> = nodes
                    .into_iter()
                    .zip(&heard)
                    .filter(|(_, heard)| !**heard)
                    .flat_map(|(sids, _)| sids)
                    .collect();
                if unheard.is_empty() {
                    return Ok(());
                }
                if !self.up() {
                    self.reach.unsent.inc();
                    return Ok(());
                }
                self.adapter_emit(unheard, &event, &text).await
            }
            After::Close { sid, run } => {
                if heard.iter().all(|h| *h) {
                    return Ok(());
                }
                if !self.up() {
                    self.keep_close(sid, run);
                    return Ok(());
                }
                self.adapter_close(sid, run).await
            }
            After::Member {
                user,
                room,
                join,
                here,
                awaited,
                adapter,
                done,
            } => {
                let mut unheard = false;
                let mut answers = Vec::new();
                for (answer, heard) in awaited.into_iter().zip(heard) {
                    match answer {
                        Some(a) if heard => answers.push(a),
                        Some(a) => {
                            tracing::warn!(
                                node = a.node(),
                                room,
                                join,
                                "a node did not hear a room change: sent through the adapter too"
                            );
                            cluster.abandon(vec![a]);
                            unheard = true;
                        }
                        None => unheard |= !heard,
                    }
                }
                if unheard || adapter {
                    if !self.up() {
                        self.keep_member(user, room, join, here, answers, done);
                        return Ok(());
                    }
                    let (sockets, chat) = (self.io.to(user_room(&user)), chat_room(&room));
                    let r = if join {
                        sockets.join(chat).await
                    } else {
                        sockets.leave(chat).await
                    };
                    if let Err(e) = r {
                        self.keep_member(user, room, join, here, answers, done);
                        return Err(Failed::Redis(e.to_string()));
                    }
                }
                let _ = done.send(Moved {
                    here,
                    awaited: answers,
                });
                Ok(())
            }
        }
    }

    /// Reports an operation done outside a batch (through the adapter).
    async fn settle(&mut self, r: Result<(), Failed>) {
        match r {
            Ok(()) => {}
            Err(Failed::Other(e)) => tracing::warn!(error = %e, "could not reach another node"),
            Err(Failed::Redis(e)) => self.failed(&e).await,
        }
    }

    fn keep_room(&mut self, user: String, room: String, join: bool) {
        let key = (user, room);
        if self.kept.rooms.len() >= KEPT_MAX && !self.kept.rooms.contains_key(&key) {
            self.reach.unsent.inc();
            return;
        }
        self.kept.rooms.insert(key, join);
        self.count_kept();
    }

    fn count_kept(&self) {
        let kept = self.kept.rooms.len() + self.kept.closes.len();
        self.reach.kept.set(kept as i64);
    }

    fn keep_close(&mut self, sid: Sid, run: Option<Arc<str>>) {
        if self.kept.closes.len() >= KEPT_MAX && !self.kept.closes.contains_key(&sid) {
            self.reach.unsent.inc();
            return;
        }
        self.kept.closes.insert(sid, run);
        self.count_kept();
    }

    /// Does the kept work for other nodes, in round trips of many; what Redis does not take
    /// stays kept. The room changes are answered, and nothing later leaves this node before
    /// the answers are in (or a TTL has passed): a member added meanwhile hears the room's
    /// next emit on every node, whose node listens to the room's channel by then. The closes
    /// go after the answers.
    async fn catch_up(&mut self) {
        let kept = self.kept.rooms.len() + self.kept.closes.len();
        let cluster = self.probe.cluster.clone();
        let mut moved = Vec::new();
        for ((user, room), join) in std::mem::take(&mut self.kept.rooms) {
            // Open until Redis refuses one (then the rest is kept again, in order).
            let open = self.up() && self.kept.rooms.is_empty();
            let (tx, rx) = oneshot::channel();
            self.membership(user, room, join, false, tx, open).await;
            moved.push(rx);
        }
        self.send().await;
        let awaited: Vec<Awaited> = moved
            .into_iter()
            .filter_map(|mut rx| rx.try_recv().ok())
            .flat_map(|m| m.awaited)
            .collect();
        if !self.kept.rooms.is_empty() || !self.up() {
            cluster.abandon(awaited);
            return self.count_kept();
        }
        let silent = cluster.answered(awaited).await;
        self.held_until = Instant::now();
        if !silent.is_empty() {
            tracing::warn!(
                ?silent,
                "nodes did not confirm room changes kept through an outage"
            );
        }
        let closes = std::mem::take(&mut self.kept.closes);
        for (sid, run) in closes {
            match self.io.get_socket(sid) {
                Some(s) => {
                    let _ = s.disconnect();
                }
                None if self.up() && self.kept.closes.is_empty() => {
                    self.close_elsewhere(sid, run).await
                }
                None => self.keep_close(sid, run),
            }
        }
        self.send().await;
        self.count_kept();
        if self.kept.is_empty() {
            self.retry_after = PROBE_EVERY;
            tracing::info!(
                kept,
                "room changes and socket closes kept for other nodes are sent"
            );
        }
    }

    /// A publish failed: see whether Redis answers, and try kept work again later.
    async fn failed(&mut self, error: &str) {
        self.judge(error).await;
        self.retry_later();
    }

    /// A publish failed. Unless Redis answers a ping at once (a single slow answer), Redis is
    /// taken for unanswered until a ping is answered, and then the kept work is done.
    async fn judge(&mut self, error: &str) {
        if !self.up() {
            return;
        }
        let answers = tokio::time::timeout(CHECK_WITHIN, self.probe.answers()).await;
        if answers == Ok(true) {
            tracing::warn!(
                error,
                "a publish failed, though Redis answers a ping: events it carried for other \
                 nodes are lost, room changes and socket closes are sent again later"
            );
            return;
        }
        self.reach.unanswered.set(1);
        tracing::warn!(
            error,
            "Redis does not answer: until it does, this node's sockets get their events and room \
             events, and other nodes get nothing from this node but its room changes and socket \
             closes, kept until then"
        );
        let (probe, reach, wake) = (self.probe.clone(), self.reach.clone(), self.wake.clone());
        tokio::spawn(async move {
            while !probe.answers().await {
                tokio::time::sleep(PROBE_EVERY).await;
            }
            reach.unanswered.set(0);
            tracing::info!("Redis answers again: events for other nodes are sent again");
            if let Some(wake) = wake.upgrade() {
                let _ = wake.send((Instant::now(), Remote::Resumed));
            }
        });
    }

    /// Redis answers pings but refused kept work: it is tried again after a while, which
    /// doubles up to [`RETRY_MAX`] while it is refused; never at once, never once per
    /// operation, and one wake-up at a time.
    fn retry_later(&mut self) {
        if !self.up() || self.kept.is_empty() || self.retrying {
            return;
        }
        self.retrying = true;
        let (wake, after) = (self.wake.clone(), self.retry_after);
        self.retry_after = (self.retry_after * 2).min(RETRY_MAX);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(wake) = wake.upgrade() {
                let _ = wake.send((Instant::now(), Remote::Resumed));
            }
        });
    }
}

/// This node's sockets, once the gateway is registered and until the server stops (`io.local()`
/// panics outside that, and bus messages and the room subscriptions' task run then too).
pub(super) fn here(io: &Io) -> Option<BroadcastOperators<Adapter>> {
    io.of("/").map(BroadcastOperators::local)
}

/// A user's sockets on this node join or leave a chat room; returns whether the user has a
/// socket here. Through the adapter's own room lists, not through the sockets Socket.IO lists:
/// a socket whose connect is still under way (waiting for its rooms' subscription) is in its
/// rooms already but not listed yet, and a membership change must reach it too.
pub(super) fn move_here(io: &Io, user: &str, room: &str, join: bool) -> bool {
    let Some(sockets) = here(io).map(|h| h.to(user_room(user))) else {
        return false;
    };
    let room = chat_room(room);
    let moved = if join {
        sockets.join(room).now_or_never()
    } else {
        sockets.leave(room).now_or_never()
    };
    if moved.is_none() {
        tracing::error!("a local room change did not complete at once");
    }
    in_use(io, &user_room(user))
}

/// Whether some socket of this node sits in the Socket.IO room (one still connecting counts).
pub(super) fn in_use(io: &Io, socket_room: &str) -> bool {
    let Some(sockets) = here(io).map(|h| h.to(socket_room.to_string())) else {
        return false;
    };
    // Each socket in the room has that room among its rooms.
    sockets
        .rooms()
        .now_or_never()
        .is_some_and(|r| r.is_ok_and(|rooms| !rooms.is_empty()))
}

fn broadcast_failed(e: BroadcastError) -> Failed {
    match e {
        BroadcastError::Adapter(e) => Failed::Redis(e.to_string()),
        e => Failed::Other(e.to_string()),
    }
}

/// The node whose bus channel reaches a socket on `run`, if that node reads events for sockets
/// (`on_bus`); `None`: the adapter has to.
fn bus_node(run: Option<&str>, on_bus: impl Fn(&str) -> bool) -> Option<&str> {
    run.map(node_of_run).filter(|n| on_bus(n))
}

/// Sockets on other nodes, by where the bus reaches them: each node that reads events for
/// sockets gets its own, and the rest (place unknown, or a node of an older build) go through
/// the adapter.
fn by_node(
    sids: Vec<(Sid, Option<Arc<str>>)>,
    on_bus: impl Fn(&str) -> bool,
) -> (Vec<(String, Vec<Sid>)>, Vec<Sid>) {
    let mut nodes: Vec<(String, Vec<Sid>)> = Vec::new();
    let mut adapter = Vec::new();
    for (sid, run) in sids {
        match bus_node(run.as_deref(), &on_bus) {
            Some(node) => match nodes.iter_mut().find(|(n, _)| n == node) {
                Some((_, list)) => list.push(sid),
                None => nodes.push((node.to_string(), vec![sid])),
            },
            None => adapter.push(sid),
        }
    }
    (nodes, adapter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_elsewhere_go_to_their_nodes_or_through_the_adapter() {
        let (a, b, c, d) = (Sid::new(), Sid::new(), Sid::new(), Sid::new());
        let sids = vec![
            (a, Some(Arc::from("n1#x"))),
            (b, Some(Arc::from("n2#y"))),
            (c, Some(Arc::from("n1#x"))),
            (d, None),
        ];
        // n2 is of an older build: its socket and the one of unknown place take the adapter.
        let (nodes, adapter) = by_node(sids, |n| n == "n1");
        assert_eq!(nodes, vec![("n1".to_string(), vec![a, c])]);
        assert_eq!(adapter, vec![b, d]);
    }
}
