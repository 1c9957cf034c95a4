//! The check every framework adapter runs on routes of an application's own
//! (features `test-util`, `http` and `tokio`): [`check_own_routes`] speaks
//! HTTP/1.1 to a server that serves, besides the ready-made endpoints, a
//! stream route built on the adapter's extractor, one that decorates the
//! connection's stream, and the endpoint groups mounted separately with the
//! administration routes behind a guard, and asserts that they behave as
//! the ready-made stream route does. Each adapter's test only builds the
//! routes; the endpoints, the authenticator, the decoration and the guard's
//! header are here, shared.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::request::Parts;
use std::net::SocketAddr;
use std::time::Duration;

use super::adapter::{Answer, connections, get_stream_with, open_stream, send_with};
use super::frames::parse;
use crate::http::{AuthError, Authenticator, Identity, SseEndpoints, query_pairs};
use crate::{Connection, Event, SseManager, Target};

/// The header (name and value) the guard in front of the administration
/// routes of `/split` asks for; without it, the guard refuses with a `4xx`
/// of the framework's.
pub const ADMIN_HEADER: (&str, &str) = ("x-admin", "yes");

/// The frame [`decorate`] puts before a connection's own.
pub const DECORATION: &str = ": decorated\n\n";

/// The endpoints [`check_own_routes`] expects: a manager allowing two
/// connections per client address, with a heartbeat every 200 ms (a server
/// that notices a client went away only when it next writes to it, as
/// poem's, then unregisters it soon), and [`AssigningChannels`] as the
/// authenticator.
pub fn own_routes_endpoints() -> SseEndpoints {
    let manager = SseManager::builder()
        .configure(|config| {
            config
                .max_connections_per_addr(Some(2))
                .heartbeat_interval(Some(Duration::from_millis(200)))
        })
        .build()
        .expect("a manager");
    SseEndpoints::new(manager, AssigningChannels)
}

/// An authenticator that assigns channels: the user is the `userId` query
/// parameter (without one, `401`), who joins `users/{user}` and may join
/// only it and `open/*`.
#[derive(Debug, Clone, Copy)]
pub struct AssigningChannels;

#[async_trait]
impl Authenticator for AssigningChannels {
    async fn authenticate(&self, request: &Parts) -> Result<Identity, AuthError> {
        let user = query_pairs(request)
            .find(|(key, _)| key == "userId")
            .map(|(_, user)| user.into_owned())
            .ok_or_else(|| AuthError::Unauthorized("a userId is required".to_owned()))?;
        let own = format!("users/{user}");
        Ok(Identity::user(user)
            .with_allowed_channels([own.clone(), "open/*".to_owned()])
            .with_channels([own]))
    }
}

/// The connection's frames after [`DECORATION`]: what the `/decorated`
/// route answers with, through the adapter's `SseResponse::from_stream`.
pub fn decorate(connection: Connection) -> impl Stream<Item = Bytes> + Send + Sync + 'static {
    futures_util::stream::iter([Bytes::from_static(DECORATION.as_bytes())]).chain(connection)
}

/// Checks the routes of an application's own that a server at `address`
/// serves with `endpoints` (from [`own_routes_endpoints`]):
///
/// * `/api/sse`: the adapter's ready-made endpoints;
/// * `/own`: a stream route whose handler takes the options from the
///   adapter's extractor and connects them unchanged;
/// * `/decorated`: the same, answering with [`decorate`] of the connection;
/// * `/split`: the groups mounted one by one: the stream and the client
///   script open, the administration routes behind a guard asking for
///   [`ADMIN_HEADER`], publish not mounted.
///
/// It asserts that `/own` replays exactly the events after the
/// `Last-Event-ID` header (which wins over `lastEventId`) on the channel
/// the authenticator assigned, answers an unknown id with `reset`, and
/// refuses a missing identity, a forbidden channel and a client over the
/// per-address limit with the very answers of `/api/sse`; that
/// `/decorated` keeps the event-stream headers; and that on `/split` the
/// guard refuses the administration routes while a stream is open, which
/// they then report.
///
/// # Panics
/// On the first promise not kept, naming it, or when a wait takes longer
/// than [`WAIT`](super::adapter::WAIT).
pub async fn check_own_routes(address: SocketAddr, endpoints: &SseEndpoints) {
    let manager = endpoints.manager();
    resumes(address, manager).await;
    refuses_as_the_stream_route(address, manager).await;
    decorated(address, manager).await;
    split(address, manager).await;
}

async fn resumes(address: SocketAddr, manager: &SseManager) {
    let mut ids = Vec::new();
    for data in ["1", "2", "3"] {
        let event = Event::named("note", data).expect("an event");
        let sent = manager.send(Target::channel("users/alice"), event).await.expect("sent");
        ids.push(sent.id.expect("an id"));
    }
    let path = format!("/own?userId=alice&lastEventId={}", ids[1]);
    let mut stream = get_stream_with(address, &path, &[("last-event-id", &ids[0])]).await;
    assert_eq!(stream.head.status, 200);
    stream.read_until("data: 3\n\n").await;
    let events = parse(vec![Bytes::from(stream.text())]);
    let replayed: Vec<(&str, &str)> = events
        .iter()
        .filter(|event| event.event == "note")
        .map(|event| (event.id.as_str(), event.data.as_str()))
        .collect();
    assert_eq!(replayed, [(ids[1].as_str(), "2"), (ids[2].as_str(), "3")]);
    drop(stream);

    let mut stream = get_stream_with(address, "/own?userId=alice", &[("last-event-id", "no-such-id")]).await;
    stream.read_until("event: reset\n").await;
    drop(stream);
    connections(manager, 0).await;
}

async fn refuses_as_the_stream_route(address: SocketAddr, manager: &SseManager) {
    for (query, status) in [("", 401), ("?userId=alice&channel=secret", 403)] {
        let own = get(address, &format!("/own{query}"), &[]).await;
        let builtin = get(address, &format!("/api/sse{query}"), &[]).await;
        assert_eq!(own.head.status, status, "/own{query}");
        assert_same(&own, &builtin);
    }
    let first = get_stream_with(address, "/own?userId=alice", &[]).await;
    let second = get_stream_with(address, "/own?userId=bob", &[]).await;
    assert_eq!((first.head.status, second.head.status), (200, 200));
    let own = get(address, "/own?userId=carol", &[]).await;
    let builtin = get(address, "/api/sse?userId=carol", &[]).await;
    assert_eq!(own.head.status, 429, "over the per-address limit");
    assert_same(&own, &builtin);
    drop((first, second));
    connections(manager, 0).await;
}

async fn decorated(address: SocketAddr, manager: &SseManager) {
    let stream = open_stream(address, "/decorated?userId=alice").await;
    let retry = format!("{DECORATION}retry: {}\n", manager.config().retry().as_millis());
    assert!(stream.text().starts_with(&retry), "{:?}", stream.text());
    drop(stream);
    connections(manager, 0).await;
}

async fn split(address: SocketAddr, manager: &SseManager) {
    let mut stream = get_stream_with(address, "/split?userId=alice", &[]).await;
    assert_eq!(stream.head.status, 200);
    stream.read_until("event: connected\n").await;
    let refused = get(address, "/split/stats", &[]).await;
    assert!(
        (400..500).contains(&refused.head.status),
        "the guard let {}",
        refused.head.status
    );
    let stats = get(address, "/split/stats", &[ADMIN_HEADER]).await;
    assert_eq!(stats.head.status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&stats.body).expect("JSON");
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(get(address, "/split/client.js", &[]).await.head.status, 200);
    let publish = send_with(address, "POST", "/split/publish", b"{}".to_vec(), &[ADMIN_HEADER]).await;
    assert_eq!(publish.head.status, 404, "publish is not mounted");
    assert_eq!(manager.connection_count(), 1, "the stream is still open");
    drop(stream);
    connections(manager, 0).await;
}

async fn get(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send_with(address, "GET", path, Vec::new(), headers).await
}

/// The same status, `www-authenticate` header and body.
fn assert_same(own: &Answer, builtin: &Answer) {
    assert_eq!(own.head.status, builtin.head.status);
    assert_eq!(
        own.head.header("www-authenticate"),
        builtin.head.header("www-authenticate")
    );
    assert_eq!(
        String::from_utf8_lossy(&own.body),
        String::from_utf8_lossy(&builtin.body)
    );
}
