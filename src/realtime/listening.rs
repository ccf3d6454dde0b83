//! Cluster mode: which chat rooms' channels this node listens to. A node listens to a room's
//! channel while it holds a member socket of the room, so that a room emit reaches only the
//! nodes with a member there (and not, as on the Socket.IO adapter's one channel, every node).
//!
//! One task owns the subscriptions and does every change in order:
//! - [`Listening::ensure`] (a socket joined rooms: at connect, before the client hears it is
//!   connected, and on a membership change, before the change is answered) subscribes to the
//!   rooms not listened to yet and returns once Redis confirmed it. Concurrent ensures are
//!   subscribed together, in one `SUBSCRIBE`.
//! - [`Listening::maybe_unused`] (a socket left rooms) only names rooms to look at: once a
//!   second, the task unsubscribes from those with no member socket here any more. Because the
//!   look and the unsubscribe run in the task, a join after the look sends its ensure after
//!   them, and it subscribes again; a room is never left unsubscribed with a member here.
//! - A new subscriber connection (at start, and after Redis restarted or the connection broke)
//!   comes with nothing subscribed: every room with a member socket here is subscribed again.
//!   So is every such room when the last node of an older build leaves the cluster (its
//!   membership changes reached this node through the Socket.IO adapter, unseen here).
//!
//! While Redis does not answer, nothing waits for it: a room that could not be subscribed is
//! tried again every second.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, oneshot};

use super::remote::{here, Reach};
use super::room_names::chat_room;
use crate::cluster::driver::Io;
use crate::cluster::link::Cluster;
use crate::cluster::wire::ROOMS_SINCE;

/// How long a subscribe may take before the sockets waiting for it go on without it (it is
/// tried again later): a hung Redis must not hold up connects.
const SUBSCRIBE_WITHIN: Duration = Duration::from_millis(500);

/// How often unused rooms are unsubscribed and failed subscribes tried again.
const TIDY_EVERY: Duration = Duration::from_secs(1);

/// Rooms per `SUBSCRIBE` when a whole node's rooms are subscribed again.
const CHUNK: usize = 1_000;

enum Op {
    Ensure(Vec<String>, oneshot::Sender<()>),
    MaybeUnused(Vec<String>),
    Connection(PubSubSink),
}

/// The handle to the task (cheap to clone).
#[derive(Clone)]
pub struct Listening {
    tx: mpsc::UnboundedSender<Op>,
    /// Room channels this node is subscribed to (exported in `/metrics`).
    pub channels: Gauge,
}

impl Listening {
    pub(super) fn start(io: Io, cluster: Arc<Cluster>, reach: Reach) -> Listening {
        let (tx, rx) = mpsc::unbounded_channel();
        let channels = Gauge::default();
        let task = Task {
            io,
            cluster,
            reach,
            sink: None,
            subscribed: HashSet::new(),
            retry: HashSet::new(),
            unused: HashSet::new(),
            all_speak: false,
            channels: channels.clone(),
        };
        tokio::spawn(task.run(rx));
        Listening { tx, channels }
    }

    /// Returns once this node listens to these chat rooms' channels (or gave up for now, see
    /// the module's notes). Call it after the sockets joined the rooms.
    pub async fn ensure(&self, rooms: Vec<String>) {
        if rooms.is_empty() {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Ensure(rooms, done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Sockets left these chat rooms: the task unsubscribes from those without a member here.
    pub fn maybe_unused(&self, rooms: Vec<String>) {
        if !rooms.is_empty() {
            let _ = self.tx.send(Op::MaybeUnused(rooms));
        }
    }

    /// The subscriber connection's sink, new (nothing subscribed on it but the bus's own).
    pub fn connection(&self, sink: PubSubSink) {
        let _ = self.tx.send(Op::Connection(sink));
    }
}

struct Task {
    io: Io,
    cluster: Arc<Cluster>,
    reach: Reach,
    sink: Option<PubSubSink>,
    /// Rooms (ids) whose channel Redis confirmed subscribed on the current connection.
    subscribed: HashSet<String>,
    /// Rooms whose subscribe failed or timed out.
    retry: HashSet<String>,
    /// Rooms some socket here left since the last tidy.
    unused: HashSet<String>,
    /// Whether every live node read room channels at the last tidy.
    all_speak: bool,
    channels: Gauge,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut tidy = tokio::time::interval(TIDY_EVERY);
        tidy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                op = rx.recv() => {
                    let Some(op) = op else { return };
                    // Every ensure waiting now goes in one subscribe.
                    let mut wanted = Vec::new();
                    let mut waiting = Vec::new();
                    let mut next = Some(op);
                    while let Some(op) = next.take().or_else(|| rx.try_recv().ok()) {
                        match op {
                            Op::Ensure(rooms, done) => {
                                wanted.extend(rooms);
                                waiting.push(done);
                            }
                            Op::MaybeUnused(rooms) => self.unused.extend(rooms),
                            Op::Connection(sink) => {
                                // What is wanted now is subscribed with everything else.
                                wanted.clear();
                                self.reconnected(sink).await;
                            }
                        }
                        if waiting.len() >= CHUNK {
                            break;
                        }
                    }
                    self.subscribe(wanted).await;
                    for done in waiting {
                        let _ = done.send(());
                    }
                }
                _ = tidy.tick() => self.tidy().await,
            }
        }
    }

    /// Subscribes to the rooms not subscribed yet.
    async fn subscribe(&mut self, rooms: Vec<String>) {
        let mut new: Vec<String> = rooms
            .into_iter()
            .filter(|r| !self.subscribed.contains(r))
            .collect();
        new.sort_unstable();
        new.dedup();
        if new.is_empty() {
            return;
        }
        let up = self.reach.unanswered.get() == 0;
        let Some(sink) = self.sink.as_mut().filter(|_| up) else {
            self.retry.extend(new);
            return;
        };
        let channels: Vec<String> = new.iter().map(|r| self.cluster.room_channel(r)).collect();
        match tokio::time::timeout(SUBSCRIBE_WITHIN, sink.subscribe(channels)).await {
            Ok(Ok(())) => {
                for r in &new {
                    self.retry.remove(r);
                }
                self.subscribed.extend(new);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, rooms = new.len(), "room channels not subscribed; tried again in a second");
                self.retry.extend(new);
            }
            Err(_) => {
                tracing::warn!(
                    rooms = new.len(),
                    "Redis did not confirm a room subscription in time; tried again in a second"
                );
                self.retry.extend(new);
            }
        }
        self.channels.set(self.subscribed.len() as i64);
    }

    /// Nothing is subscribed on a new connection: every room with a member here is again.
    async fn reconnected(&mut self, sink: PubSubSink) {
        self.sink = Some(sink);
        self.subscribed.clear();
        self.retry.clear();
        self.unused.clear();
        self.subscribe_all_local().await;
    }

    async fn subscribe_all_local(&mut self) {
        let rooms = local_chat_rooms(&self.io).await;
        for chunk in rooms.chunks(CHUNK) {
            self.subscribe(chunk.to_vec()).await;
        }
    }

    async fn tidy(&mut self) {
        let all_speak = self.cluster.all_speak(ROOMS_SINCE);
        if all_speak && !self.all_speak {
            // The last node of an older build is gone: rooms joined through the adapter's
            // channel meanwhile are subscribed now.
            self.subscribe_all_local().await;
        }
        self.all_speak = all_speak;
        if !self.retry.is_empty() {
            let retry: Vec<String> = self.retry.drain().collect();
            self.subscribe(retry).await;
        }
        if self.unused.is_empty() {
            return;
        }
        let unused: Vec<String> = self
            .unused
            .drain()
            .filter(|r| self.subscribed.contains(r))
            .filter(|r| here(&self.io).is_none_or(|h| h.to(chat_room(r)).sockets().is_empty()))
            .collect();
        if unused.is_empty() {
            return;
        }
        for r in &unused {
            self.subscribed.remove(r);
        }
        self.channels.set(self.subscribed.len() as i64);
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let channels: Vec<String> = unused
            .iter()
            .map(|r| self.cluster.room_channel(r))
            .collect();
        // Not confirmed in time, or refused: the channel may stay subscribed, which costs its
        // traffic and loses nothing; the next subscribe of the room is sent either way.
        let _ = tokio::time::timeout(SUBSCRIBE_WITHIN, sink.unsubscribe(channels)).await;
    }
}

/// The chat rooms (ids) with a member socket on this node.
async fn local_chat_rooms(io: &Io) -> Vec<String> {
    let Some(here) = here(io) else {
        return Vec::new();
    };
    let rooms = here.rooms().await.unwrap_or_default();
    rooms
        .iter()
        .filter_map(|r| r.strip_prefix("r:").map(str::to_string))
        .collect()
}
