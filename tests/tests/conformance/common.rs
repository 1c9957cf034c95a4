//! What the conformance cases share: reading a stream up to a named event,
//! checking a JSON error answer (`{"error": "..."}`, as `docs/http-api.md`
//! describes every error), and a subscription that must be refused.

use reqwest::StatusCode;
use serde_json::Value;
use sse_tests::{Event, SseStream, TestServer};

/// Reads events until one named `last`; returns the names before it.
pub(crate) async fn names_until(stream: &mut SseStream, last: &str) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        let event = stream.next_event().await;
        if event.event == last {
            return names;
        }
        names.push(event.event);
    }
}

/// Reads events until one named `last`; returns the events before it.
pub(crate) async fn events_until(stream: &mut SseStream, last: &str) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = stream.next_event().await;
        if event.event == last {
            return events;
        }
        events.push(event);
    }
}

pub(crate) fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|event| event.event.as_str()).collect()
}

/// Checks a `4xx` JSON error answer whose message mentions `about`.
pub(crate) fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, about: &str, request: &str) {
    assert_eq!(status, expected, "{request} answered {body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{request}: the error body is {{\"error\": \"...\"}}, not {body}"));
    assert!(
        message.to_lowercase().contains(&about.to_lowercase()),
        "{request}: the error {message:?} says what is wrong ({about})"
    );
}

/// `GET /api/sse?query` with `headers`, which must be refused: its status
/// and JSON body.
pub(crate) async fn refused(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = server.client().get(server.url(&format!("/api/sse?{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    TestServer::send(request).await
}
