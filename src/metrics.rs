//! Counters for `/metrics` (Prometheus text format). Plain atomics: cheap on the hot paths.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::calls::machine::Status;

#[derive(Default)]
pub struct Metrics {
    pub calls_created: AtomicU64,
    /// Calls that reached each terminal status, in `Status::ALL` order.
    calls_ended: [AtomicU64; 6],
    pub messages_sent: AtomicU64,
    pub socket_events: AtomicU64,
    pub socket_exceptions: AtomicU64,
    pub ice_relayed: AtomicU64,
    pub sockets_connected: AtomicU64,
    pub sockets_refused: AtomicU64,
    pub signins: AtomicU64,
    pub push_enqueued: AtomicU64,
    pub push_keys_dropped: AtomicU64,
    pub call_commit_failures: AtomicU64,
    pub signins_failed: AtomicU64,
    pub calls_taken_over: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn inc(&self, c: fn(&Metrics) -> &AtomicU64) {
        bump(c(self));
    }

    /// One counter family with a label, e.g. refusals by reason.
    pub fn render_labeled(
        out: &mut String,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (l, v) in values {
            let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
        }
    }

    pub fn call_ended(&self, status: Status) {
        if let Some(i) = Status::ALL.iter().position(|s| *s == status) {
            bump(&self.calls_ended[i]);
        }
    }

    /// The whole Prometheus text body: the gauges and counters the caller read from elsewhere,
    /// then our own counters.
    pub fn render(&self, gauges: &[(&str, &str, u64)], counters: &[(&str, &str, u64)]) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |kind: &str, name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        };
        for (name, help, v) in gauges {
            metric("gauge", name, help, *v);
        }
        for (name, help, v) in counters {
            metric("counter", name, help, *v);
        }
        for (name, help, c) in [
            (
                "vchat_calls_created_total",
                "Calls that started ringing.",
                &self.calls_created,
            ),
            (
                "vchat_messages_sent_total",
                "Chat messages committed (retries not counted).",
                &self.messages_sent,
            ),
            (
                "vchat_socket_events_total",
                "Client events received.",
                &self.socket_events,
            ),
            (
                "vchat_socket_exceptions_total",
                "Client events refused with v1OnException.",
                &self.socket_exceptions,
            ),
            (
                "vchat_ice_relayed_total",
                "ICE candidates relayed or held for relay.",
                &self.ice_relayed,
            ),
            (
                "vchat_sockets_connected_total",
                "Sockets that passed authentication.",
                &self.sockets_connected,
            ),
            (
                "vchat_sockets_refused_total",
                "Sockets refused at the handshake.",
                &self.sockets_refused,
            ),
            (
                "vchat_call_commit_failures_total",
                "Call transitions the store could not commit (nothing changed).",
                &self.call_commit_failures,
            ),
            (
                "vchat_push_enqueued_total",
                "Pushes queued for devices of users with no live socket.",
                &self.push_enqueued,
            ),
            (
                "vchat_push_keys_dropped_total",
                "Push keys deleted from the store because their provider called them dead.",
                &self.push_keys_dropped,
            ),
            (
                "vchat_signins_total",
                "Successful auth/connect sign-ins.",
                &self.signins,
            ),
            (
                "vchat_signins_failed_total",
                "auth/connect sign-ins refused for a wrong password.",
                &self.signins_failed,
            ),
            (
                "vchat_calls_taken_over_total",
                "Live calls of a dead node this node took over (cluster mode).",
                &self.calls_taken_over,
            ),
        ] {
            metric("counter", name, help, get(c));
        }
        let _ = writeln!(
            out,
            "# HELP vchat_calls_ended_total Calls that ended, by final status."
        );
        let _ = writeln!(out, "# TYPE vchat_calls_ended_total counter");
        for (i, s) in Status::ALL.iter().enumerate().filter(|(_, s)| !s.is_live()) {
            let _ = writeln!(
                out,
                "vchat_calls_ended_total{{status=\"{}\"}} {}",
                s.as_str(),
                get(&self.calls_ended[i])
            );
        }
        out
    }
}
