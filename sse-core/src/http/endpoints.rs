//! The endpoints of the HTTP contract: [`SseEndpoints`] authenticates and
//! connects subscribers, routes the publish and administration requests
//! under the mount point, and answers unknown paths and wrong methods.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::connect::{StreamQuery, remote_addr};
use super::requests::{SubscribeRequest, parse_json};
use super::responses::{empty, with_body};
use super::routes::{Admin, Route, RouteGroup};
use super::{
    AuthError, Authenticator, CLIENT_JS, ChannelAuthorizer, PublishAuthorizer, PublishRequest, RemoteAddr, SseReply,
    Subscriber, auth_error, bearer_token, error, json, method_not_allowed, rate_limited,
};
use crate::connection::{ConnectOptions, ConnectionInfo};
use crate::error::{ClusterStatsError, SendError, SubscribeError};
use crate::manager::SseManager;

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

    /// Guards publish and every administration endpoint with `authorizer`,
    /// asking its [`authorize_group`](PublishAuthorizer::authorize_group)
    /// with the route's group ([`RouteGroup::Publish`] or
    /// [`RouteGroup::Admin`]).
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

    /// The publish authorizer, if one guards publish and administration.
    pub(super) fn guard(&self) -> Option<Arc<dyn PublishAuthorizer>> {
        self.publisher.clone()
    }

    /// Reads a request to open a stream, as the stream endpoint does: for
    /// a route of the application's own (the adapters' extractors call it),
    /// which may add to the options before it connects.
    ///
    /// * The identity is the configured [`Authenticator`]'s: its user,
    ///   session, metadata, expiry, allowed channels, and the channels it
    ///   assigns ([`Identity::channels`](super::Identity::channels)), joined
    ///   at connect time so that replay covers them.
    /// * Every `channel` query parameter is checked against the identity's
    ///   allowed channels and the [`ChannelAuthorizer`], in order; the
    ///   first refused one is an [`AuthError::ChannelForbidden`].
    /// * The resume point and the client's address are those of
    ///   [`ConnectOptions::from_request`]: the `Last-Event-ID` header wins
    ///   over the `lastEventId` query parameter.
    /// * The identity's metadata becomes the connection's
    ///   [metadata](crate::ConnectionInfo::metadata). Every other query
    ///   parameter but `userId`, `sessionId` and `access_token` becomes
    ///   [client metadata](crate::ConnectionInfo::client_metadata), kept
    ///   apart; under an authenticator that
    ///   [trusts the query](Authenticator::trusts_query) ([`DevIdentity`](super::DevIdentity)),
    ///   it becomes metadata too, and the identity's wins over it.
    ///
    /// A refusal answers, through [`auth_error`] (or the `From<AuthError>`
    /// conversions of [`SseReply`] and the adapters' responses), exactly as
    /// the stream endpoint does: `401`, or `403` naming the channel.
    ///
    /// ```
    /// use sse_core::http::{DevIdentity, SseEndpoints, SseReply};
    /// use sse_core::SseManager;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let endpoints = SseEndpoints::new(SseManager::builder().build()?, DevIdentity::enable());
    /// let (request, ()) = http::Request::get("/orders/17/events?userId=alice").body(())?.into_parts();
    /// let reply: SseReply = match endpoints.connect_options(&request).await {
    ///     Ok(options) => endpoints.manager().connect(options.channel("orders/17")).await.into(),
    ///     Err(refused) => refused.into(),
    /// };
    /// assert!(matches!(reply, SseReply::Stream(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_options(&self, request: &Parts) -> Result<ConnectOptions, AuthError> {
        let identity = self.authenticator.authenticate(request).await?;
        let query = StreamQuery::of(request);
        let subscriber = Subscriber {
            user_id: identity.user_id.as_deref(),
            session_id: identity.session_id.as_deref(),
            client_id: None,
        };
        for channel in &query.channels {
            if !identity.may_join(channel) || !self.may_join(&subscriber, channel).await {
                return Err(AuthError::ChannelForbidden {
                    channel: channel.chars().take(128).collect(),
                });
            }
        }
        let mut options = ConnectOptions::new()
            .channels(query.channels)
            .channels(identity.channels)
            .last_event_id(query.last_event_id);
        if self.authenticator.trusts_query() {
            for (key, value) in query.metadata.into_iter().chain(identity.metadata) {
                options = options.metadata(key, value);
            }
        } else {
            for (key, value) in query.metadata {
                options = options.client_metadata(key, value);
            }
            for (key, value) in identity.metadata {
                options = options.metadata(key, value);
            }
        }
        if let Some(user) = identity.user_id {
            options = options.user(user);
        }
        if let Some(session) = identity.session_id {
            options = options.session(session);
        }
        if let Some(expires_in) = identity.expires_in {
            options = options.expires_after(expires_in);
        }
        if let Some(allowed) = identity.allowed_channels {
            options = options.allowed_channels(allowed);
        }
        Ok(remote_addr(options, request))
    }

    /// Answers `GET` on the stream endpoint: reads the request with
    /// [`SseEndpoints::connect_options`] and registers the connection, or
    /// answers the refusal.
    ///
    /// The query may hold `channel` (repeatable), `lastEventId` (the
    /// `Last-Event-ID` header wins over it) and `access_token` (for the
    /// authenticator); every other parameter becomes connection metadata,
    /// client-supplied unless the authenticator trusts the query (see
    /// [`SseEndpoints::connect_options`]).
    pub async fn connect(&self, request: &Parts) -> SseReply {
        match self.connect_options(request).await {
            Ok(options) => self.manager.connect(options).await.into(),
            Err(refused) => refused.into(),
        }
    }

    /// Answers any request under the mount point: `GET` on the mount root
    /// (`path` empty or `/`) is [`SseEndpoints::connect`], anything else
    /// [`SseEndpoints::api`]. `path` is the raw (still percent-encoded)
    /// request path below the mount point; `body` is the request body,
    /// already limited to [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) by the adapter.
    pub async fn handle(&self, request: &Parts, path: &str, body: Bytes) -> SseReply {
        if request.method == Method::GET && path.trim_matches('/').is_empty() {
            self.connect(request).await
        } else {
            SseReply::Response(self.api(request, path, body).await)
        }
    }

    /// Answers the requests of one [`RouteGroup`] as [`SseEndpoints::handle`]
    /// does, and any other path `404`, as an unknown one: for an adapter
    /// mounting the group on its own, so that an application can put
    /// middleware of its own on each group. The publish authorizer still
    /// guards the publish and administration groups, if one is set.
    pub async fn handle_group(&self, group: RouteGroup, request: &Parts, path: &str, body: Bytes) -> SseReply {
        if RouteGroup::of(path) == Some(group) {
            self.handle(request, path, body).await
        } else {
            SseReply::Response(error(StatusCode::NOT_FOUND, "no such endpoint"))
        }
    }

    /// Answers the publish and administration endpoints. `path` is the
    /// request path below the mount point (`"publish"`, `"stats"`,
    /// `"connections"`, `"connections/{clientId}"`, `"presence/{channel}"`, `"subscribe"`,
    /// `"unsubscribe"`, and `"client.js"`, the [`CLIENT_JS`] script, served
    /// without authorization); `body` is the request body, already limited to
    /// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) by the adapter.
    ///
    /// An unknown path is answered `404`, a method the path does not accept
    /// `405` with an `Allow` header listing those it does
    /// ([`method_not_allowed`](super::method_not_allowed)), both before the
    /// publish authorizer is asked. The mount root is answered `405`
    /// (`Allow: GET`) whatever the method: its `GET` opens a stream, which is
    /// [`SseEndpoints::connect`]'s (and [`SseEndpoints::handle`]'s).
    pub async fn api(&self, request: &Parts, path: &str, body: Bytes) -> Response<Bytes> {
        let Some(route) = Route::of(path.trim_matches('/')) else {
            return error(StatusCode::NOT_FOUND, "no such endpoint");
        };
        let methods = route.methods();
        if !methods.contains(&request.method) {
            return method_not_allowed(methods);
        }
        let group = route.group();
        let admin = match route {
            // Streams are opened by `handle` and `connect`, never here.
            Route::Stream => return method_not_allowed(methods),
            // The script is public: served before the publish authorizer.
            Route::ClientJs => return client_js(),
            Route::Admin(admin) => admin,
        };
        if let Some(publisher) = &self.publisher {
            if let Err(error) = publisher.authorize_group(request, group).await {
                return auth_error(&error);
            }
        }
        match admin {
            Admin::Publish => self.publish(request, &body).await,
            Admin::Stats => json(StatusCode::OK, &self.manager.stats()),
            Admin::ClusterStats => match self.manager.cluster_stats().await {
                Ok(stats) => json(StatusCode::OK, &stats),
                Err(ClusterStatsError::NotShared) => {
                    error(StatusCode::NOT_IMPLEMENTED, &ClusterStatsError::NotShared.to_string())
                }
                Err(failure) => error(StatusCode::SERVICE_UNAVAILABLE, &failure.to_string()),
            },
            Admin::Connections => json(StatusCode::OK, &self.manager.connections()),
            Admin::Subscribe(subscribe) => self.subscribe(&body, subscribe).await,
            Admin::Presence(channel) => self.presence(channel).await,
            Admin::Disconnect(client_id) => {
                if self.manager.disconnect(client_id) {
                    empty(StatusCode::NO_CONTENT)
                } else {
                    error(StatusCode::NOT_FOUND, "no connection with this clientId")
                }
            }
        }
    }

    /// `POST publish`: the event of `body`, sent once per `Idempotency-Key`
    /// header when there is one, within the publisher's
    /// [rate limit](crate::SseConfig::publish_rate).
    async fn publish(&self, head: &Parts, body: &[u8]) -> Response<Bytes> {
        if let Err(SendError::RateLimited { retry_after }) = self.manager.check_publish_rate(&self.publisher_of(head)) {
            return rate_limited(retry_after);
        }
        let key = match head.headers.get("idempotency-key").map(|value| value.to_str()) {
            None => None,
            Some(Ok(key)) => Some(key),
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the Idempotency-Key header is not visible ASCII",
                );
            }
        };
        let request: PublishRequest = match parse_json(body) {
            Ok(request) => request,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        let (target, event) = match request.into_parts() {
            Ok(parts) => parts,
            Err(refused) => return error(StatusCode::BAD_REQUEST, &refused.to_string()),
        };
        let sent = match key {
            Some(key) => self.manager.send_idempotent(key, target, event).await,
            None => self.manager.send(target, event).await,
        };
        match sent {
            Ok(delivery) if delivery.duplicate => json(
                StatusCode::OK,
                &serde_json::json!({ "id": delivery.id, "delivered": 0, "duplicate": true }),
            ),
            Ok(delivery) => json(
                StatusCode::OK,
                &serde_json::json!({ "id": delivery.id, "delivered": delivery.delivered }),
            ),
            Err(SendError::ShutDown) => error(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"),
            Err(failure @ (SendError::Backplane(_) | SendError::OverBudget { .. })) => {
                let outcome = if failure.is_outcome_unknown() {
                    "unknown"
                } else {
                    "not-published"
                };
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "error": failure.to_string(), "outcome": outcome }),
                )
            }
            Err(failure @ SendError::InvalidIdempotencyKey(_)) => error(StatusCode::BAD_REQUEST, &failure.to_string()),
            Err(SendError::RateLimited { retry_after }) => rate_limited(retry_after),
            Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, &failure.to_string()),
        }
    }

    /// Who publishes `head`, for the publisher's rate limit: the bearer
    /// token the publish authorizer accepted, else the client's address.
    /// Without an authorizer a token proves nothing, and is not used: any
    /// number of them would cost nothing to make.
    fn publisher_of<'a>(&self, head: &'a Parts) -> Publisher<'a> {
        let token = self
            .publisher
            .as_ref()
            .and_then(|_| bearer_token(&head.headers))
            .filter(|token| !token.is_empty());
        match (token, head.extensions.get::<RemoteAddr>()) {
            (Some(token), _) => Publisher::Token(token),
            (None, Some(RemoteAddr(addr))) => Publisher::Addr(addr.ip()),
            (None, None) => Publisher::Anonymous,
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
            Err(SubscribeError::ChannelForbidden { channel }) => auth_error(&AuthError::ChannelForbidden { channel }),
            Err(error) => self::error(StatusCode::BAD_REQUEST, &error.to_string()),
        }
    }
}

impl SseEndpoints {
    /// `GET presence/{channel}`: who is in the channel (still
    /// percent-encoded in `channel`).
    async fn presence(&self, channel: &str) -> Response<Bytes> {
        let Ok(channel) = percent_encoding::percent_decode_str(channel).decode_utf8() else {
            return error(StatusCode::BAD_REQUEST, "the channel is not UTF-8 once percent-decoded");
        };
        let users = match self.manager.presence(&channel).await {
            Ok(users) => users,
            Err(failure) => return error(StatusCode::SERVICE_UNAVAILABLE, &failure.to_string()),
        };
        json(
            StatusCode::OK,
            &serde_json::json!({ "channel": channel, "users": users }),
        )
    }
}

/// A publisher, as its rate limit knows it.
#[derive(Hash)]
enum Publisher<'a> {
    /// By the bearer token the publish authorizer accepted.
    Token(&'a str),
    /// By the client's address.
    Addr(IpAddr),
    /// Every publisher without either.
    Anonymous,
}

fn subscriber_of(info: &ConnectionInfo) -> Subscriber<'_> {
    Subscriber {
        user_id: info.user_id.as_deref(),
        session_id: info.session_id.as_deref(),
        client_id: Some(info.client_id.as_str()),
    }
}

/// The script [`CLIENT_JS`], as JavaScript that is not to be cached.
fn client_js() -> Response<Bytes> {
    let mut response = with_body(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        Bytes::from_static(CLIENT_JS.as_bytes()),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
