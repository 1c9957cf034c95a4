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
//! * [`SseResponse`]: an [`IntoResponse`] for a [`Connection`](sse_core::Connection) (or any
//!   [`SseReply`](sse_core::http::SseReply)), for handlers of your own.
//!
//! Served with
//! [`into_make_service_with_connect_info::<SocketAddr>()`](Router::into_make_service_with_connect_info),
//! the router passes each client's address on as a [`RemoteAddr`], so that
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
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! A handler of your own connects through the manager, taken from the
//! router's [`State`], and returns the connection as an [`SseResponse`]:
//!
//! ```
//! use axum::extract::{Path, State};
//! use axum::routing::get;
//! use sse_axum::SseResponse;
//! use sse_axum::sse_core::{ConnectOptions, SseManager};
//!
//! async fn orders(State(manager): State<SseManager>, Path(order): Path<String>) -> SseResponse {
//!     let options = ConnectOptions::new().channel(format!("orders/{order}"));
//!     // A refused connection (limits, shutdown) becomes its HTTP answer.
//!     manager.connect(options).await.into()
//! }
//!
//! # fn app(manager: SseManager) -> axum::Router {
//! axum::Router::new().route("/orders/{order}/events", get(orders)).with_state(manager)
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
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt as _;
use sse_core::http::{MAX_BODY_BYTES, RemoteAddr, SseEndpoints, payload_too_large, unreadable_body};

pub use sse_core;

sse_core::sse_response_type! {
    /// An SSE answer as an axum response: a live connection streamed as `200`
    /// with [`sse_headers`](sse_core::http::sse_headers) and its frames written
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
            .into_http_response(|connection| Body::from_stream(connection.map(Ok::<_, Infallible>)))
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
        .with_state(endpoints)
}

async fn handle(
    State(endpoints): State<SseEndpoints>,
    mut request: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(ConnectInfo(addr)) = request.extensions.get::<ConnectInfo<SocketAddr>>().copied() {
        request.extensions.insert(RemoteAddr(addr));
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return SseResponse::new(payload_too_large()).into_response();
        }
        Err(_) => return SseResponse::new(unreadable_body()).into_response(),
    };
    // Nested, the router sees the path below its prefix.
    let reply = endpoints.handle(&request, request.uri.path(), body).await;
    SseResponse(reply).into_response()
}
