//! The stored half of the timer door ([`crate::calls::timers::Ledger`]): each armed grace
//! deadline sits in Redis (`{prefix}:due:{meetId}`, field `<role>:<timer id>`, value the due
//! time in Unix ms) while it is armed. The node that takes a call over after its owner died
//! reads them and re-arms each grace at its original deadline.
//!
//! Writes go through one queue and one task, so a grace's record and its erase reach Redis in
//! the order they were made (arming, cancelling and re-arming within a millisecond is normal).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::link::Cluster;
use crate::calls::machine::Role;
use crate::calls::timers::Ledger;

/// How long a call's grace record outlives its last write even if nobody erases it (its owner
/// died and no node took the call over): far past any grace.
const KEEP: Duration = Duration::from_secs(24 * 3600);

enum Op {
    Record {
        key: String,
        field: String,
        due: u64,
    },
    Erase {
        key: String,
        field: String,
    },
}

pub struct GraceLedger {
    tx: mpsc::UnboundedSender<Op>,
    prefix: String,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Caller => "caller",
        _ => "callee",
    }
}

impl GraceLedger {
    pub fn start(cluster: &Cluster) -> Arc<GraceLedger> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(cluster.connection(), rx));
        Arc::new(GraceLedger {
            tx,
            prefix: cluster.key("due:"),
        })
    }
}

/// Applies the queued writes in order. A write Redis refuses is logged and dropped: the grace
/// still runs in this process; only a takeover would start it again.
async fn write(mut conn: ConnectionManager, mut rx: mpsc::UnboundedReceiver<Op>) {
    while let Some(op) = rx.recv().await {
        let r: redis::RedisResult<()> = match op {
            Op::Record { key, field, due } => {
                redis::pipe()
                    .hset(&key, &field, due)
                    .ignore()
                    .pexpire(&key, KEEP.as_millis() as i64)
                    .ignore()
                    .query_async(&mut conn)
                    .await
            }
            Op::Erase { key, field } => {
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&field)
                    .query_async(&mut conn)
                    .await
            }
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot write a grace deadline to Redis");
        }
    }
}

impl Ledger for GraceLedger {
    fn record(&self, meet_id: &str, role: Role, id: u64, due_unix_ms: u64) {
        let _ = self.tx.send(Op::Record {
            key: format!("{}{meet_id}", self.prefix),
            field: format!("{}:{id}", role_name(role)),
            due: due_unix_ms,
        });
    }

    fn erase(&self, meet_id: &str, role: Role, id: u64) {
        let _ = self.tx.send(Op::Erase {
            key: format!("{}{meet_id}", self.prefix),
            field: format!("{}:{id}", role_name(role)),
        });
    }
}

/// The grace deadlines the last owner of `meet_id` left armed, by role, removed from Redis in
/// the same step (the taker records its own). Of several for one role (a grace re-armed just
/// before the owner died), the newest.
pub async fn take(cluster: &Cluster, meet_id: &str) -> HashMap<Role, u64> {
    let key = cluster.key(&format!("due:{meet_id}"));
    let mut conn = cluster.connection();
    let read: redis::RedisResult<(HashMap<String, u64>,)> = redis::pipe()
        .atomic()
        .hgetall(&key)
        .del(&key)
        .ignore()
        .query_async(&mut conn)
        .await;
    let fields = match read {
        Ok((f,)) => f,
        Err(e) => {
            // The graces start again at the takeover, as without a ledger.
            tracing::warn!(meet_id, error = %e, "cannot read a call's grace deadlines");
            return HashMap::new();
        }
    };
    newest(fields)
}

fn newest(fields: HashMap<String, u64>) -> HashMap<Role, u64> {
    let mut best: HashMap<Role, (u64, u64)> = HashMap::new();
    for (field, due) in fields {
        let Some((role, id)) = field.split_once(':') else {
            continue;
        };
        let role = match role {
            "caller" => Role::Caller,
            "callee" => Role::Callee,
            _ => continue,
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        if best.get(&role).is_none_or(|(i, _)| id > *i) {
            best.insert(role, (id, due));
        }
    }
    best.into_iter().map(|(r, (_, due))| (r, due)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_grace_per_role_wins() {
        let fields = HashMap::from([
            ("caller:7".to_string(), 100),
            ("caller:12".to_string(), 200),
            ("callee:3".to_string(), 50),
            ("junk".to_string(), 1),
            ("caller:x".to_string(), 9),
        ]);
        let got = newest(fields);
        assert_eq!(
            got,
            HashMap::from([(Role::Caller, 200), (Role::Callee, 50)])
        );
    }
}
