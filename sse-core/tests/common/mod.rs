//! Helpers shared by the integration tests: the frame readers of
//! `sse_core::test_util::frames`, under the names the tests use.

#[allow(unused_imports, reason = "not every test binary reads from a connection")]
pub(crate) use sse_core::test_util::frames::{drain, parse};
