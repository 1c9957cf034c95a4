//! `Last-Event-ID` replay: what is replayed, what gets a reset, and the replay seam under concurrent publishing.
//!
//! These tests build the manager on the current Tokio runtime (default feature `tokio`).
#![cfg(feature = "tokio")]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::{Event as Parsed, Eventsource as _};
use futures::StreamExt as _;
use sse_core::{ConnectOptions, Connection, Event, SseConfig, SseConfigBuilder, SseManager, Target};

use common::parse;

const TIMEOUT: Duration = Duration::from_secs(10);

fn manager(config: SseConfigBuilder) -> SseManager {
    SseManager::builder()
        .configure(|_| config.heartbeat_interval(None))
        .build()
        .expect("valid configuration")
}

/// Everything queued on `connection` now, parsed; without waiting.
fn drain(connection: &mut Connection) -> Vec<Parsed> {
    parse(common::drain(connection))
}

/// The events after `connected`, which must come first.
fn after_connected(events: Vec<Parsed>) -> Vec<Parsed> {
    assert_eq!(
        events.first().map(|e| e.event.as_str()),
        Some("connected"),
        "{events:?}"
    );
    events.into_iter().skip(1).collect()
}

async fn publish(manager: &SseManager, target: Target, data: &str) -> String {
    let delivery = manager
        .send(target, Event::named("e", data).expect("valid name"))
        .await
        .expect("manager is running");
    delivery.id.expect("a named event gets an id")
}

async fn resume(manager: &SseManager, options: ConnectOptions, last_id: &str) -> Connection {
    manager
        .connect(options.last_event_id(Some(last_id)))
        .await
        .expect("connection accepted")
}

fn data_of(events: &[Parsed]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[tokio::test]
async fn replays_every_event_after_the_last_id() {
    let manager = manager(SseConfig::builder());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&manager, Target::All, &format!("m{i}")).await);
    }

    let mut resumed = resume(&manager, ConnectOptions::new(), &ids[1]).await;
    let events = after_connected(drain(&mut resumed));
    assert_eq!(data_of(&events), ["m2", "m3", "m4"]);
    let replayed_ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(replayed_ids, [&ids[2], &ids[3], &ids[4]]);
    assert_eq!(manager.stats().events_replayed, 3);

    // Live events follow the replay on the same connection.
    let live = publish(&manager, Target::All, "m5").await;
    let events = drain(&mut resumed);
    assert_eq!(data_of(&events), ["m5"]);
    assert_eq!(events[0].id, live);

    // Resuming from the newest id replays nothing, and is no reset.
    let mut current = resume(&manager, ConnectOptions::new(), &live).await;
    assert!(after_connected(drain(&mut current)).is_empty());
    let stats = manager.stats();
    assert_eq!(stats.resets, 0);
    assert_eq!(stats.events_replayed, 3);
}

#[tokio::test]
async fn replays_after_an_id_chosen_by_the_publisher() {
    let manager = manager(SseConfig::builder());
    let custom = Event::builder()
        .id("order-17")
        .event("order")
        .data("shipped")
        .build()
        .expect("valid event");
    let delivery = manager.send(Target::All, custom).await.expect("manager is running");
    assert_eq!(delivery.id.as_deref(), Some("order-17"));
    publish(&manager, Target::All, "after").await;

    let mut resumed = resume(&manager, ConnectOptions::new(), "order-17").await;
    let events = after_connected(drain(&mut resumed));
    assert_eq!(data_of(&events), ["after"]);
}

/// Initial state pushed to every new connection (`send_to_client`) takes no
/// place in the history: however many clients connect, a client resuming
/// gets exactly the team event it missed, never a `reset`.
#[tokio::test]
async fn snapshots_for_one_client_never_push_events_out_of_the_history() {
    let manager = manager(SseConfig::builder().history_size(4));
    let member = || ConnectOptions::new().user("bob").channel("team/1");
    let mut away = manager.connect(member()).await.expect("connection accepted");
    let snapshot = |n: usize| Event::named("snapshot", format!("state {n}")).expect("valid name");
    let first = manager
        .send_to_client(away.client_id().as_str(), snapshot(0))
        .await
        .expect("manager is running");
    let seen = after_connected(drain(&mut away));
    assert_eq!(data_of(&seen), ["state 0"]);
    let last_seen = seen[0].id.clone();
    assert_eq!(first.id.as_deref(), Some(last_seen.as_str()));
    drop(away);

    let missed = publish(&manager, Target::channel("team/1"), "the team event").await;
    // Many clients connect, each getting its snapshot, with custom ids too.
    let mut others = Vec::new();
    for n in 1..=40 {
        let mut other = manager.connect(member()).await.expect("connection accepted");
        let client = other.client_id().to_string();
        let event = if n % 2 == 0 {
            snapshot(n)
        } else {
            snapshot(n).with_id(format!("snap-{n}")).expect("valid id")
        };
        manager
            .send_to_client(&client, event)
            .await
            .expect("manager is running");
        assert_eq!(data_of(&after_connected(drain(&mut other))), [format!("state {n}")]);
        others.push(other);
    }

    // From the snapshot's id (a generated one), then from the team event's.
    let mut resumed = resume(&manager, member(), &last_seen).await;
    let replayed = after_connected(drain(&mut resumed));
    assert_eq!(data_of(&replayed), ["the team event"], "{replayed:?}");
    assert_eq!(replayed[0].id, missed);
    let mut resumed = resume(&manager, member(), &missed).await;
    assert!(after_connected(drain(&mut resumed)).is_empty());
    // From a snapshot's custom id: resumable, nothing missed since.
    let mut resumed = resume(&manager, member(), "snap-39").await;
    assert!(after_connected(drain(&mut resumed)).is_empty());
    assert_eq!(manager.stats().resets, 0);
}

/// The id of an event sent to one client is a resume point, generated or
/// chosen by the publisher, until an event that can be replayed after it is
/// evicted.
#[tokio::test]
async fn the_id_of_an_event_for_one_client_resumes_until_a_later_event_is_evicted() {
    let manager = manager(SseConfig::builder().history_size(2));
    let connection = manager
        .connect(ConnectOptions::new())
        .await
        .expect("connection accepted");
    let client = connection.client_id().to_string();
    let named = Event::message("yours").with_id("mine-1").expect("valid id");
    manager
        .send_to_client(&client, named)
        .await
        .expect("manager is running");
    let generated = manager
        .send_to_client(&client, Event::message("yours too"))
        .await
        .expect("manager is running")
        .id
        .expect("an id");
    let a = publish(&manager, Target::All, "a").await;
    let b = publish(&manager, Target::All, "b").await;
    for from in ["mine-1", generated.as_str()] {
        let mut resumed = resume(&manager, ConnectOptions::new(), from).await;
        let replayed = after_connected(drain(&mut resumed));
        assert_eq!(data_of(&replayed), ["a", "b"], "from {from}");
        assert_eq!(replayed[1].id, b);
    }
    // "a" is evicted: resuming from before it would miss it.
    publish(&manager, Target::All, "c").await;
    for from in ["mine-1", generated.as_str()] {
        let mut resumed = resume(&manager, ConnectOptions::new(), from).await;
        let replayed = after_connected(drain(&mut resumed));
        assert_eq!(replayed.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["reset"]);
    }
    let mut resumed = resume(&manager, ConnectOptions::new(), &a).await;
    assert_eq!(data_of(&after_connected(drain(&mut resumed))), ["b", "c"]);
}

#[tokio::test]
async fn an_id_that_is_not_held_gets_one_reset() {
    let manager = manager(SseConfig::builder().history_size(3));
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(publish(&manager, Target::All, &format!("m{i}")).await);
    }
    let head = ids[9].clone();
    let newest: u64 = head.parse().expect("manager ids are decimal");
    let unknown = [
        ("malformed", "garbage".to_owned()),
        ("empty", String::new()),
        ("evicted", ids[5].clone()),
        ("leading zero", format!("0{head}")),
        ("not issued yet", (newest + 1).to_string()),
        ("before this manager", "1".to_owned()),
        ("longer than 256 bytes", "9".repeat(300)),
        ("257 bytes", format!("{head:0>257}")),
    ];
    for (n, (case, last_id)) in unknown.iter().enumerate() {
        let mut connection = resume(&manager, ConnectOptions::new(), last_id).await;
        let events = after_connected(drain(&mut connection));
        assert_eq!(events.len(), 1, "{case}: one reset and nothing else: {events:?}");
        let reset = &events[0];
        assert_eq!(reset.event, "reset", "{case}");
        assert_eq!(reset.id, head, "{case}: the reset carries the newest id");
        let data: serde_json::Value = serde_json::from_str(&reset.data).expect("reset data is JSON");
        assert_eq!(data["reason"], "last-event-id-unknown", "{case}");
        assert_eq!(manager.stats().resets, n as u64 + 1, "{case}");

        // Resuming from the reset's id replays nothing and resets no more.
        drop(connection);
        let mut again = resume(&manager, ConnectOptions::new(), &reset.id).await;
        assert!(after_connected(drain(&mut again)).is_empty(), "{case}");
    }
    assert_eq!(manager.stats().events_replayed, 0);

    // The newest evicted id is still a valid resume point: nothing after it
    // is missing.
    let mut boundary = resume(&manager, ConnectOptions::new(), &ids[6]).await;
    assert_eq!(data_of(&after_connected(drain(&mut boundary))), ["m7", "m8", "m9"]);
}

#[tokio::test]
async fn an_evicted_id_chosen_by_the_publisher_gets_a_reset() {
    let manager = manager(SseConfig::builder().history_size(2));
    let custom = Event::builder()
        .id("custom-1")
        .data("first")
        .build()
        .expect("valid event");
    manager.send(Target::All, custom).await.expect("manager is running");
    publish(&manager, Target::All, "second").await;
    let head = publish(&manager, Target::All, "third").await;

    let mut resumed = resume(&manager, ConnectOptions::new(), "custom-1").await;
    let events = after_connected(drain(&mut resumed));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "reset");
    assert_eq!(events[0].id, head);
}

#[tokio::test]
async fn events_older_than_the_maximum_age_are_not_replayed() {
    let manager = manager(SseConfig::builder().history_max_age(Some(Duration::from_millis(50))));
    let first = publish(&manager, Target::All, "old").await;
    publish(&manager, Target::All, "also old").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut resumed = resume(&manager, ConnectOptions::new(), &first).await;
    let events = after_connected(drain(&mut resumed));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "reset");
}

#[tokio::test]
async fn without_history_only_the_newest_id_resumes() {
    let manager = manager(SseConfig::builder().history_size(0));
    let first = publish(&manager, Target::All, "a").await;
    let second = publish(&manager, Target::All, "b").await;
    let mut at_head = resume(&manager, ConnectOptions::new(), &second).await;
    assert!(after_connected(drain(&mut at_head)).is_empty());
    let mut behind = resume(&manager, ConnectOptions::new(), &first).await;
    let events = after_connected(drain(&mut behind));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "reset");
    assert_eq!(events[0].id, second);
}

#[tokio::test]
async fn events_for_other_audiences_are_never_replayed() {
    let manager = manager(SseConfig::builder());
    let me = || {
        ConnectOptions::new()
            .user("me")
            .session("s-me")
            .channel("mine")
            .metadata("role", "reader")
    };
    let mut first = manager.connect(me()).await.expect("connection accepted");
    let start = publish(&manager, Target::All, "start").await;
    let old_client = first.client_id().to_string();

    let sends: Vec<(Target, &str, bool)> = vec![
        (Target::All, "all", true),
        (Target::user("me"), "user me", true),
        (Target::user("other"), "user other", false),
        (Target::users(["other", "me"]), "users other+me", true),
        (Target::users(["other", "third"]), "users other+third", false),
        (Target::session("s-me"), "session mine", true),
        (Target::session("s-other"), "session other", false),
        (Target::channel("mine"), "channel mine", true),
        (Target::channel("elsewhere"), "channel elsewhere", false),
        // The previous connection of the same user: never replayed, since a
        // reconnection is a new client.
        (Target::client(old_client.as_str()), "old client", false),
        (
            Target::filter(|info| info.metadata.get("role").is_some_and(|r| r == "reader")),
            "readers",
            true,
        ),
        (
            Target::filter(|info| info.metadata.get("role").is_some_and(|r| r == "admin")),
            "admins",
            false,
        ),
    ];
    let mut expected = Vec::new();
    for (target, data, for_me) in sends {
        publish(&manager, target, data).await;
        if for_me {
            expected.push(data);
        }
    }
    // The first connection got the client-targeted event live.
    let live = after_connected(drain(&mut first));
    assert!(data_of(&live).contains(&"old client"));
    drop(first);

    let mut resumed = resume(&manager, me(), &start).await;
    let replayed = after_connected(drain(&mut resumed));
    assert_eq!(data_of(&replayed), expected);
    assert_eq!(manager.stats().events_replayed, expected.len() as u64);

    // Another user resuming from the same point sees only what reached everyone.
    let mut stranger = resume(&manager, ConnectOptions::new().user("stranger"), &start).await;
    assert_eq!(data_of(&after_connected(drain(&mut stranger))), ["all"]);
}

/// One publication of the concurrent run: its id, its data and whether it
/// targets the resuming client.
struct Published {
    id: u64,
    data: String,
    for_me: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_and_live_delivery_meet_without_gap_or_duplicate() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 400;
    let manager = manager(SseConfig::builder().history_size(100_000).client_queue(1_000_000));
    let me = || ConnectOptions::new().user("me").session("s-me").channel("mine");

    // A first event fixes where the client starts.
    let mut connection = manager.connect(me()).await.expect("connection accepted");
    let start = publish(&manager, Target::All, "start").await;
    let events = after_connected(drain(&mut connection));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, start);

    let done = Arc::new(AtomicBool::new(false));
    let resumed = Arc::new(AtomicUsize::new(0));
    let client = {
        let manager = manager.clone();
        let done = done.clone();
        let resumed = resumed.clone();
        tokio::spawn(async move {
            let mut received: Vec<(u64, String)> = Vec::new();
            let mut last_id = start;
            let mut reconnections = 0usize;
            let mut stream = connection.map(Ok::<_, Infallible>).eventsource();
            loop {
                // Read a few events, then drop the connection (losing what is
                // queued but unread) and resume from the last id seen.
                let quota = fastrand::usize(0..=30);
                let mut read = 0;
                while read < quota {
                    match tokio::time::timeout(Duration::from_millis(50), stream.next()).await {
                        Ok(Some(Ok(event))) => {
                            assert_ne!(event.event, "reset", "the history holds every id");
                            if event.event == "connected" {
                                continue;
                            }
                            let id = event.id.parse::<u64>().expect("manager ids are decimal");
                            last_id.clone_from(&event.id);
                            received.push((id, event.data));
                            read += 1;
                        }
                        Ok(other) => panic!("the stream ended or failed: {other:?}"),
                        // Nothing more for now.
                        Err(_) => break,
                    }
                }
                drop(stream);
                let finished = done.load(Ordering::Acquire);
                let mut connection = resume(&manager, me(), &last_id).await;
                reconnections += 1;
                resumed.fetch_add(1, Ordering::AcqRel);
                if finished {
                    // Every publication happened before: the replay holds the rest.
                    for event in after_connected(drain(&mut connection)) {
                        assert_ne!(event.event, "reset");
                        received.push((event.id.parse().expect("manager ids are decimal"), event.data));
                    }
                    return (received, reconnections);
                }
                stream = connection.map(Ok::<_, Infallible>).eventsource();
            }
        })
    };

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let manager = manager.clone();
            let resumed = resumed.clone();
            tokio::spawn(async move {
                let targets: [(Target, bool); 8] = [
                    (Target::All, true),
                    (Target::user("me"), true),
                    (Target::user("other"), false),
                    (Target::users(["other", "me"]), true),
                    (Target::session("s-me"), true),
                    (Target::session("s-other"), false),
                    (Target::channel("mine"), true),
                    (Target::channel("elsewhere"), false),
                ];
                let mut published = Vec::with_capacity(PER_PUBLISHER);
                for i in 0..PER_PUBLISHER {
                    let (target, for_me) = targets[(p * 3 + i * 5) % targets.len()].clone();
                    let data = format!("p{p}-{i}");
                    let id = publish(&manager, target, &data).await;
                    published.push(Published {
                        id: id.parse().expect("manager ids are decimal"),
                        data,
                        for_me,
                    });
                    tokio::task::yield_now().await;
                    if i == PER_PUBLISHER / 2 {
                        // Halfway, make sure the client has resumed a few times
                        // while publication goes on.
                        tokio::time::timeout(TIMEOUT, async {
                            while resumed.load(Ordering::Acquire) < 5 {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        })
                        .await
                        .expect("the client resumes while events are published");
                    }
                    if i % 50 == 49 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                published
            })
        })
        .collect();

    let mut all = Vec::new();
    for publisher in publishers {
        all.extend(publisher.await.expect("publisher finished"));
    }
    done.store(true, Ordering::Release);
    let (received, reconnections) = tokio::time::timeout(TIMEOUT, client)
        .await
        .expect("the client catches up")
        .expect("the client task did not panic");

    all.sort_by_key(|p| p.id);
    let ids: Vec<u64> = all.iter().map(|p| p.id).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "every publication gets its own id");
    let expected: Vec<(u64, String)> = all.into_iter().filter(|p| p.for_me).map(|p| (p.id, p.data)).collect();
    assert!(expected.len() > PUBLISHERS * PER_PUBLISHER / 2);
    assert!(reconnections > 10, "the client resumed {reconnections} times");
    if received != expected {
        let got: Vec<u64> = received.iter().map(|(id, _)| *id).collect();
        let want: Vec<u64> = expected.iter().map(|(id, _)| *id).collect();
        let missing: Vec<&u64> = want.iter().filter(|id| !got.contains(id)).collect();
        let mut duplicated = got.clone();
        duplicated.sort_unstable();
        let duplicated: Vec<u64> = duplicated.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        panic!(
            "received {} events, expected {}; missing {:?}; duplicated {:?}; in order: {}",
            got.len(),
            want.len(),
            missing,
            duplicated,
            got.windows(2).all(|w| w[0] < w[1]),
        );
    }
}
