//! Signing in as a stock V Chat app does: `auth/connect` (multipart, hashed password), then the
//! socket with the returned token; logout; the lockout after repeated failures.

mod common;

use common::*;
use reqwest::multipart::Form;
use serde_json::{json, Value};

const KEY: &str = "the-app-encrypt-hash-key";

fn server_with(extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![("VCHAT_ENCRYPT_HASH_KEY", KEY)];
    env.extend_from_slice(extra);
    TestServer::start_with(&env)
}

/// The form the SDK's `AuthApiService.connect` builds.
fn sdk_form(identifier: &str, full_name: Option<&str>, device_id: &str) -> Form {
    let mut f = Form::new()
        .text("identifier", identifier.to_string())
        .text("deviceId", device_id.to_string())
        .text("password", sdk_password(KEY, identifier))
        .text("language", "en")
        .text("platform", "android");
    if let Some(n) = full_name {
        f = f.text("fullName", n.to_string());
    }
    f
}

async fn connect(api: &Api, form: Form) -> Reply {
    api.multipart("POST", "auth/connect", None, form).await
}

async fn sign_in(api: &Api, identifier: &str, name: Option<&str>) -> (Value, String) {
    let d = connect(api, sdk_form(identifier, name, "TP1A.220624.014"))
        .await
        .ok();
    let token = d["accessToken"].as_str().unwrap().to_string();
    (d["user"].clone(), token)
}

#[tokio::test]
async fn a_stock_app_signs_up_signs_in_and_opens_the_socket() {
    let server = server_with(&[("VCHAT_SESSION_TTL", "2h")]);
    let api = server.api();
    let avatar = png(40, 30);
    let form = sdk_form("alice@example.com", Some("Alice"), "TP1A.220624.014")
        .text("pushKey", "fcm-registration-token-1")
        .part("file", file_part(avatar.clone(), "me.png", "image/png"));
    let d = connect(&api, form).await.ok();
    let user = &d["user"];
    let id = user["_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 24, "an ObjectId-shaped id: {user}");
    assert_eq!(user["identifier"], "alice@example.com");
    assert_eq!(user["fullName"], "Alice");
    let img = user["userImages"]["fullImage"].as_str().unwrap();
    assert!(img.starts_with(&server.url), "absolute URL: {img}");
    for size in ["chatImage", "smallImage"] {
        assert_eq!(user["userImages"][size], img);
    }
    // Served by any node (spread over a cluster, media lives in a bucket).
    let got = reqwest::get(img).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().as_ref(), &avatar[..]);

    // The token: our own claims, a session as the device, the configured lifetime.
    let token = d["accessToken"].as_str().unwrap();
    let c = jwt_claims(token);
    assert_eq!(c["sub"], id);
    assert_eq!(c["identifier"], "alice@example.com");
    assert_eq!(c["name"], "Alice");
    assert_eq!(c["img"], img);
    let now = vchat_signal::auth::now_unix() as i64;
    let exp = c["exp"].as_i64().unwrap();
    assert!((exp - now - 7200).abs() <= 5, "exp {exp} vs now {now}");
    let session = c["did"].as_str().unwrap().to_string();
    assert!(!session.is_empty());

    // As the SDK: the socket with `auth=Bearer <token>` in the query, then REST with the header.
    let d = Driver::new(&server).await;
    let mut s = d
        .open("alice", ConnectOpts::query(token))
        .await
        .expect("the socket takes the session token");
    s.fence().await;
    api.get("call/active", token).await.ok();

    // Signing in again is a login: same user, a new session; the name stays unless given.
    let (again, token2) = sign_in(&api, "alice@example.com", None).await;
    assert_eq!(again["_id"], id.as_str());
    assert_eq!(again["fullName"], "Alice");
    assert_eq!(again["userImages"]["fullImage"], img);
    assert_ne!(
        jwt_claims(&token2)["did"],
        session.as_str(),
        "its own session"
    );
    let (renamed, _) = sign_in(&api, "alice@example.com", Some("Alice Liddell")).await;
    assert_eq!(renamed["fullName"], "Alice Liddell");
    // Both sessions work side by side.
    api.get("call/active", token).await.ok();
    api.get("call/active", &token2).await.ok();
}

#[tokio::test]
async fn two_sdk_users_chat_and_call_with_session_tokens() {
    let server = server_with(&[]);
    let api = server.api();
    let (alice, a) = sign_in(&api, "alice", Some("Alice")).await;
    let (bob, b) = sign_in(&api, "bob", Some("Bob")).await;
    let room = api.peer_room(&a, "bob").await;
    let d = Driver::new(&server).await;
    let mut sa = d.open("a", ConnectOpts::query(&a)).await.unwrap();
    let mut sb = d.open("b", ConnectOpts::query(&b)).await.unwrap();
    let sent = api
        .post(
            &format!("channel/{room}/message/"),
            &a,
            json!({"content": "hi", "localId": "l1", "messageType": "text"}),
        )
        .await
        .ok();
    assert_eq!(sent["sId"], alice["_id"]);
    assert_eq!(sent["sName"], "Alice");
    assert_eq!(sb.expect("v1OnNewMessage").await["c"], "hi");
    let meet = api
        .post(
            &format!("call/create/{room}"),
            &a,
            json!({"withVideo": false}),
        )
        .await
        .ok()["meetId"]
        .as_str()
        .unwrap()
        .to_string();
    let ring = sb.expect("v1OnNewCall").await;
    assert_eq!(ring["userData"]["fullName"], "Alice");
    api.post(&format!("call/accept/{meet}"), &b, json!({}))
        .await
        .ok();
    assert_eq!(sa.expect("v1OnCallAccepted").await["meetId"], meet.as_str());
    assert_eq!(bob["identifier"], "bob");
}

#[tokio::test]
async fn auth_connect_is_refused_without_the_shared_key() {
    let server = TestServer::start();
    let r = connect(&server.api(), sdk_form("alice", Some("Alice"), "d")).await;
    assert_eq!(
        r.err(403),
        "auth/connect is disabled: set VCHAT_ENCRYPT_HASH_KEY"
    );
}

#[tokio::test]
async fn bad_sign_ins_get_a_clear_4xx_and_change_nothing() {
    let server = server_with(&[("VCHAT_MAX_IMAGE_BYTES", "20000")]);
    let api = server.api();
    let base = |id: &str| {
        Form::new()
            .text("identifier", id.to_string())
            .text("deviceId", "d1")
            .text("platform", "ios")
            .text("password", sdk_password(KEY, id))
    };
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "wrong hash",
            Form::new()
                .text("identifier", "eve")
                .text("deviceId", "d1")
                .text("platform", "ios")
                .text("password", sdk_password("another-key", "eve")),
            400,
            "password does not match",
        ),
        (
            "no identifier",
            Form::new()
                .text("deviceId", "d1")
                .text("platform", "ios")
                .text("password", "x"),
            400,
            "identifier is required",
        ),
        (
            "no password",
            Form::new()
                .text("identifier", "eve")
                .text("deviceId", "d1")
                .text("platform", "ios"),
            400,
            "password is required",
        ),
        (
            "no deviceId",
            Form::new()
                .text("identifier", "eve")
                .text("platform", "ios")
                .text("password", sdk_password(KEY, "eve")),
            400,
            "deviceId is required",
        ),
        (
            "unknown platform",
            base("eve").text("platform", "amiga"),
            400,
            "platform must be one of",
        ),
        (
            "empty name",
            base("eve").text("fullName", "\u{7}"),
            400,
            "fullName",
        ),
        (
            "not an image",
            base("eve").part(
                "file",
                file_part(b"<svg onload=alert(1)>".to_vec(), "x.png", "image/png"),
            ),
            400,
            "not an image",
        ),
        (
            "empty image",
            base("eve").part("file", file_part(Vec::new(), "x.png", "image/png")),
            400,
            "empty",
        ),
        (
            "image over the limit",
            base("eve").part("file", file_part(png(200, 200), "x.png", "image/png")),
            413,
            "too large",
        ),
        (
            "identifier too long",
            base(&"x".repeat(300)),
            400,
            "identifier must be at most",
        ),
    ];
    for (name, form, status, needle) in cases {
        let msg = connect(&api, form).await.err(status);
        assert!(msg.contains(needle), "{name}: {msg}");
    }
    // A JSON body is not a sign-in either.
    let r = api
        .call(
            "POST",
            "auth/connect",
            None,
            Some(json!({"identifier": "eve"})),
        )
        .await;
    assert!(r.err(400).contains("required"));

    // Nothing was created: no user "eve", no session, no file.
    let db = server.db().await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((users, sessions), (0, 0));
    let media = server.data_dir.join("media/avatars");
    let files = std::fs::read_dir(&media).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 0, "no file stored");
}

#[tokio::test]
async fn logout_ends_that_session_only() {
    let server = server_with(&[]);
    let api = server.api();
    let phone = connect(
        &api,
        sdk_form("carol", Some("Carol"), "same-build-id").text("pushKey", "phone-push-key"),
    )
    .await
    .ok();
    let tablet = connect(
        &api,
        sdk_form("carol", None, "same-build-id").text("pushKey", "tablet-push-key"),
    )
    .await
    .ok();
    let (p, t) = (
        phone["accessToken"].as_str().unwrap().to_string(),
        tablet["accessToken"].as_str().unwrap().to_string(),
    );
    let user = phone["user"]["_id"].as_str().unwrap().to_string();
    let d = Driver::new(&server).await;
    let mut sp = d.open("phone", ConnectOpts::query(&p)).await.unwrap();
    let mut st = d.open("tablet", ConnectOpts::query(&t)).await.unwrap();

    api.post("auth/logout", &p, json!({})).await.ok();
    sp.expect_disconnect().await;
    // Its token is dead everywhere; the other session's is not.
    assert!(api
        .get("call/active", &p)
        .await
        .err(450)
        .contains("logged out"));
    let refused = d.open("phone-again", ConnectOpts::query(&p)).await.err();
    assert!(refused.unwrap().contains("Unauthorized"));
    api.get("call/active", &t).await.ok();
    st.fence().await;
    // Its push key is gone; the tablet's stays.
    let db = server.db().await;
    let keys: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT push_key FROM devices WHERE user_id = $1 ORDER BY created_at")
            .bind(&user)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(keys, vec![(None,), (Some("tablet-push-key".to_string()),)]);
    // Logging out twice: the token is already refused.
    api.post("auth/logout", &p, json!({})).await.err(450);
}

#[tokio::test]
async fn repeated_failures_lock_out_an_identifier_and_an_address_for_a_while() {
    if common::cluster::single_node_only("the sign-in lockout counts per node") {
        return;
    }
    let server = server_with(&[
        ("VCHAT_SIGNIN_MAX_FAILURES_PER_IDENTIFIER", "3"),
        ("VCHAT_SIGNIN_MAX_FAILURES_PER_ADDRESS", "5"),
        ("VCHAT_SIGNIN_FAILURE_WINDOW_SECS", "2"),
    ]);
    let api = server.api();
    let wrong = |id: &str| {
        Form::new()
            .text("identifier", id.to_string())
            .text("deviceId", "d")
            .text("platform", "web")
            .text("password", "0".repeat(128))
    };
    let started = std::time::Instant::now();
    for _ in 0..3 {
        connect(&api, wrong("bob")).await.err(400);
    }
    // The identifier is locked: even the right password waits.
    let locked = connect(&api, sdk_form("bob", None, "d")).await.err(429);
    assert!(locked.contains("identifier"), "{locked}");
    // Other identifiers still work from this address until it has failed 5 times.
    sign_in(&api, "carol", None).await;
    for _ in 0..2 {
        connect(&api, wrong("dave")).await.err(400);
    }
    let locked = connect(&api, sdk_form("erin", None, "d")).await.err(429);
    assert!(locked.contains("address"), "{locked}");
    // After the window a correct sign-in works again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = connect(&api, sdk_form("bob", None, "d")).await;
        if r.status == 200 {
            break;
        }
        r.err(429);
        assert!(std::time::Instant::now() < deadline, "never unlocked");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(server.metric("vchat_signins_failed_total").await, 5.0);
}
