//! Who a request comes from: its address, and the TCP connection it came on. socketioxide loses
//! a socket whose transport closed while its connect middleware (our token check) was still
//! running: the socket is added afterwards and no disconnect ever comes for it. A WebSocket
//! session lives exactly as long as its connection, so the gateway marks such a connection as
//! carrying the session, and the end of the connection ends it (see `realtime::gateway`; the
//! connection is ended by its [`super::stall::Stall`] wrapper when it goes).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use socketioxide::socket::Sid;
use tokio::sync::mpsc::UnboundedSender;

/// One accepted connection, as the requests on it see it.
pub struct Conn {
    state: Mutex<ConnState>,
    ended: UnboundedSender<Sid>,
}

#[derive(Default)]
struct ConnState {
    closed: bool,
    session: Option<Sid>,
}

impl Conn {
    /// This connection carries the whole of Socket.IO session `sid` (a WebSocket from its first
    /// request): when it ends, `sid` is reported. False if it has ended already.
    pub fn carries(&self, sid: Sid) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        state.session = Some(sid);
        !state.closed
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().expect("not poisoned").closed
    }

    pub(super) fn new(ended: UnboundedSender<Sid>) -> Self {
        Conn {
            state: Mutex::default(),
            ended,
        }
    }

    /// The connection is gone: report the session it carried.
    pub(super) fn end(&self) {
        let session = {
            let mut state = self.state.lock().expect("not poisoned");
            state.closed = true;
            state.session.take()
        };
        if let Some(sid) = session {
            let _ = self.ended.send(sid);
        }
    }
}

/// The peer of a request: its address and its connection (axum's `ConnectInfo<Peer>`).
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub conn: Option<Arc<Conn>>,
}
