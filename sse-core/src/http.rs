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
//! JSON errors (`404`, `405`) whatever the framework.

#[cfg(feature = "jwt")]
pub mod jwt;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde::Deserialize;

use crate::connection::{ConnectOptions, Connection, ConnectionInfo, channel_allowed};
use crate::error::{ConnectError, SendError, SubscribeError};
use crate::event::Event;
use crate::manager::{SseManager, overloaded_body};
use crate::runtime::BoxFuture;
use crate::target::Target;

/// The largest request body the endpoints accept (1 MiB); adapters answer a
/// larger one with [`payload_too_large`].
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The browser client (`clients/js/sse-client.js` of the repository): an ES
/// module wrapping `EventSource` with backoff, resumption and event history,
/// served by [`SseEndpoints::api`] at `client.js` under the mount point.
pub const CLIENT_JS: &str = include_str!("../assets/sse-client.js");

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

/// Who a subscriber is, as an [`Authenticator`] establishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user id.
    pub user_id: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// The channels this subscriber may join: `None` allows any; an entry
    /// ending in `*` is a prefix pattern (`"orders/*"` allows `"orders/17"`).
    pub allowed_channels: Option<Vec<String>>,
    /// Extra metadata to attach to the connection.
    pub metadata: BTreeMap<String, String>,
    /// When the credentials expire; the connection is closed then, so the
    /// client reconnects with fresh ones.
    pub expires_in: Option<Duration>,
}

impl Identity {
    /// An anonymous identity allowed to join any channel.
    pub fn anonymous() -> Self {
        Identity::default()
    }

    /// An identity for `user_id`.
    pub fn user(user_id: impl Into<String>) -> Self {
        Identity {
            user_id: Some(user_id.into()),
            ..Identity::default()
        }
    }

    /// Sets the session id.
    #[must_use]
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Restricts the channels this subscriber may join.
    #[must_use]
    pub fn with_allowed_channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_channels = Some(channels.into_iter().map(Into::into).collect());
        self
    }

    /// Whether this identity may join `channel`.
    pub fn may_join(&self, channel: &str) -> bool {
        self.allowed_channels
            .as_deref()
            .is_none_or(|allowed| channel_allowed(allowed, channel))
    }
}

/// Why a request was refused by an authentication or authorization hook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No valid credentials: `401`.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials do not allow this channel: `403`, naming it.
    #[error("not allowed to join channel {channel:?}")]
    ChannelForbidden {
        /// The refused channel.
        channel: String,
    },
}

/// Establishes who a subscriber is, from the request's headers, query and
/// cookies. Browsers' `EventSource` cannot send custom headers, so tokens
/// usually come in the query or a cookie.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of the request's sender, or why it is refused.
    fn authenticate<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<Identity, AuthError>>;
}

const _: Option<&dyn Authenticator> = None;

/// Development mode: the identity is taken from the query parameters
/// `userId` and `sessionId`, unchecked. Anybody can claim to be anybody: use
/// it only on a development machine. [`DevIdentity::enable`] logs a warning
/// saying so.
#[derive(Debug, Clone, Copy)]
pub struct DevIdentity {
    _explicit: (),
}

impl DevIdentity {
    /// Turns development mode on, with a warning in the log.
    pub fn enable() -> Self {
        tracing::warn!(
            "sse: development identity mode: subscribers choose their own userId; never use it in production"
        );
        DevIdentity { _explicit: () }
    }
}

impl Authenticator for DevIdentity {
    fn authenticate<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let mut identity = Identity::anonymous();
        for (key, value) in query_pairs(request) {
            match &*key {
                "userId" if !value.is_empty() => identity.user_id = Some(value.into_owned()),
                "sessionId" if !value.is_empty() => identity.session_id = Some(value.into_owned()),
                _ => {}
            }
        }
        Box::pin(std::future::ready(Ok(identity)))
    }
}

/// Decides whether a subscriber may join a channel, beyond the channel
/// patterns of its [`Identity`]: asked for every channel at connect time and
/// on every runtime subscribe through [`SseEndpoints::api`]. A refusal is a
/// `403` naming the channel.
pub trait ChannelAuthorizer: Send + Sync + 'static {
    /// `true` if `subscriber` may join `channel`.
    fn authorize<'a>(&'a self, subscriber: &'a Subscriber<'a>, channel: &'a str) -> BoxFuture<'a, bool>;
}

const _: Option<&dyn ChannelAuthorizer> = None;

/// Who asks to join a channel, as a [`ChannelAuthorizer`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Subscriber<'a> {
    /// The user, if any.
    pub user_id: Option<&'a str>,
    /// The session, if any.
    pub session_id: Option<&'a str>,
    /// The connection, for a runtime subscribe (`None` at connect time).
    pub client_id: Option<&'a str>,
}

/// The client's network address, which an adapter puts in the request's
/// extensions so that [`SseEndpoints::connect`] can apply
/// [`SseConfig::max_connections_per_addr`](crate::SseConfig::max_connections_per_addr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Decides who may publish and administer.
pub trait PublishAuthorizer: Send + Sync + 'static {
    /// `Ok` if the request may use the publish and administration endpoints.
    fn authorize<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<(), AuthError>>;
}

const _: Option<&dyn PublishAuthorizer> = None;

/// Publishers must send `Authorization: Bearer <token>` with this token
/// (compared in constant time).
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// Requires `token`.
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into())
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl PublishAuthorizer for BearerToken {
    fn authorize<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<(), AuthError>> {
        use subtle::ConstantTimeEq as _;
        let given = bearer_token(&request.headers).unwrap_or_default();
        let ok = bool::from(given.as_bytes().ct_eq(self.0.as_bytes()));
        let result = if ok {
            Ok(())
        } else {
            Err(AuthError::Unauthorized("a valid bearer token is required".to_owned()))
        };
        Box::pin(std::future::ready(result))
    }
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The decoded query parameters of a request, in order.
pub fn query_pairs(request: &Parts) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(request.uri.query().unwrap_or_default().as_bytes())
}

/// Query parameters with a meaning of their own; every other one becomes
/// connection metadata.
const RESERVED_PARAMS: [&str; 5] = ["userId", "sessionId", "channel", "lastEventId", "access_token"];

/// What an adapter sends back.
#[derive(Debug)]
#[non_exhaustive]
pub enum SseReply {
    /// `200` with [`sse_headers`], the body being the connection's frames as
    /// they come.
    Stream(Connection),
    /// A complete response (JSON, an error, or the finite `overloaded`
    /// event stream).
    Response(Response<Bytes>),
}

impl SseReply {
    /// Converts the reply into an [`http::Response`], whatever the
    /// framework's body type `B`: a live connection becomes `200` with
    /// [`sse_headers`] and the body `stream` makes of it (its frames written
    /// as they come, never re-encoded or compressed); a complete response
    /// keeps its status, headers and bytes.
    pub fn into_http_response<B: From<Bytes>>(self, stream: impl FnOnce(Connection) -> B) -> Response<B> {
        match self {
            SseReply::Stream(connection) => {
                let mut response = Response::new(stream(connection));
                *response.headers_mut() = sse_headers();
                response
            }
            SseReply::Response(response) => response.map(B::from),
        }
    }
}

impl From<Connection> for SseReply {
    fn from(connection: Connection) -> Self {
        SseReply::Stream(connection)
    }
}

impl From<Response<Bytes>> for SseReply {
    fn from(response: Response<Bytes>) -> Self {
        SseReply::Response(response)
    }
}

/// The outcome of [`SseManager::connect`]: the connection, or the answer to
/// its refusal ([`connect_error`]).
impl From<Result<Connection, ConnectError>> for SseReply {
    fn from(result: Result<Connection, ConnectError>) -> Self {
        match result {
            Ok(connection) => SseReply::Stream(connection),
            Err(error) => SseReply::Response(connect_error(&error)),
        }
    }
}

/// Declares an adapter's response type: a newtype around [`SseReply`] with
/// `new` and the conversions from a [`Connection`], an [`SseReply`] and the
/// result of [`SseManager::connect`]. The orphan rule makes each framework
/// adapter own its response type; this macro keeps the three identical, and
/// the adapter writes only the conversion into its framework's response,
/// through the tuple field and [`SseReply::into_http_response`].
///
/// ```
/// sse_core::sse_response_type! {
///     /// An SSE answer for my framework.
///     pub struct MyResponse;
/// }
///
/// impl MyResponse {
///     fn into_http(self) -> http::Response<bytes::Bytes> {
///         self.0.into_http_response(|_connection| bytes::Bytes::new())
///     }
/// }
///
/// let answer = http::Response::builder().status(404).body(bytes::Bytes::from_static(b"{}")).expect("a response");
/// let response = MyResponse::new(answer).into_http();
/// assert_eq!(response.status(), 404);
/// ```
#[macro_export]
macro_rules! sse_response_type {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug)]
        #[must_use]
        $vis struct $name($crate::http::SseReply);

        impl $name {
            /// The response for `reply`: a
            /// [`Connection`]($crate::Connection), an
            /// [`SseReply`]($crate::http::SseReply), the result of
            /// [`SseManager::connect`]($crate::SseManager::connect), or a
            /// complete `http::Response<Bytes>`.
            pub fn new(reply: impl ::core::convert::Into<$crate::http::SseReply>) -> Self {
                $name(reply.into())
            }
        }

        impl ::core::convert::From<$crate::http::SseReply> for $name {
            fn from(reply: $crate::http::SseReply) -> Self {
                $name(reply)
            }
        }

        impl ::core::convert::From<$crate::Connection> for $name {
            fn from(connection: $crate::Connection) -> Self {
                $name(connection.into())
            }
        }

        /// A refused connection becomes its answer
        /// ([`connect_error`]($crate::http::connect_error)).
        impl ::core::convert::From<::core::result::Result<$crate::Connection, $crate::ConnectError>> for $name {
            fn from(result: ::core::result::Result<$crate::Connection, $crate::ConnectError>) -> Self {
                $name(result.into())
            }
        }
    };
}

/// The SSE endpoints of the HTTP contract, independent of any framework.
///
/// ```
/// use sse_core::http::{BearerToken, DevIdentity, SseEndpoints};
/// use sse_core::SseManager;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SseManager::builder().build()?;
/// let endpoints = SseEndpoints::new(manager, DevIdentity::enable()).publish_authorizer(BearerToken::new("secret"));
/// # let _ = endpoints;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SseEndpoints {
    manager: SseManager,
    authenticator: Arc<dyn Authenticator>,
    publisher: Option<Arc<dyn PublishAuthorizer>>,
    channels: Option<Arc<dyn ChannelAuthorizer>>,
}

impl fmt::Debug for SseEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEndpoints")
            .field("manager", &self.manager)
            .field("publish_authorizer", &self.publisher.is_some())
            .finish_non_exhaustive()
    }
}

impl SseEndpoints {
    /// Endpoints over `manager`, identifying subscribers with
    /// `authenticator`. Publishing and administration are open until
    /// [`SseEndpoints::publish_authorizer`] guards them.
    pub fn new(manager: SseManager, authenticator: impl Authenticator) -> Self {
        SseEndpoints {
            manager,
            authenticator: Arc::new(authenticator),
            publisher: None,
            channels: None,
        }
    }

    /// Guards publish and every administration endpoint with `authorizer`.
    #[must_use]
    pub fn publish_authorizer(mut self, authorizer: impl PublishAuthorizer) -> Self {
        self.publisher = Some(Arc::new(authorizer));
        self
    }

    /// Asks `authorizer` for every channel a subscriber joins, at connect
    /// time and on runtime subscribes.
    #[must_use]
    pub fn channel_authorizer(mut self, authorizer: impl ChannelAuthorizer) -> Self {
        self.channels = Some(Arc::new(authorizer));
        self
    }

    async fn may_join(&self, subscriber: &Subscriber<'_>, channel: &str) -> bool {
        match &self.channels {
            Some(authorizer) => authorizer.authorize(subscriber, channel).await,
            None => true,
        }
    }

    /// The manager behind the endpoints.
    pub fn manager(&self) -> &SseManager {
        &self.manager
    }

    /// Answers `GET` on the stream endpoint: authenticates, checks the
    /// requested channels, and registers the connection.
    ///
    /// The query may hold `channel` (repeatable), `lastEventId` (the
    /// `Last-Event-ID` header wins over it) and `access_token` (for the
    /// authenticator); every other parameter becomes connection metadata.
    pub async fn connect(&self, request: &Parts) -> SseReply {
        let identity = match self.authenticator.authenticate(request).await {
            Ok(identity) => identity,
            Err(error) => return SseReply::Response(auth_error(&error)),
        };
        let mut options = ConnectOptions::new();
        let mut last_event_id = None;
        let subscriber = Subscriber {
            user_id: identity.user_id.as_deref(),
            session_id: identity.session_id.as_deref(),
            client_id: None,
        };
        for (key, value) in query_pairs(request) {
            match &*key {
                "channel" => {
                    if !identity.may_join(&value) || !self.may_join(&subscriber, &value).await {
                        let error = AuthError::ChannelForbidden {
                            channel: value.chars().take(128).collect(),
                        };
                        return SseReply::Response(auth_error(&error));
                    }
                    options = options.channel(value);
                }
                "lastEventId" => last_event_id = Some(value.into_owned()),
                key if RESERVED_PARAMS.contains(&key) => {}
                _ => options = options.metadata(key, value),
            }
        }
        if let Some(header) = request.headers.get("last-event-id") {
            // A header that is not text can never match an id: it resets.
            last_event_id = Some(String::from_utf8_lossy(header.as_bytes()).into_owned());
        }
        if let Some(user) = identity.user_id {
            options = options.user(user);
        }
        if let Some(session) = identity.session_id {
            options = options.session(session);
        }
        for (key, value) in identity.metadata {
            options = options.metadata(key, value);
        }
        if let Some(expires_in) = identity.expires_in {
            options = options.expires_after(expires_in);
        }
        if let Some(allowed) = identity.allowed_channels {
            options = options.allowed_channels(allowed);
        }
        if let Some(RemoteAddr(addr)) = request.extensions.get::<RemoteAddr>() {
            options = options.remote_addr(addr.ip());
        }
        self.manager.connect(options.last_event_id(last_event_id)).await.into()
    }

    /// Answers any request under the mount point: `GET` on the mount root
    /// (`path` empty or `/`) is [`SseEndpoints::connect`], anything else
    /// [`SseEndpoints::api`]. `path` is the raw (still percent-encoded)
    /// request path below the mount point; `body` is the request body,
    /// already limited to [`MAX_BODY_BYTES`] by the adapter.
    pub async fn handle(&self, request: &Parts, path: &str, body: Bytes) -> SseReply {
        if request.method == Method::GET && path.trim_matches('/').is_empty() {
            self.connect(request).await
        } else {
            SseReply::Response(self.api(request, path, body).await)
        }
    }

    /// Answers the publish and administration endpoints. `path` is the
    /// request path below the mount point (`"publish"`, `"stats"`,
    /// `"connections"`, `"connections/{clientId}"`, `"subscribe"`,
    /// `"unsubscribe"`, and `"client.js"`, the [`CLIENT_JS`] script, served
    /// without authorization); `body` is the request body, already limited to
    /// [`MAX_BODY_BYTES`] by the adapter.
    pub async fn api(&self, request: &Parts, path: &str, body: Bytes) -> Response<Bytes> {
        let path = path.trim_matches('/');
        let method = &request.method;
        if path == "client.js" && (method == Method::GET || method == Method::HEAD) {
            // The script is public: served before the publish authorizer.
            let mut response = with_body(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                Bytes::from_static(CLIENT_JS.as_bytes()),
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return response;
        }
        let route = match (path, method) {
            ("publish", &Method::POST) => Route::Publish,
            ("stats", &Method::GET) => Route::Stats,
            ("connections", &Method::GET) => Route::Connections,
            ("subscribe", &Method::POST) => Route::Subscribe(true),
            ("unsubscribe", &Method::POST) => Route::Subscribe(false),
            (path, &Method::DELETE) if path.starts_with("connections/") => {
                Route::Disconnect(&path["connections/".len()..])
            }
            ("" | "publish" | "stats" | "connections" | "subscribe" | "unsubscribe" | "client.js", _) => {
                return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            }
            (path, _) if path.starts_with("connections/") => {
                return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            }
            _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
        };
        if let Some(publisher) = &self.publisher {
            if let Err(error) = publisher.authorize(request).await {
                return auth_error(&error);
            }
        }
        match route {
            Route::Publish => self.publish(&body).await,
            Route::Stats => json(StatusCode::OK, &self.manager.stats()),
            Route::Connections => json(StatusCode::OK, &self.manager.connections()),
            Route::Subscribe(subscribe) => self.subscribe(&body, subscribe).await,
            Route::Disconnect(client_id) => {
                if self.manager.disconnect(client_id) {
                    empty(StatusCode::NO_CONTENT)
                } else {
                    error(StatusCode::NOT_FOUND, "no connection with this clientId")
                }
            }
        }
    }

    async fn publish(&self, body: &[u8]) -> Response<Bytes> {
        let request: PublishRequest = match parse_json(body) {
            Ok(request) => request,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        let (target, event) = match request.into_parts() {
            Ok(parts) => parts,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        match self.manager.send(target, event).await {
            Ok(delivery) => json(
                StatusCode::OK,
                &serde_json::json!({ "id": delivery.id, "delivered": delivery.delivered }),
            ),
            Err(SendError::ShutDown) => error(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"),
            Err(failure @ SendError::Backplane(_)) => error(StatusCode::SERVICE_UNAVAILABLE, &failure.to_string()),
            Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, &failure.to_string()),
        }
    }

    async fn subscribe(&self, body: &[u8], subscribe: bool) -> Response<Bytes> {
        let request: SubscribeRequest = match parse_json(body) {
            Ok(request) => request,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        if subscribe && self.channels.is_some() {
            let Some(info) = self.manager.connection_info(&request.client_id) else {
                return error(StatusCode::NOT_FOUND, "no connection with this clientId");
            };
            if !self.may_join(&subscriber_of(&info), &request.channel).await {
                return auth_error(&AuthError::ChannelForbidden {
                    channel: request.channel.chars().take(128).collect(),
                });
            }
        }
        let result = if subscribe {
            self.manager.subscribe(&request.client_id, &request.channel)
        } else {
            self.manager.unsubscribe(&request.client_id, &request.channel)
        };
        match result {
            Ok(changed) => json(
                StatusCode::OK,
                &serde_json::json!({ "clientId": request.client_id, "channel": request.channel, "changed": changed }),
            ),
            Err(SubscribeError::UnknownClient(_)) => error(StatusCode::NOT_FOUND, "no connection with this clientId"),
            Err(SubscribeError::Refused(refused @ ConnectError::ChannelForbidden { .. })) => connect_error(&refused),
            Err(error @ SubscribeError::Refused(_)) => self::error(StatusCode::BAD_REQUEST, &error.to_string()),
        }
    }
}

fn subscriber_of(info: &ConnectionInfo) -> Subscriber<'_> {
    Subscriber {
        user_id: info.user_id.as_deref(),
        session_id: info.session_id.as_deref(),
        client_id: Some(info.client_id.as_str()),
    }
}

enum Route<'a> {
    Publish,
    Stats,
    Connections,
    Subscribe(bool),
    Disconnect(&'a str),
}

/// Deserializes a field that is present as `Some`, even when it is `null`
/// (a plain `Option` would read `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeRequest {
    client_id: String,
    channel: String,
}

/// The body of `POST /publish`.
///
/// ```json
/// { "event": "notification", "data": {"any": "json"}, "id": "optional",
///   "retry": 5000, "target": "all", "targetId": "...", "targetIds": ["..."] }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PublishRequest {
    /// The event name.
    pub event: Option<String>,
    /// The data: a JSON string is sent as its text, any other value as its
    /// JSON serialization (`null` included: it is sent as `null`). `None`
    /// only when the field is absent.
    #[serde(default, deserialize_with = "present")]
    pub data: Option<serde_json::Value>,
    /// The event id; the manager assigns one when absent.
    pub id: Option<String>,
    /// A reconnection hint, in milliseconds.
    pub retry: Option<u64>,
    /// `all` (default), `user`, `users`, `session`, `client` or `channel`.
    pub target: Option<String>,
    /// The user, session, client or channel of a single target.
    pub target_id: Option<String>,
    /// The users of the `users` target.
    pub target_ids: Option<Vec<String>>,
}

impl PublishRequest {
    /// Checks the request and turns it into a target and an event.
    ///
    /// # Errors
    /// A message saying what is wrong: an unknown target, a missing
    /// `targetId` or `targetIds`, or an event name or id that is invalid.
    pub fn into_parts(self) -> Result<(Target, Event), String> {
        let target_id = |kind: &str| match &self.target_id {
            Some(id) if !id.is_empty() => Ok(id.clone()),
            _ => Err(format!("target {kind:?} requires a non-empty targetId")),
        };
        let target = match self.target.as_deref().unwrap_or("all") {
            "all" => Target::All,
            "user" => Target::User(target_id("user")?),
            "session" => Target::Session(target_id("session")?),
            "client" => Target::client(target_id("client")?),
            "channel" => Target::Channel(target_id("channel")?),
            "users" => match &self.target_ids {
                Some(ids) => Target::Users(ids.clone()),
                None => return Err("target \"users\" requires targetIds".to_owned()),
            },
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(format!(
                    "unknown target {shown:?}: expected all, user, users, session, client or channel"
                ));
            }
        };
        let mut builder = Event::builder();
        if let Some(name) = self.event {
            builder = builder.event(name);
        }
        if let Some(id) = self.id {
            builder = builder.id(id);
        }
        if let Some(retry) = self.retry {
            builder = builder.retry(Duration::from_millis(retry));
        }
        builder = match self.data {
            Some(serde_json::Value::String(text)) => builder.data(text),
            Some(value) => builder.data(value.to_string()),
            None => builder,
        };
        let event = builder.build().map_err(|e| e.to_string())?;
        Ok((target, event))
    }
}

/// A JSON response.
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Bytes> {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", Bytes::from(body)),
        Err(_) => with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            Bytes::from_static(br#"{"error":"could not serialize the response"}"#),
        ),
    }
}

/// A JSON error response `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response<Bytes> {
    json(status, &serde_json::json!({ "error": message }))
}

/// The `413` answer to a body over [`MAX_BODY_BYTES`].
pub fn payload_too_large() -> Response<Bytes> {
    error(StatusCode::PAYLOAD_TOO_LARGE, "request body is larger than 1 MiB")
}

/// The `400` answer to a request body that could not be read (the client
/// broke off, or sent a malformed chunked body).
pub fn unreadable_body() -> Response<Bytes> {
    error(StatusCode::BAD_REQUEST, "could not read the request body")
}

fn empty(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The response for a refused authentication or authorization.
pub fn auth_error(error: &AuthError) -> Response<Bytes> {
    match error {
        AuthError::Unauthorized(_) => {
            let mut response = self::error(StatusCode::UNAUTHORIZED, &error.to_string());
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        AuthError::ChannelForbidden { channel } => json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "error": error.to_string(), "channel": channel }),
        ),
    }
}

/// The response for a refused connection. [`ConnectError::Overloaded`] is a
/// `200` event stream holding a `retry:` hint and one `overloaded` event, so
/// that browsers retry later instead of giving up.
pub fn connect_error(error: &ConnectError) -> Response<Bytes> {
    match error {
        ConnectError::Overloaded { retry } => {
            let mut response = Response::new(overloaded_body(*retry));
            *response.headers_mut() = sse_headers();
            response
        }
        ConnectError::UserLimit { .. } | ConnectError::AddrLimit { .. } => {
            self::error(StatusCode::TOO_MANY_REQUESTS, &error.to_string())
        }
        ConnectError::ChannelForbidden { channel } => auth_error(&AuthError::ChannelForbidden {
            channel: channel.clone(),
        }),
        ConnectError::ShuttingDown => self::error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        _ => self::error(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handle_routes_the_mount_point() {
        let manager = SseManager::builder().build().expect("manager");
        let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
        let request = |method: Method, uri: &str| {
            let (mut parts, ()) = http::Request::new(()).into_parts();
            parts.method = method;
            parts.uri = uri.parse().expect("uri");
            parts
        };
        let reply = endpoints
            .handle(&request(Method::GET, "/?userId=u"), "/", Bytes::new())
            .await;
        let response = reply.into_http_response(|connection| Bytes::from(connection.client_id().to_string()));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers(), &sse_headers());
        assert_eq!(
            manager.connection_count(),
            0,
            "the connection was dropped with its stream"
        );
        for (method, path, status) in [
            (Method::POST, "", StatusCode::METHOD_NOT_ALLOWED),
            (Method::GET, "stats", StatusCode::OK),
            (Method::GET, "nothing", StatusCode::NOT_FOUND),
        ] {
            let reply = endpoints.handle(&request(method, "/"), path, Bytes::new()).await;
            assert_eq!(reply.into_http_response(|_| Bytes::new()).status(), status, "{path}");
        }
    }

    #[test]
    fn channel_patterns() {
        let identity = Identity::user("u").with_allowed_channels(["news", "orders/*"]);
        assert!(identity.may_join("news"));
        assert!(identity.may_join("orders/17"));
        assert!(!identity.may_join("newsroom"));
        assert!(!identity.may_join("admin"));
        assert!(Identity::anonymous().may_join("anything"));
    }

    #[test]
    fn publish_requests() {
        let parse = |body: &str| {
            serde_json::from_str::<PublishRequest>(body)
                .map_err(|e| e.to_string())
                .and_then(PublishRequest::into_parts)
        };
        let (target, event) = parse(r#"{"data":"line1\nline2","target":"user","targetId":"u"}"#).expect("valid");
        assert!(matches!(target, Target::User(ref u) if u == "u"));
        assert_eq!(event.data(), Some("line1\nline2"));
        let (_, event) = parse(r#"{"event":"n","data":{"a":1}}"#).expect("valid");
        assert_eq!(event.data(), Some(r#"{"a":1}"#));
        let (_, event) = parse(r#"{"event":"n","data":null}"#).expect("valid");
        assert_eq!(event.data(), Some("null"), "null is sent as its JSON serialization");
        let (_, event) = parse(r#"{"event":"n"}"#).expect("valid");
        assert_eq!(event.data(), None, "absent data is no data");
        assert!(parse(r#"{"target":"planet"}"#).is_err_and(|e| e.contains("unknown target")));
        assert!(parse(r#"{"target":"user"}"#).is_err_and(|e| e.contains("targetId")));
        assert!(parse(r#"{"target":"users"}"#).is_err_and(|e| e.contains("targetIds")));
        assert!(parse(r#"{"event":"a\nb"}"#).is_err());
        assert!(parse(r#"{"id":"a\rb"}"#).is_err());
    }
}

#[cfg(all(test, feature = "tokio"))]
mod authorization_tests {
    use super::*;

    /// Identifies every subscriber as `alice`, allowed `news` and `orders/*`.
    struct Alice;

    impl Authenticator for Alice {
        fn authenticate<'a>(&'a self, _: &'a Parts) -> BoxFuture<'a, Result<Identity, AuthError>> {
            let identity = Identity::user("alice").with_allowed_channels(["news", "orders/*"]);
            Box::pin(std::future::ready(Ok(identity)))
        }
    }

    /// Refuses `orders/secret` to everybody.
    struct NoSecrets;

    impl ChannelAuthorizer for NoSecrets {
        fn authorize<'a>(&'a self, _: &'a Subscriber<'a>, channel: &'a str) -> BoxFuture<'a, bool> {
            Box::pin(std::future::ready(channel != "orders/secret"))
        }
    }

    fn request(method: Method, uri: &str) -> Parts {
        let mut parts = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("valid request")
            .into_parts()
            .0;
        parts
            .extensions
            .insert(RemoteAddr(SocketAddr::from(([127, 0, 0, 1], 5000))));
        parts
    }

    fn body(response: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(response.body()).expect("JSON body")
    }

    #[tokio::test]
    async fn channels_are_authorized_at_connect_and_on_subscribe() {
        let manager = SseManager::new(crate::SseConfig::default().max_connections_per_addr(Some(1))).expect("manager");
        let endpoints = SseEndpoints::new(manager.clone(), Alice).channel_authorizer(NoSecrets);
        for channel in ["admin", "orders/secret"] {
            let reply = endpoints
                .connect(&request(Method::GET, &format!("/?channel={channel}")))
                .await;
            let SseReply::Response(response) = reply else {
                panic!("{channel} was let in")
            };
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert_eq!(body(&response)["channel"], channel);
        }
        let reply = endpoints
            .connect(&request(Method::GET, "/?channel=news&channel=orders/1"))
            .await;
        let SseReply::Stream(connection) = reply else {
            panic!("alice was refused")
        };
        let client_id = connection.client_id().to_string();

        let second = endpoints.connect(&request(Method::GET, "/")).await;
        let SseReply::Response(response) = second else {
            panic!("over the per-address limit")
        };
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

        for (channel, status) in [
            ("orders/2", StatusCode::OK),
            ("admin", StatusCode::FORBIDDEN),
            ("orders/secret", StatusCode::FORBIDDEN),
        ] {
            let json = serde_json::json!({ "clientId": client_id, "channel": channel }).to_string();
            let response = endpoints
                .api(&request(Method::POST, "/subscribe"), "subscribe", Bytes::from(json))
                .await;
            assert_eq!(response.status(), status, "{channel}");
            if status == StatusCode::FORBIDDEN {
                assert_eq!(body(&response)["channel"], channel);
            }
        }
        let info = manager.connection_info(&client_id).expect("still connected");
        assert_eq!(
            info.channels.iter().collect::<Vec<_>>(),
            ["news", "orders/1", "orders/2"]
        );
        drop(connection);
        assert_eq!(manager.connection_count(), 0);
        let again = endpoints.connect(&request(Method::GET, "/")).await;
        assert!(matches!(again, SseReply::Stream(_)), "the address was freed");
    }
}
