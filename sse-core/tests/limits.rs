//! Limits and lifecycle: slow consumers, connection limits, lifetimes, heartbeats, disconnection, shutdown and validation.
//!
//! These tests build the manager on the current Tokio runtime (default feature `tokio`).
#![cfg(feature = "tokio")]

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event as Parsed, Eventsource as _};
use futures::StreamExt as _;
use sse_core::{
    CloseReason, ConfigError, ConnectError, ConnectOptions, Connection, Event, Heartbeat, SendError, SseConfig,
    SseConfigBuilder, SseManager, SubscribeError, Target, UserLimitPolicy, overloaded_body,
};

use common::{drain, parse};

const TIMEOUT: Duration = Duration::from_secs(10);

fn manager(config: SseConfigBuilder) -> SseManager {
    SseManager::builder()
        .configure(|_| config)
        .build()
        .expect("valid configuration")
}

/// A configuration without heartbeats, so streams hold only what a test sends.
fn quiet() -> SseConfigBuilder {
    SseConfig::builder().heartbeat_interval(None)
}

async fn connect(manager: &SseManager, options: ConnectOptions) -> Connection {
    manager.connect(options).await.expect("connection accepted")
}

fn event(data: impl Into<String>) -> Event {
    Event::named("e", data).expect("valid name")
}

/// Reads `connection` until its stream ends.
async fn read_to_end(connection: &mut Connection) -> Vec<Bytes> {
    tokio::time::timeout(TIMEOUT, connection.by_ref().collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

/// The data of the events named `e`.
fn data_of(events: &[Parsed]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "e")
        .map(|e| e.data.clone())
        .collect()
}

fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[tokio::test]
async fn a_slow_consumer_is_closed_and_resumes_from_history() {
    let manager = manager(quiet().client_queue(8));
    let mut slow = connect(&manager, ConnectOptions::new().user("slow")).await;
    let mut fast = connect(&manager, ConnectOptions::new().user("fast")).await;
    let slow_id = slow.client_id().to_string();
    let mut fast_chunks = drain(&mut fast);

    let mut ids = Vec::new();
    for i in 0..3 {
        let delivery = manager.broadcast(event(i.to_string())).await.expect("running");
        assert_eq!(delivery.delivered, 2);
        ids.push(delivery.id.expect("an id"));
        fast_chunks.extend(drain(&mut fast));
    }
    // The slow client reads once, then stops reading.
    let seen = parse(drain(&mut slow));
    assert_eq!(data_of(&seen), numbers(0..3));
    let last_seen = seen.last().map(|e| e.id.clone()).expect("an event");

    for i in 3..100 {
        let delivery = manager.broadcast(event(i.to_string())).await.expect("running");
        assert!(delivery.delivered >= 1);
        ids.push(delivery.id.expect("an id"));
        fast_chunks.extend(drain(&mut fast));
    }

    let rest = read_to_end(&mut slow).await;
    assert!(rest.is_empty(), "a closed slow consumer's queued frames are dropped");
    assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer));
    assert!(!manager.has_connection(&slow_id));
    assert_eq!(manager.connection_count(), 1);
    let stats = manager.stats();
    assert_eq!(stats.slow_closed, 1);
    assert!(stats.frames_dropped > 0);
    assert_eq!(fast.close_reason(), None);
    assert_eq!(data_of(&parse(fast_chunks)), numbers(0..100));
    drop(slow);

    // Reconnecting with the last id it saw, it gets the rest from history.
    let mut resumed = connect(
        &manager,
        ConnectOptions::new().user("slow").last_event_id(Some(last_seen)),
    )
    .await;
    let replayed = parse(drain(&mut resumed));
    assert_eq!(data_of(&replayed), numbers(3..100));
    let replayed_ids: Vec<&str> = replayed
        .iter()
        .filter(|e| e.event == "e")
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(replayed_ids, ids[3..].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(manager.stats().events_replayed, 97);
}

/// The frames a connection opens with (retry hint, `connected`, replay) are
/// queued regardless of the bound and documented not to count against the
/// client's speed, and an event sent right after `connect` returns is
/// documented to be delivered. Both fail while those frames still occupy the
/// bounded queue: the first live event closes the connection as too slow and
/// drops the replay.
#[tokio::test]
async fn opening_frames_do_not_count_against_the_queue_bound() {
    let manager = manager(quiet().client_queue(8));
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(manager.broadcast(event(i.to_string())).await.expect("running").id);
    }
    let first = ids[0].clone().expect("an id");
    let mut resumed = connect(&manager, ConnectOptions::new().last_event_id(Some(first))).await;
    // Sent before the server had a chance to write anything.
    let live = manager.broadcast(event("20")).await.expect("running");
    assert_eq!(live.delivered, 1, "the resumed connection is not closed as slow");
    assert_eq!(data_of(&parse(drain(&mut resumed))), numbers(1..21));
    assert_eq!(resumed.close_reason(), None);

    // Likewise with the smallest queue and no replay at all.
    let manager = crate::manager(quiet().client_queue(1));
    let mut fresh = connect(&manager, ConnectOptions::new()).await;
    assert_eq!(manager.broadcast(event("x")).await.expect("running").delivered, 1);
    assert_eq!(data_of(&parse(drain(&mut fresh))), ["x"]);
}

#[tokio::test]
async fn over_the_global_limit_a_connection_is_refused_as_overloaded() {
    let retry = Duration::from_secs(2);
    let manager = manager(quiet().max_connections(2).retry(retry));
    let first = connect(&manager, ConnectOptions::new()).await;
    let _second = connect(&manager, ConnectOptions::new()).await;
    let refused = manager.connect(ConnectOptions::new().user("late").channel("c")).await;
    let Err(ConnectError::Overloaded { retry: told }) = refused else {
        panic!("expected Overloaded, got {refused:?}");
    };
    assert!(told >= retry, "told to retry after {told:?}");
    assert_eq!(manager.connection_count(), 2);
    assert!(!manager.is_user_connected("late"));
    assert!(manager.stats().channels.is_empty());
    let stats = manager.stats();
    assert_eq!(stats.connections_rejected, 1);
    assert_eq!(stats.connections_opened, 2);

    let body = overloaded_body(told);
    let text = std::str::from_utf8(&body).expect("UTF-8");
    let ms = told.as_millis();
    assert!(text.lines().any(|line| line == format!("retry: {ms}")), "{text}");
    let events = parse(vec![body.clone()]);
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0].event, "overloaded");
    let data: serde_json::Value = serde_json::from_str(&events[0].data).expect("JSON data");
    assert_eq!(data["retryMs"].as_u64(), Some(u64::try_from(ms).expect("small")));

    // Room again once a connection leaves.
    drop(first);
    let _third = connect(&manager, ConnectOptions::new()).await;
    assert_eq!(manager.connection_count(), 2);
}

#[tokio::test]
async fn over_the_user_limit_the_oldest_connection_is_closed() {
    let manager = manager(quiet().max_connections_per_user(Some(2)));
    let mut oldest = connect(&manager, ConnectOptions::new().user("alice")).await;
    let middle = connect(&manager, ConnectOptions::new().user("alice")).await;
    let _bob = connect(&manager, ConnectOptions::new().user("bob")).await;
    let mut newest = connect(&manager, ConnectOptions::new().user("alice")).await;

    // The evicted stream delivers what it had queued, then ends.
    let frames = parse(read_to_end(&mut oldest).await);
    assert_eq!(frames.last().map(|e| e.event.as_str()), Some("connected"));
    assert_eq!(oldest.close_reason(), Some(CloseReason::Evicted));
    assert!(!manager.has_connection(oldest.client_id().as_str()));

    let held: Vec<String> = manager
        .user_connections("alice")
        .iter()
        .map(|info| info.client_id.to_string())
        .collect();
    assert_eq!(held.len(), 2);
    assert!(held.contains(&middle.client_id().to_string()));
    assert!(held.contains(&newest.client_id().to_string()));
    assert_eq!(manager.connection_count(), 3);
    assert_eq!(manager.stats().unique_users, 2);

    let delivery = manager.send_to_user("alice", event("hi")).await.expect("running");
    assert_eq!(delivery.delivered, 2);
    assert_eq!(data_of(&parse(drain(&mut newest))), ["hi"]);
    assert_eq!(newest.close_reason(), None);
}

#[tokio::test]
async fn over_the_user_limit_a_new_connection_can_be_refused() {
    let manager = manager(
        quiet()
            .max_connections_per_user(Some(2))
            .user_limit_policy(UserLimitPolicy::RejectNew),
    );
    let first = connect(&manager, ConnectOptions::new().user("alice")).await;
    let second = connect(&manager, ConnectOptions::new().user("alice")).await;
    let refused = manager
        .connect(ConnectOptions::new().user("alice").channel("extra"))
        .await;
    assert!(
        matches!(refused, Err(ConnectError::UserLimit { limit: 2 })),
        "{refused:?}"
    );
    assert_eq!(manager.connection_count(), 2);
    assert_eq!(manager.user_connections("alice").len(), 2);
    assert!(manager.channel_connections("extra").is_empty());
    assert_eq!(first.close_reason(), None);
    assert_eq!(second.close_reason(), None);
    assert_eq!(manager.stats().connections_rejected, 1);

    // Other users and anonymous connections are not affected.
    let _bob = connect(&manager, ConnectOptions::new().user("bob")).await;
    let _anonymous = connect(&manager, ConnectOptions::new()).await;
    drop(first);
    let _third = connect(&manager, ConnectOptions::new().user("alice")).await;
    assert_eq!(manager.user_connections("alice").len(), 2);
}

#[tokio::test]
async fn a_connection_ends_at_its_maximum_lifetime() {
    let manager = manager(quiet().max_lifetime(Some(Duration::from_millis(200))));
    let mut connection = connect(&manager, ConnectOptions::new().user("u")).await;
    let id = connection.client_id().to_string();
    let frames = parse(read_to_end(&mut connection).await);
    assert_eq!(frames.first().map(|e| e.event.as_str()), Some("connected"));
    assert_eq!(connection.close_reason(), Some(CloseReason::Expired));
    assert!(!manager.has_connection(&id));
    assert_eq!(manager.connection_count(), 0);
    assert!(!manager.is_user_connected("u"));
}

#[tokio::test]
async fn a_connection_ends_when_it_expires() {
    let manager = manager(SseConfig::builder());
    let mut expiring = connect(
        &manager,
        ConnectOptions::new().expires_after(Duration::from_millis(200)),
    )
    .await;
    let staying = connect(&manager, ConnectOptions::new()).await;
    read_to_end(&mut expiring).await;
    assert_eq!(expiring.close_reason(), Some(CloseReason::Expired));
    assert!(!manager.has_connection(expiring.client_id().as_str()));
    assert!(manager.has_connection(staying.client_id().as_str()));
    assert_eq!(staying.close_reason(), None);

    // The sooner of the lifetime and the expiry wins, either way round.
    let (short, long) = (Duration::from_millis(100), Duration::from_secs(3600));
    for (lifetime, expiry) in [(long, short), (short, long)] {
        let manager = crate::manager(quiet().max_lifetime(Some(lifetime)));
        let mut connection = connect(&manager, ConnectOptions::new().expires_after(expiry)).await;
        read_to_end(&mut connection).await;
        assert_eq!(
            connection.close_reason(),
            Some(CloseReason::Expired),
            "{lifetime:?} / {expiry:?}"
        );
        assert_eq!(manager.connection_count(), 0);
    }
}

#[tokio::test]
async fn an_idle_connection_gets_heartbeat_comments() {
    let manager = manager(SseConfig::builder().heartbeat_interval(Some(Duration::from_millis(100))));
    let mut connection = connect(&manager, ConnectOptions::new()).await;
    let mut text = String::new();
    while text.matches(": heartbeat\n\n").count() < 3 {
        let chunk = tokio::time::timeout(TIMEOUT, connection.next())
            .await
            .expect("a heartbeat arrives")
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    // The counter moves just after a tick's frames are queued: every tick
    // before the last one seen is counted.
    assert!(manager.stats().heartbeats >= 2);
    // Heartbeats are comments: no event reaches a listener.
    let events = parse(vec![Bytes::from(text)]);
    assert_eq!(
        events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["connected"]
    );
}

#[tokio::test]
async fn an_idle_connection_gets_one_heartbeat_per_interval_not_more() {
    let interval = Duration::from_millis(200);
    let manager = manager(SseConfig::builder().heartbeat_interval(Some(interval)));
    let started = std::time::Instant::now();
    let mut connection = connect(&manager, ConnectOptions::new()).await;
    let mut heartbeats = 0;
    while heartbeats < 8 {
        let chunk = tokio::time::timeout(TIMEOUT, connection.next())
            .await
            .expect("a heartbeat arrives")
            .expect("the stream stays open");
        heartbeats += std::str::from_utf8(&chunk)
            .expect("UTF-8")
            .matches(": heartbeat\n\n")
            .count();
    }
    // The k-th heartbeat is due k intervals after the connection opened and
    // goes out at most a tick and a half (of an eighth of the interval)
    // early. A slow machine can only make heartbeats later, never more.
    let elapsed = started.elapsed();
    let bound = (elapsed + interval / 8 * 3 / 2).as_millis() / interval.as_millis();
    assert!(
        heartbeats as u128 <= bound,
        "{heartbeats} heartbeats in {elapsed:?} with a {interval:?} interval"
    );
}

#[tokio::test]
async fn heartbeats_can_be_named_events() {
    let manager = manager(
        SseConfig::builder()
            .heartbeat_interval(Some(Duration::from_millis(100)))
            .heartbeat(Heartbeat::Event("ping".to_owned())),
    );
    let connection = connect(&manager, ConnectOptions::new()).await;
    let mut events = connection.map(Ok::<_, Infallible>).eventsource();
    let mut pings = 0;
    while pings < 2 {
        let event = tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("a heartbeat arrives")
            .expect("the stream stays open")
            .expect("frames parse");
        if event.event == "ping" {
            assert_eq!(event.data, "");
            pings += 1;
        } else {
            assert_eq!(event.event, "connected");
        }
    }
}

#[tokio::test]
async fn dropping_a_connection_unregisters_it() {
    let manager = manager(quiet());
    let connection = connect(
        &manager,
        ConnectOptions::new().user("u").session("s").channels(["a", "b"]),
    )
    .await;
    let stats = manager.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.unique_users, 1);
    assert_eq!(
        stats.channels,
        BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 1)])
    );
    assert!(manager.is_user_connected("u"));

    drop(connection);
    assert_eq!(manager.connection_count(), 0);
    assert!(!manager.is_user_connected("u"));
    assert!(manager.user_connections("u").is_empty());
    assert!(manager.channel_connections("a").is_empty());
    let stats = manager.stats();
    assert_eq!(stats.unique_users, 0);
    assert!(stats.channels.is_empty());
    assert_eq!(
        manager
            .send_to_session("s", event("x"))
            .await
            .expect("running")
            .delivered,
        0
    );
    assert_eq!(
        manager
            .send_to_channel("a", event("x"))
            .await
            .expect("running")
            .delivered,
        0
    );
}

#[tokio::test]
async fn connections_can_be_disconnected() {
    let manager = manager(quiet());
    let mut one = connect(&manager, ConnectOptions::new()).await;
    let mut two = connect(&manager, ConnectOptions::new().user("x")).await;
    let mut three = connect(&manager, ConnectOptions::new().user("x").channel("k")).await;
    let mut four = connect(&manager, ConnectOptions::new().channel("k")).await;
    let five = connect(&manager, ConnectOptions::new().user("y").channel("k2")).await;
    manager.broadcast(event("before")).await.expect("running");

    let one_id = one.client_id().to_string();
    assert!(manager.disconnect(&one_id));
    assert!(!manager.disconnect(&one_id));
    assert!(!manager.disconnect("no-such-client"));
    // Frames queued before the disconnection are still delivered.
    assert_eq!(data_of(&parse(read_to_end(&mut one).await)), ["before"]);
    assert_eq!(one.close_reason(), Some(CloseReason::Disconnected));

    assert_eq!(manager.disconnect_user("x"), 2);
    assert!(!manager.is_user_connected("x"));
    for connection in [&mut two, &mut three] {
        assert_eq!(data_of(&parse(read_to_end(connection).await)), ["before"]);
        assert_eq!(connection.close_reason(), Some(CloseReason::Disconnected));
    }
    assert_eq!(manager.disconnect_user("x"), 0);

    assert_eq!(manager.disconnect_target(&Target::channel("k")), 1);
    read_to_end(&mut four).await;
    assert_eq!(four.close_reason(), Some(CloseReason::Disconnected));

    assert_eq!(manager.connection_count(), 1);
    assert_eq!(five.close_reason(), None);
    assert_eq!(manager.disconnect_target(&Target::All), 1);
    assert_eq!(manager.connection_count(), 0);
    assert!(manager.stats().channels.is_empty());
}

#[tokio::test]
async fn shutdown_sends_the_final_event_then_ends_every_stream() {
    let manager = manager(quiet());
    let mut one = connect(&manager, ConnectOptions::new().user("a")).await;
    let mut two = connect(&manager, ConnectOptions::new().channel("c")).await;
    manager.broadcast(event("last regular")).await.expect("running");

    let bye = Event::named("bye", "see you").expect("valid name");
    tokio::time::timeout(TIMEOUT, manager.shutdown(Some(bye)))
        .await
        .expect("shutdown completes");
    assert!(manager.is_shut_down());
    for connection in [&mut one, &mut two] {
        let events = parse(read_to_end(connection).await);
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["connected", "e", "bye"]);
        assert_eq!(events[2].data, "see you");
        assert_eq!(connection.close_reason(), Some(CloseReason::Shutdown));
    }
    assert_eq!(manager.connection_count(), 0);

    let refused = manager.connect(ConnectOptions::new()).await;
    assert!(matches!(refused, Err(ConnectError::ShuttingDown)), "{refused:?}");
    let late = manager.broadcast(event("late")).await;
    assert!(matches!(late, Err(SendError::ShutDown)), "{late:?}");
    let late = manager.send(Target::user("a"), event("late")).await;
    assert!(matches!(late, Err(SendError::ShutDown)), "{late:?}");
    // Shutting down again does nothing, and sends no final event.
    manager
        .shutdown(Some(Event::named("bye", "again").expect("valid name")))
        .await;
    assert_eq!(manager.stats().events_published, 2);
    assert_eq!(manager.connection_count(), 0);
}

/// Whether an error is the one expected.
type ErrorCheck = fn(&ConnectError) -> bool;

#[tokio::test]
async fn invalid_connection_options_are_typed_errors() {
    let manager = manager(
        quiet()
            .max_channels_per_connection(2)
            .max_channel_len(8)
            .max_metadata_entries(2)
            .max_metadata_bytes(16),
    );
    let cases: Vec<(ConnectOptions, ErrorCheck)> = vec![
        (ConnectOptions::new().channels(["a", "b", "c"]), |e| {
            matches!(e, ConnectError::TooManyChannels { count: 3, max: 2 })
        }),
        (ConnectOptions::new().channel(""), |e| {
            matches!(e, ConnectError::InvalidChannel { reason: "empty", .. })
        }),
        (ConnectOptions::new().channel("123456789"), |e| {
            matches!(e, ConnectError::InvalidChannel { reason: "too long", .. })
        }),
        (ConnectOptions::new().channel("a\nb"), |e| {
            matches!(e, ConnectError::InvalidChannel { .. })
        }),
        (ConnectOptions::new().channel("bell\u{7}"), |e| {
            matches!(e, ConnectError::InvalidChannel { .. })
        }),
        (
            ConnectOptions::new()
                .metadata("a", "1")
                .metadata("b", "2")
                .metadata("c", "3"),
            |e| matches!(e, ConnectError::MetadataTooLarge { .. }),
        ),
        (ConnectOptions::new().metadata("key", "x".repeat(20)), |e| {
            matches!(e, ConnectError::MetadataTooLarge { .. })
        }),
    ];
    let count = cases.len() as u64;
    for (options, expected) in cases {
        let description = format!("{options:?}");
        match manager.connect(options.user("u")).await {
            Err(error) => assert!(expected(&error), "{description}: unexpected {error:?}"),
            Ok(_) => panic!("{description}: accepted"),
        }
    }
    assert_eq!(manager.connection_count(), 0);
    assert!(!manager.is_user_connected("u"));
    assert!(manager.stats().channels.is_empty());
    assert_eq!(manager.stats().connections_rejected, count);

    // At the limits exactly, the connection is accepted.
    let connection = connect(
        &manager,
        ConnectOptions::new()
            .channels(["12345678", "b"])
            .metadata("k", "v")
            .metadata("key", "x".repeat(11)),
    )
    .await;
    let id = connection.client_id().to_string();

    // The same rules hold for runtime subscriptions.
    assert!(matches!(
        manager.subscribe(&id, ""),
        Err(SubscribeError::InvalidChannel { .. })
    ));
    assert!(matches!(
        manager.subscribe(&id, "c"),
        Err(SubscribeError::TooManyChannels { count: 3, max: 2 })
    ));
    assert_eq!(manager.subscribe(&id, "b"), Ok(false));
    assert_eq!(manager.unsubscribe(&id, "b"), Ok(true));
    assert_eq!(manager.unsubscribe(&id, "b"), Ok(false));
    assert_eq!(manager.subscribe(&id, "c"), Ok(true));
    assert!(matches!(
        manager.subscribe("no-such-client", "c"),
        Err(SubscribeError::UnknownClient(_))
    ));
    assert!(matches!(
        manager.unsubscribe("no-such-client", "c"),
        Err(SubscribeError::UnknownClient(_))
    ));
    let channels: Vec<String> = manager
        .connection_info(&id)
        .expect("registered")
        .channels
        .into_iter()
        .collect();
    assert_eq!(channels, ["12345678", "c"]);
}

#[tokio::test]
async fn stats_count_what_happens() {
    let manager = manager(quiet());
    let mut first = connect(&manager, ConnectOptions::new()).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(manager.broadcast(event(i.to_string())).await.expect("running").id);
    }
    let comment = Event::builder().comment("not an event").build().expect("valid event");
    let delivery = manager.broadcast(comment).await.expect("running");
    assert_eq!(delivery.id, None, "a comment gets no id");
    assert_eq!(delivery.delivered, 1);

    let stats = manager.stats();
    assert_eq!(stats.events_published, 3, "comments are not published events");
    assert_eq!(stats.sends_timed, 3, "every published event is timed");
    assert_eq!(stats.frames_delivered, 0, "nothing was written yet");
    assert_eq!(stats.connections_opened, 1);

    drain(&mut first);
    // retry, connected, three events and the comment.
    assert_eq!(manager.stats().frames_delivered, 6);

    let first_id = ids[0].clone().expect("an id");
    let mut resumed = connect(&manager, ConnectOptions::new().last_event_id(Some(first_id))).await;
    assert_eq!(manager.stats().events_replayed, 2);
    drain(&mut resumed);
    assert_eq!(manager.stats().frames_delivered, 6 + 4);

    let mut reset = connect(&manager, ConnectOptions::new().last_event_id(Some("bogus"))).await;
    drain(&mut reset);
    let stats = manager.stats();
    assert_eq!(stats.resets, 1);
    assert_eq!(stats.events_replayed, 2);
    assert_eq!(stats.frames_delivered, 6 + 4 + 3);
    assert_eq!(stats.connections_opened, 3);
    assert_eq!(stats.connections, 3);
    assert_eq!(stats.slow_closed, 0);
    assert_eq!(stats.frames_dropped, 0);
}

#[tokio::test]
async fn invalid_configurations_are_refused() {
    let cases: Vec<(SseConfigBuilder, &str)> = vec![
        (SseConfig::builder().client_queue(0), "client_queue"),
        (
            SseConfig::builder().heartbeat_interval(Some(Duration::from_millis(5))),
            "heartbeat_interval",
        ),
        (
            SseConfig::builder().heartbeat(Heartbeat::Event(String::new())),
            "heartbeat",
        ),
        (
            SseConfig::builder().heartbeat(Heartbeat::Event("a\nb".to_owned())),
            "heartbeat",
        ),
        (
            SseConfig::builder().max_connections_per_user(Some(0)),
            "max_connections_per_user",
        ),
        (SseConfig::builder().max_lifetime(Some(Duration::ZERO)), "max_lifetime"),
        (
            SseConfig::builder().history_max_age(Some(Duration::ZERO)),
            "history_max_age",
        ),
        (SseConfig::builder().max_channel_len(0), "max_channel_len"),
    ];
    for (config, setting) in cases {
        match config.clone().build() {
            Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, setting),
            other => panic!("{setting}: expected ConfigError::Invalid, got {other:?}"),
        }
        match SseManager::builder().configure(|_| config).build() {
            Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, setting),
            other => panic!("{setting}: expected ConfigError::Invalid, got {other:?}"),
        }
    }
    let shortest = SseConfig::builder().heartbeat_interval(Some(Duration::from_millis(10)));
    assert!(SseManager::new(shortest.build().expect("valid configuration")).is_ok());
}

#[test]
fn outside_a_runtime_building_needs_one() {
    let built = SseManager::builder().build();
    assert!(matches!(built, Err(ConfigError::NoRuntime)), "{built:?}");
}

/// Piping into a [`sse_core::test_util::MockTransport`].
#[cfg(feature = "test-util")]
mod transport {
    use super::*;
    use sse_core::test_util::MockTransport;

    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let waited = tokio::time::timeout(TIMEOUT, async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting until {what}");
    }

    #[tokio::test]
    async fn a_failing_transport_ends_the_connection() {
        let manager = manager(quiet());
        let connection = connect(&manager, ConnectOptions::new().user("gone")).await;
        let transport = MockTransport::new();
        transport.fail();
        let mut writer = transport.clone();
        let result = tokio::time::timeout(TIMEOUT, connection.pipe(&mut writer))
            .await
            .expect("pipe returns");
        assert!(result.is_err());
        assert_eq!(manager.connection_count(), 0);
        assert!(!manager.is_user_connected("gone"));
        assert!(!transport.is_closed(), "close is not called after a failed send");
    }

    /// A manager with one connection piped into a `MockTransport` by a
    /// spawned task: the manager, the client id, the transport and the task.
    async fn piped() -> (
        SseManager,
        String,
        MockTransport,
        tokio::task::JoinHandle<Result<CloseReason, sse_core::TransportError>>,
    ) {
        let manager = manager(quiet());
        let connection = connect(&manager, ConnectOptions::new()).await;
        let id = connection.client_id().to_string();
        let transport = MockTransport::new();
        let mut writer = transport.clone();
        let pipe = tokio::spawn(async move { connection.pipe(&mut writer).await });
        (manager, id, transport, pipe)
    }

    #[tokio::test]
    async fn a_transport_failing_later_ends_the_connection_promptly() {
        let (manager, id, transport, pipe) = piped().await;

        wait_until("the opening frames are written", || {
            transport.text().contains("event: connected")
        })
        .await;
        manager.broadcast(event("delivered")).await.expect("running");
        wait_until("the event is written", || transport.text().contains("data: delivered")).await;

        transport.fail();
        manager.broadcast(event("fails")).await.expect("running");
        let result = tokio::time::timeout(TIMEOUT, pipe)
            .await
            .expect("pipe returns")
            .expect("pipe did not panic");
        assert!(result.is_err());
        assert!(!manager.has_connection(&id));
        assert_eq!(manager.connection_count(), 0);
        assert!(!transport.text().contains("fails"));
    }

    #[tokio::test]
    async fn a_pipe_ends_with_the_close_reason_and_closes_the_transport() {
        let (manager, id, transport, pipe) = piped().await;

        manager
            .send_to_client(&id, event("only for you"))
            .await
            .expect("running");
        assert!(manager.disconnect(&id));
        let reason = tokio::time::timeout(TIMEOUT, pipe)
            .await
            .expect("pipe returns")
            .expect("pipe did not panic")
            .expect("the transport did not fail");
        assert_eq!(reason, CloseReason::Disconnected);
        assert!(transport.is_closed());
        let events = parse(transport.writes());
        assert_eq!(data_of(&events), ["only for you"]);
        assert_eq!(manager.connection_count(), 0);
    }
}

#[tokio::test]
async fn extreme_durations_never_panic() {
    let config = SseConfig::builder()
        .retry(Duration::MAX)
        .heartbeat_interval(Some(Duration::MAX))
        .max_lifetime(Some(Duration::MAX))
        .max_connections(1)
        .build()
        .expect("valid configuration");
    let manager = SseManager::new(config).expect("valid configuration");
    let first = manager
        .connect(ConnectOptions::new().expires_after(Duration::MAX))
        .await
        .expect("registered");
    let refused = manager.connect(ConnectOptions::new()).await;
    assert!(matches!(refused, Err(ConnectError::Overloaded { retry }) if retry >= Duration::from_secs(1)));
    assert!(!overloaded_body(Duration::MAX).is_empty());
    drop(first);
    assert_eq!(manager.connection_count(), 0);
}
