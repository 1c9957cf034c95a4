//! The live administration page and the feed it reads: [`SseAdmin`] serves
//! [`ADMIN_HTML`], one self-contained page (no external resource), and an
//! event stream of [`Snapshot`]s of the watched manager, taken every
//! [`interval`](SseAdmin::interval) while someone watches.
//!
//! | method and path (under the admin mount point, e.g. `/sse-admin`) | answer |
//! | --- | --- |
//! | `GET`, `HEAD /` | the page, open to all: it holds no data |
//! | `GET /stream` | the feed: one `snapshot` event at once, then one per interval; guarded like `GET stats` |
//!
//! The page asks for the bearer token when the feed answers `401`, keeps it
//! in `sessionStorage`, reads the feed with `fetch` (an `EventSource`
//! cannot send an `Authorization` header), draws the figures of the last
//! two minutes, and closes connections through the endpoints'
//! `DELETE connections/{clientId}` under [`api_path`](SseAdmin::api_path)
//! (`/api/sse` by default).
//!
//! **Viewers are not connections of the watched manager.** The feed writes
//! its frames itself: each viewer is a small channel of its own, and a
//! ticker task takes one snapshot per interval, encodes it once and offers
//! the bytes to every viewer. A second, internal [`SseManager`] was the other
//! way; it would bring a heartbeat task, a history, event ids and
//! slow-client closing that a feed of snapshots does not need (each
//! snapshot replaces the previous one, so a viewer that does not keep up
//! simply skips one), and viewers would still have to be kept out of the
//! figures they watch. So the watched manager's `connections`,
//! `connectionsOpened` and `framesDelivered` never count a viewer.
//!
//! **Nothing runs while nobody watches.** The ticker is spawned (on the
//! watched manager's [`Runtime`](crate::Runtime)) by the first viewer and
//! ends at the first tick that finds none left; with no viewer, the feed
//! costs nothing, and the hot path of sends never sees it. While someone
//! watches, a snapshot reads the statistics and finds the newest
//! connections under the registry's read lock, cloning only those it lists. Once the watched
//! manager is shut down, the ticker ends every feed, so that a graceful
//! shutdown does not wait on them, and new viewers are answered `503`.
//!
//! The adapters mount it in their own idiom: `sse_axum::admin_router`,
//! `sse_warp::admin_filter`, `sse_poem::SseAdminEndpoint`.

mod feed;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde::Serialize;

use self::feed::Hub;
use super::responses::with_body;
use super::{PublishAuthorizer, RouteGroup, SseEndpoints, SseReply, auth_error, error, method_not_allowed};
use crate::connection::ConnectionInfo;
use crate::manager::SseManager;
use crate::stats::Stats;

/// The administration page: HTML with its script and style inline, served by
/// [`SseAdmin::page`] with the API path filled in.
pub const ADMIN_HTML: &str = include_str!("../../../assets/sse-admin.html");

/// Where [`ADMIN_HTML`] names the API mount point, replaced when served.
const API_PLACEHOLDER: &str = "{{SSE_API_PATH}}";

/// The shortest and longest intervals between snapshots.
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(60));

/// The page's `Content-Security-Policy`: nothing from elsewhere, scripts and
/// styles only inline, requests only to its own origin, never framed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                           connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                           frame-ancestors 'none'";

/// The administration page and its live feed over one [`SseManager`],
/// guarded by the publish authorizer of the [`SseEndpoints`] it is made
/// from (the one `GET stats` asks, with [`RouteGroup::Admin`]).
///
/// A cheap-to-clone handle; its clones share their viewers and ticker.
/// Settings are taken before the first clone is made.
///
/// ```
/// use std::time::Duration;
/// use sse_core::SseManager;
/// use sse_core::http::admin::SseAdmin;
/// use sse_core::http::{BearerToken, DevIdentity, SseEndpoints};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let endpoints = SseEndpoints::new(SseManager::builder().build()?, DevIdentity::enable())
///     .publish_authorizer(BearerToken::new("secret"));
/// let admin = SseAdmin::new(&endpoints).interval(Duration::from_secs(2)).api_path("/api/sse");
///
/// let (page, ()) = http::Request::get("/").body(())?.into_parts();
/// let sse_core::http::SseReply::Response(page) = admin.handle(&page, "/").await else { unreachable!() };
/// assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
///
/// let (feed, ()) = http::Request::get("/stream").body(())?.into_parts();
/// let sse_core::http::SseReply::Response(refused) = admin.handle(&feed, "/stream").await else { unreachable!() };
/// assert_eq!(refused.status(), 401);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SseAdmin {
    manager: SseManager,
    guard: Option<Arc<dyn PublishAuthorizer>>,
    settings: Arc<Settings>,
    hub: Arc<Hub>,
}

/// What [`SseAdmin`]'s builder methods set.
#[derive(Debug, Clone)]
struct Settings {
    interval: Duration,
    max_listed: usize,
    max_viewers: usize,
    page: Bytes,
}

impl fmt::Debug for SseAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseAdmin")
            .field("guarded", &self.guard.is_some())
            .field("interval", &self.settings.interval)
            .field("max_listed", &self.settings.max_listed)
            .field("max_viewers", &self.settings.max_viewers)
            .field("viewers", &self.viewers())
            .finish_non_exhaustive()
    }
}

impl SseAdmin {
    /// The page and feed over the manager of `endpoints`, guarded by their
    /// publish authorizer (open when they have none, as `GET stats` is): a
    /// snapshot every second, listing the 200 most recent connections, for
    /// at most 32 viewers at once, the page calling the API at `/api/sse`.
    pub fn new(endpoints: &SseEndpoints) -> Self {
        SseAdmin {
            manager: endpoints.manager().clone(),
            guard: endpoints.guard(),
            settings: Arc::new(Settings {
                interval: Duration::from_secs(1),
                max_listed: 200,
                max_viewers: 32,
                page: render_page("/api/sse"),
            }),
            hub: Arc::new(Hub::default()),
        }
    }

    /// Takes a snapshot every `interval`, kept between 100 milliseconds and
    /// one minute.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        Arc::make_mut(&mut self.settings).interval = interval.clamp(INTERVAL_RANGE.0, INTERVAL_RANGE.1);
        self
    }

    /// Lists at most `count` connections in a snapshot, the most recent
    /// ones; [`Snapshot::not_listed`] counts the others.
    #[must_use]
    pub fn max_listed(mut self, count: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_listed = count;
        self
    }

    /// Serves at most `count` viewers at once; one more is answered `503`.
    #[must_use]
    pub fn max_viewers(mut self, count: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_viewers = count;
        self
    }

    /// The path the endpoints are mounted at, as the page's browser reaches
    /// them (`/api/sse` by default): the page closes a connection with
    /// `DELETE {path}/connections/{clientId}`. Characters other than
    /// letters, digits and `/-._~` are dropped.
    #[must_use]
    pub fn api_path(mut self, path: &str) -> Self {
        let path: String = path
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "/-._~".contains(*c))
            .collect();
        Arc::make_mut(&mut self.settings).page = render_page(path.trim_end_matches('/'));
        self
    }

    /// The manager watched.
    pub fn manager(&self) -> &SseManager {
        &self.manager
    }

    /// Viewers of the feed now (a viewer that went away is counted until
    /// the next tick).
    pub fn viewers(&self) -> usize {
        self.hub.viewers()
    }

    /// Answers a request below the admin mount point: `GET` or `HEAD` on
    /// the mount root (`path` empty or `/`) is [`SseAdmin::page`], `GET
    /// stream` is [`SseAdmin::feed`]; another method is `405` with an
    /// `Allow` header, another path a JSON `404`.
    pub async fn handle(&self, request: &Parts, path: &str) -> SseReply {
        match path.strip_prefix('/').unwrap_or(path) {
            "" if matches!(request.method, Method::GET | Method::HEAD) => SseReply::Response(self.page()),
            "" => SseReply::Response(method_not_allowed(&[Method::GET, Method::HEAD])),
            "stream" if request.method == Method::GET => self.feed(request).await,
            "stream" => SseReply::Response(method_not_allowed(&[Method::GET])),
            _ => SseReply::Response(error(StatusCode::NOT_FOUND, "no such endpoint")),
        }
    }

    /// The page, `200` as `text/html; charset=utf-8`, with a
    /// `Content-Security-Policy` that allows nothing from elsewhere.
    pub fn page(&self) -> Response<Bytes> {
        let mut response = with_body(StatusCode::OK, "text/html; charset=utf-8", self.settings.page.clone());
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        response
    }

    /// The feed: after the authorizer's consent (else its `401` or `403`),
    /// an event stream of `snapshot` events, whose data is a [`Snapshot`]
    /// as JSON; the first one at once. `503` once the manager is shut down,
    /// or when [`max_viewers`](SseAdmin::max_viewers) are watching.
    pub async fn feed(&self, request: &Parts) -> SseReply {
        if let Some(guard) = &self.guard {
            if let Err(refused) = guard.authorize_group(request, RouteGroup::Admin).await {
                return SseReply::Response(auth_error(&refused));
            }
        }
        if self.manager.is_shut_down() {
            return SseReply::Response(error(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"));
        }
        feed::watch(self)
    }

    /// A snapshot of the watched manager now.
    pub fn snapshot(&self) -> Snapshot {
        let stats = self.manager.stats();
        let (connections, not_listed) = self.manager.newest_connections(self.settings.max_listed);
        let now = SystemTime::now();
        Snapshot {
            at: crate::event::timestamp(now),
            at_ms: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
            interval_ms: u64::try_from(self.settings.interval.as_millis()).unwrap_or(u64::MAX),
            stats,
            connections,
            not_listed,
            viewers: self.viewers(),
        }
    }
}

/// What the feed sends each interval, as the data of a `snapshot` event.
/// Serializes in camelCase.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Snapshot {
    /// When it was taken, RFC 3339 in UTC with milliseconds.
    pub at: String,
    /// The same instant, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The interval between snapshots, in milliseconds.
    pub interval_ms: u64,
    /// The manager's statistics, as `GET stats` gives them: rates are the
    /// changes of its counters between two snapshots (events per second
    /// from `eventsPublished`, the mean latency from `sendLatencyMicros`
    /// over `sendsTimed`).
    pub stats: Stats,
    /// The most recent connections, newest first, as `GET connections`
    /// lists them.
    pub connections: Vec<ConnectionInfo>,
    /// How many older connections are open but not listed.
    pub not_listed: usize,
    /// Viewers of the feed.
    pub viewers: usize,
}

fn render_page(api_path: &str) -> Bytes {
    Bytes::from(ADMIN_HTML.replace(API_PLACEHOLDER, api_path))
}

#[cfg(test)]
mod tests;
