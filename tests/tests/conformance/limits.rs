//! Limits (`docs/http-api.md`, "How a stream ends", "Overloaded" and the
//! configuration): per user, global (`overloaded`), lifetime, slow clients,
//! per client address (`SSE_MAX_PER_ADDR`), idle streams
//! (`SSE_IDLE_TIMEOUT_MS`) and the memory budgets (`SSE_HISTORY_BYTES`,
//! `SSE_FRAME_BUDGET_BYTES`).

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sse_examples::ServeFn;
use sse_tests::{End, TestServer, leading_retry};

use crate::common::{assert_error, names, names_until, refused};

pub(crate) async fn per_user_limit_closes_oldest(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_MAX_PER_USER", "2")]).await;
    let mut first = server.subscribe("userId=alice").await;
    let mut second = server.subscribe("userId=alice").await;
    let mut bob = server.subscribe("userId=bob").await;
    let mut third = server.subscribe("userId=alice").await;
    let (_, end) = first.stream.events_until_end().await;
    assert_eq!(end, End::Clean, "the oldest stream of alice is closed");
    server.wait_for_connections(3).await;
    let published = server
        .publish_ok(&json!({"event": "hi", "target": "user", "targetId": "alice", "data": 1}))
        .await;
    assert_eq!(published.delivered, 2);
    second.stream.expect_event("hi").await;
    third.stream.expect_event("hi").await;
    let ids: BTreeSet<String> = server
        .connections()
        .await
        .iter()
        .map(|c| c["clientId"].as_str().expect("clientId").to_owned())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([second.client_id, third.client_id, bob.client_id.clone()])
    );
    server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(
        names_until(&mut bob.stream, "end").await,
        Vec::<String>::new(),
        "bob is not affected"
    );
}

pub(crate) async fn global_limit_answers_overloaded(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_MAX_CONNECTIONS", "2"), ("SSE_RETRY_MS", "1000")]).await;
    let mut first = server.subscribe("userId=a").await;
    let _second = server.subscribe("userId=b").await;
    let response = server.connect("userId=c&channel=news").await;
    response.assert_event_stream();
    let (stream, events, end) = response.read_to_end().await;
    assert_eq!(end, End::Clean, "the refused stream ends: {stream:?}");
    assert_eq!(names(&events), ["overloaded"], "one event named overloaded: {stream:?}");
    let retry = events[0]
        .retry
        .map(|r| u64::try_from(r.as_millis()).expect("retry in range"))
        .or_else(|| leading_retry(&stream.raw()))
        .unwrap_or_else(|| panic!("a retry hint: {stream:?}"));
    assert!(retry >= 1000, "the retry hint {retry} is at least SSE_RETRY_MS");
    let stats = server.stats().await;
    assert_eq!(
        stats["connections"], 2,
        "the refused connection is not registered: {stats}"
    );
    assert_eq!(stats["channels"], json!({}), "nor its channel");
    assert_eq!(server.connections().await.len(), 2);
    assert_eq!(server.publish_ok(&json!({"event": "x", "data": 1})).await.delivered, 2);

    // Once a connection leaves, a new one is accepted.
    let (status, _) =
        TestServer::send(server.api(Method::DELETE, &format!("/api/sse/connections/{}", first.client_id))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    first.stream.events_until_end().await;
    server.wait_for_connections(1).await;
    let _third = server.subscribe("userId=c").await;
}

pub(crate) async fn max_lifetime_closes_streams(serve: ServeFn) {
    const LIFETIME_MS: u64 = 600;
    let server = TestServer::start(serve, &[("SSE_MAX_LIFETIME_MS", "600")]).await;
    let mut s = server.subscribe("userId=alice").await;
    server.publish_ok(&json!({"event": "alive", "data": 1})).await;
    s.stream.expect_event("alive").await;
    let (_, end) = s.stream.events_until_end().await;
    let lived = s.stream.opened().elapsed();
    assert_eq!(end, End::Clean, "the stream ends cleanly; the client reconnects");
    // The server may shorten a lifetime a little (spreading reconnections);
    // "about that long" means neither early nor late by much.
    let lifetime = Duration::from_millis(LIFETIME_MS);
    assert!(
        lived >= lifetime * 3 / 4,
        "closed after {lived:?}, not before about {lifetime:?}"
    );
    assert!(
        lived < lifetime + Duration::from_secs(3),
        "closed after {lived:?}, about {lifetime:?}"
    );
    server.wait_for_connections(0).await;
}

pub(crate) async fn slow_client_is_closed(serve: ServeFn) {
    // A client that reads nothing while events pile up: once the socket
    // buffers are full, its queue of 8 frames overflows and it is closed.
    // The payload is large so that the buffers (a few MiB on loopback) fill
    // within a bounded number of publishes.
    let server = TestServer::start(serve, &[("SSE_CLIENT_QUEUE", "8")]).await;
    let slow = server.subscribe("userId=slow").await;
    let payload = "x".repeat(64 * 1024);
    let body = json!({"event": "big", "target": "user", "targetId": "slow", "data": payload});
    let mut closed = false;
    for _ in 0..2000 {
        if server.publish_ok(&body).await.delivered == 0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow client was closed before 128 MiB were queued for it");
    server.wait_for_connections(0).await;
    let mut fast = server.subscribe("userId=fast").await;
    server.publish_ok(&json!({"event": "ok", "data": 1})).await;
    fast.stream.expect_event("ok").await;
    drop(slow);
}

pub(crate) async fn per_address_limit(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_MAX_PER_ADDR", "2")]).await;
    let first = server.subscribe("userId=alice").await;
    let _second = server.subscribe("userId=bob").await;
    // Every connection of the suite comes from 127.0.0.1.
    let (status, body) = refused(&server, "userId=carol&channel=news", &[]).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "",
        "a third connection from 127.0.0.1",
    );
    let stats = server.stats().await;
    assert_eq!(
        stats["connections"], 2,
        "the refused connection is not registered: {stats}"
    );
    assert_eq!(stats["channels"], json!({}), "nor its channel: {stats}");
    // Once one closes, the address may connect again.
    let (status, _) =
        TestServer::send(server.api(Method::DELETE, &format!("/api/sse/connections/{}", first.client_id))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server.wait_for_connections(1).await;
    let _third = server.subscribe("userId=carol").await;
}

pub(crate) async fn idle_timeout_closes_quiet_streams(serve: ServeFn) {
    const IDLE_MS: u64 = 600;
    let server = TestServer::start(serve, &[("SSE_IDLE_TIMEOUT_MS", "600"), ("SSE_HEARTBEAT_MS", "100")]).await;
    let mut s = server.subscribe("userId=alice").await;
    let since_event = std::time::Instant::now();
    server.publish_ok(&json!({"event": "alive", "data": 1})).await;
    s.stream.expect_event("alive").await;
    let (events, end) = s.stream.events_until_end().await;
    assert_eq!(end, End::Clean, "the stream ends cleanly; the client reconnects");
    assert!(events.is_empty(), "{events:?}");
    assert!(
        since_event.elapsed() >= Duration::from_millis(IDLE_MS),
        "not closed before {IDLE_MS} ms without an event"
    );
    let raw = String::from_utf8_lossy(&s.stream.raw()).into_owned();
    assert!(
        raw.contains(": heartbeat"),
        "heartbeats went out and did not count: {raw}"
    );
    let stats = server
        .wait_for_stats("idleClosed 1", |stats| stats["idleClosed"] == 1)
        .await;
    assert_eq!(stats["connections"], 0, "{stats}");
}

pub(crate) async fn memory_budgets_bound_history_queues_and_frames(serve: ServeFn) {
    // The history keeps frames by bytes: two events of ~100 KiB fit in
    // 250,000 bytes, a third pushes the first out (its id gets a reset).
    let server = TestServer::start(serve, &[("SSE_HISTORY_BYTES", "250000")]).await;
    let payload = "x".repeat(100 * 1024);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(server.publish_ok(&json!({"event": "big", "data": payload})).await.id);
    }
    let mut resumed = server.subscribe_with("", &[("last-event-id", &ids[0])]).await;
    assert_eq!(
        resumed.stream.next_event().await.id,
        ids[1],
        "the second event is still held"
    );
    // Resuming from before the first event needs it, and it is gone.
    let before_first = (ids[0].parse::<u64>().expect("a generated id") - 1).to_string();
    let mut reset = server.subscribe_with("", &[("last-event-id", &before_first)]).await;
    reset.stream.expect_event("reset").await;
    let stats = server.stats().await;
    let held = stats["frameBytes"].as_u64().expect("frameBytes");
    assert!(held > 200 * 1024 && held < 250_000, "{stats}");

    // The frames held, history included, are bounded as a whole: past the
    // budget a publish is refused with 503, and counted.
    let server = TestServer::start(serve, &[("SSE_FRAME_BUDGET_BYTES", "250000")]).await;
    for _ in 0..2 {
        server.publish_ok(&json!({"event": "big", "data": payload})).await;
    }
    let (status, body) = server.publish(&json!({"event": "big", "data": payload})).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "memory budget",
        "a third publish",
    );
    let stats = server.stats().await;
    assert_eq!(stats["budgetRefused"], 1, "{stats}");
    assert_eq!(stats["eventsPublished"], 2, "{stats}");
}
