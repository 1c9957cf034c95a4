//! Several managers sharing one log through a backplane.
#![cfg(all(feature = "test-util", feature = "tokio"))]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use sse_core::test_util::MemoryLog;
use sse_core::{ConnectOptions, Connection, Event, SendError, SseManager, Target};

const WAIT: Duration = Duration::from_secs(10);

fn instance(log: &MemoryLog) -> SseManager {
    SseManager::builder().backplane(log.clone()).build().expect("manager")
}

/// Reads frames until `needle` shows up; returns everything read.
async fn read_until(connection: &mut Connection, needle: &str) -> String {
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while !text.contains(needle) {
            let frames: Bytes = connection.next().await.expect("stream open");
            text.push_str(&String::from_utf8_lossy(&frames));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} never arrived; got {text:?}"));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_reach_connections_on_every_instance() {
    let log = MemoryLog::new();
    let (a, b) = (instance(&log), instance(&log));
    let mut alice_on_b = b
        .connect(ConnectOptions::new().user("alice").channel("news"))
        .await
        .expect("alice");
    let mut bob_on_a = a.connect(ConnectOptions::new().user("bob")).await.expect("bob");

    let to_alice = a
        .send_to_user("alice", Event::named("private", "for alice").expect("event"))
        .await;
    let to_alice = to_alice.expect("published");
    assert_eq!(to_alice.delivered, 0, "a has no connection of alice");
    let news = b
        .send(Target::channel("news"), Event::message("news"))
        .await
        .expect("published");
    assert_eq!(news.delivered, 1);
    let all = a.broadcast(Event::message("everyone")).await.expect("published");
    assert_eq!(all.delivered, 1, "bob is a's only connection");
    assert_eq!(a.stats().sends_timed, 2, "each publish is timed where it was sent");
    assert_eq!(b.stats().sends_timed, 1);

    let seen = read_until(&mut alice_on_b, "everyone").await;
    let private_at = seen.find("for alice").expect("alice got her event");
    let news_at = seen.find("data: news").expect("alice got the news");
    assert!(private_at < news_at, "log order is kept: {seen}");
    assert!(seen.contains(&format!("id: {}", to_alice.id.expect("id"))));
    let bob_seen = read_until(&mut bob_on_a, "everyone").await;
    assert!(
        !bob_seen.contains("for alice") && !bob_seen.contains("data: news"),
        "{bob_seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_instance() {
    let log = MemoryLog::new();
    let (a, b) = (instance(&log), instance(&log));
    let mut on_a = a.connect(ConnectOptions::new().user("alice")).await.expect("connect");
    let first = a.send_to_user("alice", Event::message("one")).await.expect("sent");
    read_until(&mut on_a, "one").await;
    drop(on_a);
    // Published while alice is away, on another instance, with some noise for bob.
    b.send_to_user("bob", Event::message("bob only")).await.expect("sent");
    b.send_to_user("alice", Event::message("two")).await.expect("sent");
    a.send_to_user("alice", Event::message("three")).await.expect("sent");

    let resumed = ConnectOptions::new().user("alice").last_event_id(first.id.clone());
    let mut on_b = b.connect(resumed).await.expect("reconnect");
    let seen = read_until(&mut on_b, "three").await;
    assert!(seen.find("data: two") < seen.find("data: three"), "{seen}");
    assert!(
        !seen.contains("bob only") && !seen.contains("data: one") && !seen.contains("event: reset"),
        "{seen}"
    );

    // A fresh instance preloads the log, so it can resume clients too.
    let c = instance(&log);
    let mut on_c = c
        .connect(ConnectOptions::new().user("alice").last_event_id(first.id))
        .await
        .expect("reconnect");
    let seen = read_until(&mut on_c, "three").await;
    assert!(seen.contains("data: two") && !seen.contains("bob only"), "{seen}");
}

#[tokio::test]
async fn an_unreachable_log_is_an_error_and_connections_stay_open() {
    let log = MemoryLog::new();
    let manager = SseManager::builder()
        .backplane(log.clone())
        .configure(|c| c.heartbeat_interval(Some(Duration::from_millis(50))))
        .build()
        .expect("manager");
    let mut connection = manager.connect(ConnectOptions::new()).await.expect("connect");
    log.set_available(false);
    let failed = manager.broadcast(Event::message("lost?")).await;
    assert!(matches!(failed, Err(SendError::Backplane(_))), "{failed:?}");
    if let Err(error) = &failed {
        // The backplane's own error is kept as the source, and still shown.
        let source = std::error::Error::source(error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("backplane: memory log told to be unavailable"));
        assert_eq!(
            error.to_string(),
            "the event could not be published: backplane: memory log told to be unavailable"
        );
    }
    assert!(log.is_empty(), "nothing was appended");
    read_until(&mut connection, ": heartbeat").await;
    assert_eq!(manager.connection_count(), 1);
    log.set_available(true);
    assert_eq!(
        manager.broadcast(Event::message("back")).await.expect("sent").delivered,
        1
    );
    read_until(&mut connection, "back").await;
    let predicate = manager.send_where(|_| true, Event::message("x")).await;
    assert!(matches!(predicate, Err(SendError::NotDistributable)), "{predicate:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_its_key_after_an_unknown_outcome_is_delivered_once() {
    let log = MemoryLog::new();
    let (a, b) = (instance(&log), instance(&log));
    let mut on_a = a.connect(ConnectOptions::new()).await.expect("connect");
    let mut on_b = b.connect(ConnectOptions::new()).await.expect("connect");

    // Not published: the error says so, and nothing reaches anybody.
    log.set_failing(Some(false));
    let failed = a.send_idempotent("k1", Target::All, Event::message("first")).await;
    let error = failed.expect_err("failed");
    assert!(!error.is_outcome_unknown(), "{error}");
    // Stored, but the answer was lost: the outcome is unknown.
    log.set_failing(Some(true));
    let failed = a.send_idempotent("k2", Target::All, Event::message("second")).await;
    let error = failed.expect_err("failed");
    assert!(error.is_outcome_unknown(), "{error}");
    log.set_failing(None);

    // The retries: k1 was never published, so it is now; k2 was, so the
    // retry is answered with its id and sends nothing.
    let k1 = a
        .send_idempotent("k1", Target::All, Event::message("first"))
        .await
        .expect("sent");
    assert!(!k1.duplicate);
    let k2 = b
        .send_idempotent("k2", Target::All, Event::message("second"))
        .await
        .expect("answered");
    assert_eq!((k2.id.as_deref(), k2.duplicate, k2.delivered), (Some("1-0"), true, 0));
    a.broadcast(Event::message("end")).await.expect("sent");
    for connection in [&mut on_a, &mut on_b] {
        let seen = read_until(connection, "data: end").await;
        assert_eq!(seen.matches("data: second").count(), 1, "{seen}");
        assert_eq!(seen.matches("data: first").count(), 1, "{seen}");
    }
    assert_eq!(log.len(), 3, "second, first, end");
}

#[tokio::test]
async fn without_a_backplane_a_key_sends_once_within_the_window() {
    let manager = SseManager::builder().build().expect("manager");
    let mut connection = manager.connect(ConnectOptions::new()).await.expect("connect");
    let first = manager
        .send_idempotent("order-17", Target::All, Event::message("paid"))
        .await
        .expect("sent");
    assert_eq!((first.delivered, first.duplicate), (1, false));
    let again = manager
        .send_idempotent("order-17", Target::All, Event::message("paid"))
        .await
        .expect("answered");
    assert_eq!((again.id, again.delivered, again.duplicate), (first.id, 0, true));
    let other = manager
        .send_idempotent("order-18", Target::All, Event::message("paid"))
        .await
        .expect("sent");
    assert!(!other.duplicate);
    let invalid = manager.send_idempotent("", Target::All, Event::message("x")).await;
    assert!(
        matches!(invalid, Err(SendError::InvalidIdempotencyKey(_))),
        "{invalid:?}"
    );
    manager.broadcast(Event::message("end")).await.expect("sent");
    let seen = read_until(&mut connection, "data: end").await;
    assert_eq!(seen.matches("data: paid").count(), 2, "{seen}");
}

#[tokio::test]
async fn cluster_stats_need_a_backplane_that_shares_them() {
    let manager = instance(&MemoryLog::new());
    assert!(matches!(
        manager.cluster_stats().await,
        Err(sse_core::ClusterStatsError::NotShared)
    ));
    let single = SseManager::builder().build().expect("manager");
    let _frank = single
        .connect(ConnectOptions::new().user("frank").channel("news"))
        .await
        .expect("frank");
    let stats = single.cluster_stats().await.expect("a single instance is the cluster");
    assert_eq!(stats.instances.len(), 1);
    assert!(stats.instances[0].local);
    assert_eq!(stats.totals, single.stats());
    assert_eq!(stats.totals.unique_users, 1);
}
