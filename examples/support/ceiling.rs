//! The bare-WebSocket ceiling: the relay the bench measures against when it asks how close
//! vchat-signal comes to what moving frames through a tokio WebSocket server costs on this core.
//!
//! No Socket.IO, no auth, no JSON: it answers just enough of the Engine.IO/Socket.IO handshake
//! for the bench's client to connect (an open packet, then `40` to the client's `40`), pairs two
//! sockets by their token (`<pair>-a` / `<pair>-b`), and forwards every
//! `v1IceCandidate` frame from one to the other, renamed `v1OnIceCandidate` with one string
//! splice. Frames go through tungstenite's codec on split TCP halves, one reader and one writer
//! task per socket, the writer sending everything queued in one write (as the bench's client
//! does). It runs as a child process (the bench binary started with [`SERVE_ENV`]), so it can be
//! pinned to the server's core and measured like the other servers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;

use super::sio::{FrameReader, WsIn};

/// Set (to anything) in the environment of the bench binary to make it serve the ceiling.
pub const SERVE_ENV: &str = "VCHAT_BENCH_SERVE_CEILING";

/// The name the ceiling has in tables.
pub const NAME: &str = "ws-ceiling";

/// The token of one side of one pair.
pub fn token(pair: &str, side: char) -> String {
    format!("{pair}-{side}")
}

enum Out {
    Text(String),
    Pong(Vec<u8>),
}

/// Writers of both sides of each pair, by pair.
type Pairs = Arc<Mutex<HashMap<String, [Option<mpsc::UnboundedSender<Out>>; 2]>>>;

/// Serves until killed. Prints the `listening on` line the bench waits for.
pub fn serve() -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        println!("{NAME} listening on http://{addr}");
        let pairs: Pairs = Arc::default();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(connection(tcp, pairs.clone()));
        }
    })
}

fn encode(out: Out, buf: &mut Vec<u8>) {
    let frame = match out {
        Out::Text(t) => Frame::message(t, OpCode::Data(Data::Text), true),
        Out::Pong(p) => Frame::pong(p),
    };
    frame.format(buf).expect("a Vec takes any frame");
}

async fn connection(mut tcp: TcpStream, pairs: Pairs) {
    tcp.set_nodelay(true).ok();
    let mut fr = FrameReader::default();
    // The upgrade request: its key and the token.
    let head_end = loop {
        if let Some(i) = fr.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if fr.buf.len() > 16 * 1024 || fr.fill(&mut tcp).await.is_err() {
            return;
        }
    };
    let head = String::from_utf8_lossy(&fr.buf[..head_end]).to_string();
    fr.pos = head_end;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let (Some(key), Some(auth)) = (header("sec-websocket-key"), header("authorization")) else {
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    let tok = auth.trim_start_matches("Bearer ").to_string();
    let Some((pair, side)) = tok.rsplit_once('-') else {
        return;
    };
    let side = usize::from(side == "b");
    let pair = pair.to_string();
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    let mut buf = reply.into_bytes();
    encode(
        Out::Text(r#"0{"sid":"ceiling","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#.into()),
        &mut buf,
    );
    if tcp.write_all(&buf).await.is_err() {
        return;
    }

    let (mut rd, mut wr) = tcp.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    pairs.lock().unwrap().entry(pair.clone()).or_default()[side] = Some(tx.clone());
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(4096);
        while let Some(first) = rx.recv().await {
            buf.clear();
            encode(first, &mut buf);
            while buf.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(m) => encode(m, &mut buf),
                    Err(_) => break,
                }
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut partner: Option<mpsc::UnboundedSender<Out>> = None;
    const SENT: &str = "42[\"v1IceCandidate\",";
    while let Ok(m) = fr.next(&mut rd).await {
        match m {
            WsIn::Text(t) if t.starts_with(SENT) => {
                if partner.is_none() {
                    partner = pairs
                        .lock()
                        .unwrap()
                        .get(&pair)
                        .and_then(|p| p[1 - side].clone());
                }
                if let Some(p) = &partner {
                    let _ = p.send(Out::Text(format!(
                        "42[\"v1OnIceCandidate\",{}",
                        &t[SENT.len()..]
                    )));
                }
            }
            WsIn::Text(t) if t.starts_with("40") => {
                let _ = tx.send(Out::Text(r#"40{"sid":"ceiling"}"#.into()));
            }
            WsIn::Text(_) => {}
            WsIn::Ping(p) => {
                let _ = tx.send(Out::Pong(p));
            }
            WsIn::Close => break,
        }
    }
    if let Some(p) = pairs.lock().unwrap().get_mut(&pair) {
        p[side] = None;
    }
}
