//! Which peers the relay may talk to (the answer to "TURN as an open proxy").
//!
//! The turn crate relays to whatever XOR-PEER-ADDRESS a client names. This
//! module decides, per peer transport address, whether that is acceptable;
//! [`crate::guard`] enforces the decision on CreatePermission / ChannelBind
//! requests (403) and on every datagram the relay sockets send or receive.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;

/// Why a peer address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// `0.0.0.0/8`, `::` (as a destination these reach the local host). Never overridable.
    Unspecified,
    /// Any address on the TURN server's listen port (a relay loop into the
    /// server itself, or TURN chaining). Never overridable.
    OwnPort,
    /// `127.0.0.0/8`, `::1` — unless loopback peers are allowed.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), shared address space
    /// `100.64/10`, ULA `fc00::/7`, site-local `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255` (limited broadcast).
    Broadcast,
    /// Other special-purpose ranges that no WebRTC peer uses but that may
    /// be internal somewhere: `240.0.0.0/4` ("future use", except the
    /// broadcast address), IETF protocol assignments `192.0.0.0/24`,
    /// benchmarking `198.18.0.0/15`, documentation `192.0.2.0/24`,
    /// `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, discard `100::/64`.
    Reserved,
    /// A non-loopback address of this server (relay IP, listen IP, relay bind
    /// IP), on a port that is not a live relay address: other UDP services on
    /// the host would see traffic coming from the host itself.
    OwnAddress,
}

impl DenyReason {
    /// Every reason, in a fixed order (the order of [`DenyCounts`]).
    pub const ALL: [DenyReason; 9] = [
        DenyReason::Unspecified,
        DenyReason::OwnPort,
        DenyReason::Loopback,
        DenyReason::Private,
        DenyReason::LinkLocal,
        DenyReason::Multicast,
        DenyReason::Broadcast,
        DenyReason::Reserved,
        DenyReason::OwnAddress,
    ];

    /// Stable snake_case label (for logs and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Unspecified => "unspecified",
            DenyReason::OwnPort => "own_port",
            DenyReason::Loopback => "loopback",
            DenyReason::Private => "private",
            DenyReason::LinkLocal => "link_local",
            DenyReason::Multicast => "multicast",
            DenyReason::Broadcast => "broadcast",
            DenyReason::Reserved => "reserved",
            DenyReason::OwnAddress => "own_address",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a list of CIDRs separated by commas and/or whitespace
/// (`VCHAT_TURN_ALLOWED_PEERS`). A bare address means a single host
/// (`/32` or `/128`). An empty string gives an empty list.
pub fn parse_allowed_peers(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("bad CIDR {t:?} (want e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7)")
                })
        })
        .collect()
}

/// The IPv4 address an IPv6 address stands for, if it embeds one in a way a
/// dual-stack or NAT64 host would route: IPv4-mapped `::ffff:a.b.c.d`,
/// deprecated IPv4-compatible `::a.b.c.d`, and the NAT64 well-known prefix
/// `64:ff9b::/96`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[5] == 0 && !(s[6] == 0 && s[7] <= 1); // :: and ::1 stay IPv6
    if s[..5] == [0; 5] && (s[5] == 0xffff || compatible) {
        return Some(v4());
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(v4());
    }
    None
}

/// The address to classify: IPv6 forms that embed an IPv4 address are
/// judged as that IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The special-purpose class of a (canonical) address, if any.
fn classify(ip: IpAddr) -> Option<DenyReason> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            if a == 0 {
                Some(DenyReason::Unspecified)
            } else if a == 127 {
                Some(DenyReason::Loopback)
            } else if a == 10
                || (a == 172 && (16..32).contains(&b))
                || (a == 192 && b == 168)
                || (a == 100 && (64..128).contains(&b))
            {
                Some(DenyReason::Private)
            } else if a == 169 && b == 254 {
                Some(DenyReason::LinkLocal)
            } else if (224..240).contains(&a) {
                Some(DenyReason::Multicast)
            } else if v4 == Ipv4Addr::BROADCAST {
                Some(DenyReason::Broadcast)
            } else if a >= 240
                || (a == 192 && b == 0 && (c == 0 || c == 2))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 198 && b == 51 && c == 100)
                || (a == 203 && b == 0 && c == 113)
            {
                Some(DenyReason::Reserved)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() {
                Some(DenyReason::Unspecified)
            } else if v6.is_loopback() {
                Some(DenyReason::Loopback)
            } else if (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfec0
                || s[..3] == [0x64, 0xff9b, 1]
            {
                Some(DenyReason::Private)
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some(DenyReason::LinkLocal)
            } else if (s[0] & 0xff00) == 0xff00 {
                Some(DenyReason::Multicast)
            } else if s[..2] == [0x2001, 0x0db8] || s[..4] == [0x100, 0, 0, 0] {
                Some(DenyReason::Reserved)
            } else {
                None
            }
        }
    }
}

/// Static peer policy (see [`crate::TurnConfig`] for the knobs).
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    /// Explicitly allowed networks: override every class rule except
    /// [`DenyReason::Unspecified`] and [`DenyReason::OwnPort`].
    pub allowed: Vec<IpNet>,
    /// Whether loopback peers are allowed (laptop setup).
    pub allow_loopback: bool,
    /// The TURN listen port (denied on every address).
    pub listen_port: u16,
    /// Non-loopback, specified addresses of this server.
    pub own_ips: Vec<IpAddr>,
}

impl PeerPolicy {
    /// Builds the policy; `own_ips` are filtered to canonical, non-loopback,
    /// specified addresses.
    pub fn new(
        allowed: Vec<IpNet>,
        allow_loopback: bool,
        listen_port: u16,
        own_ips: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        let mut own: Vec<IpAddr> = Vec::new();
        for ip in own_ips.into_iter().map(canonical) {
            if !ip.is_unspecified() && !ip.is_loopback() && !own.contains(&ip) {
                own.push(ip);
            }
        }
        Self {
            allowed: allowed.into_iter().map(|n| n.trunc()).collect(),
            allow_loopback,
            listen_port,
            own_ips: own,
        }
    }

    fn is_allowed(&self, ip: IpAddr, canon: IpAddr) -> bool {
        self.allowed
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&canon))
    }

    /// Decides on `peer`. `is_live_relay` is asked only when the answer would
    /// otherwise be a (overridable) refusal: another allocation's relayed
    /// address on this server is always a legitimate peer (both call parties
    /// relayed through the same server), whatever class its IP is in.
    pub fn check(
        &self,
        peer: SocketAddr,
        is_live_relay: impl FnOnce(SocketAddr) -> bool,
    ) -> Result<(), DenyReason> {
        let ip = peer.ip();
        let canon = canonical(ip);
        let class = classify(canon);
        if class == Some(DenyReason::Unspecified) {
            return Err(DenyReason::Unspecified);
        }
        if peer.port() == self.listen_port {
            return Err(DenyReason::OwnPort);
        }
        let reason = match class {
            Some(DenyReason::Loopback) if self.allow_loopback => return Ok(()),
            Some(r) => r,
            None if self.own_ips.contains(&canon) => DenyReason::OwnAddress,
            None => return Ok(()),
        };
        if self.is_allowed(ip, canon) || is_live_relay(SocketAddr::new(canon, peer.port())) {
            return Ok(());
        }
        Err(reason)
    }
}

/// Counters per [`DenyReason`].
#[derive(Debug, Default)]
pub(crate) struct AtomicDenyCounts([AtomicU64; DenyReason::ALL.len()]);

impl AtomicDenyCounts {
    pub(crate) fn bump(&self, r: DenyReason) {
        self.0[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DenyCounts {
        DenyCounts(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// A snapshot of counts per [`DenyReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DenyCounts([u64; DenyReason::ALL.len()]);

impl DenyCounts {
    /// The count for one reason.
    pub fn get(&self, r: DenyReason) -> u64 {
        self.0[r.index()]
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason (zeros included), in
    /// [`DenyReason::ALL`] order — handy for labelled metrics.
    pub fn iter(&self) -> impl Iterator<Item = (DenyReason, u64)> + '_ {
        DenyReason::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn policy(allowed: &str, loopback: bool) -> PeerPolicy {
        PeerPolicy::new(
            parse_allowed_peers(allowed).unwrap(),
            loopback,
            3478,
            ["93.184.216.34".parse().unwrap(), "0.0.0.0".parse().unwrap()],
        )
    }

    fn check(p: &PeerPolicy, a: &str) -> Result<(), DenyReason> {
        p.check(sa(a), |_| false)
    }

    #[test]
    fn classes_are_denied_by_default() {
        let p = policy("", false);
        use DenyReason::*;
        for (addr, want) in [
            ("0.0.0.0:9", Unspecified),
            ("0.1.2.3:9", Unspecified),
            ("[::]:9", Unspecified),
            ("127.0.0.1:9", Loopback),
            ("127.255.0.9:9", Loopback),
            ("[::1]:9", Loopback),
            ("10.1.2.3:9", Private),
            ("172.16.0.1:9", Private),
            ("172.31.255.255:9", Private),
            ("192.168.1.1:9", Private),
            ("100.64.0.1:9", Private),
            ("[fd12::1]:9", Private),
            ("[fc00::1]:9", Private),
            ("[fec0::1]:9", Private),
            ("169.254.169.254:80", LinkLocal),
            ("[fe80::1]:9", LinkLocal),
            ("224.0.0.1:9", Multicast),
            ("239.255.255.250:1900", Multicast),
            ("[ff02::1]:9", Multicast),
            ("255.255.255.255:9", Broadcast),
            ("240.0.0.1:9", Reserved),
            ("192.0.0.8:9", Reserved),
            ("192.0.2.1:9", Reserved),
            ("198.18.0.1:9", Reserved),
            ("198.19.255.1:9", Reserved),
            ("198.51.100.20:9", Reserved),
            ("203.0.113.7:9", Reserved),
            ("[2001:db8::1]:9", Reserved),
            ("[100::1]:9", Reserved),
            ("93.184.216.34:22", OwnAddress),
            // IPv6 forms of IPv4 addresses are judged as the IPv4 address.
            ("[::ffff:127.0.0.1]:9", Loopback),
            ("[::ffff:10.0.0.1]:9", Private),
            ("[::ffff:0.0.0.0]:9", Unspecified),
            ("[::127.0.0.1]:9", Loopback),
            ("[::2]:9", Unspecified),
            ("[64:ff9b::a9fe:a9fe]:9", LinkLocal),
            ("[::ffff:93.184.216.34]:9", OwnAddress),
            // The listen port, on any address.
            ("1.1.1.1:3478", OwnPort),
            ("[2606:4700::1111]:3478", OwnPort),
        ] {
            assert_eq!(check(&p, addr), Err(want), "{addr}");
        }
    }

    #[test]
    fn public_peers_are_allowed() {
        let p = policy("", false);
        for addr in [
            "1.1.1.1:40000",
            "8.8.8.8:53",
            "192.0.1.1:9",
            "198.20.0.1:9",
            "203.0.114.1:9",
            "172.32.0.1:9",
            "100.128.0.1:9",
            "192.169.0.1:9",
            "223.255.255.255:9",
            "[2001:db9::1]:9",
            "[2606:4700::1111]:443",
            "[64:ff9b::808:808]:53",
            "[::ffff:8.8.8.8]:53",
            "93.184.216.35:22",
        ] {
            assert_eq!(check(&p, addr), Ok(()), "{addr}");
        }
    }

    #[test]
    fn loopback_switch_and_allow_list() {
        let p = policy("", true);
        assert_eq!(check(&p, "127.0.0.1:50000"), Ok(()));
        assert_eq!(check(&p, "[::ffff:127.0.0.1]:50000"), Ok(()));
        // Still never the listen port nor the unspecified address.
        assert_eq!(check(&p, "127.0.0.1:3478"), Err(DenyReason::OwnPort));
        assert_eq!(check(&p, "0.0.0.0:50000"), Err(DenyReason::Unspecified));
        assert_eq!(check(&p, "10.0.0.1:9"), Err(DenyReason::Private));

        let p = policy("10.0.0.0/8, fd00::/8 192.0.2.1 93.184.216.34", false);
        assert_eq!(check(&p, "10.9.9.9:9"), Ok(()));
        assert_eq!(check(&p, "[::ffff:10.9.9.9]:9"), Ok(()));
        assert_eq!(check(&p, "[fd00::5]:9"), Ok(()));
        assert_eq!(check(&p, "93.184.216.34:9"), Ok(()));
        assert_eq!(check(&p, "192.0.2.1:9"), Ok(()));
        assert_eq!(check(&p, "192.0.2.2:9"), Err(DenyReason::Reserved));
        assert_eq!(check(&p, "192.168.0.1:9"), Err(DenyReason::Private));
        assert_eq!(check(&p, "10.9.9.9:3478"), Err(DenyReason::OwnPort));

        // Allowing everything still keeps the two hard rules.
        let p = policy("0.0.0.0/0,::/0", false);
        assert_eq!(check(&p, "127.0.0.1:9"), Ok(()));
        assert_eq!(check(&p, "0.0.0.0:9"), Err(DenyReason::Unspecified));
        assert_eq!(check(&p, "127.0.0.1:3478"), Err(DenyReason::OwnPort));
    }

    #[test]
    fn live_relay_addresses_are_allowed_whatever_their_class() {
        let p = policy("", false);
        let relay = sa("127.0.0.1:50000");
        assert_eq!(p.check(relay, |a| a == relay), Ok(()));
        assert_eq!(
            p.check(sa("[::ffff:127.0.0.1]:50000"), |a| a == relay),
            Ok(())
        );
        assert_eq!(
            p.check(sa("127.0.0.1:50001"), |a| a == relay),
            Err(DenyReason::Loopback)
        );
        // The hard rules win even then.
        let own = sa("127.0.0.1:3478");
        assert_eq!(p.check(own, |_| true), Err(DenyReason::OwnPort));
    }

    #[test]
    fn parse_list() {
        assert_eq!(parse_allowed_peers("").unwrap(), vec![]);
        assert_eq!(parse_allowed_peers(" , ").unwrap(), vec![]);
        let l = parse_allowed_peers("10.1.2.3/8,::1 192.0.2.7").unwrap();
        assert_eq!(
            l,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        assert!(parse_allowed_peers("10.0.0.0/33").is_err());
        assert!(parse_allowed_peers("example.com").is_err());
    }

    #[test]
    fn counts() {
        let c = AtomicDenyCounts::default();
        c.bump(DenyReason::Loopback);
        c.bump(DenyReason::Loopback);
        c.bump(DenyReason::OwnAddress);
        let s = c.snapshot();
        assert_eq!(s.get(DenyReason::Loopback), 2);
        assert_eq!(s.get(DenyReason::OwnAddress), 1);
        assert_eq!(s.total(), 3);
        assert_eq!(s.iter().count(), DenyReason::ALL.len());
        for (i, r) in DenyReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
