//! Starting the servers under test: child processes on 127.0.0.1, port 0, with `kill_on_drop`,
//! so they die with the example, also when it panics. Their output is drained into a short tail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::api::Api;

/// The HS256 secret both servers verify tokens with.
pub const SECRET: &str = "vchat-bench-secret-0123456789abcdef0123456789";

/// The abuse limits a load generator must turn off: all its clients share 127.0.0.1 and each
/// simulated user works far faster than a person. `0` turns a limit off.
pub const LIMITS_OFF: [(&str, &str); 6] = [
    ("VCHAT_MAX_CALLS_PER_MINUTE", "0"),
    ("VCHAT_MAX_UNANSWERED_CALLS", "0"),
    ("VCHAT_MAX_MESSAGES_PER_10S", "0"),
    ("VCHAT_MAX_REQUESTS_PER_ADDRESS_PER_SECOND", "0"),
    ("VCHAT_MAX_SOCKETS_PER_ADDRESS", "0"),
    ("VCHAT_MAX_EVENTS_PER_SECOND", "0"),
];

/// `LIMITS_OFF` as one line, for the output.
pub fn limits_off_line() -> String {
    LIMITS_OFF
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone)]
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub pid: u32,
    /// More processes serving this target (the other nodes of a cluster, nginx): their CPU
    /// counts too.
    pub others: Vec<u32>,
    pub api: Api,
}

impl Target {
    /// CPU seconds of every process serving this target.
    pub fn cpu_secs(&self) -> f64 {
        std::iter::once(self.pid)
            .chain(self.others.iter().copied())
            .map(|p| super::procfs::proc_cpu_secs(&p.to_string()))
            .sum()
    }
}

pub struct Proc {
    pub child: Child,
    pub target: Arc<Target>,
    pub log: Arc<Mutex<LogTail>>,
}

#[derive(Default)]
pub struct LogTail {
    pub lines: u64,
    pub last: Vec<String>,
    /// Lines that report a panic.
    pub panics: u64,
    /// The process's last glibc `malloc_stats()` totals (see [`LogTail::malloc_line`]):
    /// (bytes the allocator holds from the system, bytes in use), and how many were read.
    pub malloc_total: Option<(u64, u64)>,
    pub malloc_reads: u64,
    in_malloc_total: bool,
    malloc_system: u64,
}

impl LogTail {
    /// Takes in a line of glibc's `malloc_stats()` report (which a debugger can make the
    /// server print on its stderr); false for any other line.
    fn malloc_line(&mut self, l: &str) -> bool {
        let num = |l: &str| {
            l.split('=')
                .nth(1)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if l.starts_with("Arena ") && l.ends_with(':') {
            self.in_malloc_total = false;
        } else if l == "Total (incl. mmap):" {
            self.in_malloc_total = true;
        } else if l.starts_with("system bytes") {
            if self.in_malloc_total {
                self.malloc_system = num(l).unwrap_or(0);
            }
        } else if l.starts_with("in use bytes") {
            if self.in_malloc_total {
                self.malloc_total = Some((self.malloc_system, num(l).unwrap_or(0)));
                self.malloc_reads += 1;
            }
        } else if !l.starts_with("max mmap ") {
            return false;
        }
        true
    }
}

pub fn target_dir() -> PathBuf {
    // target/release/examples/bench → target
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn drain(r: impl AsyncRead + Unpin + Send + 'static, log: Arc<Mutex<LogTail>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut g = log.lock().unwrap();
            if g.malloc_line(&l) {
                continue;
            }
            g.lines += 1;
            if l.contains("panicked") {
                g.panics += 1;
            }
            if g.last.len() == 5 {
                g.last.remove(0);
            }
            g.last.push(l.chars().take(300).collect());
        }
    });
}

/// The core servers are pinned to (`--server-core`), if any: set once at start.
pub static SERVER_CORE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Pins the calling thread (and the threads it starts later) to one core; with `pid` 0 that is
/// this process's thread, as `taskset` would.
pub fn pin_to_core(core: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it for core <
    // CPU_SETSIZE, which the check makes sure of.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if core >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::other(format!("no core {core}")));
        }
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub async fn spawn_server(
    name: &'static str,
    mut cmd: Command,
    http: &reqwest::Client,
) -> Result<Proc, String> {
    if let Some(&core) = SERVER_CORE.get() {
        // SAFETY: between fork and exec only sched_setaffinity runs (async-signal-safe).
        unsafe {
            cmd.pre_exec(move || pin_to_core(core));
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{name}: cannot start: {e}"))?;
    let pid = child.id().ok_or("no pid")?;
    let log = Arc::new(Mutex::new(LogTail::default()));
    drain(child.stderr.take().expect("stderr"), log.clone());
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = stdout.next_line().await {
            if l.contains("listening on http://") {
                return Some(l);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(line) = first else {
        let tail = log.lock().unwrap().last.join("\n  ");
        return Err(format!(
            "{name}: no 'listening on' line within 30 s; stderr:\n  {tail}"
        ));
    };
    drain(stdout.into_inner(), log.clone());
    let url = line.split("http://").nth(1).unwrap_or("");
    let hostport = url
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or("");
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|_| format!("{name}: cannot parse address in {line:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{name}: listens on {addr}, expected 127.0.0.1"));
    }
    let api = Api {
        http: http.clone(),
        base: format!("http://{addr}/api/v2/"),
    };
    let target = Arc::new(Target {
        name,
        addr,
        pid,
        others: Vec::new(),
        api,
    });
    Ok(Proc { child, target, log })
}

/// `target/<kind>/vchat-data-<pid>`: the server's data directory, fresh for each run.
pub fn data_dir(kind: &str) -> PathBuf {
    target_dir().join(format!("{kind}/vchat-data-{}", std::process::id()))
}

pub fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata().ok()?.modified().ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// How to start vchat-signal.
pub struct VchatOpts<'a> {
    /// Another binary than `target/release/vchat-signal`.
    pub bin: Option<PathBuf>,
    /// Run `cargo build --release --bin vchat-signal` when the binary is missing (else an
    /// error tells to).
    pub build_if_missing: bool,
    /// Start it with [`LIMITS_OFF`].
    pub limits_off: bool,
    /// More environment for the server (e.g. `MALLOC_ARENA_MAX`, `VCHAT_CALL_TIMEOUT_MS`).
    pub env: &'a [(String, String)],
    /// What the caller does with it, for the stale-binary warning ("bench", "soak").
    pub purpose: &'a str,
}

pub fn default_bin() -> PathBuf {
    target_dir().join("release/vchat-signal")
}

/// `cargo build --release --bin vchat-signal` in the crate root (waits for cargo's lock).
pub fn build_release() -> Result<(), String> {
    eprintln!("building vchat-signal: cargo build --release --bin vchat-signal ...");
    let st = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bin", "vchat-signal"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build --release --bin vchat-signal failed ({st})"
        ))
    }
}

pub async fn start_vchat(
    o: &VchatOpts<'_>,
    data_dir: &Path,
    http: &reqwest::Client,
) -> Result<Proc, String> {
    let bin = o.bin.clone().unwrap_or_else(default_bin);
    if !bin.exists() && o.build_if_missing && o.bin.is_none() {
        build_release()?;
    }
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            bin.display()
        ));
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bin_time = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if newest_mtime(&src) > bin_time {
        eprintln!(
            "warning: {} is older than src/: run `cargo build --release` to {} the current code",
            bin.display(),
            o.purpose
        );
    }
    let _ = std::fs::remove_dir_all(data_dir);
    std::fs::create_dir_all(data_dir).map_err(|e| format!("data dir: {e}"))?;
    let mut cmd = Command::new(bin);
    cmd.env_remove("VCHAT_CONFIG")
        .env("VCHAT_LISTEN", "127.0.0.1:0")
        .env("VCHAT_TURN_LISTEN", "127.0.0.1:0")
        .env("VCHAT_DATA_DIR", data_dir)
        .env("VCHAT_JWT_SECRET", SECRET)
        .env("VCHAT_LOG", "warn");
    if o.limits_off {
        for (k, v) in LIMITS_OFF {
            cmd.env(k, v);
        }
    }
    for (k, v) in o.env {
        cmd.env(k, v);
    }
    spawn_server("vchat-signal", cmd, http).await
}
