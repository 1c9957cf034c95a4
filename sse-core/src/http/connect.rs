//! What a request to open a stream asks for, read once for every route that
//! opens one: the resume point (the `Last-Event-ID` header, else the
//! `lastEventId` query parameter), the client's address ([`RemoteAddr`]),
//! and the channels and metadata of its query. [`ConnectOptions::from_request`]
//! gives the protocol parts to an application that authenticates on its
//! own; [`SseEndpoints::connect_options`](super::SseEndpoints::connect_options),
//! which the built-in stream route and the adapters' extractors use, adds
//! the identity and checks the channels.

use http::request::Parts;

use super::{RemoteAddr, query_pairs};
use crate::connection::ConnectOptions;

/// Query parameters with a meaning of their own; every other one becomes
/// connection metadata on the stream endpoint.
const RESERVED_PARAMS: [&str; 5] = ["userId", "sessionId", "channel", "lastEventId", "access_token"];

/// A stream request's query and `Last-Event-ID`, decoded.
pub(super) struct StreamQuery {
    /// The `channel` parameters, in order.
    pub(super) channels: Vec<String>,
    /// The `Last-Event-ID` header, else the last `lastEventId` parameter.
    pub(super) last_event_id: Option<String>,
    /// Every parameter without a meaning of its own, in order.
    pub(super) metadata: Vec<(String, String)>,
}

impl StreamQuery {
    pub(super) fn of(request: &Parts) -> Self {
        let mut query = StreamQuery {
            channels: Vec::new(),
            last_event_id: None,
            metadata: Vec::new(),
        };
        for (key, value) in query_pairs(request) {
            match &*key {
                "channel" => query.channels.push(value.into_owned()),
                "lastEventId" => query.last_event_id = Some(value.into_owned()),
                key if RESERVED_PARAMS.contains(&key) => {}
                _ => query.metadata.push((key.into_owned(), value.into_owned())),
            }
        }
        if let Some(header) = request.headers.get("last-event-id") {
            // A header that is not text can never match an id: it resets.
            query.last_event_id = Some(String::from_utf8_lossy(header.as_bytes()).into_owned());
        }
        query
    }
}

/// The client's address, if the adapter put it in the request's extensions.
pub(super) fn remote_addr(options: ConnectOptions, request: &Parts) -> ConnectOptions {
    match request.extensions.get::<RemoteAddr>() {
        Some(RemoteAddr(addr)) => options.remote_addr(addr.ip()),
        None => options,
    }
}

impl ConnectOptions {
    /// The protocol parts of a request to open a stream, for a route of an
    /// application that authenticates requests itself (in a middleware, or
    /// in the handler) and names the user with [`ConnectOptions::user`]:
    ///
    /// * the resume point: the `Last-Event-ID` header, else the
    ///   `lastEventId` query parameter (the last one), so that a
    ///   reconnecting client gets the events it missed, or a `reset`;
    /// * the client's address, a [`RemoteAddr`] in the request's extensions
    ///   (which the adapters' request extractors put there), for
    ///   [`SseConfig::max_connections_per_addr`](crate::SseConfig::max_connections_per_addr);
    /// * every `channel` query parameter. They are **not** checked here:
    ///   restrict them with [`ConnectOptions::allowed_channels`] (enforced
    ///   at connect time), or read the request through
    ///   [`SseEndpoints::connect_options`](super::SseEndpoints::connect_options),
    ///   which asks the authenticator and the channel authorizer.
    ///
    /// The query's other parameters are left to the application: unlike
    /// the stream endpoint, this does not turn them into metadata.
    ///
    /// ```
    /// use sse_core::ConnectOptions;
    ///
    /// let (request, ()) = http::Request::get("/events?channel=news&lastEventId=7")
    ///     .header("last-event-id", "9")
    ///     .body(())
    ///     .expect("a request")
    ///     .into_parts();
    /// // Authenticated by the application: the user is its to name.
    /// let options = ConnectOptions::from_request(&request).user("alice");
    /// # let _ = options;
    /// ```
    pub fn from_request(request: &Parts) -> ConnectOptions {
        let query = StreamQuery::of(request);
        let options = ConnectOptions::new()
            .channels(query.channels)
            .last_event_id(query.last_event_id);
        remote_addr(options, request)
    }
}
