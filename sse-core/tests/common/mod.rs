//! Helpers shared by the integration tests: the frame readers of
//! `sse_core::test_util::frames`, under the names the tests use, and the
//! process's resident set size for the memory checks.

#[allow(unused_imports, reason = "not every test binary reads from a connection")]
pub(crate) use sse_core::test_util::frames::{drain, parse};

/// Runs `test` to completion on a current-thread Tokio runtime with timers,
/// as each case of the property tests does.
#[allow(dead_code, reason = "not every test binary runs property cases")]
pub(crate) fn on_tokio<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
        .block_on(test)
}

/// The resident set size of this process, in bytes.
#[cfg(target_os = "linux")]
#[allow(dead_code, reason = "not every test binary measures memory")]
pub(crate) fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident * page_size())
}

#[cfg(not(target_os = "linux"))]
#[allow(dead_code, reason = "not every test binary measures memory")]
pub(crate) fn rss() -> Option<u64> {
    None
}

/// The kernel's page size, as `/proc/self/smaps` states it (4 KiB if it
/// cannot be read).
#[cfg(target_os = "linux")]
#[allow(dead_code, reason = "not every test binary measures memory")]
fn page_size() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    smaps
        .lines()
        .find_map(|line| line.strip_prefix("KernelPageSize:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(4096, |kib| kib * 1024)
}
