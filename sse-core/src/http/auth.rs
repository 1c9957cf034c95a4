//! Who may subscribe, join a channel, publish and administer: the
//! [`Identity`] an [`Authenticator`] establishes, the [`ChannelAuthorizer`]
//! and [`PublishAuthorizer`] hooks, their ready-made implementations
//! ([`DevIdentity`], [`BearerToken`]), and the request's [`RemoteAddr`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::request::Parts;

use super::{RouteGroup, query_pairs};
use crate::connection::channel_allowed;
use async_trait::async_trait;

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
    /// The channels the connection joins, besides those its request asks
    /// for: joined at connect time, so that a `Last-Event-ID` replay covers
    /// them. They are the authenticator's own decision, not asked of the
    /// [`ChannelAuthorizer`], but must lie within
    /// [`allowed_channels`](Identity::allowed_channels) when that is set.
    pub channels: Vec<String>,
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

    /// Joins the connection to `channels` at connect time, whatever its
    /// request asks for (see [`Identity::channels`]).
    ///
    /// ```
    /// use sse_core::http::Identity;
    ///
    /// let identity = Identity::user("alice").with_channels(["users/alice", "news"]);
    /// assert_eq!(identity.channels, ["users/alice", "news"]);
    /// ```
    #[must_use]
    pub fn with_channels(mut self, channels: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.channels.extend(channels.into_iter().map(Into::into));
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
    /// Valid credentials that do not allow this request (a publisher's
    /// token without the role an administration route needs): `403`.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The credentials could not be checked now (the keys to check them
    /// with could not be fetched): `503`.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

/// Establishes who a subscriber is, from the request's headers, query and
/// cookies. Browsers' `EventSource` cannot send custom headers, so tokens
/// usually come in the query or a cookie.
///
/// Implementations write an `async fn` under [`#[async_trait]`](async_trait::async_trait)
/// (crate `async-trait`); the trait is object safe, and
/// [`SseEndpoints`](super::SseEndpoints) holds it as `Arc<dyn Authenticator>`.
///
/// ```
/// use async_trait::async_trait;
/// use http::request::Parts;
/// use sse_core::http::{AuthError, Authenticator, Identity};
///
/// /// Trusts the `x-user` header set by a gateway in front.
/// struct Gateway;
///
/// #[async_trait]
/// impl Authenticator for Gateway {
///     async fn authenticate(&self, request: &Parts) -> Result<Identity, AuthError> {
///         match request.headers.get("x-user").and_then(|user| user.to_str().ok()) {
///             Some(user) => Ok(Identity::user(user)),
///             None => Err(AuthError::Unauthorized("no x-user header".to_owned())),
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of the request's sender, or why it is refused.
    async fn authenticate(&self, request: &Parts) -> Result<Identity, AuthError>;

    /// Whether the request's query is worth as much as the identity
    /// itself. Default `false`: the free query parameters of the stream
    /// route become [client metadata](crate::ConnectionInfo::client_metadata),
    /// kept apart from the identity's
    /// [metadata](crate::ConnectionInfo::metadata), so that nothing a client
    /// types can satisfy a filter written on the server's. Only
    /// [`DevIdentity`], whose identity is the query's, answers `true`.
    fn trusts_query(&self) -> bool {
        false
    }
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

#[async_trait]
impl Authenticator for DevIdentity {
    async fn authenticate(&self, request: &Parts) -> Result<Identity, AuthError> {
        let mut identity = Identity::anonymous();
        for (key, value) in query_pairs(request) {
            match &*key {
                "userId" if !value.is_empty() => identity.user_id = Some(value.into_owned()),
                "sessionId" if !value.is_empty() => identity.session_id = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(identity)
    }

    fn trusts_query(&self) -> bool {
        true
    }
}

/// Every subscriber is anonymous, and accepted: for an application that
/// authenticates streams in its own middleware, in front of the stream
/// route, and names the user in its own handler
/// ([`ConnectOptions::user`](crate::ConnectOptions::user)), or that mounts
/// only the publish and administration routes, where no stream is opened.
/// Unlike [`DevIdentity`], it takes no identity from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

#[async_trait]
impl Authenticator for Anonymous {
    async fn authenticate(&self, _request: &Parts) -> Result<Identity, AuthError> {
        Ok(Identity::anonymous())
    }
}

/// Decides whether a subscriber may join a channel, beyond the channel
/// patterns of its [`Identity`]: asked for every channel at connect time and
/// on every runtime subscribe through
/// [`SseEndpoints::api`](super::SseEndpoints::api). A refusal is a `403`
/// naming the channel.
///
/// Implementations write an `async fn` under [`#[async_trait]`](async_trait::async_trait),
/// as for [`Authenticator`]:
///
/// ```
/// use async_trait::async_trait;
/// use sse_core::http::{ChannelAuthorizer, Subscriber};
///
/// /// `orders/{user}` only for that user.
/// struct OwnOrders;
///
/// #[async_trait]
/// impl ChannelAuthorizer for OwnOrders {
///     async fn authorize(&self, subscriber: &Subscriber<'_>, channel: &str) -> bool {
///         channel.strip_prefix("orders/").is_none_or(|owner| subscriber.user_id == Some(owner))
///     }
/// }
/// ```
#[async_trait]
pub trait ChannelAuthorizer: Send + Sync + 'static {
    /// `true` if `subscriber` may join `channel`.
    async fn authorize(&self, subscriber: &Subscriber<'_>, channel: &str) -> bool;
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
/// extensions so that [`SseEndpoints::connect`](super::SseEndpoints::connect) can apply
/// [`SseConfig::max_connections_per_addr`](crate::SseConfig::max_connections_per_addr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Decides who may publish and administer: asked before every publish and
/// administration request (not for `client.js`). A refusal is answered with
/// [`auth_error`](super::auth_error).
///
/// Implementations write an `async fn` under [`#[async_trait]`](async_trait::async_trait),
/// as for [`Authenticator`]; [`BearerToken`] is the ready-made one (and,
/// with feature `jwt`, `jwt::JwtPublishAuthorizer`, by a token's roles).
///
/// [`SseEndpoints`](super::SseEndpoints) asks
/// [`authorize_group`](PublishAuthorizer::authorize_group), naming the
/// group of the route: an implementation that treats publishing and
/// administration alike writes only [`authorize`](PublishAuthorizer::authorize),
/// which the default `authorize_group` asks.
#[async_trait]
pub trait PublishAuthorizer: Send + Sync + 'static {
    /// `Ok` if the request may use the publish and administration endpoints.
    async fn authorize(&self, request: &Parts) -> Result<(), AuthError>;

    /// `Ok` if the request may use the endpoints of `group`
    /// ([`RouteGroup::Publish`] or [`RouteGroup::Admin`]). By default,
    /// [`authorize`](PublishAuthorizer::authorize), whatever the group.
    async fn authorize_group(&self, request: &Parts, group: RouteGroup) -> Result<(), AuthError> {
        let _ = group;
        self.authorize(request).await
    }
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

    /// Whether `given` is the token (compared in constant time).
    pub(crate) fn matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(given.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

#[async_trait]
impl PublishAuthorizer for BearerToken {
    async fn authorize(&self, request: &Parts) -> Result<(), AuthError> {
        let given = bearer_token(&request.headers).unwrap_or_default();
        if self.matches(given) {
            Ok(())
        } else {
            Err(AuthError::Unauthorized("a valid bearer token is required".to_owned()))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_patterns() {
        let identity = Identity::user("u").with_allowed_channels(["news", "orders/*"]);
        assert!(identity.may_join("news"));
        assert!(identity.may_join("orders/17"));
        assert!(!identity.may_join("newsroom"));
        assert!(!identity.may_join("admin"));
        assert!(Identity::anonymous().may_join("anything"));
    }
}
