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
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn inc(&self, c: fn(&Metrics) -> &AtomicU64) {
        bump(c(self));
    }

    pub fn call_ended(&self, status: Status) {
        if let Some(i) = Status::ALL.iter().position(|s| *s == status) {
            bump(&self.calls_ended[i]);
        }
    }

    /// Appends the counters to a Prometheus text body.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            "vchat_calls_created_total",
            "Calls that started ringing.",
            get(&self.calls_created),
        );
        counter(
            "vchat_messages_sent_total",
            "Chat messages committed (retries not counted).",
            get(&self.messages_sent),
        );
        counter(
            "vchat_socket_events_total",
            "Client events received.",
            get(&self.socket_events),
        );
        counter(
            "vchat_socket_exceptions_total",
            "Client events refused with v1OnException.",
            get(&self.socket_exceptions),
        );
        counter(
            "vchat_ice_relayed_total",
            "ICE candidates relayed or held for relay.",
            get(&self.ice_relayed),
        );
        counter(
            "vchat_sockets_connected_total",
            "Sockets that passed authentication.",
            get(&self.sockets_connected),
        );
        counter(
            "vchat_sockets_refused_total",
            "Sockets refused at the handshake.",
            get(&self.sockets_refused),
        );
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
    }
}
