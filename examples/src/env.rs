//! The demos' deployment configuration: [`EnvConfig`], read from the
//! `SSE_*` environment variables of the HTTP contract (listen address,
//! engine settings, JWT keys and claims, publish token, CORS origins,
//! Redis or NATS), and [`EnvError`], naming the first variable that holds an
//! unusable value.

mod read;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sse_core::SseConfig;
use sse_core::http::jwt::JwtAlgorithm;
use sse_core::server::ServerLimits;

/// The demo servers' configuration, read from the environment variables of
/// the HTTP contract (`SSE_ADDR`, `SSE_HEARTBEAT_MS`, ...), among them
/// `SSE_MAX_PER_ADDR` (connections per client address, unlimited when
/// unset), `SSE_REDIS_PREFIX` (the key prefix of the Redis backplane),
/// `SSE_NATS_URL` and `SSE_NATS_PREFIX` (the NATS JetStream backplane and
/// the prefix of its stream; not with `SSE_REDIS_URL`),
/// `SSE_IDLE_TIMEOUT_MS` (close connections without an event for that long),
/// `SSE_PRESENCE_CHANNELS` (comma-separated channel patterns that get
/// `presence` events) and `SSE_PRESENCE_TIMEOUT_MS` (with Redis, how long an
/// instance's presence outlives its last renewal), `SSE_STATS_INTERVAL_MS`
/// (with Redis, how often an instance reports its statistics for
/// `GET /api/sse/stats/cluster`), the memory bounds
/// `SSE_HISTORY_BYTES`, `SSE_CLIENT_QUEUE_BYTES` and
/// `SSE_FRAME_BUDGET_BYTES`, `SSE_IDEMPOTENCY_WINDOW_MS`, `SSE_PUBLISH_RATE`
/// (publishes per second per publisher, unlimited when unset),
/// `SSE_WRITE_BATCH_MS` (the write batch window, 0 to 1000), and the
/// server's own limits ([`EnvConfig::server`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnvConfig {
    /// `SSE_ADDR`: the listen address (default `127.0.0.1:3000`).
    pub addr: SocketAddr,
    /// The engine's settings.
    pub sse: SseConfig,
    /// `SSE_AUTH_SECRET`: the HS256 secret subscribers' tokens are signed
    /// with.
    pub auth_secret: Option<String>,
    /// `SSE_JWT_PUBLIC_KEY`: the path of a PEM file holding the public key
    /// (RSA, EC or Ed25519) subscribers' tokens are signed for.
    pub jwt_public_key: Option<PathBuf>,
    /// `SSE_JWKS_URL`: the identity provider's JWKS, the keys of its tokens.
    pub jwks_url: Option<String>,
    /// `SSE_JWT_ISSUER`: the `iss` every token must carry.
    pub jwt_issuer: Option<String>,
    /// `SSE_JWT_AUDIENCE`: the `aud` every token must name.
    pub jwt_audience: Option<String>,
    /// `SSE_JWT_ALGORITHMS`: the accepted algorithms (comma-separated JOSE
    /// names); unset, those the keys imply.
    pub jwt_algorithms: Option<Vec<JwtAlgorithm>>,
    /// `SSE_PUBLISH_TOKEN`: the bearer token publishers must present.
    pub publish_token: Option<String>,
    /// `SSE_CORS_ORIGINS`: origins allowed cross-origin, each a serialized
    /// origin as browsers send it (`https://app.example.com`,
    /// `http://localhost:3000`).
    pub cors_origins: Vec<String>,
    /// `SSE_REDIS_URL`: the Redis backplane.
    pub redis_url: Option<String>,
    /// `SSE_REDIS_PREFIX`: the key prefix of the Redis backplane (its
    /// default when unset); instances with the same prefix share events.
    pub redis_prefix: Option<String>,
    /// `SSE_REDIS_SHARDS`: spread channel events over this many Redis
    /// streams, each instance reading only its channels' (1 to 1024; unset:
    /// one stream).
    pub redis_shards: Option<u32>,
    /// `SSE_NATS_URL`: the NATS JetStream backplane (not with
    /// `SSE_REDIS_URL`).
    pub nats_url: Option<String>,
    /// `SSE_NATS_PREFIX`: the prefix of the NATS backplane's stream and
    /// subject (its default when unset); instances with the same prefix
    /// share events.
    pub nats_prefix: Option<String>,
    /// The server's timeouts and socket cap: `SSE_HEADER_TIMEOUT_MS`,
    /// `SSE_BODY_TIMEOUT_MS`, `SSE_KEEP_ALIVE_TIMEOUT_MS`,
    /// `SSE_WRITE_TIMEOUT_MS` (each at least 10) and `SSE_MAX_SOCKETS` (at
    /// least 1); [`ServerLimits::for_config`] for those unset.
    pub server: ServerLimits,
    /// `SSE_DRAIN_MS`: how long a demo stays up, not ready
    /// (`GET /readyz` answers `503`) but still streaming, between a shutdown
    /// signal and the end of its streams (default 0).
    pub drain: Duration,
    /// `SSE_METRICS`: `on` (the default) records the engine's metrics into
    /// a Prometheus recorder served at `GET /metrics`; `off` installs none
    /// (the route is then a `404`), to measure what metrics cost.
    pub metrics: bool,
}

/// An environment variable holds a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
#[non_exhaustive]
pub struct EnvError {
    /// The variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}
