//! The harness of the conformance suite: every demo server of the HTTP API
//! (described in `docs/http-api.md`, the suite's reference; the demos live in
//! `sse-examples`), run in-process on a loopback port and driven over real
//! HTTP. The cases are in `tests/conformance/`, one module per topic.
//!
//! [`TestServer`] starts one demo's [`ServeFn`] with contract settings (the
//! `SSE_*` variables, given as a list instead of the process environment) and
//! stops it through the same graceful shutdown the binaries use. [`SseStream`]
//! reads an event stream with the `eventsource-stream` parser and records the
//! raw bytes and their arrival times, for the tests that check exact bytes or
//! heartbeat timing (heartbeats are comments, which the parser skips).
//!
//! Every wait is bounded by [`WAIT`]; a test that waits longer fails with a
//! message naming what it waited for.
//!
//! Inside [`over_http2`], the servers started are spoken to over HTTP/2
//! without TLS (prior knowledge, as `curl --http2-prior-knowledge` does):
//! the suite runs a selection of its cases that way, since browsers speak
//! HTTP/2 to any HTTPS origin.
//!
//! The Redis cases run two servers on one stream of the Redis at
//! [`REDIS_URL`], under a key prefix of their own ([`RedisPrefix`]); without
//! a Redis there they print why and pass, unless `SSE_CI_STRICT=1`, which
//! makes a missing Redis a failure.
//!
//! The NATS cases do the same on a JetStream stream of their own on the
//! NATS at [`NATS_ADDR`] ([`NatsPrefix`]).
//!
//! [`ServeFn`]: sse_examples::ServeFn
#![forbid(unsafe_code)]

use std::time::Duration;

pub use backplanes::{NATS_ADDR, NatsPrefix, REDIS_URL, RedisPrefix, strict};
pub use eventsource_stream::Event;
pub use metrics::prometheus_samples;
pub use server::{Published, Subscriber, TestServer, over_http2};
pub use stream::{End, Next, SseResponse, SseStream, leading_retry};

mod backplanes;
mod metrics;
mod server;
mod stream;

/// How long any single wait may take before the test fails: generous, so a
/// loaded machine slows the suite down instead of failing it.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often the polling helpers ([`TestServer::wait_for_stats`]) look again.
const POLL: Duration = Duration::from_millis(20);
