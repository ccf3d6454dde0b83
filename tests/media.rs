//! Media messages over the real server: image, file, video and voice messages sent as the V
//! Chat SDK sends them (multipart, real PNG/JPEG/MP4/Ogg bytes built here), `msgAtt` built by
//! the server, files served with their type, length, ranges and caching, forwards, refusals
//! that store nothing, uploads over the limit refused while they stream, and uploads cut off
//! (client gone, server killed) that leave no file behind.

mod common;

use std::path::{Path, PathBuf};

use common::uploads::*;
use common::*;
use serde_json::{json, Value};

/// A baseline JPEG of `w`×`h` uniform grey: one quantization table, one-symbol Huffman tables
/// (DC difference 0, AC end-of-block), two bits per 8×8 block.
fn jpeg(w: u16, h: u16) -> Vec<u8> {
    let mut b = vec![0xff, 0xd8];
    b.extend([0xff, 0xdb, 0x00, 0x43, 0x00]);
    b.extend([1u8; 64]);
    b.extend([0xff, 0xc0, 0x00, 0x0b, 0x08]);
    b.extend(h.to_be_bytes());
    b.extend(w.to_be_bytes());
    b.extend([0x01, 0x01, 0x11, 0x00]);
    for class in [0x00, 0x10] {
        b.extend([0xff, 0xc4, 0x00, 0x14, class, 0x01]);
        b.extend([0u8; 15]);
        b.push(0x00);
    }
    b.extend([0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00]);
    let blocks = w.div_ceil(8) as usize * h.div_ceil(8) as usize;
    let bits = blocks * 2;
    let mut data = vec![0u8; bits.div_ceil(8)];
    // Pad the last byte with ones, as the format asks.
    let pad = data.len() * 8 - bits;
    if let Some(last) = data.last_mut() {
        *last = (1u8 << pad).wrapping_sub(1);
    }
    b.extend(data);
    b.extend([0xff, 0xd9]);
    b
}

/// Ogg's CRC-32 (polynomial 0x04c11db7, not reflected, no final xor).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in data {
        crc ^= (byte as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn ogg_page(kind: u8, seq: u32, packet: &[u8]) -> Vec<u8> {
    assert!(packet.len() < 255);
    let mut p = b"OggS\0".to_vec();
    p.push(kind);
    p.extend(0u64.to_le_bytes());
    p.extend(0x5eed_u32.to_le_bytes());
    p.extend(seq.to_le_bytes());
    p.extend([0u8; 4]);
    p.push(1);
    p.push(packet.len() as u8);
    p.extend(packet);
    let crc = ogg_crc(&p);
    p[22..26].copy_from_slice(&crc.to_le_bytes());
    p
}

/// An Ogg Opus stream's two header pages (`OpusHead`, `OpusTags`), as a recorder starts one.
fn ogg_opus() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.extend([1, 1]);
    head.extend(312u16.to_le_bytes());
    head.extend(48_000u32.to_le_bytes());
    head.extend([0, 0, 0]);
    let mut tags = b"OpusTags".to_vec();
    tags.extend(4u32.to_le_bytes());
    tags.extend(b"test");
    tags.extend(0u32.to_le_bytes());
    let mut out = ogg_page(0x02, 0, &head);
    out.extend(ogg_page(0x00, 1, &tags));
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn images_videos_voice_and_files_are_stored_described_and_served() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut bob = d.connect("b", &p.b).await;

    // Image (PNG): the SDK sends no attachment; the server measures it.
    let img = png(7, 5);
    let m = send_media(
        &p,
        "image",
        "i1",
        vec![File(img.clone(), "IMG_1.png", "image/png")],
        None,
    )
    .await
    .ok();
    let att = &m["msgAtt"];
    assert_eq!(att["width"], 7);
    assert_eq!(att["height"], 5);
    assert_eq!(att["mimeType"], "image/png");
    assert_eq!(att["fileSize"], img.len());
    assert_eq!(att["fileHash"], sha256(&img));
    assert_eq!(att["name"], "IMG_1.png");
    let url = att["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/media/m/", server.url)),
        "{url}"
    );
    let got = bob.expect("v1OnNewMessage").await;
    assert_eq!(got["msgAtt"], *att, "receivers see the same map");
    let r = fetch(url, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        r.headers()["content-length"],
        img.len().to_string().as_str()
    );
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.as_slice());

    // JPEG dimensions, whatever type the client claims.
    let jpg = jpeg(33, 17);
    let m = send_media(
        &p,
        "image",
        "i2",
        vec![File(jpg, "x.bin", "application/x-foo")],
        None,
    )
    .await
    .ok();
    assert_eq!(
        (
            &m["msgAtt"]["width"],
            &m["msgAtt"]["height"],
            &m["msgAtt"]["mimeType"]
        ),
        (&json!(33), &json!(17), &json!("image/jpeg"))
    );

    // Video with its thumbnail; the local file map the SDK sends loses its paths and bytes.
    let payload: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let video = mp4(&payload, 3200);
    let thumb = png(4, 3);
    let local = json!({"name": "VID_9.mp4", "url": null, "filePath": "/sdcard/DCIM/VID_9.mp4",
                       "assetsPath": null, "bytes": [1, 2, 3], "mimeType": "video/mp4",
                       "fileSize": 1, "fileHash": "x", "duration": 3200,
                       "thumbImage": {"name": "t.png", "filePath": "/tmp/t.png", "width": 1, "height": 1}});
    let m = send_media(
        &p,
        "video",
        "v1",
        vec![
            File(video.clone(), "VID_9.mp4", "video/mp4"),
            File(thumb.clone(), "t.png", "image/png"),
        ],
        Some(local),
    )
    .await
    .ok();
    let att = &m["msgAtt"];
    assert_eq!(att["mimeType"], "video/mp4");
    assert_eq!(att["duration"], 3200);
    assert_eq!(att["fileSize"], video.len());
    assert_eq!(att["name"], "VID_9.mp4");
    for gone in ["filePath", "bytes", "assetsPath"] {
        assert!(att.get(gone).is_none(), "{gone} must be dropped: {att}");
    }
    let t = &att["thumbImage"];
    assert_eq!((&t["width"], &t["height"]), (&json!(4), &json!(3)));
    assert!(t.get("filePath").is_none());
    assert_eq!(fetch(t["url"].as_str().unwrap(), None).await.status(), 200);
    // Seeking: a byte range of the video.
    let r = fetch(att["url"].as_str().unwrap(), Some("bytes=100-199")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-199/{}", video.len()).as_str()
    );
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &video[100..200]);

    // Voice (Ogg Opus) with its duration.
    let ogg = ogg_opus();
    let m = send_media(
        &p,
        "voice",
        "a1",
        vec![File(ogg.clone(), "rec.ogg", "audio/ogg")],
        Some(json!({"name": "rec.ogg", "duration": 4100, "filePath": "/x/rec.ogg"})),
    )
    .await
    .ok();
    assert_eq!(m["msgAtt"]["duration"], 4100);
    assert_eq!(m["msgAtt"]["mimeType"], "audio/opus");
    let r = fetch(m["msgAtt"]["url"].as_str().unwrap(), None).await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("audio/"));

    // Files: a PDF keeps its type; a page a browser would run is served as bytes.
    let pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let m = send_media(
        &p,
        "file",
        "f1",
        vec![File(pdf, "report.pdf", "application/pdf")],
        Some(json!({"name": "../../etc/report.pdf"})),
    )
    .await
    .ok();
    assert_eq!(m["msgAtt"]["mimeType"], "application/pdf");
    assert_eq!(m["msgAtt"]["name"], "report.pdf");
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let m = send_media(
        &p,
        "file",
        "f2",
        vec![File(html, "x.html", "text/html")],
        None,
    )
    .await
    .ok();
    assert_eq!(m["msgAtt"]["mimeType"], "application/octet-stream");
    let r = fetch(m["msgAtt"]["url"].as_str().unwrap(), None).await;
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // The history returns the same maps.
    let page = p
        .api
        .get(&format!("channel/{}/message/", p.room), &p.b)
        .await
        .ok();
    let kinds: Vec<&str> = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mT"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["file", "file", "voice", "video", "image", "image"]);
}

#[tokio::test]
async fn a_forwarded_image_shows_the_originals_file() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let carol = token("carol", Some("c-phone"));
    p.api.touch(&carol).await;
    let room_ac = p.api.peer_room(&p.a, "carol").await;
    let orig = send_media(
        &p,
        "image",
        "o1",
        vec![File(png(9, 9), "a.png", "image/png")],
        None,
    )
    .await
    .ok();
    // As the SDK forwards: same type, the original's lId, no file, its own stale map.
    let fwd = p
        .api
        .post(
            &format!("channel/{room_ac}/message/"),
            &p.a,
            json!({"localId": "fw1", "messageType": "image", "content": "📷",
                   "forwardLocalId": "o1", "attachment": {"filePath": "/local/a.png", "name": "a.png"}}),
        )
        .await
        .ok();
    assert_eq!(fwd["msgAtt"], orig["msgAtt"]);
    assert_eq!(fwd["rId"], room_ac.as_str());
    // Someone who cannot see the original cannot forward it; a type mismatch is refused.
    let room_bc = p.api.peer_room(&p.b, "carol").await;
    let r = p
        .api
        .post(
            &format!("channel/{room_bc}/message/"),
            &carol,
            json!({"localId": "fw2", "messageType": "image", "content": "📷", "forwardLocalId": "o1"}),
        )
        .await;
    assert!(r.err(400).contains("forwardLocalId"), "{}", r.body);
    let r = p
        .api
        .post(
            &format!("channel/{room_ac}/message/"),
            &p.a,
            json!({"localId": "fw3", "messageType": "video", "content": "🎥", "forwardLocalId": "o1"}),
        )
        .await;
    assert!(r.err(400).contains("not video"), "{}", r.body);
}

#[tokio::test]
async fn refused_uploads_store_nothing_and_emit_nothing() {
    let server = TestServer::start();
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut bob = d.connect("b", &p.b).await;
    let text = b"just some text, renamed".to_vec();
    let cases: Vec<(&str, Vec<File>, Option<Value>, &str)> = vec![
        (
            "image",
            vec![File(text.clone(), "a.png", "image/png")],
            None,
            "not an image",
        ),
        (
            "video",
            vec![File(png(2, 2), "a.mp4", "video/mp4")],
            None,
            "not a video",
        ),
        (
            "voice",
            vec![File(text.clone(), "a.ogg", "audio/ogg")],
            Some(json!({"duration": 5})),
            "not a recording",
        ),
        (
            "voice",
            vec![File(ogg_opus(), "a.ogg", "audio/ogg")],
            Some(json!({"name": "a.ogg"})),
            "duration",
        ),
        (
            "image",
            vec![File(Vec::new(), "a.png", "image/png")],
            None,
            "empty",
        ),
        ("image", vec![], None, "multipart part named file"),
        (
            "image",
            vec![
                File(png(2, 2), "a.png", "image/png"),
                File(png(2, 2), "b.png", "image/png"),
            ],
            None,
            "at most 1",
        ),
        (
            "video",
            vec![
                File(mp4(&[1, 2, 3], 10), "a.mp4", "video/mp4"),
                File(text.clone(), "t.png", "image/png"),
            ],
            None,
            "thumbnail",
        ),
        (
            "text",
            vec![File(png(2, 2), "a.png", "image/png")],
            None,
            "carry no file",
        ),
        (
            "location",
            vec![File(png(2, 2), "a.png", "image/png")],
            Some(json!({"lat": 1, "long": 2})),
            "carry no file",
        ),
    ];
    for (i, (kind, files, att, want)) in cases.into_iter().enumerate() {
        let r = send_media(&p, kind, &format!("bad{i}"), files, att).await;
        assert!(r.err(400).contains(want), "{kind} #{i}: {}", r.body);
    }
    // A bad attachment JSON, as a form field.
    let form = reqwest::multipart::Form::new()
        .text("content", "🎤")
        .text("localId", "badjson")
        .text("messageType", "voice")
        .text("attachment", "{not json")
        .part("file", file_part(ogg_opus(), "a.ogg", "audio/ogg"));
    let r = p
        .api
        .multipart(
            "POST",
            &format!("channel/{}/message/", p.room),
            Some(&p.a),
            form,
        )
        .await;
    assert!(r.err(400).contains("attachment"), "{}", r.body);
    // A non-member's upload.
    let eve = token("eve", None);
    p.api.touch(&eve).await;
    let form = reqwest::multipart::Form::new()
        .text("localId", "eve1")
        .text("messageType", "image")
        .part("file", file_part(png(2, 2), "a.png", "image/png"));
    let r = p
        .api
        .multipart(
            "POST",
            &format!("channel/{}/message/", p.room),
            Some(&eve),
            form,
        )
        .await;
    r.err(403);

    bob.assert_none("v1OnNewMessage").await;
    assert!(server.kept_files("m").await.is_empty(), "nothing kept");
    for dir in server.data_dirs() {
        let incoming = dir.join("media").join(".incoming");
        assert!(files_under(&incoming).is_empty(), "nothing left");
    }
    let page = p
        .api
        .get(&format!("channel/{}/message/", p.room), &p.b)
        .await
        .ok();
    assert_eq!(page["docs"], json!([]));
}

/// Peak resident memory of a process, bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_while_it_streams() {
    if common::cluster::single_node_only("the memory of the one process that takes the upload") {
        return;
    }
    const LIMIT: usize = 4 * 1024 * 1024;
    let server = TestServer::start_with(&[("VCHAT_MAX_UPLOAD_BYTES", &LIMIT.to_string())]);
    let p = pair(&server).await;
    // Just under the limit passes.
    let mut ok_file = vec![0x55u8; LIMIT - 64];
    ok_file[..5].copy_from_slice(b"%PDF-");
    send_media(
        &p,
        "file",
        "big-ok",
        vec![File(ok_file, "a.pdf", "application/pdf")],
        None,
    )
    .await
    .ok();
    let before = peak_rss(server.pid());
    // Ten times the limit: refused once the limit is passed, and never held whole. The server
    // answers 413 while the client is still sending and reads the rest to discard it, so the
    // answer is never lost to a reset (the raw socket reads while it writes).
    let (status, body) = upload_over_raw_socket(&server, &p, LIMIT * 10)
        .await
        .expect("a 413, not a reset");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too large"), "{body}");
    // The server is fine and kept nothing of it.
    let page = p
        .api
        .get(&format!("channel/{}/message/", p.room), &p.b)
        .await
        .ok();
    assert_eq!(
        page["docs"].as_array().unwrap().len(),
        1,
        "only the first upload"
    );
    let after = peak_rss(server.pid());
    assert!(
        after < before + (LIMIT * 10) as u64 / 2,
        "the server's peak memory grew by {} bytes for a {} byte upload",
        after - before,
        LIMIT * 10
    );
    wait_files(&server.data_dir.join("media").join(".incoming"), 0).await;
    assert_eq!(server.kept_files("m").await.len(), 1);
}

/// A file message of `size` bytes over a raw socket: writes it in a task (ignoring write errors
/// once the server stops reading) while reading the answer. The answer's status and body, if one
/// arrived before the connection went.
async fn upload_over_raw_socket(
    server: &TestServer,
    p: &Pair,
    size: usize,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.url.trim_start_matches("http://").to_string();
    let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let boundary = "BoUnDaRy";
    let mut head_part = Vec::new();
    for (k, v) in [
        ("localId", "big-no"),
        ("messageType", "file"),
        ("content", "📁"),
    ] {
        head_part.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    head_part.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let len = head_part.len() + size + tail.len();
    let request = format!(
        "POST /api/v2/channel/{}/message/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        p.room, p.a
    );
    let writer = tokio::spawn(async move {
        wr.write_all(request.as_bytes()).await?;
        wr.write_all(&head_part).await?;
        let chunk = vec![0x33u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            left -= n;
        }
        wr.write_all(tail.as_bytes()).await
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    writer.abort();
    let text = String::from_utf8_lossy(&got).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Sends the start of a multipart upload by hand (headers and `sent` bytes of a file part that
/// claims more), and keeps the connection open.
async fn start_upload(server: &TestServer, p: &Pair, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let boundary = "XyZzY";
    let mut body = Vec::new();
    for (k, v) in [
        ("localId", "cut"),
        ("messageType", "file"),
        ("content", "📁"),
    ] {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(vec![0x41u8; sent]);
    let head = format!(
        "POST /api/v2/channel/{}/message/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        p.room,
        p.a,
        body.len() + 10 * 1024 * 1024
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    s.flush().await.unwrap();
    s
}

/// Waits until `dir` holds `n` files.
async fn wait_files(dir: &Path, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while files_under(dir).len() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} holds {:?}, not {n} files",
            dir.display(),
            files_under(dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn uploads_cut_off_leave_no_message_and_no_file() {
    if common::cluster::single_node_only("SIGKILL and restart of one process") {
        return;
    }
    let server = TestServer::start();
    let p = pair(&server).await;
    let incoming = server.data_dir.join("media").join(".incoming");

    // The client goes away mid-upload: its part file is deleted.
    let s = start_upload(&server, &p, 512 * 1024).await;
    wait_files(&incoming, 1).await;
    drop(s);
    wait_files(&incoming, 0).await;

    // The server is killed mid-upload: the next start deletes what was left.
    let _s = start_upload(&server, &p, 512 * 1024).await;
    wait_files(&incoming, 1).await;
    let server = server.restart();
    wait_files(&incoming, 0).await;
    let p = Pair {
        api: server.api(),
        ..p
    };
    let page = p
        .api
        .get(&format!("channel/{}/message/", p.room), &p.b)
        .await
        .ok();
    assert_eq!(page["docs"], json!([]));
    assert!(server.kept_files("m").await.is_empty());
}
