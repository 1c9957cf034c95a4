//! The checks behind the fuzz targets of `sse-core`, and what they share.
//!
//! Each target feeds its input to one function here, which panics (and so
//! reports a crash) when `sse-core` panics or breaks a property:
//!
//! * [`publish_request`]: any bytes as the body of `POST /publish`;
//! * [`encode_roundtrip`]: any event fields, encoded and parsed back;
//! * [`last_event_id`]: any `Last-Event-ID` on connect.
//!
//! Frames are parsed back with `sse_core::test_util::frames`, which uses
//! `eventsource-stream`, an SSE parser independent of `sse-core` (its quirks
//! are described in `sse-core/tests/encoding.rs`).

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use futures::executor::block_on;
use http::request::Parts;
use http::{Method, StatusCode};
use sse_core::event::MAX_ID_LEN;
use sse_core::http::{DevIdentity, PublishRequest, SseEndpoints, SseReply};
use sse_core::runtime::{BoxFuture, Runtime};
use sse_core::test_util::frames::{Parsed, drain, parse, split_at};
use sse_core::{ConnectOptions, Event, SseManager, Target};

/// A runtime that never runs the maintenance task: without heartbeats and
/// lifetimes, the manager needs none, and each input stays deterministic.
struct Idle;

impl Runtime for Idle {
    fn spawn(&self, _task: BoxFuture<'static, ()>) {}

    fn sleep(&self, _duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

fn manager(history: usize) -> SseManager {
    SseManager::builder()
        .runtime(Idle)
        .configure(|c| c.heartbeat_interval(None).history_size(history))
        .build()
        .expect("a valid configuration")
}

fn request(method: Method, uri: &str, headers: &[(&str, http::HeaderValue)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, value.clone());
    }
    builder.body(()).expect("a valid request").into_parts().0
}

/// What a conforming client reads back: every CRLF and lone CR becomes LF.
pub fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// The name a client sees for an event named `name`.
fn seen_name(name: Option<&str>) -> &str {
    name.filter(|name| !name.is_empty()).unwrap_or("message")
}

/// Asserts `parsed` is `event`, sent with `id`.
fn assert_same(parsed: &Parsed, event: &Event, id: Option<&str>) {
    assert_eq!(parsed.event, seen_name(event.event()), "name of {event:?}");
    assert_eq!(
        parsed.data,
        normalised(event.data().unwrap_or_default()),
        "data of {event:?}"
    );
    assert_eq!(parsed.id, id.unwrap_or_default(), "id of {event:?}");
    assert_eq!(parsed.retry, event.retry(), "retry of {event:?}");
}

/// Any bytes as the body of `POST /publish`: the endpoint never panics,
/// answers `400` with a JSON error exactly when the request is invalid (and
/// then sends nothing), and otherwise `200`, having sent the event to the
/// connection it targets, which reads it back intact.
pub fn publish_request(body: &[u8]) {
    let manager = manager(4);
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    let mut connection =
        block_on(manager.connect(ConnectOptions::new().user("u").session("s").channel("c"))).expect("a connection");
    drain(&mut connection);
    let info = manager
        .connection_info(connection.client_id().as_str())
        .expect("registered");

    let parts = request(Method::POST, "/api/sse/publish", &[]);
    let response = block_on(endpoints.api(&parts, "publish", Bytes::copy_from_slice(body)));
    let answer: serde_json::Value = serde_json::from_slice(response.body()).expect("a JSON answer");
    let expected = serde_json::from_slice::<PublishRequest>(body)
        .map_err(|e| e.to_string())
        .and_then(|request| request.into_parts().map_err(|e| e.to_string()));
    let frames = drain(&mut connection);
    match expected {
        Err(_) => {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{answer}");
            assert!(answer["error"].is_string(), "{answer}");
            assert!(frames.is_empty(), "nothing is sent on bad input");
            assert_eq!(manager.stats().events_published, 0);
        }
        Ok((target, event)) => {
            assert_eq!(response.status(), StatusCode::OK, "{answer}");
            let reached = target.matches(&info);
            assert_eq!(answer["delivered"].as_u64(), Some(u64::from(reached)), "{answer}");
            let id = answer["id"].as_str();
            assert_eq!(id.is_some(), event.dispatches() && !event.is_live_only(), "{answer}");
            if let (Some(id), Some(own)) = (id, event.id()) {
                assert_eq!(id, own, "the publisher's id is kept");
            }
            let parsed = parse(frames);
            match (reached, event.dispatches()) {
                (true, true) => {
                    assert_eq!(parsed.len(), 1, "{parsed:?}");
                    assert_same(&parsed[0], &event, id);
                }
                _ => assert!(parsed.is_empty(), "{parsed:?}"),
            }
        }
    }
}

/// The fields of an event, as the fuzzer makes them.
#[derive(Debug, Arbitrary)]
pub struct Fields {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comment: Option<String>,
    /// Where the encoded event is cut into chunks.
    cuts: Vec<u16>,
}

/// Builds an event from `fields`: it is refused exactly when the id or the
/// name could break out of its field, or no field is set; when it builds, its encoding parses
/// back (cut into chunks anywhere) to the same name, id, retry and data (its
/// line breaks as LF), and dispatches exactly when it has a name, an id or
/// data.
pub fn encode_roundtrip(fields: Fields) {
    let mut builder = Event::builder();
    if let Some(id) = &fields.id {
        builder = builder.id(id.clone());
    }
    if let Some(name) = &fields.event {
        builder = builder.event(name.clone());
    }
    if let Some(data) = &fields.data {
        builder = builder.data(data.clone());
    }
    if let Some(ms) = fields.retry {
        builder = builder.retry(Duration::from_millis(ms));
    }
    if let Some(comment) = &fields.comment {
        builder = builder.comment(comment.clone());
    }
    let bad_id = fields
        .id
        .as_deref()
        .is_some_and(|id| id.contains(['\r', '\n', '\0']) || id.len() > MAX_ID_LEN);
    let bad_name = fields.event.as_deref().is_some_and(|name| name.contains(['\r', '\n']));
    let empty = fields.id.is_none()
        && fields.event.is_none()
        && fields.data.is_none()
        && fields.retry.is_none()
        && fields.comment.is_none();
    let event = match builder.build() {
        Ok(event) => event,
        Err(error) => {
            assert!(bad_id || bad_name || empty, "{fields:?} refused: {error}");
            return;
        }
    };
    assert!(!bad_id && !bad_name && !empty, "{fields:?} built");
    let bytes = event.encode();
    // Every frame ends with the blank line that dispatches it.
    assert!(bytes.ends_with(b"\n\n"), "{bytes:?}");
    assert!(!bytes.contains(&b'\r'), "the encoder writes LF line ends only");

    let chunks = split_at(
        &bytes,
        fields.cuts.iter().map(|&cut| usize::from(cut) % (bytes.len() + 1)),
    );

    let parsed = parse(chunks);
    let dispatches = fields.id.is_some() || fields.event.is_some() || fields.data.is_some();
    assert_eq!(event.dispatches(), dispatches);
    if dispatches {
        assert_eq!(parsed.len(), 1, "{bytes:?}");
        assert_same(&parsed[0], &event, event.id());
    } else {
        assert!(parsed.is_empty(), "{bytes:?}");
    }
}

/// An event published before the client resumes.
#[derive(Debug, Arbitrary)]
pub enum Published {
    /// With the id the manager assigns.
    Assigned {
        /// Sent to another user than the resuming client's.
        to_someone_else: bool,
    },
    /// With the publisher's own id (skipped when invalid).
    Own {
        /// The publisher's id.
        id: String,
        /// Sent to another user than the resuming client's.
        to_someone_else: bool,
    },
}

/// The `Last-Event-ID` a client sends.
#[derive(Debug, Arbitrary)]
pub enum LastId {
    /// Any bytes (a header value cannot hold CR, LF or NUL: those inputs
    /// are sent in the query instead).
    Raw(Vec<u8>),
    /// The id of a published event, possibly with something appended.
    Known {
        /// Which published event (modulo their number).
        index: u8,
        /// Appended to its id.
        suffix: String,
    },
}

/// A resume: some events, then a connection with a `Last-Event-ID`.
#[derive(Debug, Arbitrary)]
pub struct Resume {
    published: Vec<Published>,
    last: LastId,
    /// Sends it as the `lastEventId` query parameter instead of the header.
    in_query: bool,
}

/// Any `Last-Event-ID` on connect: the connection is accepted and gets
/// either the replay the model expects (the retained events after that id
/// that are aimed at it, never another user's) or one `reset`.
pub fn last_event_id(input: Resume) {
    let manager = manager(1000);
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    // (the id it went out with, whether it is the publisher's, aimed at the client)
    let mut sent: Vec<(String, bool, bool)> = Vec::new();
    // A first event with an assigned id shows where the sequence starts.
    let first = Event::named("e", "first").expect("a valid event");
    let delivery = block_on(manager.send(Target::user("me"), first)).expect("the manager runs");
    sent.push((delivery.id.expect("an id"), false, true));
    for (n, published) in input.published.iter().take(8).enumerate() {
        let (own, to_someone_else) = match published {
            Published::Assigned { to_someone_else } => (None, *to_someone_else),
            Published::Own { id, to_someone_else } => (Some(id), *to_someone_else),
        };
        let mut builder = Event::builder().event("e").data(n.to_string());
        if let Some(id) = own {
            builder = builder.id(id.clone());
        }
        let Ok(event) = builder.build() else { continue };
        let target = if to_someone_else {
            Target::user("other")
        } else {
            Target::user("me")
        };
        let delivery = block_on(manager.send(target, event)).expect("the manager runs");
        sent.push((delivery.id.expect("an id"), own.is_some(), !to_someone_else));
    }

    let bytes: Vec<u8> = match &input.last {
        LastId::Raw(bytes) => bytes.clone(),
        LastId::Known { index, suffix } => format!("{}{suffix}", sent[usize::from(*index) % sent.len()].0).into_bytes(),
    };
    let header = http::HeaderValue::from_bytes(&bytes).ok().filter(|_| !input.in_query);
    let uri = match header {
        Some(_) => "/api/sse?userId=me".to_owned(),
        None => {
            let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            format!("/api/sse?userId=me&lastEventId={encoded}")
        }
    };
    let headers: Vec<(&str, http::HeaderValue)> = header.into_iter().map(|value| ("last-event-id", value)).collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();

    let mut connection = match block_on(endpoints.connect(&request(Method::GET, &uri, &headers))) {
        SseReply::Stream(connection) => connection,
        other => panic!("a Last-Event-ID of {text:?} refused the connection: {other:?}"),
    };
    let events = parse(drain(&mut connection));
    let (connected, rest) = events.split_first().expect("`connected` comes first");
    assert_eq!(connected.event, "connected");

    // The model: a publisher's id is looked up first (the newest event with
    // it), then an id the manager assigned, or the one before the first:
    // assigned ids are consecutive numbers. `Some(n)`: replay after event
    // `n` (`-1`: all); `None`: reset.
    let base = sent[0].0.parse::<i128>().expect("an assigned id is a number");
    let canonical = !text.starts_with('0') || text == "0";
    let after: Option<i128> = if text.len() > MAX_ID_LEN {
        None
    } else if let Some(n) = sent.iter().rposition(|(id, own, _)| *own && *id == text) {
        Some(n as i128)
    } else {
        match text.parse::<u64>() {
            Ok(seq) if canonical => Some(i128::from(seq) - base).filter(|&n| n >= -1 && n < sent.len() as i128),
            _ => None,
        }
    };
    match after {
        None => {
            assert_eq!(rest.len(), 1, "one reset for {text:?}: {rest:?}");
            assert_eq!(rest[0].event, "reset");
            let head = sent.last().map(|(id, _, _)| id.as_str()).unwrap_or_default();
            assert_eq!(rest[0].id, head, "the reset names the newest event");
        }
        Some(after) => {
            let first = usize::try_from(after + 1).expect("after is at least -1");
            let expected: Vec<&str> = sent[first..]
                .iter()
                .filter(|(_, _, mine)| *mine)
                .map(|(id, _, _)| id.as_str())
                .collect();
            let replayed: Vec<&str> = rest.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(replayed, expected, "replay after {text:?}: {rest:?}");
            assert!(rest.iter().all(|e| e.event == "e"));
        }
    }
    drop(connection);
    assert_eq!(manager.connection_count(), 0);
}
