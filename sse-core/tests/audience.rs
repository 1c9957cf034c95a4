//! Live-only events and exclusions: delivered live as aimed, never replayed
//! where they should not be, alone and across instances sharing a log.
//!
//! These tests build the manager on the current Tokio runtime (default feature `tokio`).
#![cfg(all(feature = "tokio", feature = "test-util"))]

mod common;

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Event as Parsed;
use futures::StreamExt as _;
use sse_core::test_util::MemoryLog;
use sse_core::{ConnectOptions, Connection, Event, EventError, SseManager, Target};

use common::parse;

const WAIT: Duration = Duration::from_secs(10);

fn manager() -> SseManager {
    SseManager::builder()
        .configure(|c| c.heartbeat_interval(None))
        .build()
        .expect("valid configuration")
}

fn instance(log: &MemoryLog) -> SseManager {
    SseManager::builder()
        .backplane(log.clone())
        .configure(|c| c.heartbeat_interval(None))
        .build()
        .expect("manager")
}

async fn connect(manager: &SseManager, options: ConnectOptions) -> Connection {
    manager.connect(options).await.expect("connection accepted")
}

/// Everything queued on `connection` now, after `connected`; without waiting.
fn drain(connection: &mut Connection) -> Vec<Parsed> {
    parse(common::drain(connection))
        .into_iter()
        .filter(|e| e.event != "connected")
        .collect()
}

/// Reads events until one with data `last` arrives; returns them, after
/// `connected`.
async fn read_until(connection: &mut Connection, last: &str) -> Vec<Parsed> {
    let mut text = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let frames: Bytes = connection.next().await.expect("stream open");
            text.extend_from_slice(&frames);
            if parse(vec![Bytes::from(text.clone())]).iter().any(|e| e.data == last) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{last:?} never arrived; got {:?}", String::from_utf8_lossy(&text)));
    parse(vec![Bytes::from(text)])
        .into_iter()
        .filter(|e| e.event != "connected")
        .collect()
}

/// Broadcasts `data`; returns the id it went out with.
async fn published(manager: &SseManager, data: &str) -> String {
    let sent = manager.broadcast(Event::message(data)).await.expect("sent");
    sent.id.expect("an id")
}

fn data(events: &[Parsed]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn a_live_only_event_has_no_id() {
    let event = Event::builder().event("typing").data("alice").live_only().build();
    assert!(event.as_ref().is_ok_and(Event::is_live_only), "{event:?}");
    let with_id = Event::builder().id("1").data("x").live_only().build();
    assert!(matches!(with_id, Err(EventError::LiveOnlyWithId)), "{with_id:?}");
    let stripped = Event::message("x").with_id("7").expect("valid id").live_only();
    assert_eq!((stripped.id(), stripped.encode()), (None, Bytes::from("data: x\n\n")));
    assert!(matches!(stripped.with_id("8"), Err(EventError::LiveOnlyWithId)));
    assert!(matches!(Event::builder().live_only().build(), Err(EventError::Empty)));
}

/// A live-only event reaches its audience with every way of sending, has no
/// id, and is never replayed; resuming around it is exact and never a
/// `reset`.
#[tokio::test]
async fn live_only_events_are_delivered_and_never_replayed() {
    let manager = manager();
    let alice = || ConnectOptions::new().user("alice").session("s1").channel("team");
    let mut live = connect(&manager, alice()).await;
    let client = live.client_id().to_string();
    let before = published(&manager, "before").await;
    let typing = |n: &str| Event::named("typing", n).expect("valid name").live_only();
    let sends = [
        manager.broadcast(typing("1")).await,
        manager.send_to_user("alice", typing("2")).await,
        manager.send_to_users(["bob", "alice"], typing("3")).await,
        manager.send_to_session("s1", typing("4")).await,
        manager.send_to_channel("team", typing("5")).await,
        manager.send_to_client(&client, typing("6")).await,
        manager.send_where(|_| true, typing("7")).await,
        manager
            .send(Target::channel("team").except_user("bob"), typing("8"))
            .await,
    ];
    for sent in sends {
        let sent = sent.expect("sent");
        assert_eq!((sent.id, sent.delivered), (None, 1));
    }
    let after = published(&manager, "after").await;
    let got = drain(&mut live);
    assert_eq!(data(&got), ["before", "1", "2", "3", "4", "5", "6", "7", "8", "after"]);
    // They carry no id, so a client's last event id (what the parser
    // reports with each event) stays at the last replayable event.
    assert!(
        got[1..9].iter().all(|e| e.id == before && e.event == "typing"),
        "{got:?}"
    );
    assert_eq!(got[9].id, after);

    for (from, expected) in [(before.as_str(), vec!["after"]), (after.as_str(), vec![])] {
        let mut resumed = connect(&manager, alice().last_event_id(Some(from))).await;
        assert_eq!(data(&drain(&mut resumed)), expected, "from {from}");
    }
    let stats = manager.stats();
    assert_eq!((stats.resets, stats.events_replayed), (0, 1));
}

/// Exclusions are honoured on replay: an excluded user is not replayed the
/// event. An excluded connection that reconnects is a new connection, and
/// is replayed it like any other.
#[tokio::test]
async fn exclusions_hold_on_replay() {
    let manager = manager();
    let member = |user: &str| ConnectOptions::new().user(user).channel("room");
    let start = published(&manager, "start").await;
    let bob = connect(&manager, member("bob")).await;
    let joined = Event::named("joined", "bob").expect("valid name");
    let sent = manager
        .send(Target::channel("room").except_user("bob"), joined)
        .await
        .expect("sent");
    assert_eq!(sent.delivered, 0);
    let echo = Event::named("said", "hi").expect("valid name");
    manager
        .send(Target::channel("room").except_client(bob.client_id()), echo)
        .await
        .expect("sent");
    drop(bob);
    let mut bob = connect(&manager, member("bob").last_event_id(Some(start.clone()))).await;
    assert_eq!(data(&drain(&mut bob)), ["hi"]);
    let mut alice = connect(&manager, member("alice").last_event_id(Some(start))).await;
    assert_eq!(data(&drain(&mut alice)), ["bob", "hi"]);
}

/// Across instances: exclusions and live-only events travel through the
/// log, every instance delivers them as aimed, and no instance replays a
/// live-only event, not even one that loads the log when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusions_and_live_only_events_cross_instances() {
    let log = MemoryLog::new();
    let (a, b) = (instance(&log), instance(&log));
    let member = |user: &str| ConnectOptions::new().user(user).channel("room");
    let mut alice_on_a = connect(&a, member("alice")).await;
    let mut bob_on_b = connect(&b, member("bob")).await;
    let mut carol_on_b = connect(&b, member("carol")).await;
    let start = published(&a, "start").await;
    let sent = a
        .send(
            Target::channel("room")
                .except_user("alice")
                .except_client(carol_on_b.client_id()),
            Event::message("to bob only"),
        )
        .await
        .expect("sent");
    assert!(sent.id.is_some());
    assert_eq!(sent.delivered, 0, "a's only connection is excluded");
    let typing = b
        .send(
            Target::channel("room").except_user("bob"),
            Event::message("typing").live_only(),
        )
        .await
        .expect("sent");
    assert_eq!((typing.id, typing.delivered), (None, 1), "carol on b");
    a.broadcast(Event::message("end")).await.expect("sent");

    assert_eq!(
        data(&read_until(&mut alice_on_a, "end").await),
        ["start", "typing", "end"]
    );
    assert_eq!(
        data(&read_until(&mut bob_on_b, "end").await),
        ["start", "to bob only", "end"]
    );
    let carol = read_until(&mut carol_on_b, "end").await;
    assert_eq!(data(&carol), ["start", "typing", "end"]);
    assert!(
        carol[1].id == carol[0].id,
        "the live-only event carried no id: {carol:?}"
    );

    // Resuming on either instance, or on a fresh one that preloaded the
    // log, replays what the audience allows and never the live-only event.
    let c = instance(&log);
    for instance in [&a, &b, &c] {
        let mut bob = connect(instance, member("bob").last_event_id(Some(start.clone()))).await;
        assert_eq!(data(&read_until(&mut bob, "end").await), ["to bob only", "end"]);
        let mut alice = connect(instance, member("alice").last_event_id(Some(start.clone()))).await;
        assert_eq!(data(&read_until(&mut alice, "end").await), ["end"]);
        assert_eq!(instance.stats().resets, 0);
    }
}
