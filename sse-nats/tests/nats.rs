//! Several managers sharing one JetStream stream, against a real NATS
//! server.
//!
//! Expects NATS with JetStream on 127.0.0.1:4222 (or at
//! `SSE_TEST_NATS_URL`); without it every test that needs it prints why and
//! passes, unless `SSE_CI_STRICT=1`, which makes a missing NATS (or a
//! missing `nats-server` binary, for the restart tests) a failure. Each test
//! uses a stream of its own and deletes it at the end.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sse_core::{ConnectOptions, Event, SendError, SseManager, Target};
use sse_nats::{NatsBackplane, NatsBackplaneError};

mod common;

use common::*;

/// Exclusions and live-only events cross the stream: every instance
/// delivers them as aimed, and none replays a live-only event, not even one
/// that preloads the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusions_and_live_only_events_cross_instances() {
    let Some(fx) = fixture("audience").await else { return };
    let (a, b) = (fx.instance(100).await, fx.instance(100).await);
    let member = |user: &str| ConnectOptions::new().user(user).channel("room");
    let mut alice_on_a = connect(&a, member("alice")).await;
    let mut bob_on_b = connect(&b, member("bob")).await;
    let mut carol_on_b = connect(&b, member("carol")).await;
    let start = send(&a, Target::All, "start").await.id.expect("id");
    let audience = Target::channel("room")
        .except_user("alice")
        .except_client(carol_on_b.client_id());
    let to_bob = a.send(audience, Event::message("to bob")).await.expect("published");
    assert_eq!(to_bob.delivered, 0, "a's only connection is excluded");
    let typing = Event::message("typing").live_only();
    let typing = b
        .send(Target::channel("room").except_user("bob"), typing)
        .await
        .expect("published");
    assert_eq!((typing.id, typing.delivered), (None, 1), "carol on b, without an id");
    send(&a, Target::All, "end").await;
    for (watch, expected) in [
        (&mut alice_on_a, ["start", "typing", "end"]),
        (&mut bob_on_b, ["start", "to bob", "end"]),
        (&mut carol_on_b, ["start", "typing", "end"]),
    ] {
        watch.until("data: end").await;
        assert_eq!(watch.events(), expected, "{}", watch.seen);
        assert_eq!(
            watch.seen.matches("id: ").count(),
            3 - usize::from(expected[1] == "typing")
        );
    }
    let c = fx.instance(100).await;
    for instance in [&b, &c] {
        let mut bob = connect(instance, member("bob").last_event_id(Some(start.clone()))).await;
        bob.until("data: end").await;
        assert_eq!(bob.events(), ["to bob", "end"], "{}", bob.seen);
        let mut alice = connect(instance, member("alice").last_event_id(Some(start.clone()))).await;
        alice.until("data: end").await;
        assert_eq!(alice.events(), ["end"], "{}", alice.seen);
        assert_eq!(instance.stats().resets, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_keeps_exactly_the_history_size() {
    let Some(fx) = fixture("trim").await else { return };
    const HISTORY: usize = 50;
    const SENT: usize = 300;
    let a = fx.instance(HISTORY).await;
    let mut ids = Vec::new();
    for n in 0..SENT {
        ids.push(send(&a, Target::All, &format!("event {n}")).await.id.expect("id"));
    }
    assert_eq!(fx.len().await, HISTORY as u64);

    // A new instance loads the last HISTORY entries: resuming inside them
    // replays, resuming before them is a reset.
    let c = fx.instance(HISTORY).await;
    let inside = ids[SENT - 10].clone();
    let mut recent = connect(&c, ConnectOptions::new().last_event_id(Some(inside))).await;
    recent.until(&format!("data: event {}", SENT - 1)).await;
    let expected: Vec<String> = (SENT - 9..SENT).map(|n| format!("event {n}")).collect();
    assert_eq!(recent.events(), expected);
    let mut old = connect(&c, ConnectOptions::new().last_event_id(Some(ids[0].clone()))).await;
    old.until("event: reset").await;
    assert!(!old.seen.contains("data: event"), "{}", old.seen);
}

/// Entries older than the maximum age leave the stream: a new instance
/// loads none of them, and a client resuming from one gets a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_older_than_the_maximum_age_are_dropped() {
    let Some(fx) = fixture("max-age").await else { return };
    let aged = || fx.backplane(100).max_age(Some(Duration::from_millis(500)));
    let a = manager(aged().build().await.expect("backplane"), 100);
    let old = send(&a, Target::All, "old").await.id;
    let deadline = Instant::now() + WAIT;
    while fx.len().await > 0 {
        assert!(Instant::now() < deadline, "the entry never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = manager(aged().build().await.expect("backplane"), 100);
    let mut resumed = connect(&c, ConnectOptions::new().last_event_id(old)).await;
    resumed.until("event: reset").await;
    send(&a, Target::All, "new").await;
    resumed.until("data: new").await;
    assert_eq!(resumed.events(), ["new"], "{}", resumed.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_nats_fails_publishes_promptly_and_connections_stay_open() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let builder = || {
        NatsBackplane::connect(url.as_str())
            .prefix(prefix("unreachable"))
            .timeout(Duration::from_secs(1))
    };

    let started = Instant::now();
    let refused = tokio::time::timeout(WAIT, builder().build()).await.expect("build hung");
    assert!(matches!(refused, Err(NatsBackplaneError::Connect(_))), "{refused:?}");

    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(Some(Duration::from_millis(100))))
        .backplane(builder().build_lazy().expect("lazy backplane"))
        .build()
        .expect("manager");
    let mut watch = connect(&manager, ConnectOptions::new().user("alice")).await;
    for _ in 0..3 {
        let failed = tokio::time::timeout(WAIT, manager.broadcast(Event::message("lost?")))
            .await
            .expect("publish hung");
        match failed {
            Err(SendError::Backplane(error)) => assert!(!error.is_outcome_unknown(), "{error}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(manager.ready().await.is_err());
    println!(
        "unreachable NATS: a refused build and 3 failed publishes took {:?}",
        started.elapsed()
    );
    watch.until(": heartbeat").await;
    watch.seen.clear();
    watch.until(": heartbeat").await;
    assert_eq!(manager.connection_count(), 1);
    assert!(watch.connection.close_reason().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_is_not_an_event_is_skipped() {
    let Some(fx) = fixture("garbage").await else { return };
    let a = fx.instance(100).await;
    let mut watch = connect(&a, ConnectOptions::new()).await;
    send(&a, Target::All, "before").await;
    fx.jetstream()
        .await
        .publish(fx.subject(), Bytes::from_static(b"not json"))
        .await
        .expect("sent")
        .await
        .expect("stored");
    send(&a, Target::All, "after").await;
    watch.until("data: after").await;
    assert_eq!(watch.events(), ["before", "after"]);
}

/// A key published twice within the window is stored once, on whichever
/// instance the repeat comes, and the repeat reports the first entry's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_publish_is_stored_once_across_instances() {
    let Some(fx) = fixture("once").await else { return };
    let (a, b) = (fx.instance(100).await, fx.instance(100).await);
    let mut watch = connect(&b, ConnectOptions::new()).await;
    let first = a
        .send_idempotent("order-17", Target::All, Event::message("paid"))
        .await
        .expect("sent");
    assert!(!first.duplicate);
    for instance in [&a, &b] {
        let again = instance
            .send_idempotent("order-17", Target::All, Event::message("paid"))
            .await
            .expect("sent");
        assert!(again.duplicate);
        assert_eq!(again.id, first.id);
    }
    send(&a, Target::All, "end").await;
    watch.until_exactly(&["paid", "end"]).await;
    assert_eq!(fx.len().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_server() {
    let Some(fx) = fixture("ready").await else { return };
    let a = fx.instance(100).await;
    a.ready().await.expect("ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_latency_is_reported() {
    let Some(fx) = fixture("latency").await else { return };
    const SENDS: usize = 500;
    let (a, b) = (fx.instance(1000).await, fx.instance(1000).await);
    let mut on_b = connect(&b, ConnectOptions::new().user("alice")).await;
    let mut publish = Vec::with_capacity(SENDS);
    let mut to_other = Vec::with_capacity(SENDS);
    for n in 0..SENDS {
        let needle = format!("data: n{n}\n");
        let started = Instant::now();
        let sent = async {
            send(&a, Target::user("alice"), &format!("n{n}")).await;
            started.elapsed()
        };
        let arrived = async {
            on_b.until(&needle).await;
            started.elapsed()
        };
        let (sent, arrived) = tokio::join!(sent, arrived);
        publish.push(sent);
        to_other.push(arrived);
    }
    assert_eq!(on_b.events().len(), SENDS);
    let report = |mut samples: Vec<Duration>| {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        format!("median {:?}, p99 {:?}, max {:?}", at(0.5), at(0.99), at(1.0))
    };
    println!("{SENDS} sequential sends through NATS JetStream:");
    println!(
        "  send() returned (entry stored, then read back by its instance): {}",
        report(publish)
    );
    println!(
        "  the event reached a connection on the other instance: {}",
        report(to_other)
    );
}

/// A server restarted without its storage has lost the stream: delivery
/// goes on, and ids of before are a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_restarted_without_its_storage_resets_resuming_clients() {
    let Some(binary) = nats_server_binary() else {
        skip("the nats-server binary is not installed");
        return;
    };
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = TempDir::new("wiped").expect("store directory");
    let mut server = Server::start(&binary, port, &dir.0).expect("nats-server starts");
    wait_for_nats(&url).await;
    let fx = fixture_at(&url, "wiped").await.expect("own nats-server answers");
    let (a, b) = (fx.instance(100).await, fx.instance(100).await);
    let mut on_b = connect(&b, ConnectOptions::new()).await;
    let first = send(&a, Target::All, "one").await;
    on_b.until("data: one").await;

    server.stop();
    let fresh = TempDir::new("wiped-again").expect("store directory");
    let _server = Server::start(&binary, port, &fresh.0).expect("nats-server restarts");
    wait_for_nats(&url).await;
    let deadline = Instant::now() + WAIT;
    while a.broadcast(Event::message("two")).await.is_err() {
        assert!(Instant::now() < deadline, "could not publish after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    on_b.until_exactly(&["one", "two"]).await;
    for instance in [&a, &b] {
        let mut resumed = connect(instance, ConnectOptions::new().last_event_id(first.id.clone())).await;
        resumed.until("event: reset").await;
    }
    drop(fx);
}

#[tokio::test]
async fn the_builder_checks_its_settings() {
    let invalid = NatsBackplane::connect("nats://host:notaport").build_lazy();
    assert!(matches!(invalid, Err(NatsBackplaneError::InvalidUrl(_))), "{invalid:?}");
    for builder in [
        NatsBackplane::connect(NATS_URL).history(0),
        NatsBackplane::connect(NATS_URL).prefix(""),
        NatsBackplane::connect(NATS_URL).prefix("a.b"),
        NatsBackplane::connect(NATS_URL).prefix("a*"),
        NatsBackplane::connect(NATS_URL).batch(0),
        NatsBackplane::connect(NATS_URL).timeout(Duration::ZERO),
        NatsBackplane::connect(NATS_URL).read_timeout(Duration::from_millis(1)),
        NatsBackplane::connect(NATS_URL).max_age(Some(Duration::ZERO)),
    ] {
        let built = builder.build_lazy();
        assert!(matches!(built, Err(NatsBackplaneError::InvalidConfig(_))), "{built:?}");
    }
    let backplane = NatsBackplane::connect(NATS_URL)
        .prefix("app")
        .history(7)
        .build_lazy()
        .expect("valid");
    assert_eq!(backplane.stream_name(), "app-events");
    assert_eq!(backplane.subject(), "app.events");
    assert_eq!(backplane.history(), 7);
}

#[test]
fn building_outside_a_tokio_runtime_is_an_error() {
    let built = NatsBackplane::connect(NATS_URL).build_lazy();
    assert!(matches!(built, Err(NatsBackplaneError::NoRuntime)), "{built:?}");
}
