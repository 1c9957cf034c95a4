//! Priorities and conflation keys: what a connection that lags gets, and
//! what a resuming client is replayed.
//!
//! A lagging connection here is one whose stream is not polled while events
//! are sent. These tests build the manager on the current Tokio runtime
//! (default feature `tokio`).
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Event as Parsed;
use futures::StreamExt as _;
use sse_core::test_util::MemoryLog;
use sse_core::{CloseReason, ConnectOptions, Connection, Event, Priority, SseManager, Target};

use common::{drain, parse};

const TIMEOUT: Duration = Duration::from_secs(10);

fn manager(queue: usize) -> SseManager {
    SseManager::builder()
        .configure(|c| c.heartbeat_interval(None).client_queue(queue))
        .build()
        .expect("valid configuration")
}

async fn connect(manager: &SseManager, options: ConnectOptions) -> Connection {
    manager.connect(options).await.expect("connection accepted")
}

fn price(key: &str, value: usize) -> Event {
    Event::builder()
        .event("price")
        .data(format!("{key}={value}"))
        .key(key)
        .build()
        .expect("valid event")
}

fn alert(n: usize) -> Event {
    Event::builder()
        .event("alert")
        .data(n.to_string())
        .priority(Priority::High)
        .build()
        .expect("valid event")
}

fn plain(n: usize) -> Event {
    Event::named("plain", n.to_string()).expect("valid event")
}

/// The events after `connected`.
fn events(chunks: Vec<Bytes>) -> Vec<Parsed> {
    parse(chunks).into_iter().filter(|e| e.event != "connected").collect()
}

fn summary(events: &[Parsed]) -> Vec<String> {
    events.iter().map(|e| format!("{}:{}", e.event, e.data)).collect()
}

async fn read_to_end(connection: &mut Connection) -> Vec<Bytes> {
    tokio::time::timeout(TIMEOUT, connection.by_ref().collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

#[tokio::test]
async fn a_lagging_connection_gets_the_latest_value_per_key_and_every_alert_in_order() {
    let manager = manager(8);
    let mut slow = connect(&manager, ConnectOptions::new()).await;
    let mut fast = connect(&manager, ConnectOptions::new()).await;
    let mut fast_seen = drain(&mut fast);
    let mut ids = Vec::new();
    for round in 0..100 {
        for key in ["btc", "eth", "sol"] {
            let sent = manager.broadcast(price(key, round)).await.expect("running");
            assert_eq!(sent.delivered, 2, "neither connection is closed");
            ids.push(sent.id.expect("an id"));
        }
        if round % 25 == 24 {
            manager.broadcast(alert(round)).await.expect("running");
        }
        fast_seen.extend(drain(&mut fast));
    }
    let got = events(drain(&mut slow));
    assert_eq!(
        summary(&got),
        [
            "alert:24",
            "alert:49",
            "alert:74",
            "price:btc=99",
            "price:eth=99",
            "price:sol=99",
            "alert:99"
        ],
        "each alert, then the latest price per key, in the order sent"
    );
    let got_ids: Vec<u64> = got.iter().map(|e| e.id.parse().expect("a numeric id")).collect();
    assert!(got_ids.windows(2).all(|w| w[0] < w[1]), "{got_ids:?}");
    assert_eq!(events(fast_seen).len(), 304, "a reader that keeps up gets every event");
    let stats = manager.stats();
    assert_eq!((stats.slow_closed, stats.events_dropped), (0, 0));
    // Every price but the three latest was replaced in the slow queue.
    assert_eq!(stats.events_conflated, 297);
    assert_eq!(slow.close_reason(), None);
}

#[tokio::test]
async fn an_alert_drops_the_oldest_normal_events_and_the_client_is_told() {
    let manager = manager(4);
    let mut slow = connect(&manager, ConnectOptions::new()).await;
    for n in 0..4 {
        manager.broadcast(plain(n)).await.expect("running");
    }
    for n in 0..2 {
        let sent = manager.broadcast(alert(n)).await.expect("running");
        assert_eq!(sent.delivered, 1, "the alert is queued");
    }
    let got = events(drain(&mut slow));
    assert_eq!(
        summary(&got),
        [r#"dropped:{"dropped":2}"#, "plain:2", "plain:3", "alert:0", "alert:1"]
    );
    assert_eq!(got[0].id, "", "the gap notice has no id of its own");
    let stats = manager.stats();
    assert_eq!((stats.events_dropped, stats.slow_closed), (2, 0));
    assert_eq!(slow.close_reason(), None);

    // Normal events never drop each other: past the bound, the client is
    // closed as too slow, as without priorities.
    for n in 4..9 {
        manager.broadcast(plain(n)).await.expect("running");
    }
    assert!(read_to_end(&mut slow).await.is_empty());
    assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(manager.stats().slow_closed, 1);
}

#[tokio::test]
async fn alerts_that_cannot_fit_close_the_connection_and_are_counted() {
    let manager = manager(4);
    let mut slow = connect(&manager, ConnectOptions::new()).await;
    manager.broadcast(price("btc", 1)).await.expect("running");
    for n in 0..3 {
        manager.broadcast(alert(n)).await.expect("running");
    }
    // The queue holds three alerts and the latest price: neither may go.
    let sent = manager.broadcast(alert(3)).await.expect("running");
    assert_eq!(sent.delivered, 0);
    assert!(read_to_end(&mut slow).await.is_empty());
    assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer));
    let stats = manager.stats();
    assert_eq!((stats.slow_closed, stats.events_dropped), (1, 0));
    assert!(stats.frames_dropped >= 5, "{stats:?}");
}

#[tokio::test]
async fn replay_gives_the_latest_event_of_each_key() {
    let manager = manager(64);
    let first = manager.broadcast(plain(0)).await.expect("running").id.expect("an id");
    for round in 0..5 {
        for key in ["btc", "eth"] {
            manager.broadcast(price(key, round)).await.expect("running");
        }
        manager.broadcast(plain(round + 1)).await.expect("running");
    }
    manager.broadcast(alert(0)).await.expect("running");
    manager
        .send(Target::channel("other"), price("btc", 100))
        .await
        .expect("running");
    let mut resumed = connect(&manager, ConnectOptions::new().last_event_id(Some(first))).await;
    assert_eq!(
        summary(&events(drain(&mut resumed))),
        [
            "plain:1",
            "plain:2",
            "plain:3",
            "plain:4",
            "price:btc=4",
            "price:eth=4",
            "plain:5",
            "alert:0"
        ],
        "the latest of each key the client is sent, in the order published"
    );
    assert_eq!(manager.stats().events_replayed, 8);
}

#[tokio::test]
async fn a_key_published_again_replaces_the_unread_event() {
    // A queue of two never fills: each publish replaces the one before.
    let manager = manager(2);
    let mut slow = connect(&manager, ConnectOptions::new()).await;
    manager.broadcast(price("btc", 1)).await.expect("running");
    manager.broadcast(price("btc", 2)).await.expect("running");
    manager.broadcast(price("btc", 3)).await.expect("running");
    assert_eq!(summary(&events(drain(&mut slow))), ["price:btc=3"]);
    assert_eq!(manager.stats().events_conflated, 2);
}

#[tokio::test]
async fn priority_and_key_cross_the_backplane() {
    let log = MemoryLog::new();
    let instance = || {
        SseManager::builder()
            .backplane(log.clone())
            .configure(|c| c.heartbeat_interval(None).client_queue(4))
            .build()
            .expect("valid configuration")
    };
    let (a, b) = (instance(), instance());
    let mut slow_on_b = connect(&b, ConnectOptions::new()).await;
    let mut reader_on_b = connect(&b, ConnectOptions::new()).await;
    let first = a.broadcast(plain(0)).await.expect("running").id.expect("an id");
    for value in 1..=20 {
        a.broadcast(price("btc", value)).await.expect("running");
    }
    a.broadcast(alert(1)).await.expect("running");
    a.broadcast(plain(1)).await.expect("running");
    // b delivers the log on its own, each entry to both its connections in
    // one fan-out that this single-threaded runtime runs to its end: once
    // the connection that reads has the last event, so has the one that
    // does not.
    tokio::time::timeout(TIMEOUT, async {
        let mut seen = Vec::new();
        while !events(seen.clone()).iter().any(|e| e.event == "plain" && e.data == "1") {
            seen.push(reader_on_b.next().await.expect("stream open"));
        }
    })
    .await
    .expect("b delivers every entry");
    let got = events(drain(&mut slow_on_b));
    assert_eq!(
        summary(&got),
        ["plain:0", "price:btc=20", "alert:1", "plain:1"],
        "on b too: the latest price and the alert, in order, the queue of four never full"
    );
    assert_eq!(b.stats().slow_closed, 0);

    let mut resumed = connect(&b, ConnectOptions::new().last_event_id(Some(first))).await;
    assert_eq!(
        summary(&events(drain(&mut resumed))),
        ["price:btc=20", "alert:1", "plain:1"],
        "b replays the latest event of the key"
    );
}
