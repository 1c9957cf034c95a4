//! axum adapter for [`sse_core`]: Server-Sent Events from a axum server.
#![forbid(unsafe_code)]

pub use sse_core;
