//! A minimal Socket.IO v4 client over a raw websocket: tungstenite's frame codec (through
//! tokio-tungstenite's re-export) on split tokio TCP halves, one reader task and one writer task
//! per socket, so no futures/Stream plumbing is needed.

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// One decoded Socket.IO event, stamped when its frame was read.
pub struct Ev {
    pub name: String,
    pub payload: Value,
    pub at: Instant,
    /// With [`Sio::connect_lazy_ice`]: a relayed candidate's frame as it came, not decoded
    /// (`payload` is null), so the load generator spends its core on load, not on JSON.
    pub raw: Option<String>,
}

/// The frame prefix of a relayed candidate.
pub const ICE_FRAME: &str = "42[\"v1OnIceCandidate\",";

pub enum Out {
    Text(String),
    Pong(Vec<u8>),
    /// A websocket close frame; the writer stops after it.
    Close,
}

pub enum WsIn {
    Text(String),
    Ping(Vec<u8>),
    Close,
}

pub fn encode(out: Out, buf: &mut Vec<u8>) {
    let mut frame = match out {
        Out::Text(t) => Frame::message(t, OpCode::Data(Data::Text), true),
        Out::Pong(p) => Frame::pong(p),
        Out::Close => Frame::close(None),
    };
    frame.header_mut().mask = Some(rand::random());
    frame
        .format(buf)
        .expect("writing a frame into a Vec cannot fail");
}

/// Buffered websocket frame parser (server frames are unmasked, possibly fragmented).
#[derive(Default)]
pub struct FrameReader {
    pub buf: Vec<u8>,
    pub pos: usize,
    frag: Vec<u8>,
}

impl FrameReader {
    pub fn parse(&mut self) -> Result<Option<WsIn>, String> {
        loop {
            let avail = &self.buf[self.pos..];
            let mut cur = Cursor::new(avail);
            let Some((hdr, len)) = FrameHeader::parse(&mut cur).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let start = cur.position() as usize;
            let end = start + len as usize;
            if avail.len() < end {
                return Ok(None);
            }
            let mut payload = avail[start..end].to_vec();
            self.pos += end;
            if let Some(mask) = hdr.mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i & 3];
                }
            }
            match hdr.opcode {
                OpCode::Data(Data::Text) | OpCode::Data(Data::Continue) => {
                    self.frag.extend_from_slice(&payload);
                    if hdr.is_final {
                        let bytes = std::mem::take(&mut self.frag);
                        return String::from_utf8(bytes)
                            .map(|t| Some(WsIn::Text(t)))
                            .map_err(|e| e.to_string());
                    }
                }
                OpCode::Control(Control::Ping) => return Ok(Some(WsIn::Ping(payload))),
                OpCode::Control(Control::Close) => return Ok(Some(WsIn::Close)),
                _ => {}
            }
        }
    }

    pub async fn fill(&mut self, rd: &mut (impl AsyncRead + Unpin)) -> Result<(), String> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(16 * 1024);
        match rd.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn next(&mut self, rd: &mut (impl AsyncRead + Unpin)) -> Result<WsIn, String> {
        loop {
            if let Some(m) = self.parse()? {
                return Ok(m);
            }
            self.fill(rd).await?;
        }
    }
}

/// `42["name","<json>"]` → name and parsed payload (a string argument is parsed as JSON).
pub fn decode_event(text: &str) -> Option<(String, Value)> {
    let v: Value = serde_json::from_str(text.strip_prefix("42")?).ok()?;
    let name = v.get(0)?.as_str()?.to_string();
    let payload = match v.get(1) {
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(other) => other.clone(),
        None => Value::Null,
    };
    Some((name, payload))
}

pub struct Sio {
    pub out: mpsc::UnboundedSender<Out>,
    pub events: mpsc::UnboundedReceiver<Ev>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Sio {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Sio {
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<Sio, String> {
        Self::connect_with(addr, token, false).await
    }

    /// As [`Sio::connect`], but relayed candidates are handed over undecoded (see [`Ev::raw`]).
    pub async fn connect_lazy_ice(addr: SocketAddr, token: &str) -> Result<Sio, String> {
        Self::connect_with(addr, token, true).await
    }

    async fn connect_with(addr: SocketAddr, token: &str, lazy_ice: bool) -> Result<Sio, String> {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tcp connect: {e}"))?;
        tcp.set_nodelay(true).ok();
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\n\
             Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n",
            generate_key()
        );
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        let mut fr = FrameReader::default();
        let head_end = loop {
            if let Some(i) = fr.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if fr.buf.len() > 16 * 1024 {
                return Err("upgrade response too long".into());
            }
            fr.fill(&mut tcp)
                .await
                .map_err(|e| format!("upgrade: {e}"))?;
        };
        let head = String::from_utf8_lossy(&fr.buf[..head_end]).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!(
                "upgrade refused: {}",
                head.lines().next().unwrap_or("")
            ));
        }
        fr.pos = head_end;
        match fr.next(&mut tcp).await? {
            WsIn::Text(t) if t.starts_with('0') => {}
            _ => return Err("no Engine.IO open packet".into()),
        }
        send_now(&mut tcp, format!("40{}", json!({ "token": token }))).await?;
        loop {
            match fr.next(&mut tcp).await? {
                WsIn::Text(t) if t.starts_with("40") => break,
                WsIn::Text(t) if t.starts_with("44") => return Err(format!("refused: {t}")),
                WsIn::Text(t) if t == "2" => send_now(&mut tcp, "3".into()).await?,
                WsIn::Close => return Err("closed during connect".into()),
                _ => {}
            }
        }

        let (mut rd, mut wr) = tcp.into_split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            while let Some(first) = out_rx.recv().await {
                buf.clear();
                let mut closing = matches!(first, Out::Close);
                encode(first, &mut buf);
                while !closing && buf.len() < 256 * 1024 {
                    match out_rx.try_recv() {
                        Ok(m) => {
                            closing = matches!(m, Out::Close);
                            encode(m, &mut buf)
                        }
                        Err(_) => break,
                    }
                }
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
                if closing {
                    let _ = wr.shutdown().await;
                    break;
                }
            }
        });
        let pong = out_tx.clone();
        let reader = tokio::spawn(async move {
            loop {
                match fr.next(&mut rd).await {
                    Ok(WsIn::Text(t)) => {
                        let at = Instant::now();
                        if t == "2" {
                            let _ = pong.send(Out::Text("3".into()));
                        } else if lazy_ice && t.starts_with(ICE_FRAME) {
                            let _ = ev_tx.send(Ev {
                                name: "v1OnIceCandidate".into(),
                                payload: Value::Null,
                                at,
                                raw: Some(t),
                            });
                        } else if let Some((name, payload)) = decode_event(&t) {
                            let _ = ev_tx.send(Ev {
                                name,
                                payload,
                                at,
                                raw: None,
                            });
                        } else if t.starts_with("41") || t == "1" {
                            break;
                        }
                    }
                    Ok(WsIn::Ping(p)) => {
                        let _ = pong.send(Out::Pong(p));
                    }
                    Ok(WsIn::Close) | Err(_) => break,
                }
            }
            let _ = ev_tx.send(Ev {
                name: CLOSED.into(),
                payload: Value::Null,
                at: Instant::now(),
                raw: None,
            });
        });
        Ok(Sio {
            out: out_tx,
            events: ev_rx,
            reader,
            writer,
        })
    }

    /// Leaves cleanly, as an app that signs out: Socket.IO disconnect, then a websocket close
    /// frame, then the TCP write side is shut. Dropping a `Sio` instead cuts the connection
    /// (the server sees the transport close, as after a network blip).
    pub async fn close(mut self) {
        let _ = self.out.send(Out::Text("41".into()));
        let _ = self.out.send(Out::Close);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.writer).await;
    }

    pub fn emit(&self, event: &str, payload: &Value) {
        let text = format!("42{}", json!([event, payload.to_string()]));
        let _ = self.out.send(Out::Text(text));
    }

    /// Next event named `name` whose payload satisfies `pred`; other events are dropped.
    pub async fn wait(
        &mut self,
        name: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Ev, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err(format!("timed out waiting for {name}")),
                Ok(None) => return Err(format!("socket gone while waiting for {name}")),
                Ok(Some(ev)) if ev.name == CLOSED => {
                    return Err(format!("server closed the socket while waiting for {name}"))
                }
                Ok(Some(ev)) if ev.name == name && pred(&ev.payload) => return Ok(ev),
                Ok(Some(_)) => {}
            }
        }
    }
}

pub async fn send_now(tcp: &mut TcpStream, text: String) -> Result<(), String> {
    let mut buf = Vec::new();
    encode(Out::Text(text), &mut buf);
    tcp.write_all(&buf).await.map_err(|e| e.to_string())
}

pub const CLOSED: &str = "\u{0}closed";
