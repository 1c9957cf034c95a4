//! poem adapter for [`sse_core`]: Server-Sent Events from a poem server.
#![forbid(unsafe_code)]

pub use sse_core;
