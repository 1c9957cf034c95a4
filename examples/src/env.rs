//! The demos' deployment configuration: [`EnvConfig`], read from the
//! `SSE_*` environment variables of the HTTP contract (listen address,
//! engine settings, JWT keys and claims, publish token, CORS origins,
//! Redis or NATS), and [`EnvError`], naming the first variable that holds an
//! unusable value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sse_core::http::jwt::{JwtAlgorithm, JwtAuthenticator, JwtConfigError};
use sse_core::server::ServerLimits;
use sse_core::{RateLimit, SseConfig};

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

impl EnvConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    /// An [`EnvError`] naming the first malformed variable; a malformed value
    /// is never replaced by a default.
    pub fn from_env() -> Result<Self, EnvError> {
        EnvConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (for tests).
    ///
    /// # Errors
    /// As [`EnvConfig::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &'static str| lookup(name).map(|value| (name, value));
        let parse_with =
            |name: &'static str, parse: &dyn Fn(&str) -> Result<u64, String>| -> Result<Option<u64>, EnvError> {
                match get(name) {
                    None => Ok(None),
                    Some((variable, value)) => parse(value.trim()).map(Some).map_err(|reason| EnvError {
                        variable,
                        value,
                        reason,
                    }),
                }
            };
        let positive = |text: &str| -> Result<u64, String> {
            match text.parse::<u64>() {
                Ok(0) => Err("must be greater than zero".to_owned()),
                Ok(n) => Ok(n),
                Err(e) => Err(format!("not a whole number: {e}")),
            }
        };
        let count =
            |text: &str| -> Result<u64, String> { text.parse::<u64>().map_err(|e| format!("not a whole number: {e}")) };
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        // A positive number of at least `min`.
        let at_least = |min: u64| {
            move |text: &str| -> Result<u64, String> {
                positive(text).and_then(|n| {
                    if n < min {
                        Err(format!("must be at least {min}"))
                    } else {
                        Ok(n)
                    }
                })
            }
        };
        // A number that `rule` takes, of at most `max`.
        let at_most = |rule: fn(&str) -> Result<u64, String>, max: u64| {
            move |text: &str| -> Result<u64, String> {
                rule(text).and_then(|n| {
                    if n > max {
                        Err(format!("must be at most {max}"))
                    } else {
                        Ok(n)
                    }
                })
            }
        };

        let addr = match get("SSE_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some((variable, value)) => value.trim().parse().map_err(|e| EnvError {
                variable,
                value: value.clone(),
                reason: format!("not a socket address: {e}"),
            })?,
        };
        let mut sse = SseConfig::builder();
        if let Some(ms) = parse_with("SSE_HEARTBEAT_MS", &at_least(10))? {
            sse = sse.heartbeat_interval(Some(Duration::from_millis(ms)));
        }
        if let Some(ms) = parse_with("SSE_RETRY_MS", &count)? {
            sse = sse.retry(Duration::from_millis(ms));
        }
        if let Some(n) = parse_with("SSE_MAX_CONNECTIONS", &count)? {
            sse = sse.max_connections(size(n));
        }
        if let Some(n) = parse_with("SSE_MAX_PER_USER", &positive)? {
            sse = sse.max_connections_per_user(Some(size(n)));
        }
        if let Some(n) = parse_with("SSE_MAX_PER_ADDR", &positive)? {
            sse = sse.max_connections_per_addr(Some(size(n)));
        }
        if let Some(ms) = parse_with("SSE_MAX_LIFETIME_MS", &positive)? {
            sse = sse.max_lifetime(Some(Duration::from_millis(ms)));
        }
        if let Some(n) = parse_with("SSE_CLIENT_QUEUE", &positive)? {
            sse = sse.client_queue(size(n));
        }
        if let Some(n) = parse_with("SSE_HISTORY", &count)? {
            sse = sse.history_size(size(n));
        }
        if let Some(n) = parse_with("SSE_CLIENT_QUEUE_BYTES", &positive)? {
            sse = sse.client_queue_bytes(size(n));
        }
        if let Some(n) = parse_with("SSE_HISTORY_BYTES", &positive)? {
            sse = sse.history_max_bytes(size(n));
        }
        if let Some(n) = parse_with("SSE_FRAME_BUDGET_BYTES", &positive)? {
            sse = sse.frame_memory_budget(size(n));
        }
        if let Some(ms) = parse_with("SSE_IDLE_TIMEOUT_MS", &at_least(10))? {
            sse = sse.idle_timeout(Some(Duration::from_millis(ms)));
        }
        if let Some((variable, value)) = get("SSE_PRESENCE_CHANNELS") {
            let patterns: Vec<String> = value.split(',').map(|p| p.trim().to_owned()).collect();
            if let Some(bad) = patterns
                .iter()
                .find(|p| p.is_empty() || p.chars().any(char::is_control))
            {
                return Err(EnvError {
                    variable,
                    value: value.clone(),
                    reason: format!("{bad:?} is not a channel pattern (non-empty, without control characters)"),
                });
            }
            sse = sse.presence_channels(patterns);
        }
        if let Some(ms) = parse_with("SSE_PRESENCE_TIMEOUT_MS", &at_least(100))? {
            sse = sse.presence_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = parse_with("SSE_STATS_INTERVAL_MS", &at_least(100))? {
            sse = sse.stats_interval(Duration::from_millis(ms));
        }
        if let Some(ms) = parse_with("SSE_IDEMPOTENCY_WINDOW_MS", &at_least(1000))? {
            sse = sse.idempotency_window(Duration::from_millis(ms));
        }
        if let Some(ms) = parse_with("SSE_WRITE_BATCH_MS", &at_most(count, 1000))? {
            sse = sse.write_batch_window(Duration::from_millis(ms));
        }
        if let Some(rate) = parse_with("SSE_PUBLISH_RATE", &at_most(positive, 1_000_000))? {
            let rate = u32::try_from(rate).unwrap_or(u32::MAX);
            sse = sse.publish_rate(Some(RateLimit::per_second(rate)));
        }
        // Every value above passed its setting's rule already; should the
        // configuration gain a rule, its error is reported here.
        let sse = sse.build().map_err(|error| EnvError {
            variable: "SSE_*",
            value: String::new(),
            reason: error.to_string(),
        })?;
        let mut server = ServerLimits::for_config(&sse);
        for (name, field) in [
            ("SSE_HEADER_TIMEOUT_MS", &mut server.header_timeout),
            ("SSE_BODY_TIMEOUT_MS", &mut server.body_timeout),
            ("SSE_KEEP_ALIVE_TIMEOUT_MS", &mut server.keep_alive_timeout),
            ("SSE_WRITE_TIMEOUT_MS", &mut server.write_timeout),
        ] {
            if let Some(ms) = parse_with(name, &at_least(10))? {
                *field = Duration::from_millis(ms);
            }
        }
        if let Some(n) = parse_with("SSE_MAX_SOCKETS", &positive)? {
            server.max_sockets = size(n);
        }
        let drain = Duration::from_millis(parse_with("SSE_DRAIN_MS", &count)?.unwrap_or(0));
        let redis_shards = parse_with("SSE_REDIS_SHARDS", &at_most(positive, u64::from(sse_redis::MAX_SHARDS)))?
            .and_then(|n| u32::try_from(n).ok());
        let on_off = |text: &str| match text {
            "on" => Ok(1),
            "off" => Ok(0),
            _ => Err("must be on or off".to_owned()),
        };
        let metrics = parse_with("SSE_METRICS", &on_off)?.is_none_or(|on| on == 1);
        let non_empty = |name: &'static str| -> Result<Option<String>, EnvError> {
            match get(name) {
                None => Ok(None),
                Some((variable, value)) if value.trim().is_empty() => Err(EnvError {
                    variable,
                    value,
                    reason: "must not be empty when set".to_owned(),
                }),
                Some((_, value)) => Ok(Some(value)),
            }
        };
        let cors_origins = match non_empty("SSE_CORS_ORIGINS")? {
            None => Vec::new(),
            Some(value) => {
                let origins: Vec<String> = value.split(',').map(|o| o.trim().to_owned()).collect();
                if let Some(bad) = origins.iter().find(|o| !is_origin(o)) {
                    return Err(EnvError {
                        variable: "SSE_CORS_ORIGINS",
                        value: value.clone(),
                        reason: format!(
                            "{bad:?} is not an origin like https://example.com or http://localhost:3000 \
                             (lowercase scheme and host, optional port, no path or trailing slash; \
                             \"*\" and \"null\" are refused)"
                        ),
                    });
                }
                origins
            }
        };
        let jwt_algorithms = match non_empty("SSE_JWT_ALGORITHMS")? {
            None => None,
            Some(value) => Some(
                value
                    .split(',')
                    .map(|name| name.trim().parse::<JwtAlgorithm>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|unknown| EnvError {
                        variable: "SSE_JWT_ALGORITHMS",
                        value: value.clone(),
                        reason: unknown.to_string(),
                    })?,
            ),
        };
        let config = EnvConfig {
            addr,
            sse,
            auth_secret: non_empty("SSE_AUTH_SECRET")?,
            jwt_public_key: non_empty("SSE_JWT_PUBLIC_KEY")?.map(PathBuf::from),
            jwks_url: non_empty("SSE_JWKS_URL")?,
            jwt_issuer: non_empty("SSE_JWT_ISSUER")?,
            jwt_audience: non_empty("SSE_JWT_AUDIENCE")?,
            jwt_algorithms,
            publish_token: non_empty("SSE_PUBLISH_TOKEN")?,
            cors_origins,
            redis_url: non_empty("SSE_REDIS_URL")?,
            redis_prefix: non_empty("SSE_REDIS_PREFIX")?,
            redis_shards,
            nats_url: non_empty("SSE_NATS_URL")?,
            nats_prefix: non_empty("SSE_NATS_PREFIX")?,
            server,
            drain,
            metrics,
        };
        if let (None, Some(shards)) = (&config.redis_url, config.redis_shards) {
            return Err(EnvError {
                variable: "SSE_REDIS_SHARDS",
                value: shards.to_string(),
                reason: "needs SSE_REDIS_URL".to_owned(),
            });
        }
        if let (Some(_), Some(nats_url)) = (&config.redis_url, &config.nats_url) {
            return Err(EnvError {
                variable: "SSE_NATS_URL",
                value: nats_url.clone(),
                reason: "SSE_REDIS_URL is set too: one backplane at a time".to_owned(),
            });
        }
        // Reads the key and checks the JWT settings together, now.
        config.jwt()?;
        Ok(config)
    }

    /// The authenticator of subscribers' (and publishers') tokens, when
    /// any of `SSE_AUTH_SECRET`, `SSE_JWT_PUBLIC_KEY` and `SSE_JWKS_URL` is
    /// set: reads the key file, and applies `SSE_JWT_ALGORITHMS`,
    /// `SSE_JWT_ISSUER` and `SSE_JWT_AUDIENCE`.
    ///
    /// # Errors
    /// An [`EnvError`] naming the variable at fault: an unreadable key file
    /// or one that holds no public key, a malformed JWKS URL, algorithms
    /// without a key of their kind, or claims settings without any key.
    pub fn jwt(&self) -> Result<Option<JwtAuthenticator>, EnvError> {
        let error = |variable: &'static str, value: &str, reason: String| EnvError {
            variable,
            value: value.to_owned(),
            reason,
        };
        if self.auth_secret.is_none() && self.jwt_public_key.is_none() && self.jwks_url.is_none() {
            let stray = [
                ("SSE_JWT_ISSUER", self.jwt_issuer.clone()),
                ("SSE_JWT_AUDIENCE", self.jwt_audience.clone()),
                (
                    "SSE_JWT_ALGORITHMS",
                    self.jwt_algorithms
                        .as_ref()
                        .map(|list| list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
                ),
            ];
            if let Some((variable, Some(value))) = stray.into_iter().find(|(_, value)| value.is_some()) {
                return Err(error(
                    variable,
                    &value,
                    "needs a key: SSE_AUTH_SECRET, SSE_JWT_PUBLIC_KEY or SSE_JWKS_URL".to_owned(),
                ));
            }
            return Ok(None);
        }
        let mut builder = JwtAuthenticator::builder();
        if let Some(secret) = &self.auth_secret {
            builder = builder.hs256(secret);
        }
        let key_path = self
            .jwt_public_key
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read(path)
                .map_err(|e| error("SSE_JWT_PUBLIC_KEY", &key_path, format!("cannot read the file: {e}")))?;
            builder = builder.public_key_pem(pem);
        }
        if let Some(url) = &self.jwks_url {
            builder = builder.jwks(url);
        }
        if let Some(algorithms) = &self.jwt_algorithms {
            builder = builder.algorithms(algorithms.iter().copied());
        }
        if let Some(issuer) = &self.jwt_issuer {
            builder = builder.issuer(issuer);
        }
        if let Some(audience) = &self.jwt_audience {
            builder = builder.audience(audience);
        }
        builder.build().map(Some).map_err(|failure| {
            let (variable, value) = match &failure {
                JwtConfigError::EmptySecret => ("SSE_AUTH_SECRET", String::new()),
                JwtConfigError::InvalidKey { .. } => ("SSE_JWT_PUBLIC_KEY", key_path.clone()),
                JwtConfigError::InvalidJwksUrl(_) | JwtConfigError::JwksSettings(_) | JwtConfigError::HttpClient(_) => {
                    ("SSE_JWKS_URL", self.jwks_url.clone().unwrap_or_default())
                }
                _ => (
                    "SSE_JWT_ALGORITHMS",
                    self.jwt_algorithms
                        .as_ref()
                        .map(|list| list.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                ),
            };
            error(variable, &value, failure.to_string())
        })
    }
}

/// Whether `origin` is an origin as browsers serialize it in the `Origin`
/// header: a lowercase scheme, `://`, a lowercase host name, IPv4 or
/// bracketed IPv6 address, and an optional port; nothing else. CORS
/// compares origins byte for byte, so anything else (a path, a trailing
/// slash, a wildcard, `null`) could never match or would match too much.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => (&authority[..colon], Some(&authority[colon + 1..])),
        _ => (authority, None),
    };
    let host_ok = match host.strip_prefix('[') {
        Some(ipv6) => ipv6
            .strip_suffix(']')
            .is_some_and(|address| address.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        }
    };
    let port_ok = port
        .is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok());
    scheme_ok && host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<EnvConfig, EnvError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        EnvConfig::from_lookup(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn env_defaults_and_values() {
        let config = env(&[]).expect("defaults");
        assert_eq!(config.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.sse.heartbeat_interval(), Some(Duration::from_secs(30)));
        let config = env(&[
            ("SSE_HEARTBEAT_MS", "500"),
            ("SSE_MAX_PER_USER", "2"),
            ("SSE_CORS_ORIGINS", "http://a.test, https://b.test"),
        ])
        .expect("valid");
        assert_eq!(config.sse.heartbeat_interval(), Some(Duration::from_millis(500)));
        assert_eq!(config.sse.max_connections_per_user(), Some(2));
        assert_eq!(config.cors_origins, ["http://a.test", "https://b.test"]);
    }

    #[test]
    fn env_extras_beyond_the_contract() {
        let config = env(&[]).expect("defaults");
        assert_eq!(config.sse.max_connections_per_addr(), None, "unlimited when unset");
        assert_eq!(config.redis_prefix, None);
        assert_eq!((config.nats_url, config.nats_prefix), (None, None));
        assert_eq!(config.sse.idle_timeout(), None, "no idle timeout when unset");
        assert!(config.sse.presence_channels().is_empty(), "no presence when unset");
        assert_eq!(config.sse.presence_timeout(), Duration::from_secs(30));
        assert_eq!(config.sse.history_max_bytes(), 32 << 20);
        assert_eq!(config.sse.client_queue_bytes(), 8 << 20);
        assert_eq!(config.sse.frame_memory_budget(), 256 << 20);
        let config = env(&[
            ("SSE_MAX_PER_ADDR", "3"),
            ("SSE_REDIS_PREFIX", "app-sse"),
            ("SSE_NATS_URL", "nats://127.0.0.1:4222"),
            ("SSE_NATS_PREFIX", "app-nats"),
            ("SSE_IDLE_TIMEOUT_MS", "60000"),
            ("SSE_PRESENCE_CHANNELS", "team/*, lobby"),
            ("SSE_PRESENCE_TIMEOUT_MS", "1500"),
            ("SSE_STATS_INTERVAL_MS", "250"),
            ("SSE_HISTORY_BYTES", "1048576"),
            ("SSE_CLIENT_QUEUE_BYTES", "65536"),
            ("SSE_FRAME_BUDGET_BYTES", "4194304"),
            ("SSE_IDEMPOTENCY_WINDOW_MS", "60000"),
            ("SSE_WRITE_BATCH_MS", "5"),
            ("SSE_PUBLISH_RATE", "20"),
        ])
        .expect("valid");
        assert_eq!(config.sse.max_connections_per_addr(), Some(3));
        assert_eq!(config.redis_prefix.as_deref(), Some("app-sse"));
        assert_eq!(config.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(config.nats_prefix.as_deref(), Some("app-nats"));
        let both = env(&[
            ("SSE_REDIS_URL", "redis://127.0.0.1:6379"),
            ("SSE_NATS_URL", "nats://127.0.0.1:4222"),
        ])
        .expect_err("two backplanes");
        assert_eq!(both.variable, "SSE_NATS_URL");
        let sharded = env(&[("SSE_REDIS_URL", "redis://127.0.0.1:6379"), ("SSE_REDIS_SHARDS", "16")]);
        assert_eq!(sharded.expect("valid").redis_shards, Some(16));
        for shards in ["0", "1025", "many"] {
            let refused = env(&[
                ("SSE_REDIS_URL", "redis://127.0.0.1:6379"),
                ("SSE_REDIS_SHARDS", shards),
            ]);
            assert_eq!(refused.expect_err(shards).variable, "SSE_REDIS_SHARDS");
        }
        let alone = env(&[("SSE_REDIS_SHARDS", "4")]).expect_err("shards without Redis");
        assert_eq!(alone.variable, "SSE_REDIS_SHARDS");
        assert_eq!(config.sse.idle_timeout(), Some(Duration::from_secs(60)));
        assert_eq!(config.sse.presence_channels(), &["team/*", "lobby"]);
        assert_eq!(config.sse.presence_timeout(), Duration::from_millis(1500));
        assert_eq!(config.sse.stats_interval(), Duration::from_millis(250));
        assert_eq!(config.sse.history_max_bytes(), 1 << 20);
        assert_eq!(config.sse.client_queue_bytes(), 64 << 10);
        assert_eq!(config.sse.frame_memory_budget(), 4 << 20);
        assert_eq!(config.sse.idempotency_window(), Duration::from_secs(60));
        assert_eq!(config.sse.write_batch_window(), Duration::from_millis(5));
        assert_eq!(env(&[]).expect("defaults").sse.write_batch_window(), Duration::ZERO);
        assert_eq!(
            config.sse.publish_rate(),
            Some(RateLimit::per_second(20).with_burst(20))
        );
        assert_eq!(
            env(&[]).expect("defaults").sse.publish_rate(),
            None,
            "unlimited when unset"
        );
        assert_eq!(env(&[]).expect("defaults").drain, Duration::ZERO);
        assert!(env(&[]).expect("defaults").metrics);
        assert!(!env(&[("SSE_METRICS", "off")]).expect("valid").metrics);
        assert_eq!(
            env(&[("SSE_DRAIN_MS", "2500")]).expect("valid").drain,
            Duration::from_millis(2500)
        );
        for (name, value) in [
            ("SSE_MAX_PER_ADDR", "0"),
            ("SSE_MAX_PER_ADDR", "many"),
            ("SSE_REDIS_PREFIX", " "),
            ("SSE_NATS_PREFIX", " "),
            ("SSE_IDLE_TIMEOUT_MS", "0"),
            ("SSE_IDLE_TIMEOUT_MS", "9"),
            ("SSE_IDLE_TIMEOUT_MS", "soon"),
            ("SSE_PRESENCE_CHANNELS", ""),
            ("SSE_PRESENCE_CHANNELS", "team/*,,lobby"),
            ("SSE_PRESENCE_CHANNELS", "a\u{7}b"),
            ("SSE_PRESENCE_TIMEOUT_MS", "99"),
            ("SSE_PRESENCE_TIMEOUT_MS", "later"),
            ("SSE_STATS_INTERVAL_MS", "50"),
            ("SSE_DRAIN_MS", "-5"),
            ("SSE_METRICS", "yes"),
        ] {
            let error = env(&[(name, value)]).expect_err(value);
            assert_eq!(error.variable, name);
        }
    }

    #[test]
    fn server_limits() {
        let config = env(&[]).expect("defaults");
        assert_eq!(config.server, ServerLimits::default());
        assert_eq!(config.server.max_sockets, 11_024, "10,000 connections and headroom");
        let config = env(&[("SSE_MAX_CONNECTIONS", "100")]).expect("valid");
        assert_eq!(config.server.max_sockets, 1_124, "derived from SSE_MAX_CONNECTIONS");
        let config = env(&[
            ("SSE_HEADER_TIMEOUT_MS", "300"),
            ("SSE_BODY_TIMEOUT_MS", "400"),
            ("SSE_KEEP_ALIVE_TIMEOUT_MS", "500"),
            ("SSE_WRITE_TIMEOUT_MS", "600"),
            ("SSE_MAX_SOCKETS", "50"),
        ])
        .expect("valid");
        assert_eq!(config.server.header_timeout, Duration::from_millis(300));
        assert_eq!(config.server.body_timeout, Duration::from_millis(400));
        assert_eq!(config.server.keep_alive_timeout, Duration::from_millis(500));
        assert_eq!(config.server.write_timeout, Duration::from_millis(600));
        assert_eq!(config.server.max_sockets, 50);
        for (name, value) in [
            ("SSE_HEADER_TIMEOUT_MS", "9"),
            ("SSE_BODY_TIMEOUT_MS", "0"),
            ("SSE_KEEP_ALIVE_TIMEOUT_MS", "soon"),
            ("SSE_WRITE_TIMEOUT_MS", "-1"),
            ("SSE_MAX_SOCKETS", "0"),
            ("SSE_MAX_SOCKETS", "lots"),
        ] {
            let error = env(&[(name, value)]).expect_err(value);
            assert_eq!(error.variable, name);
        }
    }

    #[test]
    fn cors_origins_are_exact_origins() {
        let origins = "https://app.example.com,http://localhost:3000,http://127.0.0.1:8080,http://[::1]:3000";
        let config = env(&[("SSE_CORS_ORIGINS", origins)]).expect("valid origins");
        assert_eq!(config.cors_origins.len(), 4);
        for bad in [
            "*",
            "null",
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://*.example.com",
            "https://Example.com",
            "HTTPS://example.com",
            "https://user@example.com",
            "https://example.com:port",
            "https://example.com:99999",
            "https://example.com?x",
            "https://",
            "http://::1",
            "https://a.test,",
        ] {
            let error = env(&[("SSE_CORS_ORIGINS", bad)]).expect_err(bad);
            assert_eq!(error.variable, "SSE_CORS_ORIGINS", "{bad}");
        }
    }

    fn fixture(name: &str) -> String {
        format!("{}/../sse-core/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn jwt_settings() {
        assert!(env(&[]).expect("defaults").jwt().expect("no JWT").is_none());
        let rsa = fixture("rsa-public.pem");
        let config = env(&[
            ("SSE_JWT_PUBLIC_KEY", &rsa),
            ("SSE_JWT_ISSUER", "https://login.example.com/"),
            ("SSE_JWT_AUDIENCE", "sse"),
        ])
        .expect("valid");
        let jwt = config.jwt().expect("valid").expect("configured");
        assert_eq!(jwt.algorithms(), [JwtAlgorithm::Rs256], "inferred from the key");
        let config = env(&[("SSE_JWT_PUBLIC_KEY", &fixture("ed-public.pem"))]).expect("valid");
        assert_eq!(
            config.jwt().expect("valid").expect("configured").algorithms(),
            [JwtAlgorithm::EdDsa]
        );
        let config = env(&[
            ("SSE_AUTH_SECRET", "secret"),
            ("SSE_JWT_PUBLIC_KEY", &rsa),
            ("SSE_JWT_ALGORITHMS", "HS256, RS256,PS256"),
        ])
        .expect("valid");
        assert_eq!(
            config.jwt_algorithms.as_deref(),
            Some(&[JwtAlgorithm::Hs256, JwtAlgorithm::Rs256, JwtAlgorithm::Ps256][..])
        );
        let config = env(&[("SSE_JWKS_URL", "https://login.example.com/.well-known/jwks.json")]).expect("valid");
        assert_eq!(
            config.jwt().expect("valid").expect("configured").algorithms(),
            [JwtAlgorithm::Rs256]
        );
        let text = fixture("jwks.json");
        let missing = fixture("no-such-key.pem");
        for (vars, variable) in [
            (vec![("SSE_JWT_PUBLIC_KEY", missing.as_str())], "SSE_JWT_PUBLIC_KEY"),
            (vec![("SSE_JWT_PUBLIC_KEY", text.as_str())], "SSE_JWT_PUBLIC_KEY"),
            (vec![("SSE_JWT_PUBLIC_KEY", "")], "SSE_JWT_PUBLIC_KEY"),
            (vec![("SSE_JWKS_URL", "login.example.com/jwks")], "SSE_JWKS_URL"),
            (vec![("SSE_JWKS_URL", "ftp://login.example.com/jwks")], "SSE_JWKS_URL"),
            (
                vec![("SSE_AUTH_SECRET", "s"), ("SSE_JWT_ALGORITHMS", "none")],
                "SSE_JWT_ALGORITHMS",
            ),
            (
                vec![("SSE_AUTH_SECRET", "s"), ("SSE_JWT_ALGORITHMS", "HS256,,")],
                "SSE_JWT_ALGORITHMS",
            ),
            (
                vec![("SSE_AUTH_SECRET", "s"), ("SSE_JWT_ALGORITHMS", "rs256")],
                "SSE_JWT_ALGORITHMS",
            ),
            (
                vec![("SSE_AUTH_SECRET", "s"), ("SSE_JWT_ALGORITHMS", "RS256")],
                "SSE_JWT_ALGORITHMS",
            ),
            (
                vec![("SSE_JWT_PUBLIC_KEY", rsa.as_str()), ("SSE_JWT_ALGORITHMS", "ES256")],
                "SSE_JWT_ALGORITHMS",
            ),
            (vec![("SSE_JWT_ISSUER", "https://login.example.com/")], "SSE_JWT_ISSUER"),
            (vec![("SSE_JWT_AUDIENCE", "sse")], "SSE_JWT_AUDIENCE"),
            (vec![("SSE_JWT_ALGORITHMS", "RS256")], "SSE_JWT_ALGORITHMS"),
            (
                vec![("SSE_AUTH_SECRET", "s"), ("SSE_JWT_ISSUER", " ")],
                "SSE_JWT_ISSUER",
            ),
        ] {
            let error = env(&vars).expect_err(variable);
            assert_eq!(error.variable, variable, "{vars:?}: {error}");
            assert!(error.to_string().starts_with(variable));
        }
    }

    #[test]
    fn env_errors_name_the_variable() {
        for (name, value) in [
            ("SSE_ADDR", "nowhere"),
            ("SSE_HEARTBEAT_MS", "fast"),
            ("SSE_HEARTBEAT_MS", "0"),
            ("SSE_MAX_PER_USER", "-1"),
            ("SSE_CLIENT_QUEUE", "0"),
            ("SSE_CLIENT_QUEUE_BYTES", "0"),
            ("SSE_HISTORY_BYTES", "lots"),
            ("SSE_FRAME_BUDGET_BYTES", "0"),
            ("SSE_IDEMPOTENCY_WINDOW_MS", "999"),
            ("SSE_WRITE_BATCH_MS", "1001"),
            ("SSE_PUBLISH_RATE", "0"),
            ("SSE_PUBLISH_RATE", "fast"),
            ("SSE_PUBLISH_RATE", "1000001"),
            ("SSE_CORS_ORIGINS", "*"),
            ("SSE_AUTH_SECRET", ""),
        ] {
            let error = env(&[(name, value)]).expect_err(name);
            assert_eq!(error.variable, name);
            assert!(error.to_string().starts_with(name));
        }
    }
}
