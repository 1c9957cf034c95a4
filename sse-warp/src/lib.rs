//! warp adapter for [`sse_core`]: Server-Sent Events from a warp server.
#![forbid(unsafe_code)]

pub use sse_core;
