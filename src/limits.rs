//! Abuse limits: how often a user may ring, send messages or emit socket events, how many
//! requests and sockets one client address may open, how many sockets one user may hold. Rates
//! use `governor` (GCRA); each limit is configurable and `0` turns it off. Refusals are counted
//! in `/metrics` by reason. A refused or expired token always answers 450 (the SDK logs out on
//! 450 and never on 429), so no limit ever turns a 450 into a 429.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::Config;

/// Why something was refused (the `reason` label in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    CallsPerMinute,
    UnansweredCalls,
    MessagesPer10s,
    SocketEvents,
    SocketEventFlood,
    RequestsPerAddress,
    SocketsPerUser,
    SocketsPerAddress,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::CallsPerMinute,
        Reason::UnansweredCalls,
        Reason::MessagesPer10s,
        Reason::SocketEvents,
        Reason::SocketEventFlood,
        Reason::RequestsPerAddress,
        Reason::SocketsPerUser,
        Reason::SocketsPerAddress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CallsPerMinute => "calls_per_minute",
            Reason::UnansweredCalls => "unanswered_calls",
            Reason::MessagesPer10s => "messages_per_10s",
            Reason::SocketEvents => "socket_events",
            Reason::SocketEventFlood => "socket_event_flood",
            Reason::RequestsPerAddress => "requests_per_address",
            Reason::SocketsPerUser => "sockets_per_user",
            Reason::SocketsPerAddress => "sockets_per_address",
        }
    }
}

/// A request that waits at most this long to fit its address's rate is slowed, not refused.
pub const MAX_SLOWDOWN: Duration = Duration::from_millis(500);

fn quota(per: Duration, n: u32, burst: u32) -> Option<Quota> {
    let n = NonZeroU32::new(n)?;
    let burst = NonZeroU32::new(burst.max(1))?;
    Quota::with_period(per / n.get()).map(|q| q.allow_burst(burst))
}

fn wait_of(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
    not_until.wait_time_from(DefaultClock::default().now())
}

/// Unanswered calls in a row from one caller to one callee, and the cool-down they earn.
#[derive(Debug, Clone, Copy)]
struct Streak {
    count: u32,
    last: Instant,
    cool_until: Option<Instant>,
}

pub struct Limits {
    calls: Option<DefaultKeyedRateLimiter<String>>,
    max_unanswered: u32,
    cool_down: Duration,
    streaks: DashMap<(String, String), Streak>,
    messages: Option<DefaultKeyedRateLimiter<String>>,
    requests: Option<DefaultKeyedRateLimiter<IpAddr>>,
    events: Option<Quota>,
    flood: Option<Quota>,
    max_sockets_per_user: usize,
    max_sockets_per_address: usize,
    sockets_by_address: DashMap<IpAddr, usize>,
    trusted_proxies: Vec<IpNet>,
    refused: [AtomicU64; Reason::ALL.len()],
}

/// A socket's own event limiters.
pub struct SocketLimiter {
    events: Option<DefaultDirectRateLimiter>,
    flood: Option<DefaultDirectRateLimiter>,
}

/// What to do with one socket event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventVerdict {
    Accept,
    /// Over the rate: refuse it with `v1OnException`.
    Refuse,
    /// Far over the rate for seconds: close the socket.
    Disconnect,
}

impl SocketLimiter {
    pub fn check(&self, limits: &Limits) -> EventVerdict {
        let Some(events) = &self.events else {
            return EventVerdict::Accept;
        };
        if events.check().is_ok() {
            return EventVerdict::Accept;
        }
        if self.flood.as_ref().is_some_and(|f| f.check().is_err()) {
            limits.count(Reason::SocketEventFlood);
            return EventVerdict::Disconnect;
        }
        limits.count(Reason::SocketEvents);
        EventVerdict::Refuse
    }
}

impl Limits {
    pub fn new(c: &Config) -> Result<Limits, String> {
        let trusted_proxies = c
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("trusted proxy {p:?} is not an IP address or CIDR"))
            })
            .collect::<Result<_, _>>()?;
        let minute = Duration::from_secs(60);
        let second = Duration::from_secs(1);
        let events = c.max_events_per_second;
        Ok(Limits {
            calls: quota(minute, c.max_calls_per_minute, c.max_calls_per_minute)
                .map(RateLimiter::keyed),
            max_unanswered: c.max_unanswered_calls,
            cool_down: Duration::from_secs(c.unanswered_cool_down_secs),
            streaks: DashMap::new(),
            messages: quota(
                Duration::from_secs(10),
                c.max_messages_per_10s,
                c.max_messages_per_10s,
            )
            .map(RateLimiter::keyed),
            requests: quota(
                second,
                c.max_requests_per_address_per_second,
                c.max_requests_per_address_per_second.saturating_mul(2),
            )
            .map(RateLimiter::keyed),
            // Bursts of twice the rate; past ten times the rate for about three seconds, the
            // socket is closed.
            events: quota(second, events, events.saturating_mul(2)),
            flood: quota(second, events.saturating_mul(10), events.saturating_mul(30)),
            max_sockets_per_user: c.max_sockets_per_user,
            max_sockets_per_address: c.max_sockets_per_address,
            sockets_by_address: DashMap::new(),
            trusted_proxies,
            refused: Default::default(),
        })
    }

    fn count(&self, r: Reason) {
        self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals by reason, for `/metrics`.
    pub fn refused(&self) -> Vec<(Reason, u64)> {
        Reason::ALL
            .iter()
            .map(|r| (*r, self.refused[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// A new call from `caller` to `callee`: refused with a reason past the rate or during a
    /// cool-down for unanswered calls.
    pub fn check_call(&self, caller: &str, callee: &str) -> Result<(), String> {
        if let Some(l) = &self.calls {
            if let Err(n) = l.check_key(&caller.to_string()) {
                self.count(Reason::CallsPerMinute);
                return Err(format!(
                    "too many calls: try again in {} s",
                    wait_of(&n).as_secs().max(1)
                ));
            }
        }
        if self.max_unanswered > 0 {
            let key = (caller.to_string(), callee.to_string());
            if let Some(s) = self.streaks.get(&key) {
                if let Some(left) = s
                    .cool_until
                    .and_then(|u| u.checked_duration_since(Instant::now()))
                {
                    self.count(Reason::UnansweredCalls);
                    return Err(format!(
                        "{} calls in a row went unanswered: you can call this person again in {} min",
                        s.count,
                        left.as_secs().div_ceil(60).max(1)
                    ));
                }
            }
        }
        Ok(())
    }

    /// A call ended: an answered one clears the streak; an unanswered one (missed, canceled,
    /// rejected) extends it, and the `max`th in a row starts the cool-down.
    pub fn call_ended(&self, caller: &str, callee: &str, answered: bool) {
        if self.max_unanswered == 0 {
            return;
        }
        let key = (caller.to_string(), callee.to_string());
        if answered {
            self.streaks.remove(&key);
            return;
        }
        let now = Instant::now();
        let mut s = self.streaks.entry(key).or_insert(Streak {
            count: 0,
            last: now,
            cool_until: None,
        });
        if s.cool_until.is_some_and(|u| u <= now) {
            // A served cool-down starts the count over.
            *s = Streak {
                count: 0,
                last: now,
                cool_until: None,
            };
        }
        s.count += 1;
        s.last = now;
        if s.count >= self.max_unanswered {
            s.cool_until = Some(now + self.cool_down);
        }
    }

    /// A message from `user`.
    pub fn check_message(&self, user: &str) -> Result<(), String> {
        if let Some(l) = &self.messages {
            if let Err(n) = l.check_key(&user.to_string()) {
                self.count(Reason::MessagesPer10s);
                return Err(format!(
                    "too many messages: try again in {} s",
                    wait_of(&n).as_secs().max(1)
                ));
            }
        }
        Ok(())
    }

    /// A request (REST or a socket handshake) from `addr`: admitted at once under the rate,
    /// slowed (waiting for its turn, at most [`MAX_SLOWDOWN`]) a little above it, refused beyond.
    pub async fn admit_request(&self, addr: IpAddr) -> Result<(), String> {
        let Some(l) = &self.requests else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + MAX_SLOWDOWN;
        loop {
            let wait = match l.check_key(&addr) {
                Ok(_) => return Ok(()),
                Err(n) => wait_of(&n),
            };
            if tokio::time::Instant::now() + wait > deadline {
                self.count(Reason::RequestsPerAddress);
                return Err(format!(
                    "too many requests from your address: try again in {} ms",
                    wait.as_millis().max(1)
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A socket for `user` from `addr`, who has `user_sockets` already: refused past the caps.
    /// On success the address's count is taken; [`Limits::socket_closed`] gives it back.
    pub fn open_socket(&self, user_sockets: usize, addr: IpAddr) -> Result<(), String> {
        if self.max_sockets_per_user > 0 && user_sockets >= self.max_sockets_per_user {
            self.count(Reason::SocketsPerUser);
            return Err(format!(
                "too many connections for this user (at most {})",
                self.max_sockets_per_user
            ));
        }
        if self.max_sockets_per_address == 0 {
            return Ok(());
        }
        let mut n = self.sockets_by_address.entry(addr).or_insert(0);
        if *n >= self.max_sockets_per_address {
            drop(n);
            self.count(Reason::SocketsPerAddress);
            return Err(format!(
                "too many connections from your address (at most {})",
                self.max_sockets_per_address
            ));
        }
        *n += 1;
        Ok(())
    }

    pub fn socket_closed(&self, addr: IpAddr) {
        if self.max_sockets_per_address == 0 {
            return;
        }
        if let Some(mut n) = self.sockets_by_address.get_mut(&addr) {
            *n = n.saturating_sub(1);
        }
        self.sockets_by_address.remove_if(&addr, |_, n| *n == 0);
    }

    pub fn socket_limiter(&self) -> SocketLimiter {
        SocketLimiter {
            events: self.events.map(RateLimiter::direct),
            flood: self.flood.map(RateLimiter::direct),
        }
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last
    /// address in `X-Forwarded-For` that is not one of ours (clients can write anything in
    /// front of it).
    pub fn client_addr(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(chain) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.rsplit(',') {
            let hop = hop.trim();
            let ip = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()));
            match ip {
                Ok(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }

    /// Forgets idle keys so a flood of distinct keys cannot grow memory for good.
    pub fn sweep(&self) {
        if let Some(l) = &self.calls {
            l.retain_recent();
        }
        if let Some(l) = &self.messages {
            l.retain_recent();
        }
        if let Some(l) = &self.requests {
            l.retain_recent();
        }
        let now = Instant::now();
        let keep = self.cool_down.max(Duration::from_secs(3600));
        self.streaks.retain(|_, s| match s.cool_until {
            Some(u) => u > now,
            None => now.duration_since(s.last) < keep,
        });
    }

    /// (rate keys tracked, unanswered streaks, addresses with sockets), for tests and metrics.
    pub fn tracked(&self) -> (usize, usize, usize) {
        let keys = self.calls.as_ref().map_or(0, |l| l.len())
            + self.messages.as_ref().map_or(0, |l| l.len())
            + self.requests.as_ref().map_or(0, |l| l.len());
        (keys, self.streaks.len(), self.sockets_by_address.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(f: impl FnOnce(&mut Config)) -> Limits {
        let mut c = Config::default();
        f(&mut c);
        Limits::new(&c).unwrap()
    }

    #[test]
    fn calls_per_minute_and_unanswered_cool_down() {
        let l = limits(|c| {
            c.max_calls_per_minute = 3;
            c.max_unanswered_calls = 2;
        });
        for _ in 0..3 {
            l.check_call("a", "b").unwrap();
        }
        assert!(l
            .check_call("a", "b")
            .unwrap_err()
            .contains("too many calls"));
        assert!(l.check_call("c", "b").is_ok(), "per caller");

        let l = limits(|c| {
            c.max_calls_per_minute = 0;
            c.max_unanswered_calls = 2;
        });
        l.call_ended("a", "b", false);
        assert!(l.check_call("a", "b").is_ok());
        l.call_ended("a", "b", false);
        assert!(l.check_call("a", "b").unwrap_err().contains("unanswered"));
        assert!(l.check_call("a", "c").is_ok(), "per callee");
        assert!(l.check_call("b", "a").is_ok(), "the callee may call back");
        let l = limits(|c| c.max_unanswered_calls = 2);
        l.call_ended("a", "b", false);
        l.call_ended("a", "b", true);
        l.call_ended("a", "b", false);
        assert!(
            l.check_call("a", "b").is_ok(),
            "an answer starts the count over"
        );
    }

    #[tokio::test]
    async fn requests_are_slowed_then_refused() {
        let l = std::sync::Arc::new(limits(|c| c.max_requests_per_address_per_second = 10));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..20 {
            l.admit_request(ip).await.unwrap();
        }
        assert!(
            start.elapsed() < MAX_SLOWDOWN,
            "a burst of twice the rate passes"
        );
        // A sequential client is slowed to the rate, never refused.
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            l.admit_request(ip).await.unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "it waited its turns"
        );
        // Many at once: those that would wait too long are refused.
        let all: Vec<_> = (0..30)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.admit_request(ip).await.is_ok() })
            })
            .collect();
        let mut admitted = 0;
        for h in all {
            admitted += usize::from(h.await.unwrap());
        }
        assert!((1..=7).contains(&admitted), "{admitted} of 30 admitted");
        assert!(
            l.admit_request("10.0.0.2".parse().unwrap()).await.is_ok(),
            "per address"
        );
    }

    #[tokio::test]
    async fn zero_turns_each_limit_off() {
        let l = limits(|c| {
            c.max_calls_per_minute = 0;
            c.max_unanswered_calls = 0;
            c.max_messages_per_10s = 0;
            c.max_requests_per_address_per_second = 0;
            c.max_events_per_second = 0;
            c.max_sockets_per_user = 0;
            c.max_sockets_per_address = 0;
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10_000 {
            l.check_call("a", "b").unwrap();
            l.call_ended("a", "b", false);
            l.check_message("a").unwrap();
            l.admit_request(ip).await.unwrap();
            l.open_socket(1_000_000, ip).unwrap();
        }
        let s = l.socket_limiter();
        for _ in 0..10_000 {
            assert_eq!(s.check(&l), EventVerdict::Accept);
        }
        assert_eq!(l.tracked(), (0, 0, 0));
    }

    #[test]
    fn socket_events_are_refused_then_the_socket_is_closed() {
        let l = limits(|c| c.max_events_per_second = 5);
        let s = l.socket_limiter();
        let verdicts: Vec<_> = (0..400).map(|_| s.check(&l)).collect();
        assert!(
            verdicts[..10].iter().all(|v| *v == EventVerdict::Accept),
            "a burst of twice the rate"
        );
        assert_eq!(verdicts[10], EventVerdict::Refuse);
        assert!(
            verdicts.contains(&EventVerdict::Disconnect),
            "a flood closes the socket"
        );
    }

    #[test]
    fn sockets_per_user_and_address() {
        let l = limits(|c| {
            c.max_sockets_per_user = 2;
            c.max_sockets_per_address = 2;
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(l.open_socket(2, a).unwrap_err().contains("this user"));
        l.open_socket(0, a).unwrap();
        l.open_socket(0, a).unwrap();
        assert!(l.open_socket(0, a).unwrap_err().contains("your address"));
        l.open_socket(0, b).unwrap();
        l.socket_closed(a);
        l.open_socket(0, a).unwrap();
        for _ in 0..3 {
            l.socket_closed(a);
        }
        l.socket_closed(b);
        assert_eq!(l.tracked().2, 0, "nothing left behind");
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let l = limits(|c| c.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into()]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let xff = Some("1.2.3.4, 198.51.100.7, 10.9.9.9");
        assert_eq!(
            l.client_addr(proxy, xff),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            l.client_addr(stranger, xff),
            stranger,
            "untrusted peers cannot claim"
        );
        assert_eq!(l.client_addr(proxy, None), proxy);
        assert_eq!(l.client_addr(proxy, Some("garbage")), proxy);
        assert!(Limits::new(&Config {
            trusted_proxies: vec!["not-an-ip".into()],
            ..Config::default()
        })
        .is_err());
    }
}
