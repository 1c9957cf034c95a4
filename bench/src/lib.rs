//! What the benchmark binaries share: the time stamped on every event, what
//! they read of a process from `/proc` (CPU time, resident memory, write
//! system calls), and where the servers they start are.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, as stamped on every event.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// utime + stime of process `pid` (this one if `None`), in seconds.
pub fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |pid| format!("/proc/{pid}/stat"));
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name, which may hold spaces, closed by ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here indexes 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of process `pid` (this one if `None`), in KiB.
pub fn rss_kib(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |pid| format!("/proc/{pid}/status"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The write system calls of process `pid` so far (`syscw` in
/// `/proc/<pid>/io`), where it can be read.
pub fn write_calls(pid: Option<u32>) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{}/io", pid?)).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("syscw: "))
        .and_then(|n| n.trim().parse().ok())
}

/// The directory of the server binaries: `given`, else the one holding the
/// running binary (where Cargo puts them all).
///
/// # Errors
/// When the running binary's path cannot be read.
pub fn bin_dir(given: Option<&PathBuf>) -> std::io::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.clone()),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| std::io::Error::other("the running binary has no directory")),
    }
}
