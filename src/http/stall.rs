//! Connections whose client stopped reading. engineioxide's socket writer waits on a full TCP
//! send buffer without watching for the session's close, so a client that hangs (or never
//! reads, on purpose) keeps its session forever: no disconnect, no grace for its call device,
//! its socket counted as live, the server's buffers held. Every accepted connection is wrapped
//! in a [`Stall`]: a write that has made no progress for the configured time fails, and so does
//! everything after it, reads included (an end of stream, and the parked reader is woken), so
//! every task on the connection ends and the session closes as after a dropped network.
//! Plain HTTP responses get the same: a download nobody reads is given up.
//! The wrapper also holds the connection's [`Conn`], which it ends when the connection goes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use socketioxide::socket::Sid;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Sleep;

use super::peer::{Conn, Peer};

/// Accepts TCP connections, each wrapped in a [`Stall`].
pub struct StallListener {
    tcp: TcpListener,
    limit: Duration,
    /// Where a connection that carried a Socket.IO session reports that session when it ends.
    ended: UnboundedSender<Sid>,
}

impl StallListener {
    pub fn new(tcp: TcpListener, limit: Duration, ended: UnboundedSender<Sid>) -> Self {
        StallListener { tcp, limit, ended }
    }
}

impl Listener for StallListener {
    type Io = Stall<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept for TCP: it retries (and backs off) on errors such as EMFILE.
        let (io, addr) = Listener::accept(&mut self.tcp).await;
        // Every frame we send is small and wanted now (an ICE candidate, an SDP, an ack). With
        // Nagle's algorithm on, a frame written while the previous one is unacknowledged waits
        // for that ACK, which the client may delay by 40 ms: at 31,000 candidates/s this put
        // one such wait into most two-second bench runs (p99 14.7 ms, max 40 ms).
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(%addr, "TCP_NODELAY not set: {e}");
        }
        let mut io = Stall::new(io, self.limit);
        io.conn = Some(Arc::new(Conn::new(self.ended.clone())));
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Connected<IncomingStream<'_, StallListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, StallListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            conn: stream.io().conn(),
        }
    }
}

/// A stream whose writes give up after `limit` without progress.
pub struct Stall<S> {
    io: S,
    conn: Option<Arc<Conn>>,
    limit: Duration,
    /// Armed when a write finds the send buffer full; dropped as soon as one goes through. Idle
    /// connections never have one.
    waiting: Option<Pin<Box<Sleep>>>,
    /// The reader parked on this connection, woken when the connection is given up.
    reader: Option<Waker>,
    given_up: bool,
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")
}

impl<S> Stall<S> {
    pub(super) fn conn(&self) -> Option<Arc<Conn>> {
        self.conn.clone()
    }

    pub fn new(io: S, limit: Duration) -> Self {
        Stall {
            io,
            conn: None,
            limit,
            waiting: None,
            reader: None,
            given_up: false,
        }
    }

    /// The inner write is pending: arm the timer on first sight, give up when it fires.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.given_up = true;
        self.waiting = None;
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        tracing::debug!(after = ?limit, "a connection's client stopped reading: closed");
        Poll::Ready(Err(stalled()))
    }

    /// A write-side operation: refused once given up; its pending arms (or keeps) the timer,
    /// any progress disarms it.
    fn guarded<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        if self.given_up {
            return Poll::Ready(Err(stalled()));
        }
        match op(Pin::new(&mut self.io), cx) {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.waiting = None;
                ready
            }
        }
    }
}

impl<S> Drop for Stall<S> {
    fn drop(&mut self) {
        if let Some(conn) = &self.conn {
            conn.end();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.given_up {
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if r.is_pending()
            && !this
                .reader
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            this.reader = Some(cx.waker().clone());
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guarded(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guarded(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guarded(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.given_up {
            // Nothing more can be sent; the socket closes when it is dropped.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that never reads: the writer fills both buffers of an in-memory pipe, then fails
    /// after the limit, and a reader parked meanwhile sees the end of the stream.
    #[tokio::test(start_paused = true)]
    async fn a_write_without_progress_fails_after_the_limit_and_ends_the_reader() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let (mut read, mut write) = tokio::io::split(Stall::new(ours, Duration::from_secs(20)));
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 16];
            read.read(&mut b).await
        });
        let started = tokio::time::Instant::now();
        let err = loop {
            if let Err(e) = write.write_all(&[7u8; 512]).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(reader.await.unwrap().unwrap(), 0, "end of stream");
        assert!(write.write_all(b"x").await.is_err(), "given up for good");
    }

    /// Accepted connections send each frame at once rather than waiting on the peer's ACK.
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = tcp.local_addr().unwrap();
        let (ended, _) = tokio::sync::mpsc::unbounded_channel();
        let mut listener = StallListener::new(tcp, Duration::from_secs(20), ended);
        let _client = TcpStream::connect(at).await.unwrap();
        let (io, _) = listener.accept().await;
        assert!(io.io.nodelay().unwrap());
    }

    /// A slow reader is not a stalled one: each bit of progress restarts the clock.
    #[tokio::test(start_paused = true)]
    async fn progress_restarts_the_clock() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut conn = Stall::new(ours, Duration::from_secs(20));
        let peer = tokio::spawn(async move {
            let mut b = [0u8; 64];
            let mut got = 0;
            while got < 64 * 10 {
                tokio::time::sleep(Duration::from_secs(15)).await;
                got += theirs.read(&mut b).await.unwrap();
            }
            got
        });
        conn.write_all(&[1u8; 64 * 10])
            .await
            .expect("never stalled 20 s");
        assert_eq!(peer.await.unwrap(), 640);
    }
}
