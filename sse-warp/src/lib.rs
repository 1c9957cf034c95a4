//! [warp] adapter for [`sse_core`]: Server-Sent Events from a warp server.
//!
//! Everything the HTTP contract says (identity, channels, replay, publish
//! validation, error bodies) is decided by [`sse_core::http::SseEndpoints`];
//! this crate only hands warp requests to it and streams the answer.
//!
//! * [`filter`]: the ready-made endpoints as one [`Filter`], to mount behind
//!   a path prefix such as `warp::path!("api" / "sse" / ..)`. `GET` on the
//!   prefix opens a stream; `POST publish`, `GET stats`, `GET connections`,
//!   `POST subscribe`, `POST unsubscribe` and `DELETE connections/{clientId}`
//!   sit below it. Request bodies are limited to
//!   [`MAX_BODY_BYTES`] while they are read,
//!   chunked ones included; a larger one is answered `413`.
//! * [`request_parts`]: a filter extracting the request's
//!   [`Parts`], which [`SseEndpoints`] and your own
//!   [`Authenticator`](sse_core::http::Authenticator) read, with the
//!   client's address as a [`RemoteAddr`] extension (for
//!   [`SseConfig::max_connections_per_addr`](sse_core::SseConfig::max_connections_per_addr)).
//! * [`routes`]: one [`RouteGroup`] of them (the stream, publish, the
//!   administration routes, or the client script) as a [`Filter`] of its
//!   own, which rejects other paths as not found, so that the groups an
//!   application serves combine with [`or`](Filter::or), each behind
//!   filters of your own.
//! * [`connect_options`]: a filter for a stream route of your own,
//!   extracting the request's [`ConnectOptions`] exactly as the built-in
//!   route reads them ([`SseEndpoints::connect_options`]): the identity, the
//!   checked channels, the `Last-Event-ID` header (else `lastEventId`) and
//!   the client's address. A refusal is a [`ConnectRefused`] rejection,
//!   which [`recover`] answers as the built-in route does.
//! * [`SseResponse`]: a [`Reply`] for a [`Connection`](sse_core::Connection), any stream of
//!   frames ([`SseResponse::from_stream`]) or any
//!   [`SseReply`](sse_core::http::SseReply), for handlers of your own.
//! * [`admin_filter`]: the live administration page and its feed
//!   ([`SseAdmin`]) as a [`Filter`], to mount behind a path prefix such as
//!   `warp::path!("sse-admin" / ..)`: `GET` on the prefix is the page,
//!   `GET stream` below it the feed.
//! * [`serve`]: serves a [`Filter`] (as [`warp::service`]) on a Tokio listener with the timeouts
//!   and the open socket cap of [`ServerLimits`], which a server facing the
//!   internet needs (warp's own server has none), passing each client's
//!   address on.
//!
//! ```no_run
//! use sse_warp::sse_core::SseManager;
//! use sse_warp::sse_core::http::{DevIdentity, SseEndpoints};
//! use warp::Filter;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let manager = SseManager::builder().build()?;
//!     let endpoints = SseEndpoints::new(manager, DevIdentity::enable());
//!     let routes = warp::path!("api" / "sse" / ..).and(sse_warp::filter(endpoints));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     let service = warp::service(routes);
//!     sse_warp::serve(listener, service, sse_warp::ServerLimits::default(), std::future::pending()).await?;
//!     Ok(())
//! }
//! ```
//!
//! A handler of your own takes the request's options from
//! [`connect_options`], adds to them, connects, and returns the connection
//! as an [`SseResponse`]; [`recover`] answers a refusal:
//!
//! ```
//! use sse_warp::SseResponse;
//! use sse_warp::sse_core::ConnectOptions;
//! use sse_warp::sse_core::http::SseEndpoints;
//! use warp::Filter;
//!
//! # fn routes(endpoints: SseEndpoints) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
//! let manager = endpoints.manager().clone();
//! let orders = warp::path!("orders" / String / "events")
//!     .and(warp::get())
//!     .and(sse_warp::connect_options(endpoints))
//!     .then(move |order: String, options: ConnectOptions| {
//!         let manager = manager.clone();
//!         async move {
//!             // A refused connection (limits, shutdown) becomes its HTTP answer.
//!             SseResponse::from(manager.connect(options.channel(format!("orders/{order}"))).await)
//!         }
//!     })
//!     .recover(sse_warp::recover);
//! # orders
//! # }
//! ```
//!
//! The administration routes behind a check of your own, the stream and the
//! client script open:
//!
//! ```
//! use sse_warp::sse_core::http::{RouteGroup, SseEndpoints};
//! use warp::Filter;
//!
//! # fn routes(endpoints: SseEndpoints) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
//! let admins_only = warp::header::exact("x-role", "admin");
//! let sse = sse_warp::routes(endpoints.clone(), RouteGroup::Stream)
//!     .or(sse_warp::routes(endpoints.clone(), RouteGroup::ClientScript))
//!     .or(admins_only.and(sse_warp::routes(endpoints, RouteGroup::Admin)));
//! warp::path!("api" / "sse" / ..).and(sse)
//! # }
//! ```
//!
//! The administration page beside the endpoints, guarded by the same
//! authorizer (the page itself holds no data; its feed asks for the token):
//!
//! ```
//! use sse_warp::sse_core::http::SseEndpoints;
//! use sse_warp::sse_core::http::admin::SseAdmin;
//! use warp::Filter;
//!
//! # fn routes(endpoints: SseEndpoints) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
//! let admin = SseAdmin::new(&endpoints);
//! warp::path!("api" / "sse" / ..)
//!     .and(sse_warp::filter(endpoints))
//!     .or(warp::path!("sse-admin" / ..).and(sse_warp::admin_filter(admin)))
//! # }
//! ```
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{Buf, BufMut as _, Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use http::request::Parts;
use http::{HeaderMap, Method, Response, Uri};
use sse_core::ConnectOptions;
use sse_core::http::admin::SseAdmin;
use sse_core::http::{
    AuthError, MAX_BODY_BYTES, RemoteAddr, RouteGroup, SseEndpoints, payload_too_large, unreadable_body,
};
pub use sse_core::server::ServerLimits;
use sse_core::server::{Incoming, TimedBody};
use warp::path::{FullPath, Tail};
use warp::reject::Reject;
use warp::{Filter, Rejection, Reply};

pub use sse_core;

sse_core::sse_response_type! {
    /// An SSE answer as a warp [`Reply`]: a live connection (or stream of
    /// frames) streamed as `200` with
    /// [`sse_headers`](sse_core::http::sse_headers) and its frames written
    /// as they come (never re-encoded through `warp::sse`, no keep-alive of
    /// warp's, never compressed), or a complete response unchanged.
    ///
    /// The connection is dropped, and so unregistered, when the client goes
    /// away.
    pub struct SseResponse;
}

impl Reply for SseResponse {
    fn into_response(self) -> warp::reply::Response {
        self.0.into_http_response(|frames| {
            warp::reply::stream(frames.map(Ok::<_, Infallible>))
                .into_response()
                .into_body()
        })
    }
}

/// Extracts the request's method, URI (path and query) and headers as
/// [`Parts`], the request type of [`SseEndpoints`], with the client's address
/// ([`warp::addr::remote`], or the [`RemoteAddr`] extension [`serve`]
/// sets) as a [`RemoteAddr`] extension when the server knows it.
pub fn request_parts() -> impl Filter<Extract = (Parts,), Error = Infallible> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::ext::optional::<RemoteAddr>())
        .map(
            |method: Method,
             path: FullPath,
             query: String,
             headers: HeaderMap,
             remote: Option<SocketAddr>,
             served: Option<RemoteAddr>| {
                let (mut parts, ()) = http::Request::new(()).into_parts();
                let uri = if query.is_empty() {
                    path.as_str().parse::<Uri>()
                } else {
                    format!("{}?{query}", path.as_str()).parse::<Uri>()
                };
                // warp only routes requests whose path is a valid URI path.
                parts.uri = uri.unwrap_or_default();
                parts.method = method;
                parts.headers = headers;
                if let Some(addr) = remote.map(RemoteAddr).or(served) {
                    parts.extensions.insert(addr);
                }
                parts
            },
        )
}

/// Extracts the [`ConnectOptions`] of a request to open a stream, read by
/// [`SseEndpoints::connect_options`] with `endpoints`, the client's address
/// included. A refusal is a [`ConnectRefused`] rejection: recover it with
/// [`recover`] to answer it as the built-in stream route does (`401`, or
/// `403` naming the channel).
pub fn connect_options(endpoints: SseEndpoints) -> impl Filter<Extract = (ConnectOptions,), Error = Rejection> + Clone {
    request_parts()
        .and(warp::any().map(move || endpoints.clone()))
        .and_then(|request: Parts, endpoints: SseEndpoints| async move {
            endpoints
                .connect_options(&request)
                .await
                .map_err(|refused| warp::reject::custom(ConnectRefused(refused)))
        })
}

/// The rejection of [`connect_options`]: the request may not open a stream.
#[derive(Debug)]
pub struct ConnectRefused(pub AuthError);

impl Reject for ConnectRefused {}

/// Answers a [`ConnectRefused`] rejection as the built-in stream route
/// answers the refusal, and passes any other rejection on: for
/// [`Filter::recover`].
pub async fn recover(rejection: Rejection) -> Result<SseResponse, Rejection> {
    match rejection.find::<ConnectRefused>() {
        Some(ConnectRefused(refused)) => Ok(SseResponse::new(refused.clone())),
        None => Err(rejection),
    }
}

/// The ready-made endpoints as a [`Filter`], to mount behind a path prefix.
/// It answers every request below the prefix through
/// [`SseEndpoints::handle`], so unknown paths and wrong methods get the
/// same JSON errors as with the other adapters.
///
/// The prefix followed by a slash alone (`/api/sse/`) is not the mount root:
/// the filter rejects it as not found, leaving it to your other routes, as
/// the axum and poem adapters do.
pub fn filter(endpoints: SseEndpoints) -> impl Filter<Extract = (SseResponse,), Error = Rejection> + Clone {
    answer(endpoints, None)
}

/// The endpoints of `group` alone as a [`Filter`], to mount behind a path
/// prefix, answered by [`SseEndpoints::handle_group`]. It rejects every
/// other path below the prefix as not found, before reading the body, so
/// that the groups an application serves combine with [`Filter::or`], each
/// behind filters of its own. A wrong method on one of its paths is
/// answered as by [`filter`].
pub fn routes(
    endpoints: SseEndpoints,
    group: RouteGroup,
) -> impl Filter<Extract = (SseResponse,), Error = Rejection> + Clone {
    answer(endpoints, Some(group))
}

/// Answers the requests below the prefix, of `group` if there is one.
fn answer(
    endpoints: SseEndpoints,
    group: Option<RouteGroup>,
) -> impl Filter<Extract = (SseResponse,), Error = Rejection> + Clone {
    let below_mount =
        warp::path::tail()
            .and(warp::path::full())
            .and_then(move |tail: Tail, full: FullPath| async move {
                let full = full.as_str();
                let root_slash = tail.as_str().is_empty() && full.len() > 1 && full.ends_with('/');
                let elsewhere = group.is_some_and(|group| RouteGroup::of(tail.as_str()) != Some(group));
                if root_slash || elsewhere {
                    Err(warp::reject::not_found())
                } else {
                    Ok(tail)
                }
            });
    below_mount
        .and(request_parts())
        .and(warp::body::stream().then(read_body))
        .and(warp::any().map(move || endpoints.clone()))
        .then(
            move |tail: Tail, request: Parts, body: Result<Bytes, Response<Bytes>>, endpoints: SseEndpoints| async move {
                let body = match body {
                    Ok(body) => body,
                    Err(response) => return SseResponse::new(response),
                };
                SseResponse(match group {
                    Some(group) => endpoints.handle_group(group, &request, tail.as_str(), body).await,
                    None => endpoints.handle(&request, tail.as_str(), body).await,
                })
            },
        )
}

/// The administration page and its feed ([`SseAdmin`]) as a [`Filter`], to
/// mount behind a path prefix: `GET` (or `HEAD`) on the prefix is the page,
/// `GET stream` below it the feed, guarded by the publish authorizer of the
/// endpoints `admin` was made from. Other paths below the prefix get the
/// JSON `404`, other methods the JSON `405`; the prefix followed by a slash
/// alone is rejected as not found, as by [`filter`].
pub fn admin_filter(admin: SseAdmin) -> impl Filter<Extract = (SseResponse,), Error = Rejection> + Clone {
    warp::path::tail()
        .and(warp::path::full())
        .and_then(|tail: Tail, full: FullPath| async move {
            let full = full.as_str();
            if tail.as_str().is_empty() && full.len() > 1 && full.ends_with('/') {
                Err(warp::reject::not_found())
            } else {
                Ok(tail)
            }
        })
        .and(request_parts())
        .and(warp::any().map(move || admin.clone()))
        .then(|tail: Tail, request: Parts, admin: SseAdmin| async move {
            SseResponse(admin.handle(&request, tail.as_str()).await)
        })
}

/// Reads a request body of at most [`MAX_BODY_BYTES`], stopping at the first
/// byte over it (warp's `content_length_limit` would refuse chunked bodies).
async fn read_body<B: Buf>(body: impl Stream<Item = Result<B, warp::Error>>) -> Result<Bytes, Response<Bytes>> {
    let mut body = std::pin::pin!(body);
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| unreadable_body())?;
        if bytes.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(payload_too_large());
        }
        bytes.put(chunk);
    }
    Ok(bytes.freeze())
}

/// Serves `service`, a filter made a service by [`warp::service`], on
/// `listener` under `limits` until `shutdown` completes (pass
/// [`std::future::pending()`] to serve until the process ends), then stops
/// accepting, lets requests in progress finish and returns once every
/// connection has closed: `warp::serve` with the request head, body, idle
/// keep-alive and write timeouts and the open socket cap of
/// [`ServerLimits`] (see [`sse_core::server`]). A connection that fails (a
/// client that went away, a timeout) is logged at `debug` level only.
///
/// ```no_run
/// # async fn run(routes: impl warp::Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// sse_warp::serve(listener, warp::service(routes), sse_warp::ServerLimits::default(), std::future::pending()).await
/// # }
/// ```
///
/// Each request carries the client's address as a [`RemoteAddr`]
/// extension, which [`request_parts`] reads, so that the per-address limit
/// applies. (`warp::addr::remote` knows only the addresses of warp's own
/// server and yields `None` here.) A request body that does not arrive
/// within [`ServerLimits::body_timeout`] cannot be read: the built-in
/// filters answer `400`.
///
/// Stop the SSE connections first (with
/// [`SseManager::shutdown`](sse_core::SseManager::shutdown)) in the future
/// you pass as `shutdown`: streams are requests in progress, which a
/// graceful shutdown waits for.
///
/// # Errors
/// [`std::io::ErrorKind::InvalidInput`] when `limits` do not
/// [`validate`](ServerLimits::validate).
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    service: S,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: tower_service::Service<http::Request<TimedBody<Incoming>>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let body_timeout = limits.body_timeout;
    let handler = move |request: http::Request<Incoming>| {
        let request = request.map(|body| TimedBody::new(body, body_timeout));
        let mut service = service.clone();
        async move {
            match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    sse_core::server::serve(listener, limits, handler, shutdown).await
}
