//! Reading the configuration: [`EnvConfig::from_env`] and
//! [`EnvConfig::from_lookup`] parse and check every variable, and
//! [`EnvConfig::jwt`] turns the JWT settings into an authenticator; a value
//! that cannot be used is an [`EnvError`] naming its variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sse_core::http::jwt::{JwtAlgorithm, JwtAuthenticator, JwtConfigError};
use sse_core::server::ServerLimits;
use sse_core::{RateLimit, SseConfig};

use super::{EnvConfig, EnvError};

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
