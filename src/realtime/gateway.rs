//! Connection lifecycle. Everything a socket needs is set up in the connect middleware, which
//! socketioxide awaits *before* it confirms the connection, so a client that emits right after
//! `connect` never races our setup.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use socketioxide::extract::TryData;
use socketioxide::handler::{ConnectHandler, MessageHandler};
use socketioxide::socket::{Sid, Socket};

use super::delivered::ConnectedAt;
use super::expiry::Expiries;
use super::handlers;
use super::inbox::{Inbound, Inbox, Pushed};
use super::membership;
use super::presence::socket_device;
use super::room_names::{chat_room, room_of, socket_room, user_room};
use crate::app::{App, MAX_EVENT_BYTES};
use crate::auth::{AuthError, Identity};
use crate::cluster::driver::{Adapter, Io};
use crate::limits::EventVerdict;
use crate::wire::events;
use crate::wire::shapes::Exception;

/// Events queued per socket before the client is told to slow down.
const INBOX_DEPTH: usize = 256;

/// What the gateway knows about one connected socket.
pub struct SocketCtx {
    pub sid: Sid,
    /// Whose socket. `who.device` is the token's device, or, for a token without one, this
    /// socket itself (see `scoped`).
    pub who: Identity,
    /// The token named no device: this socket counts as its own device, and may claim a call
    /// its user answered over REST without saying from where.
    pub scoped: bool,
    /// The client's address (its socket counts against the address's cap).
    pub addr: std::net::IpAddr,
    /// This socket's event rate.
    pub limiter: crate::limits::SocketLimiter,
    /// The room this socket last said it was typing/recording in, for the automatic `stop`.
    pub typing_to: Mutex<Option<String>>,
    /// Its events, waiting to run in arrival order.
    inbox: Inbox,
    /// Its disconnect has begun. socketioxide sends the connect packet before it marks the
    /// socket connected, so a client that leaves the moment it hears it is connected can be
    /// disconnected before `after_connect` runs and still look connected there; this flag,
    /// set before the disconnect leaves presence and read after the connect joins it, tells.
    left: Mutex<bool>,
}

impl SocketCtx {
    /// Its disconnect has begun (see `left`).
    fn leave(&self) {
        *self.left.lock().expect("not poisoned") = true;
    }

    fn has_left(&self) -> bool {
        *self.left.lock().expect("not poisoned")
    }
}

type SocketRef = socketioxide::extract::SocketRef<Adapter>;

/// Registers the gateway. In a cluster this also subscribes the adapter to the other nodes,
/// which is why it is awaited.
pub async fn register(io: &Io, app: Arc<App>) -> Result<(), String> {
    let mw_app = app.clone();
    let expiries = Expiries::start();
    let auth = move |s: SocketRef, TryData(auth): TryData<Value>| {
        let (app, expiries) = (mw_app.clone(), expiries.clone());
        async move {
            let r = connect(app.clone(), expiries, s, auth.ok()).await;
            app.metrics.inc(if r.is_ok() {
                |m| &m.sockets_connected
            } else {
                |m| &m.sockets_refused
            });
            r
        }
    };
    let on_connect = move |s: SocketRef| {
        let app = app.clone();
        async move { after_connect(app, s).await }
    };
    io.ns("/", on_connect.with(auth))
        .await
        .map_err(|e| format!("cannot start the Socket.IO adapter: {e}"))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// The token, from wherever this client put it: `Authorization` header, `?auth=Bearer%20<jwt>`
/// (browsers cannot set socket headers), or the Socket.IO auth payload `{token}`.
fn token_of(s: &SocketRef, auth: Option<&Value>) -> Option<String> {
    let parts = s.req_parts();
    if let Some(h) = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    {
        return Some(h.to_string());
    }
    if let Some(q) = parts.uri.query() {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("auth=") {
                return Some(percent_decode(v));
            }
        }
    }
    auth.and_then(|a| a.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The connect middleware: authenticate, then make the socket a full member of its rooms
/// before the client hears it is connected.
async fn connect(
    app: Arc<App>,
    expiries: Arc<Expiries>,
    s: SocketRef,
    auth: Option<Value>,
) -> Result<(), Refused> {
    let token = token_of(&s, auth.as_ref())
        .ok_or_else(|| Refused("Unauthorized: missing access token".into()))?;
    let mut who = app.identify(&token).await.map_err(|e| match e {
        AuthError::Unavailable(_) => Refused(format!("server error: {e}")),
        _ => Refused(format!("Unauthorized: {e}")),
    })?;
    // The user's room first, the store after: a membership change committed after the read
    // finds the socket in the user's room. A leave committed during the read may find it not
    // yet in the room it leaves, and the read may still have the room: the count of changes
    // tells, and the rooms are read again.
    s.join(user_room(&who.user_id));
    // Only rooms an earlier read had are left: one a change put the socket in meanwhile
    // (through the adapter's channel, not counted) stays.
    let rooms = membership::settle(&app, &who.user_id, |before, now| {
        let gone = before.iter().filter(|r| !now.contains(r));
        s.leave(gone.map(|r| chat_room(r)).collect::<Vec<_>>());
        s.join(now.iter().map(|r| chat_room(r)).collect::<Vec<_>>());
    })
    .await
    .map_err(|_| Refused("server error: store unavailable".into()))?;
    if app.cluster.is_some() {
        // Other nodes reach this one socket through its own room.
        s.join(socket_room(s.id));
    }

    let scoped = !who.has_device();
    if scoped {
        who.device = socket_device(s.id.as_str());
    }
    let addr = client_addr(&app, &s);
    if s.transport_type() == socketioxide::TransportType::Websocket {
        // The session began as a WebSocket: it ends with this connection (see `http::peer`).
        if connection(&s).is_some_and(|c| !c.carries(s.id)) {
            return Err(Refused("the connection closed".into()));
        }
    }
    app.limits
        .open_socket(app.presence.sockets(&who.user_id).len(), addr)
        .map_err(|e| Refused(format!("Refused: {e}")))?;
    let ctx = Arc::new(SocketCtx {
        sid: s.id,
        who,
        scoped,
        addr,
        limiter: app.limits.socket_limiter(),
        typing_to: Mutex::new(None),
        inbox: Inbox::new(INBOX_DEPTH),
        left: Mutex::new(false),
    });
    s.extensions.insert(ctx.clone());
    s.extensions.insert(ConnectedAt(crate::ids::now_iso()));
    s.extensions.insert(app.clone());
    expiries.add(ctx.who.exp, s.clone());
    s.on_fallback(Enqueue);

    let disc_app = app.clone();
    s.on_disconnect(move |s: SocketRef| {
        let (app, expiries) = (disc_app.clone(), expiries.clone());
        async move { disconnected(app, expiries, s).await }
    });
    let joined = rooms.len();
    if let Some(listening) = &app.notify.listening {
        // Room emits other nodes send once the client hears it is connected reach it. Last,
        // so that a refused socket leaves no room listened to for nothing (but a membership
        // change for the user meanwhile may have: the reconcile finds it unused).
        listening.ensure(rooms).await;
    }
    tracing::debug!(user = %ctx.who.user_id, device = %ctx.who.device, sid = %s.id, rooms = joined, "socket authenticated");
    Ok(())
}

/// The peer of the socket's first request (its address and connection).
fn peer(s: &SocketRef) -> Option<&crate::http::peer::Peer> {
    s.req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<crate::http::peer::Peer>>()
        .map(|c| &c.0)
}

/// The connection of the socket's first request.
fn connection(s: &SocketRef) -> Option<Arc<crate::http::peer::Conn>> {
    peer(s).and_then(|p| p.conn.clone())
}

/// The client's address: the TCP peer, or what a trusted proxy says it is.
fn client_addr(app: &App, s: &SocketRef) -> std::net::IpAddr {
    let peer = peer(s)
        .map(|p| p.addr.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let forwarded = s
        .req_parts()
        .headers
        .get("x-forwarded-for")
        .and_then(|h| h.to_str().ok());
    app.limits.client_addr(peer, forwarded)
}

/// After the client is told it is connected (emits work from here on): the socket becomes
/// reachable, gets what was kept for its device during a blip, and the delivery pass of
/// protocol §1.4 runs.
async fn after_connect(app: Arc<App>, s: SocketRef) {
    let Some(ctx) = s.extensions.get::<Arc<SocketCtx>>() else {
        return;
    };
    let who = &ctx.who;
    app.presence.add(&who.user_id, &who.device, s.id);
    // socketioxide runs this and the disconnect handler as separate tasks: a socket that closed
    // right after connecting may have been cleaned up before it was added. Then undo the add.
    if !s.connected() || ctx.has_left() {
        if let Some(device) = app.presence.remove(&who.user_id, s.id) {
            crate::calls::route::device_gone(&app, &who.user_id, &device).await;
        }
        return;
    }
    // Its connection ended while the token was being checked: socketioxide added the socket
    // after its transport closed and will never disconnect it. Do it here (the disconnect
    // handler undoes everything, the add above included).
    if connection(&s).is_some_and(|c| c.is_closed()) {
        let _ = s.clone().disconnect();
        return;
    }
    if let Some(c) = &app.cluster {
        // Published before the call's owner hears the device is back (same connection, in
        // order), so the owner's presence already has this socket when it rings it.
        c.socket_up(&who.user_id, &who.device, s.id.as_str()).await;
        if !s.connected() || ctx.has_left() {
            // Closed while we published: its `Down` may have gone out before our `Up`.
            c.socket_down(&who.user_id, s.id.as_str()).await;
        }
    }
    crate::calls::route::device_back(&app, &who.user_id, &who.device, s.id).await;
    if let Err(e) = crate::chat::receipts::deliver_on_connect(&app, who).await {
        tracing::warn!(user = %who.user_id, error = %e, "connect-time delivery failed");
    }
}

/// The fallback handler: files every event into the socket's inbox *synchronously*, in arrival
/// order, where socketioxide hands it over. socketioxide runs an async handler on a task of its
/// own per event, which would let a `stop` overtake the `typing` before it and costs a spawned
/// task per event (on the ICE relay's hot path); this handler is called inline and spawns none.
pub struct Enqueue;

/// [`Enqueue`]'s handler kind for socketioxide: it takes the raw event, no extractors.
pub struct RawEvent;

impl MessageHandler<Adapter, RawEvent> for Enqueue {
    fn call(&self, s: Arc<Socket<Adapter>>, v: socketioxide::handler::Value, _: Option<i64>) {
        let s = &s;
        let exception = |msg: &str| {
            let _ = s.emit(
                events::ON_EXCEPTION,
                &serde_json::to_string(&Exception { error: msg }).expect("serializes"),
            );
        };
        let Some(text) = v.as_str() else {
            exception("binary payloads are not supported");
            return;
        };
        let text: &str = text;
        if text.len() > MAX_EVENT_BYTES {
            exception(&format!(
                "payload too large: {} bytes (limit {MAX_EVENT_BYTES})",
                text.len()
            ));
            return;
        }
        let mut args: Vec<Value> = match serde_json::from_str(text) {
            Ok(a) => a,
            Err(_) => {
                exception("malformed event packet");
                return;
            }
        };
        if args.is_empty() {
            exception("malformed event packet");
            return;
        }
        let event = match args.remove(0) {
            Value::String(e) => e,
            _ => {
                exception("malformed event packet");
                return;
            }
        };
        let payload = if args.is_empty() {
            Value::Null
        } else {
            args.swap_remove(0)
        };
        let (Some(ctx), Some(app)) = (
            s.extensions.get::<Arc<SocketCtx>>(),
            s.extensions.get::<Arc<App>>(),
        ) else {
            return;
        };
        match ctx.limiter.check(&app.limits) {
            EventVerdict::Accept => {}
            EventVerdict::Refuse => {
                exception(&format!(
                    "too many events: at most {} per second",
                    app.config.max_events_per_second
                ));
                return;
            }
            EventVerdict::Disconnect => {
                tracing::info!(user = %ctx.who.user_id, sid = %ctx.sid, "event flood; closing the socket");
                let _ = s.clone().disconnect();
                return;
            }
        }
        if event == events::ICE_CANDIDATE && ctx.inbox.is_idle() {
            if let Some(done) = handlers::ice_candidate_now(&app, &ctx, &payload) {
                app.metrics.inc(|m| &m.socket_events);
                if let Err(error) = done {
                    refused(&app, &ctx, &event, &error);
                }
                return;
            }
        }
        match ctx.inbox.push(Inbound { event, payload }) {
            Pushed::Queued => {}
            Pushed::StartRunner => {
                tokio::spawn(run_inbox(app, ctx));
            }
            Pushed::Full => exception("too many events in flight; slow down"),
        }
    }
}

/// Runs one socket's events one after another, so each client sees its own events applied in
/// the order it sent them; ends when the inbox is empty (the next event starts another).
async fn run_inbox(app: Arc<App>, ctx: Arc<SocketCtx>) {
    while let Some(msg) = ctx.inbox.next() {
        app.metrics.inc(|m| &m.socket_events);
        if let Err(error) = handlers::dispatch(&app, &ctx, &msg.event, &msg.payload).await {
            refused(&app, &ctx, &msg.event, &error);
        }
    }
}

/// An event its handler refused: `v1OnException {error}` to the sending socket.
fn refused(app: &App, ctx: &SocketCtx, event: &str, error: &str) {
    app.metrics.inc(|m| &m.socket_exceptions);
    tracing::debug!(user = %ctx.who.user_id, event, %error, "event refused");
    app.notify
        .to_socket(ctx.sid, events::ON_EXCEPTION, &Exception { error });
}

async fn disconnected(app: Arc<App>, expiries: Arc<Expiries>, s: SocketRef) {
    let Some(ctx) = s.extensions.get::<Arc<SocketCtx>>() else {
        return;
    };
    ctx.leave();
    // Read now: once its transport closes too, Socket.IO takes the socket out of its rooms
    // while this handler still runs. (A room joined after this is found unused by the
    // subscriptions' reconcile.)
    let rooms: Vec<String> = s
        .rooms()
        .iter()
        .filter_map(|r| room_of(r).map(str::to_string))
        .collect();
    expiries.remove(ctx.who.exp, s.id);
    let who = &ctx.who;
    let typing = ctx.typing_to.lock().expect("not poisoned").take();
    if let Some(room) = typing {
        handlers::broadcast_status(&app, who, &room, "stop").await;
    }
    app.limits.socket_closed(ctx.addr);
    // Last seen is written while the socket still counts as online, so `last-seen` never reads
    // an older time for a user who is no longer online.
    app.store.touch_last_seen(&who.user_id);
    let gone = app.presence.remove(&who.user_id, s.id);
    if let Some(c) = &app.cluster {
        c.socket_down(&who.user_id, s.id.as_str()).await;
    }
    if let Some(device) = gone {
        crate::calls::route::device_gone(&app, &who.user_id, &device).await;
    }
    if app.presence.sockets(&who.user_id).is_empty() {
        // Nothing in memory outlives a user's last socket.
        app.profiles.forget(&who.user_id);
    }
    if let Some(listening) = &app.notify.listening {
        // Out of its rooms now (Socket.IO would take it out only after this handler), so the
        // rooms it was the last member of here are seen unused.
        s.leave_all();
        listening.maybe_unused(rooms);
    }
    tracing::debug!(user = %who.user_id, sid = %s.id, "socket disconnected");
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("Bearer%20abc.def"), "Bearer abc.def");
        assert_eq!(super::percent_decode("a%2"), "a%2");
        assert_eq!(super::percent_decode("%zz"), "%zz");
    }
}
