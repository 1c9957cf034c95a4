//! [axum] adapter for [`sse_core`]: Server-Sent Events from an axum server.
//!
//! Everything the HTTP contract says (identity, channels, replay, publish
//! validation, error bodies) is decided by [`sse_core::http::SseEndpoints`];
//! this crate only routes axum requests to it and streams the answer.
//!
//! * [`router`]: the ready-made endpoints as a [`Router`], to
//!   [`nest`](Router::nest) under a prefix such as `/api/sse`. `GET` on the
//!   prefix opens a stream; `POST publish`, `GET stats`, `GET connections`,
//!   `POST subscribe`, `POST unsubscribe` and `DELETE connections/{clientId}`
//!   sit below it. Request bodies are limited to
//!   [`MAX_BODY_BYTES`] with
//!   [`DefaultBodyLimit`]; a larger one is answered `413`.
//! * [`routes`]: one [`RouteGroup`] of them (the stream, publish, the
//!   administration routes, or the client script) as a [`Router`] of its
//!   own, to [`merge`](Router::merge) with the others under the prefix,
//!   each behind middleware of your own.
//! * [`SseConnect`]: an extractor for a stream route of your own, reading
//!   the request exactly as the built-in route does
//!   ([`SseEndpoints::connect_options`]): the identity, the checked
//!   channels, the `Last-Event-ID` header (else `lastEventId`) and the
//!   client's address; a refusal is answered as the built-in route answers.
//! * [`SseResponse`]: an [`IntoResponse`] for a [`Connection`](sse_core::Connection), any
//!   stream of frames ([`SseResponse::from_stream`]) or any
//!   [`SseReply`](sse_core::http::SseReply), for handlers of your own.
//! * [`admin_router`]: the live administration page and its feed
//!   ([`SseAdmin`]) as a [`Router`], to [`nest`](Router::nest) under a
//!   prefix such as `/sse-admin`: `GET` on the prefix is the page, `GET
//!   stream` below it the feed.
//! * [`serve`]: serves a [`Router`] on a Tokio listener with the timeouts
//!   and the open socket cap of [`ServerLimits`], which a server facing the
//!   internet needs (axum's own `serve` has none), passing each client's
//!   address on.
//!
//! Served with [`serve`], or with
//! [`into_make_service_with_connect_info::<SocketAddr>()`](Router::into_make_service_with_connect_info),
//! the router and [`SseConnect`] pass each client's address on as a
//! [`RemoteAddr`], so that
//! [`SseConfig::max_connections_per_addr`](sse_core::SseConfig::max_connections_per_addr)
//! applies; served without it, the per-address limit counts nobody.
//!
//! ```no_run
//! use sse_axum::sse_core::SseManager;
//! use sse_axum::sse_core::http::{DevIdentity, SseEndpoints};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let manager = SseManager::builder().build()?;
//!     let endpoints = SseEndpoints::new(manager, DevIdentity::enable());
//!     let app = axum::Router::new().nest("/api/sse", sse_axum::router(endpoints));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     sse_axum::serve(listener, app, sse_axum::ServerLimits::default(), std::future::pending()).await?;
//!     Ok(())
//! }
//! ```
//!
//! A handler of your own takes the request's options with [`SseConnect`]
//! (the [`SseEndpoints`] come from the router's [`State`], through
//! [`FromRef`]), adds to them, connects, and returns the connection as an
//! [`SseResponse`]:
//!
//! ```
//! use axum::extract::{Path, State};
//! use axum::routing::get;
//! use sse_axum::{SseConnect, SseResponse};
//! use sse_axum::sse_core::http::SseEndpoints;
//!
//! async fn orders(
//!     State(endpoints): State<SseEndpoints>,
//!     Path(order): Path<String>,
//!     SseConnect(options): SseConnect,
//! ) -> SseResponse {
//!     let options = options.channel(format!("orders/{order}"));
//!     // A refused connection (limits, shutdown) becomes its HTTP answer.
//!     endpoints.manager().connect(options).await.into()
//! }
//!
//! # fn app(endpoints: SseEndpoints) -> axum::Router {
//! axum::Router::new().route("/orders/{order}/events", get(orders)).with_state(endpoints)
//! # }
//! ```
//!
//! The administration routes behind a check of your own, the stream and the
//! client script open:
//!
//! ```
//! use axum::extract::Request;
//! use axum::http::StatusCode;
//! use axum::middleware::{self, Next};
//! use axum::response::Response;
//! use sse_axum::sse_core::http::{RouteGroup, SseEndpoints};
//!
//! async fn admins_only(request: Request, next: Next) -> Result<Response, StatusCode> {
//!     match request.headers().get("x-role") {
//!         Some(role) if role == "admin" => Ok(next.run(request).await),
//!         _ => Err(StatusCode::FORBIDDEN),
//!     }
//! }
//!
//! # fn app(endpoints: SseEndpoints) -> axum::Router {
//! let sse = axum::Router::new()
//!     .merge(sse_axum::routes(endpoints.clone(), RouteGroup::Stream))
//!     .merge(sse_axum::routes(endpoints.clone(), RouteGroup::ClientScript))
//!     .merge(sse_axum::routes(endpoints, RouteGroup::Admin).layer(middleware::from_fn(admins_only)));
//! axum::Router::new().nest("/api/sse", sse)
//! # }
//! ```
//!
//! The administration page beside the endpoints, guarded by the same
//! authorizer (the page itself holds no data; its feed asks for the token):
//!
//! ```
//! use sse_axum::sse_core::http::SseEndpoints;
//! use sse_axum::sse_core::http::admin::SseAdmin;
//!
//! # fn app(endpoints: SseEndpoints) -> axum::Router {
//! let admin = SseAdmin::new(&endpoints);
//! axum::Router::new()
//!     .nest("/api/sse", sse_axum::router(endpoints))
//!     .nest("/sse-admin", sse_axum::admin_router(admin))
//! # }
//! ```
//!
//! [`State`]: axum::extract::State
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt as _;
use sse_core::ConnectOptions;
use sse_core::http::admin::SseAdmin;
use sse_core::http::{
    MAX_BODY_BYTES, RemoteAddr, RouteGroup, RoutePath, SseEndpoints, payload_too_large, unreadable_body,
};
pub use sse_core::server::ServerLimits;
use sse_core::server::{Incoming, TimedBody};

pub use sse_core;

sse_core::sse_response_type! {
    /// An SSE answer as an axum response: a live connection (or stream of
    /// frames) streamed as `200` with
    /// [`sse_headers`](sse_core::http::sse_headers) and its frames written
    /// as they come (never re-encoded, no keep-alive of axum's, never
    /// compressed), or a complete response unchanged.
    ///
    /// The connection is dropped, and so unregistered, when the client goes
    /// away.
    pub struct SseResponse;
}

impl IntoResponse for SseResponse {
    fn into_response(self) -> Response {
        self.0
            .into_http_response(|frames| Body::from_stream(frames.map(Ok::<_, Infallible>)))
    }
}

/// The [`ConnectOptions`] of a request to open a stream, read by
/// [`SseEndpoints::connect_options`] with the [`SseEndpoints`] of the
/// state (any state they can be taken from with [`FromRef`]), the client's
/// address included. A refusal (`401`, or `403` naming a channel) is
/// answered as the built-in stream route answers it.
#[derive(Debug)]
pub struct SseConnect(pub ConnectOptions);

impl<S> FromRequestParts<S> for SseConnect
where
    SseEndpoints: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = SseResponse;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, SseResponse> {
        with_remote_addr(parts);
        let endpoints = SseEndpoints::from_ref(state);
        match endpoints.connect_options(parts).await {
            Ok(options) => Ok(SseConnect(options)),
            Err(refused) => Err(refused.into()),
        }
    }
}

/// The ready-made endpoints as a [`Router`], to [`nest`](Router::nest) under
/// a prefix. Every request below the prefix goes to
/// [`SseEndpoints::handle`], so unknown paths and wrong methods get the
/// same JSON errors as with the other adapters.
///
/// The router carries its own state, so it nests into a router of any state
/// type `S`.
pub fn router<S: Clone + Send + Sync + 'static>(endpoints: SseEndpoints) -> Router<S> {
    Router::new()
        .route("/", any(handle))
        .route("/{*path}", any(handle))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Mounted { endpoints, group: None })
}

/// The endpoints of `group` alone as a [`Router`], at their paths below the
/// prefix ([`RouteGroup::paths`]), answered by
/// [`SseEndpoints::handle_group`]: [`merge`](Router::merge) the groups an
/// application serves, each with [`layer`](Router::layer)s of its own, and
/// [`nest`](Router::nest) them under the prefix. A wrong method on one of
/// the paths is answered as by [`router`]; other paths are left to the
/// application's other routes.
pub fn routes<S: Clone + Send + Sync + 'static>(endpoints: SseEndpoints, group: RouteGroup) -> Router<S> {
    let mut router = Router::new();
    for path in group.paths() {
        let pattern = match path {
            RoutePath::Exact(path) => format!("/{path}"),
            RoutePath::Below(path) => format!("/{path}/{{*rest}}"),
            _ => continue,
        };
        router = router.route(&pattern, any(handle));
    }
    router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).with_state(Mounted {
        endpoints,
        group: Some(group),
    })
}

/// The administration page and its feed ([`SseAdmin`]) as a [`Router`], to
/// [`nest`](Router::nest) under a prefix: `GET` (or `HEAD`) on the prefix
/// is the page, `GET stream` below it the feed, guarded by the publish
/// authorizer of the endpoints `admin` was made from. Other paths below the
/// prefix get the JSON `404`, other methods the JSON `405`.
///
/// The router carries its own state, so it nests into a router of any state
/// type `S`.
pub fn admin_router<S: Clone + Send + Sync + 'static>(admin: SseAdmin) -> Router<S> {
    Router::new()
        .route("/", any(handle_admin))
        .route("/{*path}", any(handle_admin))
        .with_state(admin)
}

async fn handle_admin(State(admin): State<SseAdmin>, request: Parts) -> Response {
    // Nested, the router sees the path below its prefix.
    SseResponse(admin.handle(&request, request.uri.path()).await).into_response()
}

/// What a mounted router answers: every group, or one.
#[derive(Clone)]
struct Mounted {
    endpoints: SseEndpoints,
    group: Option<RouteGroup>,
}

/// Passes the client's address, if the server knows it, on as a
/// [`RemoteAddr`].
fn with_remote_addr(request: &mut Parts) {
    if let Some(ConnectInfo(addr)) = request.extensions.get::<ConnectInfo<SocketAddr>>().copied() {
        request.extensions.insert(RemoteAddr(addr));
    }
}

async fn handle(State(mounted): State<Mounted>, mut request: Parts, body: Result<Bytes, BytesRejection>) -> Response {
    with_remote_addr(&mut request);
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return SseResponse::new(payload_too_large()).into_response();
        }
        Err(_) => return SseResponse::new(unreadable_body()).into_response(),
    };
    // Nested, the router sees the path below its prefix.
    let path = request.uri.path();
    let reply = match mounted.group {
        Some(group) => mounted.endpoints.handle_group(group, &request, path, body).await,
        None => mounted.endpoints.handle(&request, path, body).await,
    };
    SseResponse(reply).into_response()
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes
/// (pass [`std::future::pending()`] to serve until the process ends), then
/// stops accepting, lets requests in progress finish and returns once every
/// connection has closed: axum's `serve` with the request head, body,
/// idle keep-alive and write timeouts and the open socket cap of
/// [`ServerLimits`] (see [`sse_core::server`]).
///
/// Each request carries the client's address as
/// [`ConnectInfo<SocketAddr>`](ConnectInfo) (and as a [`RemoteAddr`]), so
/// that the per-address limit applies. A request body that does not arrive
/// within [`ServerLimits::body_timeout`] cannot be read: the built-in routes
/// answer `400`.
///
/// Stop the SSE connections first (with
/// [`SseManager::shutdown`](sse_core::SseManager::shutdown)) in the future
/// you pass as `shutdown`: streams are requests in progress, which a
/// graceful shutdown waits for.
///
/// # Errors
/// [`std::io::ErrorKind::InvalidInput`] when `limits` do not
/// [`validate`](ServerLimits::validate).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let body_timeout = limits.body_timeout;
    let handler = move |mut request: http::Request<Incoming>| {
        if let Some(RemoteAddr(addr)) = request.extensions().get::<RemoteAddr>().copied() {
            request.extensions_mut().insert(ConnectInfo(addr));
        }
        let request = request.map(|body| Body::new(TimedBody::new(body, body_timeout)));
        let mut app = app.clone();
        async move {
            match tower_service::Service::call(&mut app, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    sse_core::server::serve(listener, limits, handler, shutdown).await
}
