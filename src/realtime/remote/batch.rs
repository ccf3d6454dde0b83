//! A batch of the queue's operations: their publishes go to Redis in one round trip, and
//! then each operation does what its results call for.

use std::sync::Arc;

use socketioxide::socket::Sid;
use tokio::sync::oneshot;

use super::{Failed, Moved, Reacher};
use crate::cluster::link::Awaited;
use crate::realtime::room_names::{chat_room, user_room};

/// Operations taken from the queue at once. Their publishes go out together, in one round
/// trip to Redis: the node's throughput to other nodes is then a batch per round trip, not
/// one operation per round trip (a Redis 10 ms away would otherwise cap it at 100/s).
pub(super) const BATCH_MAX: usize = 256;

/// Publishes sent in one round trip at most (a membership change has one per node).
pub(super) const PIPELINE_MAX: usize = 1024;

/// An operation whose publishes are `out[at..at + len]`, and what it does with their results.
pub(super) struct Then {
    pub(super) at: usize,
    pub(super) len: usize,
    pub(super) what: After,
}

pub(super) enum After {
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
    pub(super) async fn send(&mut self) {
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
                    match self.after(what, &all[at..at + len]).await {
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
    pub(super) fn refused(&mut self, what: After) {
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
    pub(super) fn keep_member(
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
    pub(super) async fn after(
        &mut self,
        what: After,
        results: &[Result<bool, String>],
    ) -> Result<(), Failed> {
        let cluster = self.probe.cluster.clone();
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            self.refused(what);
            return Err(Failed::Redis(e.clone()));
        }
        let mut heard = results.iter().map(|r| matches!(r, Ok(true)));
        match what {
            After::Room => Ok(()),
            // Unheard: the node is subscribing again, and its adapter's subscription may be
            // back already.
            After::Elsewhere { nodes, event, text } => {
                let unheard: Vec<Sid> = nodes
                    .into_iter()
                    .zip(heard)
                    .filter(|(_, heard)| !heard)
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
                if heard.all(|h| h) {
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
}
