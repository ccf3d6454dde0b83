//! An S3-compatible server for the media store: `VCHAT_TEST_S3_URL` (one already running, as
//! `.ci/run` starts for the whole run), else moto's `moto_server` (PyPI `moto[server]`, from
//! PATH or `target/s3-venv`, installed there when missing) started on a free port for the test.
//! Each test gets a bucket of its own.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestS3 {
    pub url: String,
    child: Option<Child>,
    port: u16,
}

/// A bucket and the server settings that keep media in it.
pub struct Bucket {
    pub name: String,
    pub prefix: String,
    pub env: Vec<(String, String)>,
    s3_url: String,
}

fn run<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(f: F) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

fn answers(url: &str) -> bool {
    let url = url.to_string();
    run(async move { ::reqwest::get(&url).await.is_ok() })
}

/// moto's server: on PATH, else in `target/s3-venv`, installed there once if missing (so `cargo
/// test` alone works on a fresh checkout with Python 3, like the npm clients do).
fn moto_server() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/s3-venv");
    let bin = venv.join("bin/moto_server");
    if bin.exists() {
        return Some(bin);
    }
    let on_path = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return Some("moto_server".into());
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if bin.exists() {
            return;
        }
        eprintln!("installing moto[server] into {} (once)", venv.display());
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        let installed = made
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check", "-r"])
                .arg(root.join("tests/support/s3-requirements.txt"))
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            eprintln!("could not install moto[server] (needs python3 with venv and PyPI)");
        }
    });
    bin.exists().then_some(bin)
}

impl TestS3 {
    /// `None` (said on stderr) when there is none to be had outside CI; under `CI=true` a
    /// missing one fails the test.
    pub fn get(what: &str) -> Option<TestS3> {
        if let Some(url) = std::env::var("VCHAT_TEST_S3_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Some(TestS3 {
                url,
                child: None,
                port: 0,
            });
        }
        let s3 = Self::own();
        if s3.is_none() {
            super::cluster::must_run(
                what,
                "no S3 server: set VCHAT_TEST_S3_URL or install moto[server] (see .ci/run)",
            );
        }
        s3
    }

    /// A moto server of our own (one a test may stop and start again).
    pub fn own() -> Option<TestS3> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut s3 = TestS3 {
            url: format!("http://127.0.0.1:{port}"),
            child: None,
            port,
        };
        s3.start().then_some(s3)
    }

    /// Starts our moto again on its port (it keeps nothing: buckets are gone).
    pub fn start(&mut self) -> bool {
        let Some(bin) = moto_server() else {
            return false;
        };
        let Ok(child) = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        for _ in 0..600 {
            if answers(&self.url) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops our own moto (the bucket becomes unreachable).
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("our own moto server");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// A new, empty bucket, and the settings that put a server's media under `prefix` in it.
    pub fn bucket(&self, prefix: &str) -> Bucket {
        let name = format!("vchat-t-{}", vchat_signal::ids::random_hex(6));
        self.create_bucket(&name);
        let env = vec![
            ("VCHAT_MEDIA_STORE".into(), format!("s3://{name}/{prefix}")),
            ("AWS_ENDPOINT".into(), self.url.clone()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), "test-key".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test-secret".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ];
        Bucket {
            name,
            prefix: prefix.to_string(),
            env,
            s3_url: self.url.clone(),
        }
    }

    /// Makes a bucket (again, after our moto restarted empty).
    pub fn create_bucket(&self, name: &str) {
        let put = format!("{}/{name}", self.url);
        let status = run(async move {
            ::reqwest::Client::new()
                .put(&put)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
        .expect("create a bucket");
        assert_eq!(status, 200, "bucket creation");
    }
}

impl Bucket {
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Every key in the bucket (S3 ListObjectsV2; moto answers it unsigned).
    pub async fn keys(&self) -> Vec<String> {
        let xml = ::reqwest::get(format!("{}/{}?list-type=2", self.s3_url, self.name))
            .await
            .expect("list the bucket")
            .text()
            .await
            .unwrap();
        assert!(xml.contains("<ListBucketResult"), "{xml}");
        assert!(!xml.contains("<IsTruncated>true"), "more than one page");
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
