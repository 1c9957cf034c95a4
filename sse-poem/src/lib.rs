//! [poem] adapter for [`sse_core`]: Server-Sent Events from a poem server.
//!
//! Everything the HTTP contract says (identity, channels, replay, publish
//! validation, error bodies) is decided by [`sse_core::http::SseEndpoints`];
//! this crate only hands poem requests to it and streams the answer.
//!
//! * [`SseEndpoint`]: the ready-made endpoints as one [`Endpoint`], to
//!   [`nest`](poem::Route::nest) under a prefix such as `/api/sse`. `GET` on
//!   the prefix opens a stream; `POST publish`, `GET stats`,
//!   `GET connections`, `POST subscribe`, `POST unsubscribe` and
//!   `DELETE connections/{clientId}` sit below it. Request bodies are read
//!   with [`Body::into_bytes_limit`] and
//!   [`MAX_BODY_BYTES`]; a larger one is
//!   answered `413`.
//! * [`SseEndpoint::only`] and [`mount`]: one [`RouteGroup`] of them (the
//!   stream, publish, the administration routes, or the client script) as
//!   an endpoint of its own, added to a [`Route`] at the group's paths,
//!   each behind middleware of your own.
//! * [`SseConnect`]: an extractor for a stream route of your own, reading
//!   the request exactly as the built-in route does
//!   ([`SseEndpoints::connect_options`], the [`SseEndpoints`] shared with
//!   [`Data`](poem::web::Data)): the identity, the checked channels, the
//!   `Last-Event-ID` header (else `lastEventId`) and the client's address;
//!   a refusal is answered as the built-in route answers it.
//! * [`request_parts`]: the request's [`Parts`], which [`SseEndpoints`] and
//!   your own [`Authenticator`](sse_core::http::Authenticator) read, with the
//!   client's address as a [`RemoteAddr`] extension (for
//!   [`SseConfig::max_connections_per_addr`](sse_core::SseConfig::max_connections_per_addr)).
//! * [`SseResponse`]: an [`IntoResponse`] for a [`Connection`](sse_core::Connection), any
//!   stream of frames ([`SseResponse::from_stream`]) or any
//!   [`SseReply`](sse_core::http::SseReply), for handlers of your own.
//! * [`SseAdminEndpoint`]: the live administration page and its feed
//!   ([`SseAdmin`]) as an [`Endpoint`], to [`nest`](poem::Route::nest)
//!   under a prefix such as `/sse-admin`: `GET` on the prefix is the page,
//!   `GET stream` below it the feed.
//! * [`serve`]: serves an [`Endpoint`] on a Tokio listener with the timeouts
//!   and the open socket cap of [`ServerLimits`], which a server facing the
//!   internet needs, and notices a client that closed its socket at once
//!   (see [Clients that go away](#clients-that-go-away)).
//!
//! ```no_run
//! use poem::Route;
//! use sse_poem::SseEndpoint;
//! use sse_poem::sse_core::SseManager;
//! use sse_poem::sse_core::http::{DevIdentity, SseEndpoints};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let manager = SseManager::builder().build()?;
//!     let endpoints = SseEndpoints::new(manager, DevIdentity::enable());
//!     let app = Route::new().nest("/api/sse", SseEndpoint::new(endpoints));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     sse_poem::serve(listener, app, sse_poem::ServerLimits::default(), std::future::pending()).await?;
//!     Ok(())
//! }
//! ```
//!
//! A handler of your own takes the request's options with [`SseConnect`],
//! adds to them, connects, and returns the connection as an
//! [`SseResponse`]:
//!
//! ```
//! use poem::web::{Data, Path};
//! use poem::{EndpointExt as _, Route, get, handler};
//! use sse_poem::{SseConnect, SseResponse};
//! use sse_poem::sse_core::http::SseEndpoints;
//!
//! #[handler]
//! async fn orders(Data(endpoints): Data<&SseEndpoints>, Path(order): Path<String>, SseConnect(options): SseConnect) -> SseResponse {
//!     let options = options.channel(format!("orders/{order}"));
//!     // A refused connection (limits, shutdown) becomes its HTTP answer.
//!     endpoints.manager().connect(options).await.into()
//! }
//!
//! # fn app(endpoints: SseEndpoints) -> impl poem::Endpoint {
//! Route::new().at("/orders/:order/events", get(orders)).data(endpoints)
//! # }
//! ```
//!
//! The administration routes behind a check of your own, the stream and the
//! client script open:
//!
//! ```
//! use poem::http::StatusCode;
//! use poem::{EndpointExt as _, Error, Request, Route};
//! use sse_poem::SseEndpoint;
//! use sse_poem::sse_core::http::{RouteGroup, SseEndpoints};
//!
//! async fn admins_only(request: Request) -> poem::Result<Request> {
//!     match request.header("x-role") {
//!         Some("admin") => Ok(request),
//!         _ => Err(Error::from_status(StatusCode::FORBIDDEN)),
//!     }
//! }
//!
//! # fn app(endpoints: SseEndpoints) -> Route {
//! let sse = Route::new();
//! let sse = sse_poem::mount(sse, RouteGroup::Stream, SseEndpoint::only(endpoints.clone(), RouteGroup::Stream));
//! let sse = sse_poem::mount(sse, RouteGroup::ClientScript, SseEndpoint::only(endpoints.clone(), RouteGroup::ClientScript));
//! let admin = SseEndpoint::only(endpoints, RouteGroup::Admin).before(admins_only);
//! let sse = sse_poem::mount(sse, RouteGroup::Admin, admin);
//! Route::new().nest("/api/sse", sse)
//! # }
//! ```
//!
//! The administration page beside the endpoints, guarded by the same
//! authorizer (the page itself holds no data; its feed asks for the token):
//!
//! ```
//! use poem::Route;
//! use sse_poem::{SseAdminEndpoint, SseEndpoint};
//! use sse_poem::sse_core::http::SseEndpoints;
//! use sse_poem::sse_core::http::admin::SseAdmin;
//!
//! # fn app(endpoints: SseEndpoints) -> Route {
//! let admin = SseAdmin::new(&endpoints);
//! Route::new()
//!     .nest("/api/sse", SseEndpoint::new(endpoints))
//!     .nest("/sse-admin", SseAdminEndpoint::new(admin))
//! # }
//! ```
//!
//! # Clients that go away
//!
//! Served by [`serve`], a stream whose client closes its socket is dropped,
//! and so unregistered, at once, as with axum and warp. poem 3.1's own
//! `Server` keeps polling a connection's response body after its client has
//! closed the socket, until a write to it fails: there, a client that goes
//! away is unregistered when the next frame is written to it, at the latest
//! after one heartbeat interval
//! ([`SseConfig::heartbeat_interval`](sse_core::SseConfig::heartbeat_interval)),
//! and its place counts against the connection limits until then.
#![forbid(unsafe_code)]

use std::io;
use std::sync::Arc;

use futures_util::StreamExt as _;
use http::request::Parts;
use http::uri::Scheme;
use poem::Addr;
use poem::error::{GetDataError, NotFoundError, ReadBodyError};
use poem::web::{LocalAddr, RemoteAddr as PoemRemoteAddr};
use poem::{Body, Endpoint, EndpointExt as _, FromRequest, IntoResponse, Request, RequestBody, Response, Route};
use sse_core::ConnectOptions;
use sse_core::http::admin::SseAdmin;
use sse_core::http::{
    MAX_BODY_BYTES, RemoteAddr, RouteGroup, RoutePath, SseEndpoints, payload_too_large, unreadable_body,
};
pub use sse_core::server::ServerLimits;
use sse_core::server::{Incoming, TimedBody};

pub use sse_core;

sse_core::sse_response_type! {
    /// An SSE answer as a poem response: a live connection (or stream of
    /// frames) streamed as `200` with
    /// [`sse_headers`](sse_core::http::sse_headers) and its frames written
    /// as they come (never re-encoded through `poem::web::sse`, no
    /// keep-alive of poem's, never compressed), or a complete response
    /// unchanged.
    ///
    /// The connection is dropped, and so unregistered, when the client goes
    /// away.
    pub struct SseResponse;
}

impl IntoResponse for SseResponse {
    fn into_response(self) -> Response {
        let response = self
            .0
            .into_http_response(|frames| Body::from_bytes_stream(frames.map(Ok::<_, io::Error>)));
        let (parts, body) = response.into_parts();
        let mut response = Response::from(body);
        response.set_status(parts.status);
        *response.headers_mut() = parts.headers;
        response
    }
}

/// The request's method, URI (as the endpoint sees it: below a
/// [`nest`](poem::Route::nest) prefix), headers and extensions as [`Parts`],
/// the request type of [`SseEndpoints`], with the client's socket address
/// ([`Request::remote_addr`]) as a [`RemoteAddr`] extension when it has one.
pub fn request_parts(request: &Request) -> Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = request.method().clone();
    parts.uri = request.uri().clone();
    parts.version = request.version();
    parts.headers = request.headers().clone();
    parts.extensions = request.extensions().clone();
    if let Some(addr) = request.remote_addr().0.as_socket_addr() {
        parts.extensions.insert(RemoteAddr(*addr));
    }
    parts
}

/// The [`ConnectOptions`] of a request to open a stream, read by
/// [`SseEndpoints::connect_options`] with the [`SseEndpoints`] shared with
/// [`data`](poem::EndpointExt::data) (without them, poem's
/// [`GetDataError`], a `500`), the client's address included. A refusal
/// (`401`, or `403` naming a channel) is answered as the built-in stream
/// route answers it.
#[derive(Debug)]
pub struct SseConnect(pub ConnectOptions);

impl<'a> FromRequest<'a> for SseConnect {
    async fn from_request(request: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let endpoints = request
            .data::<SseEndpoints>()
            .ok_or_else(|| GetDataError(std::any::type_name::<SseEndpoints>()))?;
        match endpoints.connect_options(&request_parts(request)).await {
            Ok(options) => Ok(SseConnect(options)),
            Err(refused) => Err(poem::Error::from_response(SseResponse::new(refused).into_response())),
        }
    }
}

/// The ready-made endpoints as one poem [`Endpoint`], to
/// [`nest`](poem::Route::nest) under a prefix. It answers every request
/// below the prefix through [`SseEndpoints::handle`], so unknown paths and
/// wrong methods get the same JSON errors as with the other adapters.
///
/// The prefix followed by a slash alone (`/api/sse/`) is not the mount root:
/// it is answered with poem's [`NotFoundError`], as axum and warp leave it to
/// other routes.
#[derive(Debug, Clone)]
pub struct SseEndpoint {
    endpoints: SseEndpoints,
    group: Option<RouteGroup>,
}

impl SseEndpoint {
    /// The endpoint answering with `endpoints`.
    pub fn new(endpoints: SseEndpoints) -> Self {
        SseEndpoint { endpoints, group: None }
    }

    /// The endpoint answering the requests of `group` alone, through
    /// [`SseEndpoints::handle_group`] (any other path is a JSON `404`): add
    /// it to a [`Route`] at the group's paths with [`mount`].
    pub fn only(endpoints: SseEndpoints, group: RouteGroup) -> Self {
        SseEndpoint {
            endpoints,
            group: Some(group),
        }
    }
}

impl Endpoint for SseEndpoint {
    type Output = SseResponse;

    async fn call(&self, mut request: Request) -> poem::Result<SseResponse> {
        let original = request.original_uri().path();
        if request.uri().path() == "/" && original.len() > 1 && original.ends_with('/') {
            return Err(NotFoundError.into());
        }
        let body = match request.take_body().into_bytes_limit(MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(ReadBodyError::PayloadTooLarge) => return Ok(SseResponse::new(payload_too_large())),
            Err(_) => return Ok(SseResponse::new(unreadable_body())),
        };
        let parts = request_parts(&request);
        // Nested, the endpoint sees the path below its prefix.
        let path = parts.uri.path();
        Ok(SseResponse(match self.group {
            Some(group) => self.endpoints.handle_group(group, &parts, path, body).await,
            None => self.endpoints.handle(&parts, path, body).await,
        }))
    }
}

/// The administration page and its feed ([`SseAdmin`]) as one poem
/// [`Endpoint`], to [`nest`](poem::Route::nest) under a prefix: `GET` (or
/// `HEAD`) on the prefix is the page, `GET stream` below it the feed,
/// guarded by the publish authorizer of the endpoints the [`SseAdmin`] was
/// made from. Other paths below the prefix get the JSON `404`, other
/// methods the JSON `405`; the prefix followed by a slash alone is poem's
/// [`NotFoundError`], as with [`SseEndpoint`].
#[derive(Debug, Clone)]
pub struct SseAdminEndpoint {
    admin: SseAdmin,
}

impl SseAdminEndpoint {
    /// The endpoint serving `admin`.
    pub fn new(admin: SseAdmin) -> Self {
        SseAdminEndpoint { admin }
    }
}

impl Endpoint for SseAdminEndpoint {
    type Output = SseResponse;

    async fn call(&self, request: Request) -> poem::Result<SseResponse> {
        let original = request.original_uri().path();
        if request.uri().path() == "/" && original.len() > 1 && original.ends_with('/') {
            return Err(NotFoundError.into());
        }
        let parts = request_parts(&request);
        // Nested, the endpoint sees the path below its prefix.
        Ok(SseResponse(self.admin.handle(&parts, parts.uri.path()).await))
    }
}

/// Adds `endpoint` to `route` at every path of `group` ([`RouteGroup::paths`],
/// `connections/*rest` for a parameter): `endpoint` is usually
/// [`SseEndpoint::only`] for that group with middleware of your own, and
/// `route` the one nested under the prefix.
///
/// # Panics
///
/// As [`Route::at`], if `route` already has one of the paths.
pub fn mount(route: Route, group: RouteGroup, endpoint: impl Endpoint + 'static) -> Route {
    let endpoint = Arc::new(endpoint.map_to_response());
    let mut route = route;
    for path in group.paths() {
        let pattern = match path {
            RoutePath::Exact(path) => format!("/{path}"),
            RoutePath::Below(path) => format!("/{path}/*rest"),
            _ => continue,
        };
        route = route.at(pattern, Arc::clone(&endpoint));
    }
    route
}

/// Serves `endpoint` on `listener` under `limits` until `shutdown` completes
/// (pass [`std::future::pending()`] to serve until the process ends), then
/// stops accepting, lets requests in progress finish and returns once every
/// connection has closed: poem's `Server` replaced by the server loop of
/// [`sse_core::server`], with its request head, body, idle keep-alive and
/// write timeouts and open socket cap ([`ServerLimits`]).
///
/// Served this way, a stream whose client closes its socket is dropped, and
/// unregistered, at once, as with axum and warp (poem's own server notices
/// it only when a write to the socket fails). Each request carries the
/// client's address ([`Request::remote_addr`], and a [`RemoteAddr`]
/// extension), the listener's address ([`Request::local_addr`]) and the
/// `http` scheme. A request body that does not arrive within
/// [`ServerLimits::body_timeout`] cannot be read: the built-in endpoint
/// answers `400`.
///
/// Stop the SSE connections first (with
/// [`SseManager::shutdown`](sse_core::SseManager::shutdown)) in the future
/// you pass as `shutdown`: streams are requests in progress, which a
/// graceful shutdown waits for.
///
/// # Errors
/// The listener's local address cannot be read;
/// [`io::ErrorKind::InvalidInput`] when `limits` do not
/// [`validate`](ServerLimits::validate).
pub async fn serve<E>(
    listener: tokio::net::TcpListener,
    endpoint: E,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    E: Endpoint + 'static,
{
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let endpoint = Arc::new(endpoint);
    let body_timeout = limits.body_timeout;
    let handler = move |request: http::Request<Incoming>| {
        let remote = match request.extensions().get::<RemoteAddr>() {
            Some(RemoteAddr(addr)) => PoemRemoteAddr(Addr::SocketAddr(*addr)),
            None => PoemRemoteAddr(Addr::default()),
        };
        let mut request = Request::from((request, local.clone(), remote, Scheme::HTTP));
        let body = TimedBody::new(BoxBody::from(request.take_body()), body_timeout);
        request.set_body(Body::from(BoxBody::new(body)));
        let endpoint = Arc::clone(&endpoint);
        async move { http::Response::<BoxBody>::from(endpoint.get_response(request).await) }
    };
    sse_core::server::serve(listener, limits, handler, shutdown).await
}

/// The body type of poem's requests and responses.
type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, io::Error>;
