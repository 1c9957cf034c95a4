//! Several managers sharing one Redis stream, against a real Redis server.
//!
//! Expects Redis on 127.0.0.1:6379 (or at `SSE_TEST_REDIS_URL`); without it
//! every test that needs it prints why and passes, unless `SSE_CI_STRICT=1`,
//! which makes a missing Redis a failure. Each test uses a key prefix of its
//! own and deletes its keys at the end. What every backplane must do (every
//! target kind across instances, resuming on another instance, preloading,
//! lost history, a restarted server, one order for concurrent publishers)
//! is checked by the shared conformance suite, in `suite.rs`.

use std::time::{Duration, Instant};

use sse_core::{ConnectOptions, Event, SendError, SseManager, Target};
use sse_redis::{RedisBackplane, RedisBackplaneError};

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
async fn the_stream_is_trimmed_to_about_the_history_size() {
    let Some(fx) = fixture("trim").await else { return };
    const HISTORY: usize = 50;
    const SENT: usize = 600;
    let a = fx.instance(HISTORY).await;
    let mut ids = Vec::new();
    for n in 0..SENT {
        ids.push(send(&a, Target::All, &format!("event {n}")).await.id.expect("id"));
    }
    let node: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("stream-node-max-entries")
        .query_async(&mut fx.redis().await)
        .await
        .expect("CONFIG GET");
    let node: usize = node.get(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let len = fx.xlen().await;
    println!("history {HISTORY}, {SENT} sent: XLEN {len} (stream-node-max-entries {node})");
    assert!(
        (HISTORY..=HISTORY + node).contains(&len),
        "XLEN {len} outside [{HISTORY}, {HISTORY} + {node}]"
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_publishes_promptly_and_connections_stay_open() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let builder = || {
        RedisBackplane::connect(url.as_str())
            .prefix(prefix("unreachable"))
            .timeout(Duration::from_secs(1))
    };

    let started = Instant::now();
    let refused = tokio::time::timeout(WAIT, builder().build()).await.expect("build hung");
    assert!(matches!(refused, Err(RedisBackplaneError::Connect(_))), "{refused:?}");

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
        assert!(matches!(failed, Err(SendError::Backplane(_))), "{failed:?}");
    }
    println!(
        "unreachable Redis: a refused build and 3 failed publishes took {:?}",
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
    let mut redis = fx.redis().await;
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(fx.key())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("XREVRANGE");
    let prev = last.ids.first().expect("an entry").id.clone();
    redis::cmd("XADD")
        .arg(fx.key())
        .arg("*")
        .arg("p")
        .arg("not json")
        .arg("prev")
        .arg(prev)
        .query_async::<String>(&mut redis)
        .await
        .expect("XADD");
    send(&a, Target::All, "after").await;
    watch.until("data: after").await;
    assert_eq!(watch.events(), ["before", "after"]);
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
    println!("{SENDS} sequential sends through Redis:");
    println!(
        "  send() returned (entry stored, then read back by its instance): {}",
        report(publish)
    );
    println!(
        "  the event reached a connection on the other instance: {}",
        report(to_other)
    );
}

#[tokio::test]
async fn the_builder_checks_its_settings() {
    let invalid = RedisBackplane::connect("not a url").build_lazy();
    assert!(
        matches!(invalid, Err(RedisBackplaneError::InvalidUrl(_))),
        "{invalid:?}"
    );
    for builder in [
        RedisBackplane::connect(REDIS_URL).history(0),
        RedisBackplane::connect(REDIS_URL).prefix(""),
        RedisBackplane::connect(REDIS_URL).batch(0),
        RedisBackplane::connect(REDIS_URL).timeout(Duration::ZERO),
    ] {
        let built = builder.build_lazy();
        assert!(matches!(built, Err(RedisBackplaneError::InvalidConfig(_))), "{built:?}");
    }
    let backplane = RedisBackplane::connect(REDIS_URL)
        .prefix("app")
        .history(7)
        .build_lazy()
        .expect("valid");
    assert_eq!(backplane.stream_key(), "app:events");
    assert_eq!(backplane.history(), 7);
}

#[test]
fn building_outside_a_tokio_runtime_is_an_error() {
    let built = RedisBackplane::connect(REDIS_URL).build_lazy();
    assert!(matches!(built, Err(RedisBackplaneError::NoRuntime)), "{built:?}");
}
