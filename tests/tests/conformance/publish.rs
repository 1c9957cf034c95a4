//! Published events on the wire (`docs/http-api.md`, "Publishing" and "The
//! wire format"): data as text or JSON, exact frames, the id, name and retry
//! of an event, the checks on exclusions and `replay`, and `priority` and
//! `key`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::TestServer;

use crate::common::{assert_error, events_until, names_until};

pub(crate) async fn data_round_trip(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("").await;
    server
        .publish_ok(&json!({"event": "text", "data": "line1\nline2"}))
        .await;
    let event = s.stream.expect_event("text").await;
    assert_eq!(event.data, "line1\nline2", "a JSON string arrives as its text");

    server.publish_ok(&json!({"event": "plain", "data": "hello"})).await;
    assert_eq!(s.stream.expect_event("plain").await.data, "hello");

    for value in [
        json!({"a": 1, "b": [true, null, "x\ny"], "c": {"d": "é"}}),
        json!([1, "two", 3.5]),
        json!(42),
        json!(true),
        json!(null),
    ] {
        server.publish_ok(&json!({"event": "json", "data": value})).await;
        let event = s.stream.expect_event("json").await;
        assert!(
            !event.data.contains('\n'),
            "a JSON serialization is one line: {:?}",
            event.data
        );
        let parsed: Value = serde_json::from_str(&event.data)
            .unwrap_or_else(|e| panic!("{value} arrives as its JSON serialization, not {:?}: {e}", event.data));
        assert_eq!(parsed, value, "{value} arrives as its JSON serialization");
    }
}

pub(crate) async fn exact_event_bytes(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("").await;
    server
        .publish_ok(&json!({"event": "note", "id": "n-1", "data": "line1\nline2"}))
        .await;
    server.publish_ok(&json!({"id": "n-2", "data": {"k": "v"}})).await;
    s.stream.expect_event("note").await;
    s.stream.expect_event("message").await;
    let frames: Vec<String> = s.stream.frames().into_iter().map(|(_, text)| text).collect();
    assert_eq!(
        frames[2..],
        [
            "id: n-1\nevent: note\ndata: line1\ndata: line2\n\n",
            "id: n-2\ndata: {\"k\":\"v\"}\n\n"
        ],
        "the frames of two published events"
    );
}

pub(crate) async fn published_event_fields(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("").await;

    let given = server
        .publish_ok(&json!({"event": "named", "id": "custom-1", "data": "x", "retry": 5000}))
        .await;
    assert_eq!(given.id, "custom-1", "the answer holds the publisher's id");
    let event = s.stream.expect_event("named").await;
    assert_eq!(event.id, "custom-1");
    assert_eq!(
        event.retry,
        Some(Duration::from_millis(5000)),
        "the retry hint travels with the event"
    );

    let assigned = server.publish_ok(&json!({"data": "y"})).await;
    assert!(!assigned.id.is_empty(), "an event without an id gets one");
    let event = s.stream.next_event().await;
    assert_eq!(event.event, "message", "an event without a name is a message");
    assert_eq!(event.data, "y");
    assert_eq!(event.id, assigned.id, "the assigned id is the one on the wire");

    let next = server.publish_ok(&json!({"data": "z"})).await;
    assert_ne!(next.id, assigned.id, "assigned ids are unique");
    assert_eq!(s.stream.next_event().await.id, next.id);
}

pub(crate) async fn exclusions_and_replay_are_validated(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("userId=alice").await;
    let ids = |n: usize| Value::from((0..n).map(|i| format!("u{i}")).collect::<Vec<_>>());
    let cases = [
        (json!({"data": 1, "exceptUserIds": ids(1001)}), "exceptUserIds"),
        (json!({"data": 1, "exceptClientIds": ids(1001)}), "exceptClientIds"),
        // Far over the limit, still within the body limit: refused as fast.
        (json!({"data": 1, "exceptUserIds": ids(100_000)}), "exceptUserIds"),
        (json!({"data": 1, "exceptUserIds": "alice"}), "json"),
        (json!({"data": 1, "exceptUserIds": [1, 2]}), "json"),
        (json!({"data": 1, "exceptClientIds": {"a": 1}}), "json"),
        (json!({"data": 1, "exceptUserIds": null, "replay": "no"}), "json"),
        (json!({"data": 1, "replay": 0}), "json"),
        (json!({"data": 1, "id": "7", "replay": false}), "id"),
    ];
    for (body, about) in &cases {
        let (status, answer) = server.publish(body).await;
        let shown: String = body.to_string().chars().take(120).collect();
        assert_error(status, &answer, StatusCode::BAD_REQUEST, about, &shown);
    }
    // At the limit is fine.
    let at_limit = json!({"event": "at-limit", "data": 1, "exceptUserIds": ids(1000), "exceptClientIds": ids(1000)});
    assert_eq!(server.publish_ok(&at_limit).await.delivered, 1);
    let event = s.stream.next_event().await;
    assert_eq!(event.event, "at-limit", "nothing was sent on bad input");
}

pub(crate) async fn idempotency_key_publishes_once(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut subscriber = server.subscribe("").await;
    let body = json!({"event": "paid", "data": "order 17"});
    let (status, first) = server.publish_with_key(&body, "order-17-paid").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["delivered"], 1, "{first}");
    assert!(
        first.get("duplicate").is_none(),
        "a first publish is answered as ever: {first}"
    );
    let (status, again) = server.publish_with_key(&body, "order-17-paid").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, json!({"id": first["id"], "delivered": 0, "duplicate": true}));
    let (status, other) = server.publish_with_key(&body, "order-18-paid").await;
    assert_eq!((status, &other["delivered"]), (StatusCode::OK, &json!(1)), "{other}");
    for key in ["", &"k".repeat(257)] {
        let (status, refused) = server.publish_with_key(&body, key).await;
        assert_error(
            status,
            &refused,
            StatusCode::BAD_REQUEST,
            "idempotency key",
            "a bad key",
        );
    }
    server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(names_until(&mut subscriber.stream, "end").await, ["paid", "paid"]);
}

pub(crate) async fn priority_and_key(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mark = server.publish_ok(&json!({"event": "mark", "data": 0})).await;
    let mut s = server.subscribe("").await;
    for value in [1, 2, 3] {
        let body = json!({"event": "price", "data": value, "key": "price:BTC"});
        server.publish_ok(&body).await;
    }
    server
        .publish_ok(&json!({"event": "alert", "data": "x", "priority": "high"}))
        .await;
    server
        .publish_ok(&json!({"event": "calm", "data": "y", "priority": "normal", "key": "k"}))
        .await;
    let live = events_until(&mut s.stream, "calm").await;
    let got: Vec<(&str, &str)> = live.iter().map(|e| (e.event.as_str(), e.data.as_str())).collect();
    // A price still waiting in the queue when the next one comes is
    // replaced by it: the reader gets some of them, in order, and the last.
    let (alert, prices) = got.split_last().expect("events before calm");
    assert_eq!(*alert, ("alert", "x"), "{got:?}");
    let values: Vec<&str> = prices
        .iter()
        .map(|(name, data)| {
            assert_eq!(*name, "price", "{got:?}");
            *data
        })
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert_eq!(values.last(), Some(&"3"), "the latest price: {got:?}");
    let frames: Vec<String> = s.stream.frames().into_iter().map(|(_, text)| text).collect();
    assert!(
        frames.iter().all(|f| !f.contains("price:BTC") && !f.contains("high")),
        "neither the key nor the priority is on the wire: {frames:?}"
    );

    // A resuming client is replayed the latest event of each key.
    let mut resumed = server.subscribe_with("", &[("last-event-id", &mark.id)]).await;
    let replayed = events_until(&mut resumed.stream, "calm").await;
    let got: Vec<(&str, &str)> = replayed.iter().map(|e| (e.event.as_str(), e.data.as_str())).collect();
    assert_eq!(got, [("price", "3"), ("alert", "x")]);

    let long = "k".repeat(257);
    let cases = [
        (json!({"data": 1, "priority": "urgent"}), "priority"),
        (json!({"data": 1, "priority": 1}), "json"),
        (json!({"data": 1, "key": ""}), "key"),
        (json!({"data": 1, "key": "a\nb"}), "key"),
        (json!({"data": 1, "key": long}), "key"),
        (json!({"data": 1, "key": ["k"]}), "json"),
    ];
    for (body, about) in &cases {
        let (status, answer) = server.publish(body).await;
        let shown: String = body.to_string().chars().take(120).collect();
        assert_error(status, &answer, StatusCode::BAD_REQUEST, about, &shown);
    }
    server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(
        names_until(&mut s.stream, "end").await,
        Vec::<String>::new(),
        "nothing was sent on bad input"
    );
}

/// `SSE_WRITE_BATCH_MS` ("Configuration"): frames gathered over the window
/// arrive unchanged, in order, with their ids.
pub(crate) async fn write_batch_window_keeps_every_frame(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_WRITE_BATCH_MS", "50")]).await;
    let mut s = server.subscribe("").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(server.publish_ok(&json!({"event": "batched", "data": n})).await.id);
    }
    for (n, id) in ids.iter().enumerate() {
        let event = s.stream.expect_event("batched").await;
        assert_eq!((event.data.as_str(), &event.id), (n.to_string().as_str(), id));
    }
}
