//! Real-UDP tests on loopback: the turn crate's own client against our server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::time::timeout;
use turn::client::{Client, ClientConfig};
use util::Conn;
use vchat_turn::{mint_credentials, password_for, start, TurnConfig, TurnServer};

const SECRET: &str = "test-secret";
const STEP: Duration = Duration::from_secs(10);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn server() -> TurnServer {
    start(TurnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        secret: SECRET.into(),
        ..TurnConfig::default()
    })
    .await
    .expect("start TURN server")
}

async fn client(server: SocketAddr, username: &str, password: &str) -> Client {
    let conn = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let c = Client::new(ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.into(),
        password: password.into(),
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

#[tokio::test]
async fn minted_credentials_relay_traffic_and_count_bytes() {
    let srv = server().await;
    let creds = mint_credentials(SECRET, "alice", Duration::from_secs(600), now());
    let c = client(srv.local_addr(), &creds.username, &creds.password).await;

    let relay = timeout(STEP, c.allocate())
        .await
        .expect("allocate timed out")
        .expect("allocate with minted credentials");
    let relay_addr = relay.local_addr().unwrap();
    assert_eq!(relay_addr.ip().to_string(), "127.0.0.1");
    assert!(relay_addr.port() >= 49152);

    // Peer on loopback. The first send_to makes the client create a permission.
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    relay.send_to(b"hello via turn", peer_addr).await.unwrap();

    let mut buf = [0u8; 1500];
    let (n, from) = timeout(STEP, peer.recv_from(&mut buf))
        .await
        .expect("peer did not receive relayed packet")
        .unwrap();
    assert_eq!(&buf[..n], b"hello via turn");
    assert_eq!(
        from, relay_addr,
        "packet must come from the relayed address"
    );

    // And back: peer -> relay address -> client.
    peer.send_to(b"pong", relay_addr).await.unwrap();
    let (n, from) = timeout(STEP, relay.recv_from(&mut buf))
        .await
        .expect("client did not receive peer reply")
        .unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, peer_addr);

    let allocs = srv.allocations().await;
    assert_eq!(allocs.len(), 1, "{allocs:?}");
    assert_eq!(allocs[0].user_id, "alice");
    assert_eq!(allocs[0].username, creds.username);
    assert_eq!(allocs[0].relay_addr, relay_addr);
    assert!(allocs[0].relayed_bytes >= b"hello via turn".len());
    let live_bytes = srv.relayed_bytes_for_user("alice").await;
    assert!(live_bytes >= b"hello via turn".len() as u64);

    // Releasing the allocation keeps the cumulative per-user total.
    relay.close().await.unwrap();
    timeout(STEP, async {
        while !srv.allocations().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while srv.relayed_bytes_for_user("alice").await < live_bytes {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("allocation not released / total lost");
    assert_eq!(srv.relayed_bytes_for_user("alice").await, live_bytes);

    c.close().await.unwrap();
    srv.close().await.unwrap();
}

async fn assert_refused(username: &str, password: &str) {
    let srv = server().await;
    let c = client(srv.local_addr(), username, password).await;
    let res = timeout(STEP, c.allocate())
        .await
        .unwrap_or_else(|_| panic!("allocate for {username:?} hung instead of failing"));
    match res {
        Ok(_) => panic!("allocation with {username:?} should be refused"),
        Err(e) => eprintln!("refused as expected ({username:?}): {e}"),
    }
    assert!(srv.allocations().await.is_empty());
    c.close().await.unwrap();
    srv.close().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let creds = mint_credentials(SECRET, "alice", Duration::from_secs(600), now());
    let wrong = mint_credentials("other-secret", "alice", Duration::from_secs(600), now());
    assert_ne!(creds.password, wrong.password);
    assert_refused(&creds.username, &wrong.password).await;
}

#[tokio::test]
async fn expired_username_is_refused() {
    // Correctly signed, but expired a minute ago.
    let creds = mint_credentials(SECRET, "alice", Duration::ZERO, now() - 60);
    assert_refused(&creds.username, &creds.password).await;
}

#[tokio::test]
async fn username_without_colon_is_refused() {
    let username = (now() + 600).to_string();
    assert_refused(&username, &password_for(SECRET, &username)).await;
    assert_refused("alice", &password_for(SECRET, "alice")).await;
}

#[tokio::test]
async fn non_numeric_expiry_is_refused() {
    let username = "soon:alice";
    assert_refused(username, &password_for(SECRET, username)).await;
}
