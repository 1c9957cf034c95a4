//! What the demo servers share: configuration from the environment, the
//! manager and endpoints built from it (JWT or development identity, the
//! Redis or NATS backplane when configured), the CORS settings each framework's own
//! middleware is given, the demo page, the administration page, and a `main` that binds, announces
//! itself and shuts down gracefully on SIGINT or SIGTERM.
//!
//! Each framework's demo is a `serve` function in its own module, run by the
//! binaries (`axum-demo`, `warp-demo`, `poem-demo`) and, in-process, by the
//! conformance suite. The team board shared by the `axum-teams`,
//! `warp-teams` and `poem-teams` examples is the [`teams`] module.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use sse_core::http::admin::SseAdmin;
use sse_core::http::jwt::JwtPublishAuthorizer;
use sse_core::http::{BearerToken, DevIdentity, PublishAuthorizer, SseEndpoints};
use sse_core::{ConfigError, Event, SseManager};
use sse_nats::{NatsBackplane, NatsBackplaneError};
use sse_redis::{RedisBackplane, RedisBackplaneError};
use tokio::net::TcpListener;

pub mod axum_demo;
pub mod env;
pub mod metrics;
pub mod poem_demo;
pub mod teams;
pub mod warp_demo;

pub use env::{EnvConfig, EnvError};
pub use metrics::MetricsRoute;

/// Where every demo mounts the administration page; its feed is at
/// `/sse-admin/stream`.
pub const ADMIN_PATH: &str = "/sse-admin";

/// The demo page served at `/sse-demo` by every demo.
pub const DEMO_PAGE: &str = include_str!("../static/sse-demo.html");

/// Answers every request outside the SSE endpoints the same way in every
/// demo: the demo page for `GET` (or `HEAD`) `/sse-demo`, as
/// `text/html; charset=utf-8`; a JSON `405` for another method there (with
/// `Allow: GET, HEAD`); a JSON `404` anywhere else.
pub fn page(method: &Method, path: &str) -> Response<Bytes> {
    match (path, method) {
        ("/sse-demo", &Method::GET | &Method::HEAD) => {
            let mut response = Response::new(Bytes::from_static(DEMO_PAGE.as_bytes()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        ("/sse-demo", _) => sse_core::http::method_not_allowed(&[Method::GET, Method::HEAD]),
        _ => not_found(),
    }
}

/// The probes every demo serves: `GET /healthz` (liveness) and
/// `GET /readyz` (readiness, [`sse_core::http::readyz`]); `None` for any
/// other request.
pub async fn probe(manager: &SseManager, method: &Method, path: &str) -> Option<Response<Bytes>> {
    match (path, method) {
        ("/healthz", &Method::GET | &Method::HEAD) => Some(sse_core::http::healthz()),
        ("/readyz", &Method::GET | &Method::HEAD) => Some(sse_core::http::readyz(manager).await),
        ("/healthz" | "/readyz", _) => Some(sse_core::http::method_not_allowed(&[Method::GET, Method::HEAD])),
        _ => None,
    }
}

/// The JSON `404` of every demo for a path it does not serve.
pub fn not_found() -> Response<Bytes> {
    sse_core::http::error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The methods a listed origin (`SSE_CORS_ORIGINS`) may use cross-origin.
pub const CORS_METHODS: [Method; 4] = [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS];

/// The request headers a listed origin may send cross-origin: a bearer
/// token, a JSON body, `Last-Event-ID` for clients that resume by hand, and
/// `Idempotency-Key` for publishers that retry.
pub const CORS_HEADERS: [&str; 4] = ["authorization", "content-type", "last-event-id", "idempotency-key"];

/// Whether a request with this `Origin` header comes from an origin listed in
/// `SSE_CORS_ORIGINS` (compared byte for byte, as CORS does).
///
/// warp's and poem's CORS middleware refuse every request from an unlisted
/// origin with `403`, including the same-origin `POST`s of the demo page
/// (browsers send `Origin` on every `POST`); their demos hand only requests
/// from listed origins to it, so that a request from any other origin is
/// answered as without `SSE_CORS_ORIGINS`: with no CORS headers, as
/// tower-http's `CorsLayer` does in the axum demo.
pub fn is_listed_origin(origins: &[String], origin: Option<&http::HeaderValue>) -> bool {
    origin.is_some_and(|origin| origins.iter().any(|listed| listed.as_bytes() == origin.as_bytes()))
}

/// How long a demo waits for open connections to finish after a shutdown
/// signal before it exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// An environment variable is malformed.
    #[error("configuration error: {0}")]
    Env(#[from] EnvError),
    /// The engine refused the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `SSE_REDIS_URL` is set, but the backplane could not be built: the
    /// URL is malformed, or Redis did not answer (within 2 seconds).
    #[error("SSE_REDIS_URL: {0}")]
    Redis(#[from] RedisBackplaneError),
    /// `SSE_NATS_URL` is set, but the backplane could not be built: the
    /// URL is malformed, `SSE_NATS_PREFIX` is unusable, or NATS with
    /// JetStream did not answer (within 2 seconds).
    #[error("SSE_NATS_URL: {0}")]
    Nats(#[from] NatsBackplaneError),
    /// Binding or serving failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// A demo's state: its configuration and the endpoints over its manager.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The configuration it was built from.
    pub config: EnvConfig,
    /// The endpoints (and, through them, the manager).
    pub endpoints: SseEndpoints,
    /// `GET /metrics`, guarded by the endpoints' publish authorizer.
    pub metrics: MetricsRoute,
    /// The administration page (`GET /sse-admin`) and its feed
    /// (`GET /sse-admin/stream`), guarded like `/metrics`.
    pub admin: SseAdmin,
}

impl Demo {
    /// Builds the manager and endpoints for `config`. Must run inside a Tokio
    /// runtime.
    ///
    /// Subscribers are authenticated with a JWT ([`JwtAuthenticator`](sse_core::http::jwt::JwtAuthenticator),
    /// [`EnvConfig::jwt`]) when `SSE_AUTH_SECRET` (HS256),
    /// `SSE_JWT_PUBLIC_KEY` or `SSE_JWKS_URL` is set, and take their
    /// identity from the query ([`DevIdentity`], which logs a warning) when
    /// none is. With `SSE_PUBLISH_TOKEN`, publishing and administration
    /// need that token ([`BearerToken`]) or, with a JWT configured, also a
    /// JWT whose `roles` hold `sse:publish` (publish) or `sse:admin`
    /// (everything) ([`JwtPublishAuthorizer`]); without it they are open,
    /// and a warning says so when subscribers are authenticated. With
    /// `SSE_REDIS_URL`, the manager shares events and
    /// replay history with every instance on the same Redis stream
    /// (`SSE_REDIS_PREFIX`, or `sse`), keeping `SSE_HISTORY` entries there
    /// too, and with `SSE_REDIS_SHARDS` channel events spread over that
    /// many streams read by interest; Redis must answer now. With `SSE_NATS_URL` instead, the same
    /// through a NATS JetStream stream (`SSE_NATS_PREFIX`, or `sse`); NATS
    /// must answer now.
    ///
    /// # Errors
    /// [`DemoError::Redis`] or [`DemoError::Nats`] if the backplane cannot
    /// be built (the server did not answer within its timeout); [`DemoError::Config`] if the engine
    /// refuses the settings; [`DemoError::Env`] if the JWT settings are
    /// unusable (the key file is unreadable, ...).
    pub async fn new(config: EnvConfig) -> Result<Self, DemoError> {
        // Before the manager, which registers its metrics with the recorder
        // installed when it is built.
        if config.metrics {
            metrics::recorder();
        }
        let mut manager = SseManager::builder().config(config.sse.clone());
        if let Some(url) = &config.redis_url {
            // The stream keeps at least one entry, even with SSE_HISTORY=0.
            let mut backplane = RedisBackplane::connect(url.as_str()).history(config.sse.history_size().max(1));
            if let Some(prefix) = &config.redis_prefix {
                backplane = backplane.prefix(prefix.as_str());
            }
            if let Some(shards) = config.redis_shards {
                backplane = backplane.shards(shards);
            }
            let backplane = backplane.build().await?;
            tracing::info!(
                stream = backplane.stream_key(),
                shards = config.redis_shards.unwrap_or(0),
                "sharing events through Redis"
            );
            manager = manager.backplane(backplane);
        } else if let Some(url) = &config.nats_url {
            let mut backplane = NatsBackplane::connect(url.as_str()).history(config.sse.history_size().max(1));
            if let Some(prefix) = &config.nats_prefix {
                backplane = backplane.prefix(prefix.as_str());
            }
            let backplane = backplane.build().await?;
            tracing::info!(
                stream = backplane.stream_name(),
                "sharing events through NATS JetStream"
            );
            manager = manager.backplane(backplane);
        }
        let jwt = config.jwt()?;
        let manager = manager.build()?;
        let mut endpoints = match &jwt {
            Some(jwt) => SseEndpoints::new(manager, jwt.clone()),
            None => SseEndpoints::new(manager, DevIdentity::enable()),
        };
        // `/metrics` is guarded by the same authorizer as administration.
        let mut guard: Option<Arc<dyn PublishAuthorizer>> = None;
        endpoints = match (&config.publish_token, jwt) {
            (Some(token), Some(jwt)) => {
                let authorizer = JwtPublishAuthorizer::new(jwt).token(token.clone());
                guard = Some(Arc::new(authorizer.clone()));
                endpoints.publish_authorizer(authorizer)
            }
            (Some(token), None) => {
                let authorizer = BearerToken::new(token.clone());
                guard = Some(Arc::new(authorizer.clone()));
                endpoints.publish_authorizer(authorizer)
            }
            (None, Some(_)) => {
                tracing::warn!(
                    "subscribers are authenticated, but publishing and administration are open to anyone: \
                     set SSE_PUBLISH_TOKEN to require it (or a JWT with the role sse:publish or sse:admin)"
                );
                endpoints
            }
            (None, None) => endpoints,
        };
        let metrics = if config.metrics {
            MetricsRoute::new(guard)
        } else {
            MetricsRoute::off()
        };
        Ok(Demo {
            config,
            admin: SseAdmin::new(&endpoints),
            endpoints,
            metrics,
        })
    }

    /// The manager behind the endpoints.
    pub fn manager(&self) -> &SseManager {
        self.endpoints.manager()
    }
}

/// The address a scenario example listens on: `SSE_ADDR`, or
/// `127.0.0.1:3000`.
///
/// # Errors
/// [`DemoError::Env`] when `SSE_ADDR` is not a socket address.
pub fn scenario_addr() -> Result<SocketAddr, DemoError> {
    Ok(EnvConfig::from_lookup(|name| (name == "SSE_ADDR").then(|| std::env::var(name).ok()).flatten())?.addr)
}

/// A boxed future that completes when the server should stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Completes on SIGINT or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal sent right after the `listening on` line is
/// never missed. Must be called inside a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn received(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let interrupt = received(signal(SignalKind::interrupt()).ok());
        let terminate = received(signal(SignalKind::terminate()).ok());
        async move {
            tokio::select! {
                () = interrupt => {}
                () = terminate => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        let interrupt = tokio::signal::ctrl_c();
        async move {
            let _ = interrupt.await;
        }
    }
}

/// The shutdown future handed to a framework: completes when `signal` does,
/// after draining for `drain` (not ready, still streaming: a load balancer
/// stops sending clients) and then closing every SSE connection (with a
/// final `system` event) so that the framework's graceful shutdown does not
/// wait on endless streams.
pub fn graceful(manager: SseManager, drain: Duration, signal: impl Future<Output = ()> + Send + 'static) -> Shutdown {
    Box::pin(async move {
        signal.await;
        manager.drain();
        if !drain.is_zero() {
            tracing::info!(?drain, "shutting down: draining, not ready");
            tokio::time::sleep(drain).await;
        }
        tracing::info!("shutting down: closing every SSE connection");
        let goodbye = Event::system("shutdown", &serde_json::json!({ "reason": "server shutting down" })).ok();
        manager.shutdown(goodbye).await;
    })
}

/// A framework's demo server: serves `demo` on `listener` until `shutdown`
/// completes, then returns once its connections are closed.
pub type ServeFn = fn(Demo, TcpListener, Shutdown) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// The `main` of every demo binary: reads the environment, binds, prints
/// `listening on http://ADDR`, serves until SIGINT or SIGTERM, and exits with
/// status 0 within [`SHUTDOWN_GRACE`] of the signal however many connections
/// are open. A malformed variable is a startup error naming it (status 2),
/// as is a Redis at `SSE_REDIS_URL` or a NATS at `SSE_NATS_URL` that does
/// not answer.
pub fn run(serve: ServeFn) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let config = EnvConfig::from_env()?;
        let addr: SocketAddr = config.addr;
        let drain = config.drain;
        let demo = Demo::new(config).await?;
        let listener = TcpListener::bind(addr).await?;
        let stop = shutdown_signal();
        println!("listening on http://{}", listener.local_addr()?);
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            stop.await;
            let _ = signalled_tx.send(());
        };
        let shutdown = graceful(demo.manager().clone(), drain, signal);
        let server = serve(demo, listener, shutdown);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result?,
            Ok(()) = signalled_rx => {
                // Connections are closing; give the server a bounded time.
                if let Ok(result) = tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    result?;
                } else {
                    tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
                }
            }
        }
        Ok::<(), DemoError>(())
    });
    // Tasks still writing to a client that does not read are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_page_names_its_methods_in_a_405() {
        for method in [Method::GET, Method::HEAD] {
            assert_eq!(page(&method, "/sse-demo").status(), StatusCode::OK, "{method}");
        }
        let refused = page(&Method::POST, "/sse-demo");
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()[http::header::ALLOW], "GET, HEAD");
        assert_eq!(refused.body(), r#"{"error":"method not allowed"}"#);
        assert_eq!(page(&Method::GET, "/elsewhere").status(), StatusCode::NOT_FOUND);
    }
}
