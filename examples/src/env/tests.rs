//! The tests of reading the configuration: defaults, every variable's
//! values and the errors that name the variable at fault.

use sse_core::RateLimit;

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
