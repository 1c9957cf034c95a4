//! The route table below the mount point: which path names which endpoint
//! and accepts which methods, and the [`RouteGroup`]s an adapter mounts
//! separately, so that an application can put middleware of its own on
//! each (an admin check on the administration routes, say, and none on the
//! stream).

use http::Method;

/// A group of the endpoints below the mount point, which an adapter can
/// mount on its own, with
/// [`SseEndpoints::handle_group`](super::SseEndpoints::handle_group)
/// answering it.
///
/// ```
/// use sse_core::http::{RouteGroup, RoutePath};
///
/// assert_eq!(RouteGroup::of("/connections/abc"), Some(RouteGroup::Admin));
/// assert_eq!(RouteGroup::of(""), Some(RouteGroup::Stream));
/// assert_eq!(RouteGroup::of("nothing"), None);
/// assert_eq!(RouteGroup::ClientScript.paths(), [RoutePath::Exact("client.js")]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouteGroup {
    /// `GET` on the mount root: the event stream, answered by
    /// [`SseEndpoints::connect`](super::SseEndpoints::connect).
    Stream,
    /// `POST publish`, guarded by the publish authorizer.
    Publish,
    /// The administration endpoints, guarded by the publish authorizer:
    /// `GET stats`, `GET stats/cluster`, `GET connections`, `POST subscribe`, `POST unsubscribe`,
    /// `DELETE connections/{clientId}` and `GET presence/{channel}`.
    Admin,
    /// `GET client.js`, the browser client, open to all.
    ClientScript,
}

/// A path of a [`RouteGroup`], below the mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoutePath {
    /// Exactly this path (`""` is the mount root).
    Exact(&'static str),
    /// This path, a slash and a parameter of any length: `Below("connections")`
    /// is `connections/{clientId}`.
    Below(&'static str),
}

impl RouteGroup {
    /// Every group: together, all the endpoints.
    pub const ALL: [RouteGroup; 4] = [
        RouteGroup::Stream,
        RouteGroup::Publish,
        RouteGroup::Admin,
        RouteGroup::ClientScript,
    ];

    /// The group of the endpoint at `path` (below the mount point, still
    /// percent-encoded), if one is there.
    pub fn of(path: &str) -> Option<RouteGroup> {
        Route::of(path.trim_matches('/')).map(|route| route.group())
    }

    /// The paths the group answers, for an adapter to route to it.
    pub fn paths(self) -> &'static [RoutePath] {
        match self {
            RouteGroup::Stream => &[RoutePath::Exact("")],
            RouteGroup::Publish => &[RoutePath::Exact("publish")],
            RouteGroup::Admin => &[
                RoutePath::Exact("stats"),
                RoutePath::Exact("stats/cluster"),
                RoutePath::Exact("connections"),
                RoutePath::Below("connections"),
                RoutePath::Exact("subscribe"),
                RoutePath::Exact("unsubscribe"),
                RoutePath::Below("presence"),
            ],
            RouteGroup::ClientScript => &[RoutePath::Exact("client.js")],
        }
    }
}

/// A path below the mount point that names an endpoint.
pub(super) enum Route<'a> {
    /// The mount root: `GET` opens a stream.
    Stream,
    /// `client.js`, the browser client.
    ClientJs,
    /// An endpoint the publish authorizer guards.
    Admin(Admin<'a>),
}

/// The publish and administration endpoints.
pub(super) enum Admin<'a> {
    Publish,
    Stats,
    /// `stats/cluster`.
    ClusterStats,
    Connections,
    /// `subscribe` (`true`) or `unsubscribe` (`false`).
    Subscribe(bool),
    /// `connections/{clientId}`.
    Disconnect(&'a str),
    /// `presence/{channel}`, still percent-encoded.
    Presence(&'a str),
}

const GET: &[Method] = &[Method::GET];
const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];
const DELETE: &[Method] = &[Method::DELETE];

impl<'a> Route<'a> {
    /// The endpoint at `path` (below the mount point, without leading or
    /// trailing slashes), if there is one.
    pub(super) fn of(path: &'a str) -> Option<Self> {
        let admin = match path {
            "" => return Some(Route::Stream),
            "client.js" => return Some(Route::ClientJs),
            "publish" => Admin::Publish,
            "stats" => Admin::Stats,
            "stats/cluster" => Admin::ClusterStats,
            "connections" => Admin::Connections,
            "subscribe" => Admin::Subscribe(true),
            "unsubscribe" => Admin::Subscribe(false),
            _ => match path.strip_prefix("presence/") {
                Some(channel) => Admin::Presence(channel),
                None => Admin::Disconnect(path.strip_prefix("connections/")?),
            },
        };
        Some(Route::Admin(admin))
    }

    /// The group the endpoint belongs to.
    pub(super) fn group(&self) -> RouteGroup {
        match self {
            Route::Stream => RouteGroup::Stream,
            Route::ClientJs => RouteGroup::ClientScript,
            Route::Admin(Admin::Publish) => RouteGroup::Publish,
            Route::Admin(_) => RouteGroup::Admin,
        }
    }

    /// The methods the endpoint accepts: any other is answered `405`, with
    /// these in its `Allow` header.
    pub(super) fn methods(&self) -> &'static [Method] {
        match self {
            Route::Stream
            | Route::Admin(Admin::Stats | Admin::ClusterStats | Admin::Connections | Admin::Presence(_)) => GET,
            Route::ClientJs => GET_HEAD,
            Route::Admin(Admin::Publish | Admin::Subscribe(_)) => POST,
            Route::Admin(Admin::Disconnect(_)) => DELETE,
        }
    }
}
