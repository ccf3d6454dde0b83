//! `/metrics` through `prometheus-client` (OpenMetrics text): our counters and histograms live
//! in one registry and are cheap atomics on the hot paths; what other parts own (sockets, live
//! calls, push, TURN and limit counts) is read at each scrape into a [`Scrape`].

use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::calls::machine::Status;

/// The HTTP route a request matched (its template, so the label set stays small).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Ended {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Write {
    what: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// What a store write was, for `vchat_store_commit_seconds`.
#[derive(Clone, Copy)]
pub enum Commit {
    /// A call transition (the compare-and-swap of the call's row).
    Call,
    /// A chat message.
    Message,
}

pub struct Metrics {
    registry: Registry,
    pub calls_created: Counter,
    calls_ended: Family<Ended, Counter>,
    pub messages_sent: Counter,
    pub socket_events: Counter,
    pub socket_exceptions: Counter,
    pub ice_relayed: Counter,
    pub sockets_connected: Counter,
    pub sockets_refused: Counter,
    pub signins: Counter,
    pub push_enqueued: Counter,
    pub push_keys_dropped: Counter,
    pub call_commit_failures: Counter,
    pub signins_failed: Counter,
    pub calls_taken_over: Counter,
    pub call_owner_reads: Counter,
    pub ice_told: Counter,
    pub calls_forwarded: Counter,
    /// From a create-call request to the callee's sockets having `v1OnNewCall`.
    pub time_to_ring: Histogram,
    /// From ringing to the callee's accept.
    pub time_to_answer: Histogram,
    /// From an ICE candidate's arrival to its relay (or hold) inside the server.
    pub relay: Histogram,
    http: Histograms<Route>,
    commits: Histograms<Write>,
}

/// 10 µs to ~40 s: relays take microseconds, answers seconds.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 22))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(None, Counted::default())
    }
}

/// Counters that other parts count into, registered here.
#[derive(Default)]
pub struct Counted {
    /// The notifier's count of events a full send buffer refused.
    pub emits_dropped: Counter,
    /// The Socket.IO adapter's messages from other nodes: those a full channel refused, and
    /// all that arrived (cluster mode).
    pub adapter_dropped: Counter,
    pub adapter_received: Counter,
    /// Bus messages from other nodes for sockets here (events, closes).
    pub peer_emits: Counter,
    /// Whether Redis answers this node, and what it left unsent meanwhile (cluster mode).
    pub reach: crate::realtime::remote::Reach,
    /// Room emits read on room channels, and the room channels listened to (cluster mode).
    pub room_emits: Counter,
    pub room_channels: prometheus_client::metrics::gauge::Gauge,
    /// Times the rooms of the sockets here were read again (see `realtime::membership`).
    pub rooms_reread: Counter,
    /// Chat messages sent again after a break (see `chat::replay`).
    pub messages_replayed: Counter,
}

impl Metrics {
    /// `commit_batches`: the store's writes per group commit, when it batches (SQLite).
    pub fn new(commit_batches: Option<Histogram>, counted: Counted) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "vchat_emits_dropped",
            "Events not sent because the socket's send buffer was full (its client not reading); \
             in a cluster, also those other nodes sent over the bus.",
            counted.emits_dropped,
        );
        registry.register(
            "vchat_adapter_messages_dropped",
            "Socket.IO adapter messages from other nodes dropped because this node's adapter \
             fell behind (cluster mode).",
            counted.adapter_dropped,
        );
        registry.register(
            "vchat_adapter_messages_received",
            "Socket.IO adapter messages read from Redis, this node's own included: room emits, \
             joins, leaves, heartbeats, and events for sockets of nodes that do not read them on \
             the bus (cluster mode).",
            counted.adapter_received,
        );
        registry.register(
            "vchat_cluster_socket_messages_received",
            "Bus messages from other nodes for sockets on this node: events to send, and sockets \
             to close (cluster mode).",
            counted.peer_emits,
        );
        registry.register(
            "vchat_cluster_room_messages_received",
            "Room emits other nodes sent on the channels of chat rooms with a member socket on \
             this node (cluster mode).",
            counted.room_emits,
        );
        registry.register(
            "vchat_cluster_room_channels",
            "Chat rooms whose channel this node listens to: those with a member socket here \
             (cluster mode).",
            counted.room_channels,
        );
        registry.register(
            "vchat_cluster_rooms_reread",
            "Times this node put its sockets in the rooms the store has for their users, once \
             its subscription to the other nodes was back after a break (or it was back from \
             being taken for dead): membership changes made meanwhile did not reach it \
             (cluster mode).",
            counted.rooms_reread,
        );
        registry.register(
            "vchat_cluster_messages_replayed",
            "Chat messages sent again to this node's sockets once its subscription to the other \
             nodes was back: those stored since a little before it broke (cluster mode).",
            counted.messages_replayed,
        );
        registry.register(
            "vchat_cluster_redis_unanswered",
            "1 while Redis does not answer this node (a publish failed, and no ping has been \
             answered since): its sockets get their events and room events, other nodes get \
             nothing from it (cluster mode).",
            counted.reach.unanswered,
        );
        registry.register(
            "vchat_cluster_kept",
            "Room joins and leaves and socket closes kept for other nodes while Redis did not \
             answer; 0 once they are done on every node (cluster mode).",
            counted.reach.kept,
        );
        registry.register(
            "vchat_cluster_events_unsent",
            "Events, room emits, closes and room joins or leaves whose part for other nodes was \
             not sent because Redis did not answer (cluster mode).",
            counted.reach.unsent,
        );
        registry.register(
            "vchat_cluster_events_late",
            "Events and room emits whose part for other nodes was dropped because they waited in \
             this node's queue for a heartbeat TTL: Redis answers, but too slowly for the \
             node's load (cluster mode).",
            counted.reach.late,
        );
        if let Some(h) = commit_batches {
            registry.register(
                "vchat_store_batch_size",
                "Writes per store commit (SQLite's group commit: concurrent writes share one fsync).",
                h,
            );
        }
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let calls_created = counter("vchat_calls_created", "Calls that started ringing.");
        let messages_sent = counter(
            "vchat_messages_sent",
            "Chat messages committed (retries not counted).",
        );
        let socket_events = counter("vchat_socket_events", "Client events received.");
        let socket_exceptions = counter(
            "vchat_socket_exceptions",
            "Client events refused with v1OnException.",
        );
        let ice_relayed = counter(
            "vchat_ice_relayed",
            "ICE candidates relayed or held for relay.",
        );
        let sockets_connected = counter(
            "vchat_sockets_connected",
            "Sockets that passed authentication.",
        );
        let sockets_refused = counter("vchat_sockets_refused", "Sockets refused at the handshake.");
        let call_commit_failures = counter(
            "vchat_call_commit_failures",
            "Call transitions the store could not commit (nothing changed).",
        );
        let push_enqueued = counter(
            "vchat_push_enqueued",
            "Pushes queued for devices of users with no live socket.",
        );
        let push_keys_dropped = counter(
            "vchat_push_keys_dropped",
            "Push keys deleted from the store because their provider called them dead.",
        );
        let signins = counter("vchat_signins", "Successful auth/connect sign-ins.");
        let signins_failed = counter(
            "vchat_signins_failed",
            "auth/connect sign-ins refused for a wrong password.",
        );
        let calls_taken_over = counter(
            "vchat_calls_taken_over",
            "Live calls of a dead node this node took over (cluster mode).",
        );
        let call_owner_reads = counter(
            "vchat_call_owner_reads",
            "Reads of which node owns a call, by a node that does not hold it (cluster mode).",
        );
        let ice_told = counter(
            "vchat_ice_told",
            "ICE candidates sent to their call's node without waiting for it to run them (cluster mode).",
        );
        let calls_forwarded = counter(
            "vchat_calls_forwarded",
            "New calls this node had run by the node holding the caller's socket (cluster mode).",
        );
        let calls_ended = Family::<Ended, Counter>::default();
        registry.register(
            "vchat_calls_ended",
            "Calls that ended, by final status.",
            calls_ended.clone(),
        );
        // Every final status shows from the start, at 0.
        for s in Status::ALL.iter().filter(|s| !s.is_live()) {
            let _ = calls_ended.get_or_create(&Ended { status: s.as_str() });
        }
        let mut histogram = |name: &str, help: &str| {
            let h = latency();
            registry.register_with_unit(name, help, Unit::Seconds, h.clone());
            h
        };
        let time_to_ring = histogram(
            "vchat_time_to_ring",
            "From a create-call request to the callee's sockets having v1OnNewCall, on the node that runs the call (a creation forwarded to the caller's node is timed from its arrival there).",
        );
        let time_to_answer = histogram(
            "vchat_time_to_answer",
            "From ringing to the callee's accept.",
        );
        let relay = histogram(
            "vchat_relay",
            "From an ICE candidate's arrival to its relay inside the server.",
        );
        let http: Histograms<Route> = Family::new_with_constructor(latency);
        registry.register_with_unit(
            "vchat_http_request_duration",
            "REST requests by method, matched route and status.",
            Unit::Seconds,
            http.clone(),
        );
        let commits: Histograms<Write> = Family::new_with_constructor(latency);
        registry.register_with_unit(
            "vchat_store_commit",
            "Store writes acknowledged to a client (call transitions, messages), until committed.",
            Unit::Seconds,
            commits.clone(),
        );
        Metrics {
            registry,
            calls_created,
            calls_ended,
            messages_sent,
            socket_events,
            socket_exceptions,
            ice_relayed,
            sockets_connected,
            sockets_refused,
            signins,
            push_enqueued,
            push_keys_dropped,
            call_commit_failures,
            signins_failed,
            calls_taken_over,
            call_owner_reads,
            ice_told,
            calls_forwarded,
            time_to_ring,
            time_to_answer,
            relay,
            http,
            commits,
        }
    }

    pub fn inc(&self, c: fn(&Metrics) -> &Counter) {
        c(self).inc();
    }

    pub fn call_ended(&self, status: Status) {
        self.calls_ended
            .get_or_create(&Ended {
                status: status.as_str(),
            })
            .inc();
    }

    pub fn http_request(&self, route: Route, started: Instant) {
        self.http
            .get_or_create(&route)
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn committed(&self, what: Commit, started: Instant) {
        let what = match what {
            Commit::Call => "call",
            Commit::Message => "message",
        };
        self.commits
            .get_or_create(&Write { what })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The whole OpenMetrics body: what was read at this scrape, then our own metrics.
    pub fn render(&self, now: Scrape) -> String {
        use prometheus_client::encoding::text;
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(now));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = text::encode_registry(&mut out, &scraped);
        let _ = text::encode_registry(&mut out, &self.registry);
        let _ = text::encode_eof(&mut out);
        out
    }
}

/// The media type of [`Metrics::render`]'s body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Values other parts own, read at one scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<Read>,
}

#[derive(Debug)]
struct Read {
    name: String,
    help: String,
    kind: MetricType,
    rows: Vec<(Vec<(String, String)>, u64)>,
}

impl Scrape {
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.labeled_gauge(name, help, vec![(Vec::new(), value)])
    }

    /// `name` ends in `_total`, as it is exposed.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.labeled_counter(name, help, vec![(Vec::new(), value)])
    }

    pub fn labeled_gauge(
        &mut self,
        name: &str,
        help: &str,
        rows: Vec<(Vec<(String, String)>, u64)>,
    ) -> &mut Self {
        self.push(name, help, MetricType::Gauge, rows)
    }

    pub fn labeled_counter(
        &mut self,
        name: &str,
        help: &str,
        rows: Vec<(Vec<(String, String)>, u64)>,
    ) -> &mut Self {
        // The encoder adds the suffix to counters' samples.
        let name = name.strip_suffix("_total").unwrap_or(name);
        self.push(name, help, MetricType::Counter, rows)
    }

    fn push(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        rows: Vec<(Vec<(String, String)>, u64)>,
    ) -> &mut Self {
        self.families.push(Read {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            rows,
        });
        self
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut family = encoder.encode_descriptor(&f.name, &f.help, None, f.kind)?;
            for (labels, v) in &f.rows {
                let metric = family.encode_family(labels)?;
                match f.kind {
                    MetricType::Counter => ConstCounter::new(*v).encode(metric)?,
                    _ => ConstGauge::new(*v as i64).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_owned_and_scraped_values_as_openmetrics() {
        let m = Metrics::default();
        m.inc(|m| &m.calls_created);
        m.call_ended(Status::Rejected);
        m.relay.observe(0.000_05);
        let mut now = Scrape::default();
        now.gauge("vchat_sockets", "Connected sockets.", 3)
            .counter("vchat_push_sent_total", "Pushes sent.", 7)
            .labeled_counter(
                "vchat_limited_total",
                "Refused.",
                vec![(vec![("reason".into(), "calls".into())], 2)],
            );
        let text = m.render(now);
        for line in [
            "vchat_sockets 3",
            "vchat_push_sent_total 7",
            "vchat_limited_total{reason=\"calls\"} 2",
            "vchat_calls_created_total 1",
            "vchat_calls_ended_total{status=\"rejected\"} 1",
            "vchat_calls_ended_total{status=\"timeout\"} 0",
            "vchat_relay_seconds_count 1",
            "# TYPE vchat_time_to_ring_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // One HELP per family.
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP")).collect();
        let mut unique = helps.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(helps.len(), unique.len());
    }
}
