//! Media kept in an S3-compatible bucket (`VCHAT_MEDIA_STORE=s3://bucket/prefix` with the
//! standard `AWS_*` variables; moto's server from PyPI is the bucket): every node of a cluster
//! serves what any node kept, with type, length, ranges, `ETag`/304, `HEAD` and caching; a large
//! file goes up in parts and comes back whole; a bucket that stops answering gives clear 503s,
//! keeps no message and no spooled file, and uploads work again once it is back; a bad store
//! URL stops the server at start with the reason.

mod common;

use common::cluster::TestCluster;
use common::s3::TestS3;
use common::uploads::*;
use common::*;
use reqwest::multipart::Form;

const WHAT: &str = "media in a bucket";

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header<'r>(r: &'r reqwest::Response, name: &str) -> &'r str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn every_node_serves_what_any_node_kept() {
    let Some(s3) = TestS3::get(WHAT) else {
        return;
    };
    let bucket = s3.bucket("vchat/files");
    let Some(c) = TestCluster::start(WHAT, 2, &bucket.env()) else {
        return;
    };
    let (n0, n1) = (c.node(0), c.node(1));
    let p = pair(n0).await;

    // An image kept through node 0, fetched from node 1.
    let img = png(7, 5);
    let m = send_media(
        &p,
        "image",
        "i1",
        vec![File(img.clone(), "a.png", "image/png")],
        None,
    )
    .await
    .ok();
    let url = m["msgAtt"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/media/m/", n0.url)), "{url}");
    let img_on_1 = url.replace(&n0.url, &n1.url);
    let r = get(&img_on_1, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/png");
    assert_eq!(header(&r, "content-length"), img.len().to_string());
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert!(header(&r, "cache-control").contains("immutable"));
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert!(header(&r, "last-modified").ends_with(" GMT"));
    let etag = header(&r, "etag").to_string();
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.as_slice());
    // A cached copy is still good; HEAD answers the headers alone.
    let r = get(&img_on_1, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = reqwest::Client::new().head(&img_on_1).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), img.len().to_string());
    assert_eq!(header(&r, "content-type"), "image/png");

    // A video: seeking works on the other node.
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let video = mp4(&payload, 1500);
    let m = send_media(
        &p,
        "video",
        "v1",
        vec![File(video.clone(), "v.mp4", "video/mp4")],
        Some(serde_json::json!({"duration": 1500})),
    )
    .await
    .ok();
    let vid_on_1 = m["msgAtt"]["url"]
        .as_str()
        .unwrap()
        .replace(&n0.url, &n1.url);
    let len = video.len();
    for (range, from, to) in [
        ("bytes=100-199", 100, 199),
        ("bytes=-50", len - 50, len - 1),
        ("bytes=9000-", 9000, len - 1),
        ("bytes=0-999999", 0, len - 1),
    ] {
        let r = get(&vid_on_1, &[("range", range)]).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(header(&r, "content-type"), "video/mp4");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {from}-{to}/{len}"),
            "{range}"
        );
        assert_eq!(header(&r, "content-length"), (to - from + 1).to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), &video[from..=to]);
    }
    for range in [
        format!("bytes={len}-"),
        "bytes=0-1,5-6".to_string(),
        "lines=1-2".to_string(),
    ] {
        let r = get(&vid_on_1, &[("range", &range)]).await;
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header(&r, "content-range"), format!("bytes */{len}"));
    }

    // A profile picture kept through node 1, served by node 0.
    let pic = png(3, 3);
    let d = n1
        .api()
        .multipart(
            "PATCH",
            "profile/image",
            Some(&p.b),
            Form::new().part("file", file_part(pic.clone(), "me.png", "image/png")),
        )
        .await;
    let pic_url = d.ok()["fullImage"].as_str().unwrap().to_string();
    let via_0 = pic_url.replace(&n1.url, &n0.url);
    let r = get(&via_0, &[]).await;
    assert_eq!(r.status(), 200, "{via_0}");
    assert_eq!(r.bytes().await.unwrap().as_ref(), pic.as_slice());

    // The bucket holds exactly the kept files, under the prefix, named by the server.
    let mut keys = bucket.keys().await;
    keys.sort();
    let mut want = vec![
        format!("vchat/files/m/{}.png", sha256(&img)),
        format!("vchat/files/m/{}.mp4", sha256(&video)),
    ];
    let avatar = pic_url.rsplit_once("/media/").unwrap().1;
    want.push(format!("vchat/files/{avatar}"));
    want.sort();
    assert_eq!(keys, want);

    // What is not a kept file is a JSON 404.
    for path in [
        "m/0000.png",
        "m/.probe",
        "m/..%2F..%2Fetc",
        "avatars",
        "a%20b/c.png",
    ] {
        let r = get(&format!("{}/media/{path}", n1.url), &[]).await;
        assert_eq!(r.status(), 404, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], 404, "{path}");
    }
}

#[tokio::test]
async fn a_large_file_goes_up_in_parts_and_comes_back_whole() {
    let Some(s3) = TestS3::get(WHAT) else {
        return;
    };
    let bucket = s3.bucket("big");
    let server = TestServer::start_with(&bucket.env());
    let p = pair(&server).await;
    // 21 MiB: three parts of the multipart upload (8 MiB each, the last shorter).
    let mut file: Vec<u8> = (0..21 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    file[..5].copy_from_slice(b"%PDF-");
    let m = send_media(
        &p,
        "file",
        "f1",
        vec![File(file.clone(), "big.pdf", "application/pdf")],
        None,
    )
    .await
    .ok();
    assert_eq!(m["msgAtt"]["fileHash"], sha256(&file));
    let url = m["msgAtt"]["url"].as_str().unwrap();
    let r = get(url, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/pdf");
    assert_eq!(header(&r, "content-length"), file.len().to_string());
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&file));
    // The boundary between two parts, read as one range.
    let (from, to) = (8 * 1024 * 1024 - 10, 8 * 1024 * 1024 + 9);
    let r = get(url, &[("range", &format!("bytes={from}-{to}"))]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &file[from..=to]);
    assert_eq!(
        bucket.keys().await,
        [format!("big/m/{}.pdf", sha256(&file))]
    );
    let incoming = server.data_dir.join("media").join(".incoming");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
}

#[tokio::test]
async fn a_bucket_that_stops_answering_refuses_clearly_and_keeps_nothing() {
    // A moto of our own, to stop and start.
    let Some(mut s3) = TestS3::own() else {
        common::cluster::must_run(WHAT, "no moto_server to start (see .ci/run)");
        return;
    };
    let bucket = s3.bucket("");
    let server = TestServer::start_with(&bucket.env());
    let p = pair(&server).await;
    let d = Driver::new(&server).await;
    let mut bob = d.connect("b", &p.b).await;
    let first = send_media(
        &p,
        "image",
        "ok1",
        vec![File(png(2, 2), "a.png", "image/png")],
        None,
    )
    .await
    .ok();
    bob.expect("v1OnNewMessage").await;
    let first_url = first["msgAtt"]["url"].as_str().unwrap().to_string();

    s3.stop();
    let r = send_media(
        &p,
        "image",
        "down1",
        vec![File(png(3, 3), "b.png", "image/png")],
        None,
    )
    .await;
    assert!(r.err(503).contains("media store"), "{}", r.body);
    let r = p
        .api
        .multipart(
            "PATCH",
            "profile/image",
            Some(&p.a),
            Form::new().part("file", file_part(png(4, 4), "me.png", "image/png")),
        )
        .await;
    assert!(r.err(503).contains("media store"), "{}", r.body);
    let r = get(&first_url, &[]).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], 503);
    bob.assert_none("v1OnNewMessage").await;
    let page = p
        .api
        .get(&format!("channel/{}/message/", p.room), &p.b)
        .await
        .ok();
    assert_eq!(page["docs"].as_array().unwrap().len(), 1, "only the first");
    let incoming = server.data_dir.join("media").join(".incoming");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);

    // Back (moto starts empty: the bucket is made again), and uploads work with no restart.
    assert!(s3.start(), "moto came back");
    s3.create_bucket(&bucket.name);
    let again = send_media(
        &p,
        "image",
        "up1",
        vec![File(png(5, 5), "c.png", "image/png")],
        None,
    )
    .await
    .ok();
    bob.expect("v1OnNewMessage").await;
    let r = get(again["msgAtt"]["url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.status(), 200);
}

#[test]
fn a_bad_media_store_url_stops_the_server_at_start() {
    for (url, why) in [
        ("ftp://files/x", "unknown scheme"),
        ("s3://No_Such", "bucket name"),
        ("file://relative", "absolute"),
    ] {
        let err = refused_start(&[("VCHAT_MEDIA_STORE", url)]);
        assert!(
            err.contains("media store") && err.contains(why),
            "{url}: {err}"
        );
    }
}
