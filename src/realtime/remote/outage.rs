//! What the queue does while Redis does not take its work: the work kept for other nodes,
//! the check of whether Redis answers, and the catch-up once it does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use socketioxide::socket::Sid;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Reacher, Remote};
use crate::cluster::link::{pings, Awaited, Cluster};

/// How often a node that takes Redis for unanswered asks it again.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Work for other nodes that must not be lost to an outage: room joins and leaves (a member
/// removed must stop hearing the room on every node) and socket closes (a logout, a ban).
/// Their part here is done at once; their part for other nodes waits until Redis answers.
/// Only the last change of each user and room is kept: that is the state this node has
/// already, so the kept changes can be done in any order, and a catch-up cut short by Redis
/// failing again leaves nothing here undone.
#[derive(Default)]
pub(super) struct Kept {
    /// (user, chat room) → join (true) or leave.
    pub(super) rooms: HashMap<(String, String), bool>,
    pub(super) closes: HashMap<Sid, Option<Arc<str>>>,
}

impl Kept {
    pub(super) fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.closes.is_empty()
    }
}

/// Distinct room changes, and distinct closes, kept at most: beyond, counted as unsent.
pub(super) const KEPT_MAX: usize = 10_000;

/// How long a failed publish waits for Redis to answer a ping before Redis is taken for
/// unanswered: a single slow answer (a fork, an fsync stall) is not an outage.
pub(super) const CHECK_WITHIN: Duration = Duration::from_millis(100);

/// The longest wait before kept work is tried again while Redis answers pings but refuses
/// publishes.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5);

/// Asks both of this node's Redis connections whether Redis answers.
pub(super) struct Probe {
    pub(super) cluster: Arc<Cluster>,
    pub(super) adapter: Option<ConnectionManager>,
}

impl Probe {
    pub(super) async fn answers(&self) -> bool {
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

impl Reacher {
    pub(super) fn keep_room(&mut self, user: String, room: String, join: bool) {
        let key = (user, room);
        if self.kept.rooms.len() >= KEPT_MAX && !self.kept.rooms.contains_key(&key) {
            self.reach.unsent.inc();
            return;
        }
        self.kept.rooms.insert(key, join);
        self.count_kept();
    }

    pub(super) fn count_kept(&self) {
        let kept = self.kept.rooms.len() + self.kept.closes.len();
        self.reach.kept.set(kept as i64);
    }

    pub(super) fn keep_close(&mut self, sid: Sid, run: Option<Arc<str>>) {
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
    pub(super) async fn catch_up(&mut self) {
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
    pub(super) async fn failed(&mut self, error: &str) {
        self.judge(error).await;
        self.retry_later();
    }

    /// A publish failed. Unless Redis answers a ping at once (a single slow answer), Redis is
    /// taken for unanswered until a ping is answered, and then the kept work is done.
    pub(super) async fn judge(&mut self, error: &str) {
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
    pub(super) fn retry_later(&mut self) {
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
