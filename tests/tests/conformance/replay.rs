//! `Last-Event-ID` replay (`docs/http-api.md`, "Replay"): from the header or
//! the query, only this connection's events, a `reset` for an id not held,
//! bounded by `SSE_HISTORY`, with no gap or duplicate at the seam.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sse_examples::ServeFn;
use sse_tests::{SseStream, TestServer, WAIT};

use crate::common::{events_until, names};

/// Publishes a mix of events for alice (user, session s1, channel red) and
/// for others; returns the id to resume from, and the events alice would
/// have received after it, in order.
async fn publish_history(server: &TestServer) -> (String, Vec<(String, String)>) {
    let mark = server.publish_ok(&json!({"event": "mark", "data": 0})).await;
    let bodies = [
        (
            json!({"event": "alice", "target": "user", "targetId": "alice", "data": 1}),
            true,
        ),
        (
            json!({"event": "bob", "target": "user", "targetId": "bob", "data": 2}),
            false,
        ),
        (json!({"event": "all", "data": 3}), true),
        (
            json!({"event": "red", "target": "channel", "targetId": "red", "data": 4}),
            true,
        ),
        (
            json!({"event": "blue", "target": "channel", "targetId": "blue", "data": 5}),
            false,
        ),
        (
            json!({"event": "s1", "target": "session", "targetId": "s1", "data": 6}),
            true,
        ),
        (
            json!({"event": "s9", "target": "session", "targetId": "s9", "data": 7}),
            false,
        ),
        (
            json!({"event": "users", "target": "users", "targetIds": ["bob", "alice"], "data": 8}),
            true,
        ),
        (
            json!({"event": "users-bob", "target": "users", "targetIds": ["bob"], "data": 9}),
            false,
        ),
        (
            json!({"event": "client", "target": "client", "targetId": "someone-else", "data": 10}),
            false,
        ),
        (json!({"event": "custom", "id": "custom-id", "data": 11}), true),
    ];
    let mut expected = Vec::new();
    for (body, for_alice) in bodies {
        let published = server.publish_ok(&body).await;
        if for_alice {
            expected.push((body["event"].as_str().expect("name").to_owned(), published.id));
        }
    }
    (mark.id, expected)
}

/// Reads the replay up to a live event published now; checks it is `expected`
/// (names and ids), in order, with nothing else before the live event, and
/// that a second live event follows once. Returns the two live events (names
/// `live-{tag}` and `after-{tag}`, and ids), which later resumptions replay.
pub(crate) async fn assert_replay(
    server: &TestServer,
    stream: &mut SseStream,
    expected: &[(String, String)],
    tag: &str,
) -> Vec<(String, String)> {
    let (live, after) = (format!("live-{tag}"), format!("after-{tag}"));
    let live_id = server.publish_ok(&json!({"event": live, "data": "now"})).await.id;
    let replayed = events_until(stream, &live).await;
    let got: Vec<(String, String)> = replayed.iter().map(|e| (e.event.clone(), e.id.clone())).collect();
    assert_eq!(
        got, expected,
        "the replay: every event after the id for this connection, in order"
    );
    let after_id = server.publish_ok(&json!({"event": after, "data": "later"})).await.id;
    let event = stream.next_event().await;
    assert_eq!(
        (&event.event, &event.id),
        (&after, &after_id),
        "live events follow, each once"
    );
    vec![(live, live_id), (after, after_id)]
}

pub(crate) async fn replay_after_last_event_id_header(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let (mark, expected) = publish_history(&server).await;
    let query = "userId=alice&sessionId=s1&channel=red";
    let mut s = server.subscribe_with(query, &[("last-event-id", &mark)]).await;
    let live = assert_replay(&server, &mut s.stream, &expected, "s").await;

    // Resuming from a publisher-chosen id (the last of the history) works
    // the same.
    let mut t = server.subscribe_with(query, &[("last-event-id", "custom-id")]).await;
    assert_replay(&server, &mut t.stream, &live, "t").await;

    // Bob, resuming from the same point as alice, sees none of her events.
    let mut bob = server.subscribe_with("userId=bob", &[("last-event-id", &mark)]).await;
    server.publish_ok(&json!({"event": "bob-live", "data": "now"})).await;
    let replayed = events_until(&mut bob.stream, "bob-live").await;
    assert_eq!(
        names(&replayed),
        [
            "bob",
            "all",
            "users",
            "users-bob",
            "custom",
            "live-s",
            "after-s",
            "live-t",
            "after-t"
        ],
        "bob's replay: his own events and those for everybody"
    );
}

pub(crate) async fn replay_after_last_event_id_query(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let (mark, expected) = publish_history(&server).await;
    let mut s = server
        .subscribe(&format!("userId=alice&sessionId=s1&channel=red&lastEventId={mark}"))
        .await;
    assert_replay(&server, &mut s.stream, &expected, "s").await;
    let listed = server.connections().await;
    assert_eq!(listed[0]["metadata"], json!({}), "lastEventId is not metadata");
}

pub(crate) async fn header_wins_over_query(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let (mark, expected) = publish_history(&server).await;
    let query = "userId=alice&sessionId=s1&channel=red";

    // The header names a later event than the query: the replay starts there.
    let (_, second_id) = expected[1].clone();
    let mut s = server
        .subscribe_with(&format!("{query}&lastEventId={mark}"), &[("last-event-id", &second_id)])
        .await;
    let live = assert_replay(&server, &mut s.stream, &expected[2..], "s").await;

    // A valid header and a malformed query: the replay, no reset.
    let mut t = server
        .subscribe_with(&format!("{query}&lastEventId=not-an-id"), &[("last-event-id", &mark)])
        .await;
    let all: Vec<(String, String)> = expected.iter().chain(&live).cloned().collect();
    assert_replay(&server, &mut t.stream, &all, "t").await;
}

pub(crate) async fn reset_for_unknown_ids(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let published = server.publish_ok(&json!({"event": "old", "data": 0})).await;
    let never_issued = published
        .id
        .parse::<u64>()
        .map_or_else(|_| "1000000".to_owned(), |n| (n + 1_000_000).to_string());
    let too_long = "9".repeat(300);
    for (what, id) in [
        ("an id never issued", never_issued.as_str()),
        ("an id from before this server", "1"),
        ("a malformed id", "not-an-id"),
        ("an id over 256 bytes", too_long.as_str()),
    ] {
        let mut s = server.subscribe_with("userId=alice", &[("last-event-id", id)]).await;
        let event = s.stream.next_event().await;
        assert_eq!(event.event, "reset", "{what} yields a reset event: {event:?}");
        server.publish_ok(&json!({"event": "live", "data": what})).await;
        let event = s.stream.next_event().await;
        assert_eq!(
            (event.event.as_str(), event.data.as_str()),
            ("live", what),
            "then live events"
        );
    }
    // The query parameter too.
    let mut s = server.subscribe("userId=alice&lastEventId=not-an-id").await;
    s.stream.expect_event("reset").await;
}

pub(crate) async fn history_size_bounds_replay(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_HISTORY", "2")]).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(
            server
                .publish_ok(&json!({"event": format!("e{n}"), "data": n}))
                .await
                .id,
        );
    }
    // e1 and e2 are gone; resuming after e1 would miss e2: reset.
    let mut s = server.subscribe_with("", &[("last-event-id", &ids[0])]).await;
    s.stream.expect_event("reset").await;
    // Resuming after e3 misses nothing.
    let mut t = server.subscribe_with("", &[("last-event-id", &ids[2])]).await;
    let event = t.stream.expect_event("e4").await;
    assert_eq!(event.id, ids[3]);
}

pub(crate) async fn replay_seam_has_no_gap_or_duplicate(serve: ServeFn) {
    const EVENTS: u64 = 300;
    let server = Arc::new(TestServer::start(serve, &[]).await);
    // Numbered events published back to back; their ids, as they are known.
    let ids = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let publisher = {
        let (server, ids) = (server.clone(), ids.clone());
        tokio::spawn(async move {
            for n in 1..=EVENTS {
                let published = server.publish_ok(&json!({"event": "n", "data": n})).await;
                ids.lock().expect("ids lock").push((n, published.id));
            }
        })
    };
    // Clients resume from the last id they know while publishing goes on:
    // each must get every later event exactly once, replayed or live.
    let mut resumed = Vec::new();
    while resumed.len() < 6 {
        let known = ids.lock().expect("ids lock").last().cloned();
        let Some((n, id)) = known else {
            tokio::task::yield_now().await;
            continue;
        };
        if n >= EVENTS - 20 {
            break;
        }
        let subscriber = server.subscribe_with("", &[("last-event-id", &id)]).await;
        resumed.push((n, subscriber));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(resumed.len() >= 2, "clients resumed while events were being published");
    tokio::time::timeout(WAIT, publisher)
        .await
        .expect("publishing finishes")
        .expect("the publisher succeeded");
    for (from, mut subscriber) in resumed {
        let mut got = Vec::new();
        while got.last() != Some(&EVENTS) {
            let event = subscriber.stream.expect_event("n").await;
            got.push(event.data.parse::<u64>().expect("a number"));
        }
        let expected: Vec<u64> = (from + 1..=EVENTS).collect();
        assert_eq!(
            got, expected,
            "resumed after event {from}: every later event once, in order"
        );
    }
}

pub(crate) async fn live_only_events_are_not_replayed(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("userId=alice").await;
    let mark = server.publish_ok(&json!({"event": "mark", "data": 0})).await.id;
    let typing = json!({"event": "typing", "data": "alice", "replay": false, "target": "user", "targetId": "alice"});
    let (status, answer) = server.publish(&typing).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"id": null, "delivered": 1}),
        "a live-only event has no id"
    );
    let after = server
        .publish_ok(&json!({"event": "after", "data": 2, "replay": true}))
        .await
        .id;
    s.stream.expect_event("mark").await;
    let event = s.stream.next_event().await;
    assert_eq!(event.event, "typing", "delivered live");
    assert_eq!(event.id, mark, "sent without an id: the last event id stays");
    let frames: Vec<String> = s.stream.frames().into_iter().map(|(_, text)| text).collect();
    assert!(
        frames.iter().any(|f| f == "event: typing\ndata: alice\n\n"),
        "the frame has no id: {frames:?}"
    );
    assert_eq!(s.stream.next_event().await.id, after);

    // Resuming from the id before it, or the one the client kept: the
    // replay skips it, and nothing is reset.
    assert_eq!(replayed_names(&server, "userId=alice", &mark, "live").await, ["after"]);
    assert_eq!(
        replayed_names(&server, "userId=alice", &after, "live-2").await,
        ["live"]
    );
    assert_eq!(server.stats().await["resets"], json!(0));
}

/// Subscribes with `query`, resuming after `last_id`, and publishes an event
/// named `live`: the names of the events replayed before it.
async fn replayed_names(server: &TestServer, query: &str, last_id: &str, live: &str) -> Vec<String> {
    let mut s = server.subscribe_with(query, &[("last-event-id", last_id)]).await;
    server.publish_ok(&json!({"event": live, "data": live})).await;
    events_until(&mut s.stream, live)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect()
}

pub(crate) async fn events_for_one_client_take_no_place_in_the_history(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_HISTORY", "2")]).await;
    let mark = server.publish_ok(&json!({"event": "mark", "data": 0})).await.id;
    let missed = server
        .publish_ok(&json!({"event": "team", "target": "user", "targetId": "alice", "data": 1}))
        .await
        .id;
    // Initial state for each of many new connections.
    let mut last_snapshot = String::new();
    for n in 0..6 {
        let s = server.subscribe("userId=bob").await;
        let mut body = json!({"event": "snapshot", "target": "client", "targetId": s.client_id, "data": n});
        if n % 2 == 1 {
            body["id"] = format!("snap-{n}").into();
        }
        last_snapshot = server.publish_ok(&body).await.id;
    }
    assert_eq!(last_snapshot, "snap-5");
    let mut alice = server.subscribe_with("userId=alice", &[("last-event-id", &mark)]).await;
    server.publish_ok(&json!({"event": "live", "data": 2})).await;
    let replayed = events_until(&mut alice.stream, "live").await;
    assert_eq!(names(&replayed), ["team"], "exactly the missed event, no reset");
    assert_eq!(replayed[0].id, missed);
    // A snapshot's id, the publisher's own, is a resume point too.
    assert_eq!(
        replayed_names(&server, "userId=bob", &last_snapshot, "live-2").await,
        ["live"]
    );
    assert_eq!(server.stats().await["resets"], json!(0));
}
