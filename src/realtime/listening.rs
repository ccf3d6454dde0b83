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
//! - Every 15 s, and every second while a node of an older build is live (its membership
//!   changes reach this node through the Socket.IO adapter, unseen here), the rooms listened
//!   to are made exactly the rooms of the sockets here, whatever the hooks above missed.
//!
//! "A member socket here" is read from the adapter's room lists, where a socket whose connect
//! is still under way already sits in its rooms (Socket.IO lists it only once connected).
//!
//! While Redis does not answer, nothing waits for it: a room that could not be subscribed is
//! tried again every second, while it has a member here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, oneshot};

use super::remote::{in_use, named_rooms_here, Reach};
use super::room_names::{chat_room, room_of};
use crate::cluster::driver::Io;
use crate::cluster::link::Cluster;
use crate::cluster::wire::ROOMS_SINCE;

/// How long a subscribe may take before the sockets waiting for it go on without it (it is
/// tried again later): a hung Redis must not hold up connects.
const SUBSCRIBE_WITHIN: Duration = Duration::from_millis(500);

/// How often unused rooms are unsubscribed and failed subscribes tried again.
const TIDY_EVERY: Duration = Duration::from_secs(1);

/// Rooms per `SUBSCRIBE` or `UNSUBSCRIBE`.
const CHUNK: usize = 1_000;

/// Every this many tidies the rooms listened to are compared with the rooms of the sockets
/// here, whole.
const RECONCILE_EVERY: u64 = 15;

enum Op {
    Ensure(Vec<String>, oneshot::Sender<bool>),
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
            maybe: HashSet::new(),
            unused: HashSet::new(),
            tidies: 0,
            channels: channels.clone(),
        };
        tokio::spawn(task.run(rx));
        Listening { tx, channels }
    }

    /// Returns once this node listens to these chat rooms' channels (true), or gave up for now
    /// (false; see the module's notes). Call it after the sockets joined the rooms.
    pub async fn ensure(&self, rooms: Vec<String>) -> bool {
        if rooms.is_empty() {
            return true;
        }
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Ensure(rooms, done)).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
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
    /// Rooms that may be subscribed without Redis having confirmed it (a subscribe or an
    /// unsubscribe not confirmed in time): unsubscribed at a reconcile once unused.
    maybe: HashSet<String>,
    /// Rooms some socket here left since the last tidy.
    unused: HashSet<String>,
    /// Tidies so far.
    tidies: u64,
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
                                wanted.extend(rooms.iter().cloned());
                                waiting.push((rooms, done));
                            }
                            Op::MaybeUnused(rooms) => self.unused.extend(rooms),
                            // What is wanted now is subscribed after it, on the new
                            // connection.
                            Op::Connection(sink) => self.reconnected(sink).await,
                        }
                        if waiting.len() >= CHUNK {
                            break;
                        }
                    }
                    self.subscribe(wanted).await;
                    for (rooms, done) in waiting {
                        let all = rooms.iter().all(|r| self.subscribed.contains(r));
                        let _ = done.send(all);
                    }
                }
                _ = tidy.tick() => self.tidy().await,
            }
        }
    }

    /// Subscribes to the rooms not subscribed yet, a chunk at a time; the rest of the rooms
    /// wait for the next tidy once one chunk fails (a slow Redis is not asked again at once).
    async fn subscribe(&mut self, rooms: Vec<String>) {
        let mut new: Vec<String> = rooms
            .into_iter()
            .filter(|r| !self.subscribed.contains(r))
            .collect();
        new.sort_unstable();
        new.dedup();
        let mut chunks = new.chunks(CHUNK);
        for chunk in chunks.by_ref() {
            if !self.subscribe_chunk(chunk).await {
                break;
            }
        }
        for rest in chunks {
            self.retry.extend(rest.iter().cloned());
        }
        self.channels.set(self.subscribed.len() as i64);
    }

    /// Whether Redis confirmed the subscription (if not, the rooms wait in `retry`, and may be
    /// subscribed all the same: `maybe`).
    async fn subscribe_chunk(&mut self, rooms: &[String]) -> bool {
        let up = self.reach.unanswered.get() == 0;
        let Some(sink) = self.sink.as_mut().filter(|_| up) else {
            self.retry.extend(rooms.iter().cloned());
            return false;
        };
        let channels: Vec<String> = rooms.iter().map(|r| self.cluster.room_channel(r)).collect();
        match tokio::time::timeout(SUBSCRIBE_WITHIN, sink.subscribe(channels)).await {
            Ok(Ok(())) => {
                for r in rooms {
                    self.retry.remove(r);
                    self.maybe.remove(r);
                }
                self.subscribed.extend(rooms.iter().cloned());
                return true;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, rooms = rooms.len(), "room channels not subscribed; tried again in a second");
            }
            Err(_) => {
                tracing::warn!(
                    rooms = rooms.len(),
                    "Redis did not confirm a room subscription in time; tried again in a second"
                );
            }
        }
        self.retry.extend(rooms.iter().cloned());
        self.maybe.extend(rooms.iter().cloned());
        false
    }

    /// Nothing is subscribed on a new connection: every room with a member here is again,
    /// also a room of a socket whose connect is still under way (Socket.IO does not list it
    /// yet, but its room was wanted before: it is among those subscribed until now).
    async fn reconnected(&mut self, sink: PubSubSink) {
        self.sink = Some(sink);
        let mut before: HashSet<String> = std::mem::take(&mut self.subscribed);
        before.extend(self.retry.drain());
        before.extend(self.maybe.drain());
        self.channels.set(0);
        let mut rooms = local_chat_rooms(&self.io).await;
        rooms.extend(
            before
                .into_iter()
                .filter(|r| in_use(&self.io, &chat_room(r))),
        );
        self.subscribe(rooms.into_iter().collect()).await;
    }

    /// Listens to exactly the rooms with a member socket here: subscribes the missing ones and
    /// unsubscribes the rest. What the hooks may miss (a room joined through the adapter's
    /// channel, a socket dropped by Socket.IO without its disconnect handler) is put right
    /// here. A room whose only member here is still connecting (not in Socket.IO's list yet)
    /// stays.
    async fn reconcile(&mut self) {
        let rooms = local_chat_rooms(&self.io).await;
        let unused: Vec<String> = self
            .subscribed
            .iter()
            .chain(self.maybe.iter())
            .filter(|r| !rooms.contains(*r))
            .filter(|r| !in_use(&self.io, &chat_room(r)))
            .cloned()
            .collect();
        self.unused.clear();
        let io = &self.io;
        self.retry
            .retain(|r| rooms.contains(r) || in_use(io, &chat_room(r)));
        let mut wanted: Vec<String> = rooms.into_iter().collect();
        wanted.extend(self.retry.iter().cloned());
        self.subscribe(wanted).await;
        self.unsubscribe(unused).await;
    }

    async fn tidy(&mut self) {
        self.tidies += 1;
        let all_speak = self.cluster.all_speak(ROOMS_SINCE);
        // While a node of an older build is live, rooms are joined through the adapter's
        // channel too, unseen here: put right every second, so that the moment that node
        // leaves (and the others take room channels) finds every room listened to.
        if !all_speak || self.tidies.is_multiple_of(RECONCILE_EVERY) {
            self.reconcile().await;
            return;
        }
        if !self.retry.is_empty() {
            // Only those that still have a member here.
            let retry: Vec<String> = self
                .retry
                .drain()
                .filter(|r| in_use(&self.io, &chat_room(r)))
                .collect();
            self.subscribe(retry).await;
        }
        let unused: Vec<String> = self
            .unused
            .drain()
            .filter(|r| !in_use(&self.io, &chat_room(r)))
            .collect();
        self.unsubscribe(unused).await;
    }

    /// Unsubscribes rooms that are (or may be) subscribed; those Redis does not confirm in
    /// time may stay subscribed, and are tried again at the next reconcile.
    async fn unsubscribe(&mut self, rooms: Vec<String>) {
        let rooms: Vec<String> = rooms
            .into_iter()
            .filter(|r| self.subscribed.remove(r) | self.maybe.remove(r))
            .collect();
        if rooms.is_empty() {
            return;
        }
        self.channels.set(self.subscribed.len() as i64);
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let mut chunks = rooms.chunks(CHUNK);
        for chunk in chunks.by_ref() {
            let channels: Vec<String> =
                chunk.iter().map(|r| self.cluster.room_channel(r)).collect();
            if tokio::time::timeout(SUBSCRIBE_WITHIN, sink.unsubscribe(channels))
                .await
                .is_err()
            {
                self.maybe.extend(chunk.iter().cloned());
                break;
            }
        }
        for rest in chunks {
            self.maybe.extend(rest.iter().cloned());
        }
    }
}

/// The chat rooms (ids) with a member socket on this node that Socket.IO lists as connected
/// (one whose connect is under way is not; see [`in_use`] for that).
async fn local_chat_rooms(io: &Io) -> HashSet<String> {
    named_rooms_here(io, room_of).await
}
