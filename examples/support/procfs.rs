//! What /proc says about a process: memory, CPU time, and the machine's load.

pub fn proc_status_kib(pid: &str, key: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used, in seconds: the sum of its threads' run time from
/// /proc/PID/task/*/schedstat (nanoseconds), or utime + stime (10 ms ticks) when that is missing.
pub fn proc_cpu_secs(pid: &str) -> f64 {
    let mut ns = 0u64;
    let mut found = false;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            if let Some(v) = s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
            {
                ns += v;
                found = true;
            }
        }
    }
    if found {
        return ns as f64 / 1e9;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After the command name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, utime, stime.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

pub fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
