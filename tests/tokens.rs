//! Tokens from the operator's auth server: `aud`/`iss`, rotating keys from a JWKS, short
//! secrets, expiry on a live socket; Agora tokens for Gen-B calls; `/metrics` access.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn hs(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn exp() -> u64 {
    vchat_signal::auth::now_unix() + 600
}

#[tokio::test]
async fn tokens_carrying_aud_work_and_aud_iss_are_enforced_when_configured() {
    let server = TestServer::start();
    let api = server.api();
    let firebase_like = hs(json!({"sub": "u1", "exp": exp(), "aud": "my-project",
        "iss": "https://securetoken.google.com/my-project"}));
    api.get("call/active", &firebase_like).await.ok();
    let d = Driver::new(&server).await;
    d.open("aud", ConnectOpts::query(&firebase_like))
        .await
        .expect("a token with aud connects");

    let strict = TestServer::start_with(&[
        ("VCHAT_JWT_AUDIENCE", "vchat"),
        ("VCHAT_JWT_ISSUER", "https://auth.example"),
    ]);
    let api = strict.api();
    let good =
        hs(json!({"sub": "u1", "exp": exp(), "aud": "vchat", "iss": "https://auth.example"}));
    api.get("call/active", &good).await.ok();
    for bad in [
        json!({"sub": "u1", "exp": exp(), "aud": "other", "iss": "https://auth.example"}),
        json!({"sub": "u1", "exp": exp(), "aud": "vchat", "iss": "https://evil.example"}),
        json!({"sub": "u1", "exp": exp(), "aud": "vchat"}),
        json!({"sub": "u1", "exp": exp(), "iss": "https://auth.example"}),
    ] {
        let t = hs(bad.clone());
        api.get("call/active", &t).await.err(450);
        let d = Driver::new(&strict).await;
        let e = d.open("bad", ConnectOpts::query(&t)).await.err();
        assert!(e.unwrap().contains("Unauthorized"), "{bad}");
    }
}

#[test]
fn a_short_secret_is_refused_at_start() {
    let err = refused_start(&[("VCHAT_JWT_SECRET", "password123")]);
    assert!(err.contains("at least 32"), "{err}");
    let err = refused_start(&[
        ("VCHAT_AGORA_APP_ID", "not-hex"),
        (
            "VCHAT_AGORA_APP_CERTIFICATE",
            "0123456789abcdef0123456789abcdef",
        ),
    ]);
    assert!(err.contains("Agora"), "{err}");
    let err = refused_start(&[("VCHAT_SESSION_TTL", "ninety days")]);
    assert!(err.contains("session ttl"), "{err}");
}

#[tokio::test]
async fn a_live_socket_is_closed_when_its_token_expires() {
    let server = TestServer::start();
    let d = Driver::new(&server).await;
    let short = token_exp("alice", None, vchat_signal::auth::now_unix() + 2);
    let long = token("bob", None);
    let mut a = d.connect("short", &short).await;
    let mut b = d.connect("long", &long).await;
    a.fence().await;
    a.expect_disconnect().await;
    b.fence().await;
}

/// A key server whose set can be swapped mid-test, counting fetches.
struct KeyServer {
    url: String,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn key_server(initial: Value) -> KeyServer {
    let set = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (s, f) = (set.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (s, f) = (s.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(s.lock().unwrap().clone())
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    KeyServer { url, set, fetches }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/jwks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn jwk(n: u8) -> Value {
    serde_json::from_str(&fixture(&format!("jwk{n}.json"))).unwrap()
}

/// An RS256 token as Firebase Auth or Keycloak would sign it.
fn rs(n: u8, kid: &str, sub: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(fixture(&format!("key{n}.pem")).as_bytes()).unwrap();
    jsonwebtoken::encode(
        &h,
        &json!({"sub": sub, "exp": exp(), "aud": "my-project", "name": "Rotated User",
                "picture": "https://img.example/u.png"}),
        &key,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_from_a_jwks_that_rotates_mid_test() {
    if common::cluster::single_node_only(
        "each node keeps its own JWKS cache and counts its own fetches",
    ) {
        return;
    }
    let ks = key_server(json!({"keys": [jwk(1)]})).await;
    let server = TestServer::start_with(&[
        ("VCHAT_JWT_SECRET", ""),
        ("VCHAT_JWT_JWKS_URL", &ks.url),
        ("VCHAT_JWT_JWKS_MIN_REFRESH_SECS", "0"),
    ]);
    let api = server.api();
    server
        .wait_metric("vchat_jwks_fetches_total", |v| v == 1.0)
        .await;
    assert_eq!(ks.fetches.load(Ordering::SeqCst), 1, "fetched at start");
    let t1 = rs(1, "key-1", "u1");
    api.get("call/active", &t1).await.ok();
    let d = Driver::new(&server).await;
    d.open("k1", ConnectOpts::query(&t1)).await.expect("key 1");
    // The OIDC `picture` claim is the user's image.
    api.touch(&rs(1, "key-1", "u2")).await;
    let room = api.peer_room(&t1, "u2").await;
    let r = api.get(&format!("channel/{room}"), &t1).await.ok();
    assert_eq!(r["img"], "https://img.example/u.png");
    // HS256 tokens are not accepted when the operator configured only a key set.
    let dev = hs(json!({"sub": "u1", "exp": exp()}));
    assert!(api
        .get("call/active", &dev)
        .await
        .err(450)
        .contains("HS256"));

    // The auth server rotates: key 2 in, key 1 out.
    *ks.set.lock().unwrap() = json!({"keys": [jwk(2)]});
    let t2 = rs(2, "key-2", "u1");
    api.get("call/active", &t2).await.ok();
    assert_eq!(
        ks.fetches.load(Ordering::SeqCst),
        2,
        "refetched for the new kid"
    );
    api.get("call/active", &rs(1, "key-1", "u1")).await.err(450);
    // A token signed by key 1 but naming key 2 is refused.
    api.get("call/active", &rs(1, "key-2", "u1")).await.err(450);
    assert_eq!(
        server.metric("vchat_jwks_fetches_total").await as usize,
        ks.fetches.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_key_ids_cannot_hammer_the_key_server() {
    if common::cluster::single_node_only(
        "each node keeps its own JWKS cache and counts its own fetches",
    ) {
        return;
    }
    let ks = key_server(json!({"keys": [jwk(1)]})).await;
    let server = TestServer::start_with(&[
        ("VCHAT_JWT_SECRET", ""),
        ("VCHAT_JWT_JWKS_URL", &ks.url),
        ("VCHAT_JWT_JWKS_MIN_REFRESH_SECS", "3600"),
    ]);
    let api = server.api();
    server
        .wait_metric("vchat_jwks_fetches_total", |v| v == 1.0)
        .await;
    for i in 0..20 {
        let t = rs(2, &format!("made-up-{i}"), "u1");
        assert!(api
            .get("call/active", &t)
            .await
            .err(450)
            .contains("unknown key id"));
    }
    assert_eq!(
        ks.fetches.load(Ordering::SeqCst),
        1,
        "no refetch within the interval"
    );
    api.get("call/active", &rs(1, "key-1", "u1")).await.ok();
}

const AGORA_ID: &str = "970ca35de60c44645bbae8a215061b33";
const AGORA_CERT: &str = "5cfd2fd1755d40ecb72977518be15d3b";

#[tokio::test]
async fn agora_tokens_for_members_checked_against_the_reference() {
    let server = TestServer::start_with(&[
        ("VCHAT_AGORA_APP_ID", AGORA_ID),
        ("VCHAT_AGORA_APP_CERTIFICATE", AGORA_CERT),
        ("VCHAT_AGORA_TOKEN_TTL", "3600"),
    ]);
    let api = server.api();
    let (a, b, c) = (
        token("alice", None),
        token("bob", None),
        token("carol", None),
    );
    for t in [&b, &c] {
        api.touch(t).await;
    }
    let room = api.peer_room(&a, "bob").await;
    let d = api.get(&format!("call/agora-access/{room}"), &a).await.ok();
    let tok = d["rtcToken"].as_str().unwrap();
    assert!(tok.starts_with("007"));
    assert_eq!(
        (d["channelName"].clone(), d["uid"].clone()),
        (json!(room), json!(0))
    );
    let out = std::process::Command::new("node")
        .arg(format!(
            "{}/tests/support/agora-check.mjs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([tok, AGORA_ID, AGORA_CERT])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("node runs the reference check");
    let check: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("check said {out:?}"));
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["channel"], room.as_str());
    assert_eq!(check["uid"], 0);
    assert_eq!(check["expire"], 3600);
    for p in ["1", "2", "3", "4"] {
        assert_eq!(check["privileges"][p], 3600, "publisher privilege {p}");
    }
    let wrong = std::process::Command::new("node")
        .arg(format!(
            "{}/tests/support/agora-check.mjs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([tok, AGORA_ID, "00000000000000000000000000000000"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let wrong: Value = serde_json::from_slice(&wrong.stdout).unwrap();
    assert_eq!(wrong["ok"], false, "the check can fail");

    // Not a member, or banned: 403. Agora calls now ring.
    api.get(&format!("call/agora-access/{room}"), &c)
        .await
        .err(403);
    api.get("call/agora-access/no-such-room", &c).await.err(403);
    let meet = api
        .post(
            &format!("call/create/{room}"),
            &a,
            json!({"meetPlatform": "agora"}),
        )
        .await
        .ok();
    assert!(meet["meetId"].is_string());
    api.post(
        &format!("call/cancel/{}", meet["meetId"].as_str().unwrap()),
        &a,
        json!({}),
    )
    .await
    .ok();
    api.post("user-ban/alice/ban", &b, json!({})).await.ok();
    assert!(api
        .get(&format!("call/agora-access/{room}"), &a)
        .await
        .err(403)
        .contains("ban"));
}

#[tokio::test]
async fn metrics_behind_a_token_or_on_their_own_address() {
    if common::cluster::single_node_only(
        "the harness reads every node's /metrics, which this test locks",
    ) {
        return;
    }
    let server = TestServer::start_with(&[("VCHAT_METRICS_TOKEN", "scrape-me")]);
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", server.url);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&url)
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("vchat_live_calls"));

    let apart = TestServer::start_with(&[("VCHAT_METRICS_LISTEN", "127.0.0.1:0")]);
    let r = http
        .get(format!("{}/metrics", apart.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "not on the public listener");
    let addr = apart
        .metrics_addr
        .clone()
        .expect("printed its metrics address");
    let r = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
