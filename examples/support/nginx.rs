//! nginx in front of vchat-signal nodes, running the shipped `deploy/nginx-vchat.conf` with
//! its listen address and upstream servers rewritten. Shared by `tests/cluster.rs` (through
//! `tests/common/cluster.rs`) and the bench's `--cluster` mode.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// nginx in front of the nodes, running `deploy/nginx-vchat.conf`.
pub struct Nginx {
    pub url: String,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    pub fn start(upstreams: &[String]) -> Option<Nginx> {
        Self::start_on(free_port(), upstreams)
    }

    pub fn start_on(port: u16, upstreams: &[String]) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let dir = std::env::temp_dir().join(format!(
            "vchat-nginx-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx-vchat.conf"),
        )
        .unwrap();
        // The shipped file, with our ports: its two example servers become our nodes.
        let servers: String = upstreams
            .iter()
            .map(|u| {
                format!(
                    "    server {} max_fails=1 fail_timeout=5s;\n",
                    u.trim_start_matches("http://")
                )
            })
            .collect();
        let mut site = String::new();
        let mut servers_written = false;
        for line in shipped.lines() {
            let t = line.trim_start();
            if t.starts_with("server 127.0.0.1:") {
                if !servers_written {
                    site.push_str(&servers);
                    servers_written = true;
                }
                continue;
            }
            if t == "listen 80;" {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
                continue;
            }
            site.push_str(line);
            site.push('\n');
        }
        assert!(
            servers_written,
            "deploy/nginx-vchat.conf has an upstream block"
        );
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n{user}\
             worker_rlimit_nofile 65536;\nevents {{ worker_connections 16384; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {d}/vchat.conf;\n}}\n",
            user = if unsafe_is_root() { "user root;\n" } else { "" },
        );
        std::fs::write(dir.join("vchat.conf"), site).unwrap();
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Some(Nginx {
                    url: format!("http://{addr}"),
                    dir,
                    child,
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
}

fn unsafe_is_root() -> bool {
    std::env::var("USER").as_deref() == Ok("root")
        || std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

impl Drop for Nginx {
    fn drop(&mut self) {
        kill(self.child.id(), 3); // SIGQUIT: graceful
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
