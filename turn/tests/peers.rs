//! The relay is not an open proxy: peer policy and allocation quotas,
//! exercised with the turn crate's own client over real UDP on loopback.
//!
//! Absence of a datagram is never inferred from a timeout: a refused datagram
//! is followed, through the same allocation, by a control datagram to an
//! allowed peer; the server handles one client datagram at a time, in order,
//! and loopback delivery is immediate, so once the control datagram has
//! arrived the refused one would already be queued at its listener. The
//! refusal counters of `TurnServer::stats()` are checked as well.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::time::timeout;
use turn::client::{Client, ClientConfig};
use util::Conn;
use vchat_turn::{
    mint_credentials, parse_allowed_peers, start, DenyReason, TurnConfig, TurnServer, TurnStats,
};

const SECRET: &str = "test-secret";
const STEP: Duration = Duration::from_secs(10);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn base_config() -> TurnConfig {
    TurnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        secret: SECRET.into(),
        ..TurnConfig::default()
    }
}

async fn server(cfg: TurnConfig) -> TurnServer {
    start(cfg).await.expect("start TURN server")
}

/// Loopback is refused (as on a public server); only 127.0.0.2 is allowed,
/// which gives the tests an allowed control peer on this machine.
fn strict_config() -> TurnConfig {
    TurnConfig {
        allow_loopback_peers: Some(false),
        allowed_peers: parse_allowed_peers("127.0.0.2/32").unwrap(),
        ..base_config()
    }
}

async fn client_with_ttl(srv: &TurnServer, user: &str, ttl: u64) -> Client {
    let creds = mint_credentials(SECRET, user, Duration::from_secs(ttl), now());
    let conn = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = srv.local_addr().to_string();
    let c = Client::new(ClientConfig {
        stun_serv_addr: server.clone(),
        turn_serv_addr: server,
        username: creds.username,
        password: creds.password,
        realm: "vchat".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .unwrap();
    c.listen().await.unwrap();
    c
}

async fn client(srv: &TurnServer, user: &str) -> Client {
    client_with_ttl(srv, user, 600).await
}

async fn allocate(c: &Client) -> Result<impl Conn, String> {
    timeout(STEP, c.allocate())
        .await
        .expect("allocate timed out")
        .map_err(|e| e.to_string())
}

async fn listener(ip: &str) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind((ip, 0)).await.unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

async fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 1500];
    let (n, from) = timeout(STEP, sock.recv_from(&mut buf))
        .await
        .expect("datagram did not arrive")
        .unwrap();
    (buf[..n].to_vec(), from)
}

async fn recv_relay(relay: &impl Conn) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 1500];
    let (n, from) = timeout(STEP, relay.recv_from(&mut buf))
        .await
        .expect("relayed datagram did not arrive")
        .unwrap();
    (buf[..n].to_vec(), from)
}

fn assert_nothing_queued(sock: &UdpSocket) {
    let mut buf = [0u8; 1500];
    match sock.try_recv_from(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("refused peer received something: {other:?}"),
    }
}

/// Waits (bounded) until the server's stats satisfy `cond`.
async fn wait_stats(srv: &TurnServer, what: &str, cond: impl Fn(&TurnStats) -> bool) -> TurnStats {
    timeout(STEP, async {
        loop {
            let s = srv.stats();
            if cond(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", srv.stats()))
}

/// (a) + (c): with loopback refused, a peer on 127.0.0.1 gets nothing and the
/// client's CreatePermission is answered 403; the explicitly allowed
/// 127.0.0.2 gets its datagram through the same allocation.
#[tokio::test]
async fn loopback_peer_is_refused_and_allowed_cidr_is_delivered() {
    let srv = server(strict_config()).await;
    let c = client(&srv, "alice").await;
    let relay = allocate(&c).await.expect("allocate");
    let relay_addr = relay.local_addr().unwrap();

    let (denied, denied_addr) = listener("127.0.0.1").await;
    let (control, control_addr) = listener("127.0.0.2").await;

    let err = relay
        .send_to(b"must not arrive", denied_addr)
        .await
        .expect_err("relaying to 127.0.0.1 must be refused");
    assert!(
        err.to_string().contains("403"),
        "want 403 Forbidden, got: {err}"
    );

    relay.send_to(b"control", control_addr).await.unwrap();
    let (data, from) = recv(&control).await;
    assert_eq!(data, b"control");
    assert_eq!(from.port(), relay_addr.port());
    assert_nothing_queued(&denied);

    let s = srv.stats();
    // (`>= 1` for request refusals: a retransmitted request is refused again.)
    assert!(
        s.refused_peer_requests.get(DenyReason::Loopback) >= 1,
        "{s:?}"
    );
    assert_eq!(
        s.refused_peer_requests.total(),
        s.refused_peer_requests.get(DenyReason::Loopback),
        "{s:?}"
    );
    assert_eq!(s.dropped_sends.total(), 0, "{s:?}");
    assert_eq!(s.live_allocations, 1);

    c.close().await.unwrap();
    srv.close().await.unwrap();
}

/// (b): the server's own listen port is refused even where loopback is
/// allowed, both at CreatePermission time and — once the client holds a
/// permission for the IP — for each datagram.
#[tokio::test]
async fn own_listen_port_is_refused_even_with_loopback_allowed() {
    let srv = server(base_config()).await; // laptop setup: loopback allowed
    let own = srv.local_addr();
    let c = client(&srv, "alice").await;
    let relay = allocate(&c).await.expect("allocate");

    // No permission for 127.0.0.1 yet: CreatePermission to the listen port → 403.
    let err = relay
        .send_to(b"loop", own)
        .await
        .expect_err("relaying to the TURN port must be refused");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(srv.stats().refused_peer_requests.get(DenyReason::OwnPort) >= 1);

    // A legitimate loopback peer gives the client a permission for the IP
    // 127.0.0.1 (TURN permissions ignore the port) ...
    let (peer, peer_addr) = listener("127.0.0.1").await;
    relay.send_to(b"hello", peer_addr).await.unwrap();
    assert_eq!(recv(&peer).await.0, b"hello");

    // ... so the client now skips CreatePermission and sends a Send indication
    // straight to the listen port: the relay socket refuses it.
    relay.send_to(b"loop again", own).await.unwrap();
    let s = wait_stats(&srv, "a refused send to the listen port", |s| {
        s.dropped_sends.get(DenyReason::OwnPort) == 1
    })
    .await;
    assert_eq!(s.dropped_sends.total(), 1, "{s:?}");
    assert_eq!(s.live_allocations, 1);

    c.close().await.unwrap();
    srv.close().await.unwrap();
}

/// Both call parties relayed through the same server: relaying to another
/// allocation's relayed address works even where its IP class is refused;
/// other ports of that IP stay refused in both directions, and so does the
/// address once that allocation is gone.
#[tokio::test]
async fn relay_to_relay_works_but_other_ports_of_the_ip_stay_refused() {
    let srv = server(strict_config()).await;
    let ca = client(&srv, "alice").await;
    let cb = client(&srv, "bob").await;
    let ra = allocate(&ca).await.expect("allocate a");
    let rb = allocate(&cb).await.expect("allocate b");
    let (a_addr, b_addr) = (ra.local_addr().unwrap(), rb.local_addr().unwrap());
    assert!(a_addr.ip().is_loopback() && b_addr.ip().is_loopback());

    // Each side needs a permission for the other before datagrams get in (as
    // ICE checks in both directions set up): b's permission for a first, then
    // a → b, which also gives a its permission for the IP 127.0.0.1. Both are
    // allowed only because the peer is a live relay address.
    rb.send_to(b"b0", a_addr).await.unwrap();
    ra.send_to(b"a1", b_addr).await.unwrap();
    assert_eq!(recv_relay(&rb).await, (b"a1".to_vec(), a_addr));
    // Whether "b0" got in depends on which permission came first; drain up
    // to a marker so a's queue is empty and in a known state.
    rb.send_to(b"sync", a_addr).await.unwrap();
    loop {
        let (data, from) = recv_relay(&ra).await;
        assert_eq!(from, b_addr);
        if data == b"sync" {
            break;
        }
        assert_eq!(data, b"b0");
    }

    // a → 127.0.0.1:<not a relay>: the client already holds a permission for
    // the IP, so the datagram reaches the relay socket, which refuses it.
    let (denied, denied_addr) = listener("127.0.0.1").await;
    ra.send_to(b"must not arrive", denied_addr).await.unwrap();
    ra.send_to(b"a2", b_addr).await.unwrap();
    assert_eq!(recv_relay(&rb).await, (b"a2".to_vec(), a_addr));
    assert_nothing_queued(&denied);
    let s = srv.stats();
    assert_eq!(s.dropped_sends.get(DenyReason::Loopback), 1, "{s:?}");

    // Inbound: a loopback socket that is not a relay sends to a's relay
    // address (a has a permission for 127.0.0.1): dropped. Then b sends;
    // a's first datagram must be b's.
    denied.send_to(b"sneaky", a_addr).await.unwrap();
    rb.send_to(b"b1", a_addr).await.unwrap();
    assert_eq!(recv_relay(&ra).await, (b"b1".to_vec(), b_addr));
    let s = srv.stats();
    assert_eq!(s.dropped_receives.get(DenyReason::Loopback), 1, "{s:?}");

    // Once b's allocation is gone its address is just a loopback port again.
    rb.close().await.unwrap();
    wait_stats(&srv, "b's allocation to close", |s| s.live_allocations == 1).await;
    ra.send_to(b"to a closed relay", b_addr).await.unwrap();
    wait_stats(&srv, "the send to a closed relay to be refused", |s| {
        s.dropped_sends.get(DenyReason::Loopback) == 2
    })
    .await;

    ca.close().await.unwrap();
    cb.close().await.unwrap();
    srv.close().await.unwrap();
}

/// (d): TURN listening on loopback (the laptop setup) allows loopback peers
/// by default, and an explicit `Some(true)` does the same.
#[tokio::test]
async fn loopback_peers_are_allowed_in_the_laptop_setup() {
    assert!(base_config().loopback_peers_allowed());
    let public = TurnConfig {
        listen: "0.0.0.0:3478".parse().unwrap(),
        ..base_config()
    };
    assert!(!public.loopback_peers_allowed());

    for allow in [None, Some(true)] {
        let srv = server(TurnConfig {
            allow_loopback_peers: allow,
            ..base_config()
        })
        .await;
        let c = client(&srv, "alice").await;
        let relay = allocate(&c).await.expect("allocate");
        let (peer, peer_addr) = listener("127.0.0.1").await;
        relay.send_to(b"hi", peer_addr).await.unwrap();
        let (data, from) = recv(&peer).await;
        assert_eq!(data, b"hi");
        assert_eq!(from, relay.local_addr().unwrap());
        let s = srv.stats();
        assert_eq!(s.refused_peer_requests.total(), 0, "{allow:?}: {s:?}");
        assert_eq!(s.dropped_sends.total(), 0, "{allow:?}: {s:?}");
        c.close().await.unwrap();
        srv.close().await.unwrap();
    }
}

/// The N+1th allocation of one user is refused with 486; other users are not
/// affected; releasing an allocation frees the slot.
#[tokio::test]
async fn per_user_allocation_quota() {
    let srv = server(TurnConfig {
        max_allocations_per_user: 2,
        max_allocations: 0,
        ..base_config()
    })
    .await;
    // Different expiries, same userId: one quota.
    let a1 = client_with_ttl(&srv, "alice", 600).await;
    let a2 = client_with_ttl(&srv, "alice", 900).await;
    let a3 = client(&srv, "alice").await;
    let r1 = allocate(&a1).await.expect("alice #1");
    let _r2 = allocate(&a2).await.expect("alice #2");
    let err = allocate(&a3).await.err().expect("alice #3 must be refused");
    assert!(
        err.contains("486") && err.contains("at most 2 allocations per user"),
        "{err}"
    );

    let b = client(&srv, "bob").await;
    let _rb = allocate(&b).await.expect("bob is not affected");
    let s = srv.stats();
    assert!(s.refused_allocations_user_quota >= 1, "{s:?}"); // >1 only on retransmission
    assert_eq!(s.refused_allocations_total_quota, 0, "{s:?}");
    assert_eq!(s.live_allocations, 3);
    assert_eq!(srv.allocations().await.len(), 3);

    // Releasing one of alice's allocations lets her allocate again.
    r1.close().await.unwrap();
    wait_stats(&srv, "alice #1 to be released", |s| s.live_allocations == 2).await;
    let _r3 = allocate(&a3).await.expect("alice #3 after a release");
    assert_eq!(srv.stats().live_allocations, 3);

    for c in [a1, a2, a3, b] {
        c.close().await.unwrap();
    }
    srv.close().await.unwrap();
}

/// The server-wide quota refuses everyone past it, with 486.
#[tokio::test]
async fn total_allocation_quota() {
    let srv = server(TurnConfig {
        max_allocations: 2,
        ..base_config()
    })
    .await;
    let a = client(&srv, "alice").await;
    let b = client(&srv, "bob").await;
    let c = client(&srv, "carol").await;
    let _ra = allocate(&a).await.expect("alice");
    let _rb = allocate(&b).await.expect("bob");
    let err = allocate(&c).await.err().expect("carol must be refused");
    assert!(
        err.contains("486") && err.contains("at most 2 allocations on this server"),
        "{err}"
    );
    let s = srv.stats();
    assert!(s.refused_allocations_total_quota >= 1, "{s:?}"); // >1 only on retransmission
    assert_eq!(s.refused_allocations_user_quota, 0, "{s:?}");
    assert_eq!(s.live_allocations, 2);

    for cl in [a, b, c] {
        cl.close().await.unwrap();
    }
    srv.close().await.unwrap();
}
