//! Helpers shared by the integration tests: the frame readers of
//! `sse_core::test_util::frames`, under the names the tests use.

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
