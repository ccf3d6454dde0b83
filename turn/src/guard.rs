//! Enforcement of the peer policy and the allocation quotas around the turn
//! crate, which has no hook for either.
//!
//! Three wrappers, sharing one [`Guard`]:
//!
//! * [`GuardedListener`] wraps the TURN listening socket. Its `recv_from` sees
//!   every request before the crate does, and answers some itself:
//!   - an authenticated CreatePermission / ChannelBind naming a refused peer
//!     gets **403 Forbidden** (like coturn's `denied-peer-ip`), so no
//!     permission is ever installed for it;
//!   - an authenticated Allocate past the per-user or total quota gets
//!     **486 Allocation Quota Reached**.
//!
//!   Everything else is handed to the crate untouched.
//! * [`GuardedGenerator`] wraps `RelayAddressGeneratorRanges`: it records
//!   each relay socket against its user and source address (the quota
//!   bookkeeping) and refuses, as a last resort, to allocate past a quota (the
//!   crate then answers 508 Insufficient Capacity).
//! * [`GuardedRelayConn`] wraps each relay socket: `send_to` refuses datagrams
//!   to refused peers and `recv_from` drops datagrams from them. This is needed
//!   on top of the 403s because TURN permissions are per *IP address*: a
//!   permission for another allocation's relay address `127.0.0.1:50000`
//!   would otherwise also let the client reach `127.0.0.1:<anything>`.
//!
//! The generator learns which user an allocation belongs to from the
//! listener: the crate's read loop (`turn::server::Server::read_loop`, turn
//! 0.17.2 `src/server/mod.rs`) handles one datagram at a time and awaits the
//! whole request, so the Allocate request the listener just authenticated is
//! the one for which the crate calls `allocate_conn`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use stun::attributes::{
    ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS,
};
use stun::error_code::{ErrorCode, ErrorCodeAttribute, CODE_ALLOC_QUOTA_REACHED, CODE_FORBIDDEN};
use stun::integrity::MessageIntegrity;
use stun::message::{
    is_message, Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use turn::auth::AuthHandler;
use turn::relay::relay_range::RelayAddressGeneratorRanges;
use turn::relay::RelayAddressGenerator;
use util::Conn;

use crate::auth::SecretAuthHandler;
use crate::policy::{AtomicDenyCounts, DenyCounts, DenyReason, PeerPolicy};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which allocation quota was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quota {
    User,
    Total,
}

/// Counters of refusals and live allocations (see [`crate::TurnServer::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Relay sockets currently handed out, i.e. live allocations.
    pub live_allocations: usize,
    /// Allocate requests refused (486) because the user had
    /// `max_allocations_per_user` live allocations.
    pub refused_allocations_user_quota: u64,
    /// Allocate requests refused (486) because the server had
    /// `max_allocations` live allocations.
    pub refused_allocations_total_quota: u64,
    /// CreatePermission / ChannelBind requests refused (403) because they
    /// named a refused peer, by reason.
    pub refused_peer_requests: DenyCounts,
    /// Datagrams a relay socket refused to send to a refused peer, by reason
    /// (e.g. another port of an IP the client has a permission for).
    pub dropped_sends: DenyCounts,
    /// Datagrams from refused peers dropped on arrival at a relay socket, by reason.
    pub dropped_receives: DenyCounts,
}

#[derive(Debug, Clone)]
struct Pending {
    src: SocketAddr,
    user: String,
}

#[derive(Default)]
struct Registry {
    total: usize,
    per_user: HashMap<String, usize>,
    by_src: HashMap<SocketAddr, usize>,
}

/// State shared by the listener, the generator, every relay socket and the
/// [`crate::TurnServer`] handle.
pub(crate) struct Guard {
    policy: PeerPolicy,
    max_per_user: usize,
    max_total: usize,
    auth: Arc<SecretAuthHandler>,
    registry: Mutex<Registry>,
    live_relays: RwLock<HashSet<SocketAddr>>,
    /// The authenticated Allocate request being processed by the crate right now.
    pending: Mutex<Option<Pending>>,
    refused_peers: AtomicDenyCounts,
    dropped_sends: AtomicDenyCounts,
    dropped_receives: AtomicDenyCounts,
    refused_user_quota: AtomicU64,
    refused_total_quota: AtomicU64,
}

impl Guard {
    pub(crate) fn new(
        policy: PeerPolicy,
        max_per_user: usize,
        max_total: usize,
        auth: Arc<SecretAuthHandler>,
    ) -> Self {
        Self {
            policy,
            max_per_user,
            max_total,
            auth,
            registry: Mutex::default(),
            live_relays: RwLock::default(),
            pending: Mutex::default(),
            refused_peers: AtomicDenyCounts::default(),
            dropped_sends: AtomicDenyCounts::default(),
            dropped_receives: AtomicDenyCounts::default(),
            refused_user_quota: AtomicU64::new(0),
            refused_total_quota: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> TurnStats {
        TurnStats {
            live_allocations: lock(&self.registry).total,
            refused_allocations_user_quota: self.refused_user_quota.load(Ordering::Relaxed),
            refused_allocations_total_quota: self.refused_total_quota.load(Ordering::Relaxed),
            refused_peer_requests: self.refused_peers.snapshot(),
            dropped_sends: self.dropped_sends.snapshot(),
            dropped_receives: self.dropped_receives.snapshot(),
        }
    }

    /// The policy decision for `peer`, including the live-relay exception.
    pub(crate) fn check_peer(&self, peer: SocketAddr) -> Result<(), DenyReason> {
        self.policy.check(peer, |canon| {
            let live = self
                .live_relays
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            live.contains(&canon) || live.contains(&peer)
        })
    }

    fn quota_check(&self, reg: &Registry, user: Option<&str>) -> Result<(), Quota> {
        if self.max_total != 0 && reg.total >= self.max_total {
            return Err(Quota::Total);
        }
        if let Some(user) = user {
            let n = reg.per_user.get(user).copied().unwrap_or(0);
            if self.max_per_user != 0 && n >= self.max_per_user {
                return Err(Quota::User);
            }
        }
        Ok(())
    }

    fn count_quota_refusal(&self, q: Quota) {
        match q {
            Quota::User => &self.refused_user_quota,
            Quota::Total => &self.refused_total_quota,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Reserves a quota slot for the allocation being created (or refuses).
    fn reserve(self: &Arc<Self>) -> Result<Slot, Quota> {
        let pending = lock(&self.pending).clone();
        let mut reg = lock(&self.registry);
        self.quota_check(&reg, pending.as_ref().map(|p| p.user.as_str()))?;
        reg.total += 1;
        if let Some(p) = &pending {
            *reg.per_user.entry(p.user.clone()).or_default() += 1;
            *reg.by_src.entry(p.src).or_default() += 1;
        }
        Ok(Slot {
            guard: Arc::clone(self),
            owner: pending,
            relay_addr: None,
        })
    }

    /// Looks at a datagram arriving on the TURN listener before the crate
    /// does. Returns a response to send instead of handing the datagram on.
    pub(crate) fn inspect(&self, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        // Whatever comes next is a new request: forget the previous Allocate.
        *lock(&self.pending) = None;

        // ChannelData and indications (the data path) are not looked at.
        if !is_message(data) {
            return None;
        }
        let mut typ = MessageType::default();
        typ.read_value(u16::from_be_bytes([data[0], data[1]]));
        if typ.class != CLASS_REQUEST
            || !(typ.method == METHOD_ALLOCATE
                || typ.method == METHOD_CREATE_PERMISSION
                || typ.method == METHOD_CHANNEL_BIND)
        {
            return None;
        }
        let mut m = Message {
            raw: data.to_vec(),
            ..Default::default()
        };
        m.decode().ok()?;
        // Only authenticated requests are judged; the crate answers the others
        // (401 with a nonce, 400, ...) as usual.
        let (user, integrity) = self.authenticate(&m, src)?;

        if typ.method == METHOD_ALLOCATE {
            *lock(&self.pending) = Some(Pending {
                src,
                user: user.clone(),
            });
            let refusal = {
                let reg = lock(&self.registry);
                if reg.by_src.contains_key(&src) {
                    // Same 5-tuple as a live allocation: the crate answers 437.
                    None
                } else {
                    self.quota_check(&reg, Some(&user)).err()
                }
            };
            let q = refusal?;
            self.count_quota_refusal(q);
            let (limit, what) = match q {
                Quota::User => (self.max_per_user, "per user"),
                Quota::Total => (self.max_total, "on this server"),
            };
            tracing::debug!(%src, %user, limit, "TURN allocation refused: quota reached {what}");
            return reply(
                &m,
                CODE_ALLOC_QUOTA_REACHED,
                &format!("Allocation Quota Reached: at most {limit} allocations {what}"),
                integrity,
            );
        }

        // CreatePermission / ChannelBind: every XOR-PEER-ADDRESS must pass.
        for attr in m
            .attributes
            .0
            .iter()
            .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        {
            let mut one = Message::new();
            one.transaction_id = m.transaction_id;
            one.add(ATTR_XOR_PEER_ADDRESS, &attr.value);
            let mut peer = XorMappedAddress::default();
            if peer.get_from_as(&one, ATTR_XOR_PEER_ADDRESS).is_err() {
                return None; // malformed: the crate answers 400
            }
            let peer = SocketAddr::new(peer.ip, peer.port);
            if let Err(reason) = self.check_peer(peer) {
                self.refused_peers.bump(reason);
                tracing::debug!(%src, %user, %peer, %reason, method = %typ.method, "TURN peer refused");
                return reply(
                    &m,
                    CODE_FORBIDDEN,
                    &format!("Forbidden IP ({reason})"),
                    integrity,
                );
            }
        }
        None
    }

    /// The user id and the integrity key of a request carrying valid
    /// long-term credentials, as the crate would accept them.
    fn authenticate(&self, m: &Message, src: SocketAddr) -> Option<(String, MessageIntegrity)> {
        if !m.contains(ATTR_MESSAGE_INTEGRITY) || !m.contains(ATTR_NONCE) {
            return None;
        }
        let username = TextAttribute::get_from_as(m, ATTR_USERNAME).ok()?.text;
        let realm = TextAttribute::get_from_as(m, ATTR_REALM).ok()?.text;
        let key = self.auth.auth_handle(&username, &realm, src).ok()?;
        let integrity = MessageIntegrity(key);
        integrity.check(&mut m.clone()).ok()?;
        let (_, user) = SecretAuthHandler::parse_username(&username)?;
        Some((user.to_owned(), integrity))
    }
}

/// Builds an error response to request `m`, signed like the crate signs
/// its success responses.
fn reply(
    m: &Message,
    code: ErrorCode,
    reason: &str,
    integrity: MessageIntegrity,
) -> Option<Vec<u8>> {
    let mut msg = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(Message {
            transaction_id: m.transaction_id,
            ..Default::default()
        }),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code,
            reason: reason.as_bytes().to_vec(),
        }),
        Box::new(integrity),
    ];
    msg.build(&setters).ok()?;
    Some(msg.raw)
}

/// One quota slot; released when dropped.
struct Slot {
    guard: Arc<Guard>,
    owner: Option<Pending>,
    relay_addr: Option<SocketAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(addr) = self.relay_addr {
            self.guard
                .live_relays
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&addr);
        }
        let mut reg = lock(&self.guard.registry);
        reg.total = reg.total.saturating_sub(1);
        if let Some(p) = &self.owner {
            dec(&mut reg.per_user, &p.user);
            dec(&mut reg.by_src, &p.src);
        }
    }
}

fn dec<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = map.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            map.remove(k);
        }
    }
}

/// The TURN listening socket, with requests inspected first (see module docs).
pub(crate) struct GuardedListener {
    inner: Arc<UdpSocket>,
    guard: Arc<Guard>,
}

impl GuardedListener {
    pub(crate) fn new(inner: Arc<UdpSocket>, guard: Arc<Guard>) -> Self {
        Self { inner, guard }
    }
}

#[async_trait]
impl Conn for GuardedListener {
    async fn connect(&self, addr: SocketAddr) -> util::Result<()> {
        Conn::connect(&*self.inner, addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        Conn::recv(&*self.inner, buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        loop {
            let (n, src) = self.inner.recv_from(buf).await?;
            match self.guard.inspect(&buf[..n], src) {
                None => return Ok((n, src)),
                Some(response) => {
                    if let Err(e) = self.inner.send_to(&response, src).await {
                        tracing::debug!(%src, "cannot send TURN refusal: {e}");
                    }
                }
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> util::Result<usize> {
        Conn::send(&*self.inner, buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> util::Result<usize> {
        Ok(self.inner.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> util::Result<SocketAddr> {
        Ok(self.inner.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// The crate "closes" this socket whenever an allocation closes (it
    /// holds it as the allocation's `turn_socket`); like the crate's own
    /// `UdpSocket` impl this must therefore not close anything.
    async fn close(&self) -> util::Result<()> {
        Conn::close(&*self.inner).await
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Relay address generator with quota bookkeeping (see module docs).
pub(crate) struct GuardedGenerator {
    inner: RelayAddressGeneratorRanges,
    guard: Arc<Guard>,
}

impl GuardedGenerator {
    pub(crate) fn new(inner: RelayAddressGeneratorRanges, guard: Arc<Guard>) -> Self {
        Self { inner, guard }
    }
}

#[async_trait]
impl RelayAddressGenerator for GuardedGenerator {
    fn validate(&self) -> Result<(), turn::Error> {
        self.inner.validate()
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        // Normally the listener already answered 486; this is the backstop
        // (e.g. a request the listener could not attribute to a user).
        let mut slot = self.guard.reserve().map_err(|q| {
            self.guard.count_quota_refusal(q);
            turn::Error::Other(format!("allocation quota reached ({q:?})"))
        })?;
        let (conn, relay_addr) = self.inner.allocate_conn(use_ipv4, requested_port).await?;
        self.guard
            .live_relays
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(relay_addr);
        slot.relay_addr = Some(relay_addr);
        let conn: Arc<dyn Conn + Send + Sync> = Arc::new(GuardedRelayConn {
            inner: conn,
            guard: Arc::clone(&self.guard),
            slot: Mutex::new(Some(slot)),
        });
        Ok((conn, relay_addr))
    }
}

/// A relay socket that only talks to allowed peers (see module docs).
pub(crate) struct GuardedRelayConn {
    inner: Arc<dyn Conn + Send + Sync>,
    guard: Arc<Guard>,
    /// Released on `close` (the crate closes the relay socket when the
    /// allocation ends) or, at the latest, on drop.
    slot: Mutex<Option<Slot>>,
}

#[async_trait]
impl Conn for GuardedRelayConn {
    async fn connect(&self, addr: SocketAddr) -> util::Result<()> {
        self.inner.connect(addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        self.inner.recv(buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        loop {
            let (n, src) = self.inner.recv_from(buf).await?;
            match self.guard.check_peer(src) {
                Ok(()) => return Ok((n, src)),
                Err(reason) => {
                    self.guard.dropped_receives.bump(reason);
                    tracing::trace!(peer = %src, %reason, "TURN relay dropped datagram from refused peer");
                }
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> util::Result<usize> {
        self.inner.send(buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> util::Result<usize> {
        if let Err(reason) = self.guard.check_peer(target) {
            self.guard.dropped_sends.bump(reason);
            tracing::trace!(peer = %target, %reason, "TURN relay refused to send to peer");
            return Err(util::Error::Other(format!(
                "TURN relay to {target} refused ({reason})"
            )));
        }
        self.inner.send_to(buf, target).await
    }

    fn local_addr(&self) -> util::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    async fn close(&self) -> util::Result<()> {
        drop(lock(&self.slot).take());
        self.inner.close().await
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::mint_credentials;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use stun::agent::TransactionId;
    use stun::message::{Getter, Method};
    use stun::textattrs::{Nonce, Realm, Username};
    use turn::proto::peeraddr::PeerAddress;

    const SECRET: &str = "s";

    fn guard(per_user: usize, total: usize) -> Arc<Guard> {
        Arc::new(Guard::new(
            PeerPolicy::new(vec![], false, 3478, []),
            per_user,
            total,
            Arc::new(SecretAuthHandler::new(SECRET)),
        ))
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn request(method: Method, user: &str, peers: &[&str], key_secret: &str) -> Vec<u8> {
        let c = mint_credentials(SECRET, user, Duration::from_secs(60), now());
        let password = crate::password_for(key_secret, &c.username);
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        for p in peers {
            let a: SocketAddr = p.parse().unwrap();
            setters.push(Box::new(PeerAddress {
                ip: a.ip(),
                port: a.port(),
            }));
        }
        setters.push(Box::new(Username::new(ATTR_USERNAME, c.username.clone())));
        setters.push(Box::new(Realm::new(ATTR_REALM, "vchat".into())));
        setters.push(Box::new(Nonce::new(ATTR_NONCE, "n".into())));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            c.username,
            "vchat".into(),
            password,
        )));
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m.raw
    }

    fn error_code(raw: &[u8]) -> (MessageType, ErrorCodeAttribute) {
        let mut m = Message {
            raw: raw.to_vec(),
            ..Default::default()
        };
        m.decode().unwrap();
        let mut code = ErrorCodeAttribute::default();
        code.get_from(&m).unwrap();
        (m.typ, code)
    }

    const SRC: &str = "198.51.100.1:5000";

    #[test]
    fn create_permission_is_refused_if_any_peer_is_refused() {
        let g = guard(0, 0);
        let src = SRC.parse().unwrap();
        let ok = request(METHOD_CREATE_PERMISSION, "alice", &["8.8.8.8:1"], SECRET);
        assert!(g.inspect(&ok, src).is_none());
        let bad = request(
            METHOD_CREATE_PERMISSION,
            "alice",
            &["8.8.8.8:1", "[::ffff:10.0.0.1]:2"],
            SECRET,
        );
        let resp = g.inspect(&bad, src).expect("refused");
        let (typ, code) = error_code(&resp);
        assert_eq!(
            typ,
            MessageType::new(METHOD_CREATE_PERMISSION, CLASS_ERROR_RESPONSE)
        );
        assert_eq!(code.code.0, CODE_FORBIDDEN.0);
        assert_eq!(code.to_string(), "403: Forbidden IP (private)");
        let bind = request(METHOD_CHANNEL_BIND, "alice", &["127.0.0.1:9"], SECRET);
        let (typ, code) = error_code(&g.inspect(&bind, src).expect("refused"));
        assert_eq!(typ.method, METHOD_CHANNEL_BIND);
        assert_eq!(code.code.0, CODE_FORBIDDEN.0);
        let s = g.stats();
        assert_eq!(s.refused_peer_requests.get(DenyReason::Private), 1);
        assert_eq!(s.refused_peer_requests.get(DenyReason::Loopback), 1);
    }

    #[test]
    fn unauthenticated_requests_are_left_to_the_crate() {
        let g = guard(0, 0);
        let src = SRC.parse().unwrap();
        let wrong_key = request(METHOD_CREATE_PERMISSION, "bob", &["10.0.0.1:2"], "other");
        assert!(g.inspect(&wrong_key, src).is_none());
        assert!(g.inspect(b"\x40\x00\x00\x04abcd", src).is_none());
        assert!(g.inspect(b"not stun at all", src).is_none());
        assert_eq!(g.stats(), TurnStats::default());
    }

    #[test]
    fn allocate_quota_and_slot_release() {
        let g = guard(1, 2);
        let a: SocketAddr = SRC.parse().unwrap();
        let b: SocketAddr = "198.51.100.2:5000".parse().unwrap();
        let c: SocketAddr = "198.51.100.3:5000".parse().unwrap();
        let alloc = |user: &str| request(METHOD_ALLOCATE, user, &[], SECRET);

        // alice's first allocation goes to the crate, which reserves a slot.
        assert!(g.inspect(&alloc("alice"), a).is_none());
        let s1 = g.reserve().unwrap();
        // Her second, from another address, is over the per-user quota.
        let (typ, code) = error_code(&g.inspect(&alloc("alice"), b).expect("486"));
        assert_eq!(typ, MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE));
        assert_eq!(code.code.0, CODE_ALLOC_QUOTA_REACHED.0);
        // A retransmission on the live 5-tuple is the crate's business (437).
        assert!(g.inspect(&alloc("alice"), a).is_none());
        // bob fills the server; carol hits the total quota.
        assert!(g.inspect(&alloc("bob"), b).is_none());
        let s2 = g.reserve().unwrap();
        let (_, code) = error_code(&g.inspect(&alloc("carol"), c).expect("486"));
        assert_eq!(code.code.0, CODE_ALLOC_QUOTA_REACHED.0);
        // The generator's backstop refuses too (it does the counting itself).
        assert_eq!(g.reserve().err(), Some(Quota::Total));
        let s = g.stats();
        assert_eq!(s.live_allocations, 2);
        assert_eq!(s.refused_allocations_user_quota, 1);
        assert_eq!(s.refused_allocations_total_quota, 1);

        drop(s1);
        drop(s2);
        assert_eq!(g.stats().live_allocations, 0);
        assert!(g.inspect(&alloc("alice"), b).is_none());
        assert!(lock(&g.registry).per_user.is_empty());
        // Non-requests pass and reset the pending Allocate.
        assert!(lock(&g.pending).is_some());
        assert!(g.inspect(b"\x40\x00\x00\x00", a).is_none());
        assert!(lock(&g.pending).is_none());
    }
}
