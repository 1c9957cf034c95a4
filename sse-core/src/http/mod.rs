//! The HTTP side of SSE, written once for every framework (feature `http`).
//!
//! [`SseEndpoints`] turns requests (as [`http`] crate types, which axum, warp
//! and poem all share) into connections and answers the ready-made endpoints:
//! publish, stats, connection listing, runtime subscribe and unsubscribe, and
//! disconnect. An adapter only routes requests to it and converts the
//! [`SseReply`] into its framework's response type, so every framework
//! behaves identically, down to the bytes and the error bodies.
//!
//! | method and path (under the mount point, e.g. `/api/sse`) | handled by |
//! | --- | --- |
//! | `GET /` | [`SseEndpoints::connect`] |
//! | `POST /publish`, `GET /stats`, `GET /connections`, `POST /subscribe`, `POST /unsubscribe`, `DELETE /connections/{clientId}` | [`SseEndpoints::api`] |
//! | `GET /client.js`: the browser client [`CLIENT_JS`], open to all | [`SseEndpoints::api`] |
//!
//! [`SseEndpoints::handle`] dispatches between the two, so an adapter can
//! route every request under its mount point to it, and
//! [`SseReply::into_http_response`] builds the response with the
//! framework's body type: unknown paths and wrong methods then get the same
//! JSON errors (`404`, and `405` with an `Allow` header) whatever the
//! framework. [`SseEndpoints::handle_group`] answers one [`RouteGroup`]
//! alone (the stream, publish, administration, or the client script), for
//! adapters that mount each group on its own, behind middleware of the
//! application's.
//!
//! A stream route of the application's own reads the request through
//! [`SseEndpoints::connect_options`], as the built-in one does (the
//! adapters' extractors call it), or, authenticating on its own, through
//! [`ConnectOptions::from_request`](crate::ConnectOptions::from_request);
//! it may decorate the connection's frames and still answer with the
//! event-stream headers ([`SseReply::from_stream`]).
//!
//! [`admin::SseAdmin`] serves a live administration page over the same
//! manager, with a feed of snapshots guarded by the same publish
//! authorizer; the adapters mount it beside the endpoints.
//!
//! Besides the endpoints, the module holds what adapters and servers of
//! their own share: the authentication and authorization hooks with their
//! ready-made implementations ([`Authenticator`], [`ChannelAuthorizer`],
//! [`PublishAuthorizer`], [`DevIdentity`], [`Anonymous`], [`BearerToken`]), the reply an
//! adapter converts ([`SseReply`], and
//! [`sse_response_type!`](crate::sse_response_type) for its newtype), the
//! publish body ([`PublishRequest`]), the JSON answers of the contract
//! ([`error`], [`auth_error`], [`connect_error`], ...) and the headers of an
//! event stream ([`sse_headers`], and [`stream_head`] for a server that
//! writes HTTP/1.1 itself).

pub mod admin;
mod auth;
mod connect;
mod endpoints;
#[cfg(feature = "jwt")]
pub mod jwt;
mod probes;
mod reply;
mod requests;
mod responses;
mod routes;

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;

pub use auth::{
    Anonymous, AuthError, Authenticator, BearerToken, ChannelAuthorizer, DevIdentity, Identity, PublishAuthorizer,
    RemoteAddr, Subscriber, bearer_token,
};
pub use endpoints::SseEndpoints;
pub use probes::{healthz, readyz};
pub use reply::{FrameStream, SseReply};
pub use requests::{MAX_EXCLUSIONS, PublishError, PublishRequest};
pub use responses::{
    auth_error, connect_error, error, json, method_not_allowed, payload_too_large, rate_limited, unreadable_body,
};
pub use routes::{RouteGroup, RoutePath};

/// The largest request body the endpoints accept (1 MiB); adapters answer a
/// larger one with [`payload_too_large`].
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The browser client (`clients/js/sse-client.js` of the repository): an ES
/// module wrapping `EventSource` with backoff, resumption and event history,
/// served by [`SseEndpoints::api`] at `client.js` under the mount point.
pub const CLIENT_JS: &str = include_str!("../../assets/sse-client.js");

/// The headers of every event-stream response: `content-type:
/// text/event-stream`, `cache-control: no-cache, no-transform` (no proxy may
/// buffer, transform or compress it) and `x-accel-buffering: no` (for nginx).
pub fn sse_headers() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers
}

/// The HTTP/1.1 response head of an event stream, for a server that writes
/// HTTP itself and sends the frames through a [`Transport`](crate::Transport)
/// with [`Connection::pipe`](crate::Connection::pipe): `HTTP/1.1 200 OK`,
/// the [`sse_headers`], `connection: close`, and the blank line that ends
/// the head.
///
/// Write it to the socket before the first frame. The frames that follow
/// are the body as they come, neither chunked nor of a declared length, so
/// the body ends when the connection closes, as `connection: close`
/// announces: the connection serves no further request. A server that adds
/// headers of its own (CORS, for one) writes its head the same way, from
/// [`sse_headers`]. Servers with streaming bodies need none of this:
/// [`SseReply::into_http_response`] gives them the headers.
///
/// ```
/// let head = sse_core::http::stream_head();
/// assert_eq!(
///     &head[..],
///     b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache, no-transform\r\n\
///       x-accel-buffering: no\r\nconnection: close\r\n\r\n",
/// );
/// ```
pub fn stream_head() -> Bytes {
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in &sse_headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    Bytes::from(head)
}

/// The decoded query parameters of a request, in order, as
/// `application/x-www-form-urlencoded` decodes them (`+` is a space, invalid
/// UTF-8 is replaced); a parameter without `=` has an empty value.
pub fn query_pairs(request: &Parts) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(request.uri.query().unwrap_or_default().as_bytes())
}
