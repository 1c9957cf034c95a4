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
//! * [`SseResponse`]: a [`Reply`] for a [`Connection`](sse_core::Connection) (or any [`SseReply`](sse_core::http::SseReply)),
//!   for handlers of your own.
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
//!     warp::serve(routes).incoming(listener).run().await;
//!     Ok(())
//! }
//! ```
//!
//! A handler of your own connects through the manager and returns the
//! connection as an [`SseResponse`]:
//!
//! ```
//! use sse_warp::SseResponse;
//! use sse_warp::sse_core::{ConnectOptions, SseManager};
//! use warp::Filter;
//!
//! # fn routes(manager: SseManager) -> impl Filter<Extract = (SseResponse,), Error = warp::Rejection> + Clone {
//! let orders = warp::path!("orders" / String / "events")
//!     .and(warp::get())
//!     .then(move |order: String| {
//!         let manager = manager.clone();
//!         async move {
//!             let options = ConnectOptions::new().channel(format!("orders/{order}"));
//!             // A refused connection (limits, shutdown) becomes its HTTP answer.
//!             SseResponse::from(manager.connect(options).await)
//!         }
//!     });
//! # orders
//! # }
//! ```
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{Buf, BufMut as _, Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use http::request::Parts;
use http::{HeaderMap, Method, Response, Uri};
use sse_core::http::{MAX_BODY_BYTES, RemoteAddr, SseEndpoints, payload_too_large, unreadable_body};
use warp::path::{FullPath, Tail};
use warp::{Filter, Rejection, Reply};

pub use sse_core;

sse_core::sse_response_type! {
    /// An SSE answer as a warp [`Reply`]: a live connection streamed as `200`
    /// with [`sse_headers`](sse_core::http::sse_headers) and its frames written
    /// as they come (never re-encoded through `warp::sse`, no keep-alive of
    /// warp's, never compressed), or a complete response unchanged.
    ///
    /// The connection is dropped, and so unregistered, when the client goes
    /// away.
    pub struct SseResponse;
}

impl Reply for SseResponse {
    fn into_response(self) -> warp::reply::Response {
        self.0.into_http_response(|connection| {
            warp::reply::stream(connection.map(Ok::<_, Infallible>))
                .into_response()
                .into_body()
        })
    }
}

/// Extracts the request's method, URI (path and query) and headers as
/// [`Parts`], the request type of [`SseEndpoints`], with the client's address
/// ([`warp::addr::remote`]) as a [`RemoteAddr`] extension when the server
/// knows it.
pub fn request_parts() -> impl Filter<Extract = (Parts,), Error = Infallible> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .map(
            |method: Method, path: FullPath, query: String, headers: HeaderMap, remote: Option<SocketAddr>| {
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
                if let Some(addr) = remote {
                    parts.extensions.insert(RemoteAddr(addr));
                }
                parts
            },
        )
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
    let below_mount = warp::path::tail()
        .and(warp::path::full())
        .and_then(|tail: Tail, full: FullPath| async move {
            let full = full.as_str();
            if tail.as_str().is_empty() && full.len() > 1 && full.ends_with('/') {
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
            |tail: Tail, request: Parts, body: Result<Bytes, Response<Bytes>>, endpoints: SseEndpoints| async move {
                match body {
                    Ok(body) => SseResponse(endpoints.handle(&request, tail.as_str(), body).await),
                    Err(response) => SseResponse::new(response),
                }
            },
        )
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
