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
//!
//! Here: the queue and each operation's part here; `batch.rs`: a batch's round trip and what
//! each operation does with its results; `outage.rs`: the work kept while Redis does not take
//! it, whether Redis answers, and the catch-up.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::ConnectionManager;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SendError, SocketError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::room_names::{chat_room, socket_room, user_room};
use crate::cluster::driver::{Adapter, Io};
use crate::cluster::link::{node_of_run, Awaited, Cluster, Outgoing};

mod batch;
mod outage;

use crate::cluster::wire::{EMITS_SINCE, ROOMS_SINCE};
use batch::{After, Then, BATCH_MAX, PIPELINE_MAX};
use outage::{Kept, Probe, PROBE_EVERY};

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
                self.emit_here(&room, &event, &text).await;
                self.reach.late.inc();
            }
            r => self.one(r).await,
        }
    }

    /// A room emit's part for this node's member sockets.
    async fn emit_here(&self, room: &str, event: &str, text: &str) {
        let _ = self.io.local().to(chat_room(room)).emit(event, text).await;
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
                self.emit_here(&room, &event, &text).await;
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
            self.emit_here(&room, &event, &text).await;
            let at = self.out.len();
            self.out.push(cluster.emit_to_room(&room, &event, &text));
            return self.then(at, After::Room).await;
        }
        // The adapter publishes on its own connection: what is queued goes first, and if that
        // failed, this must not overtake what it kept.
        self.send().await;
        if !self.open() {
            self.emit_here(&room, &event, &text).await;
            self.reach.unsent.inc();
            return;
        }
        let r = match self.io.to(chat_room(&room)).emit(&event, &text).await {
            // Sent (a socket here may have refused it: closed, or not reading).
            Ok(()) | Err(BroadcastError::Socket(_)) => Ok(()),
            // Not published, so not sent here either.
            Err(BroadcastError::Adapter(e)) => {
                self.emit_here(&room, &event, &text).await;
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

    /// Reports an operation done outside a batch (through the adapter).
    async fn settle(&mut self, r: Result<(), Failed>) {
        match r {
            Ok(()) => {}
            Err(Failed::Other(e)) => tracing::warn!(error = %e, "could not reach another node"),
            Err(Failed::Redis(e)) => self.failed(&e).await,
        }
    }
}

/// This node's sockets, once the gateway is registered and until the server stops (`io.local()`
/// panics outside that, and bus messages and the room subscriptions' task run then too).
pub(super) fn here(io: &Io) -> Option<BroadcastOperators<Adapter>> {
    io.of("/").map(BroadcastOperators::local)
}

/// The Socket.IO rooms of this node's sockets that `name_of` reads a name from (a chat room's
/// id, a user's id: see `room_names`), by that name.
pub(super) async fn named_rooms_here(
    io: &Io,
    name_of: fn(&str) -> Option<&str>,
) -> std::collections::HashSet<String> {
    let Some(here) = here(io) else {
        return Default::default();
    };
    let rooms = here.rooms().await.unwrap_or_default();
    rooms
        .iter()
        .filter_map(|r| name_of(r).map(str::to_string))
        .collect()
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
