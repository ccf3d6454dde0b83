//! Media messages as the V Chat SDK sends them (multipart), and real file bytes built here,
//! shared by the media suites.

use serde_json::Value;
use sha2::Digest;

use super::*;

pub struct Pair {
    pub api: Api,
    pub a: String,
    pub b: String,
    pub room: String,
}

pub async fn pair(server: &TestServer) -> Pair {
    let api = server.api();
    let (a, b) = (
        token("alice", Some("a-phone")),
        token("bob", Some("b-phone")),
    );
    api.touch(&b).await;
    let room = api.peer_room(&a, "bob").await;
    Pair { api, a, b, room }
}

/// A file part: bytes, file name, the type the client claims.
pub struct File(pub Vec<u8>, pub &'static str, pub &'static str);

pub async fn send_media(
    p: &Pair,
    kind: &str,
    local: &str,
    files: Vec<File>,
    attachment: Option<Value>,
) -> Reply {
    let mut form = reqwest::multipart::Form::new()
        .text("content", "📎")
        .text("localId", local.to_string())
        .text("messageType", kind.to_string())
        .text("isEncrypted", "false");
    if let Some(a) = attachment {
        form = form.text("attachment", a.to_string());
    }
    for File(bytes, name, mime) in files {
        form = form.part("file", file_part(bytes, name, mime));
    }
    p.api
        .multipart(
            "POST",
            &format!("channel/{}/message/", p.room),
            Some(&p.a),
            form,
        )
        .await
}

pub fn sha256(b: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(b))
}

pub fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend(kind);
    b.extend(body);
    b
}

/// An MP4 file: `ftyp`, `mdat` with `payload`, and a `moov` with its movie header.
pub fn mp4(payload: &[u8], duration_ms: u32) -> Vec<u8> {
    let mut ftyp = b"isom".to_vec();
    ftyp.extend(0x200u32.to_be_bytes());
    ftyp.extend(b"isommp41");
    let mut mvhd = vec![0u8; 4 + 4 + 4];
    mvhd.extend(1000u32.to_be_bytes());
    mvhd.extend(duration_ms.to_be_bytes());
    mvhd.extend(0x0001_0000u32.to_be_bytes());
    mvhd.extend(0x0100u16.to_be_bytes());
    mvhd.extend([0u8; 10]);
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        mvhd.extend(v.to_be_bytes());
    }
    mvhd.extend([0u8; 24]);
    mvhd.extend(2u32.to_be_bytes());
    let mut out = mp4_box(b"ftyp", &ftyp);
    out.extend(mp4_box(b"mdat", payload));
    out.extend(mp4_box(b"moov", &mp4_box(b"mvhd", &mvhd)));
    out
}

pub async fn fetch(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.unwrap()
}
