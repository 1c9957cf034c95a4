//! Lifecycle hooks: the connect hook's frames come after the replay and
//! before every live event, even under concurrent sends; a panicking hook
//! is contained; a slow hook delays no other connection or send; the
//! disconnect hook sees its connection gone, with the reason.
#![cfg(feature = "tokio")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use sse_core::{CloseReason, ConnectOptions, Connection, Event, SseManager};
use tokio::sync::{Notify, mpsc};

use common::parse;

const TIMEOUT: Duration = Duration::from_secs(10);

fn event(name: &str, data: impl Into<String>) -> Event {
    Event::named(name, data).expect("valid name")
}

/// Reads `connection` until an event named `last` (included); returns the
/// parsed events.
async fn read_until(connection: &mut Connection, last: &str) -> Vec<sse_core::test_util::frames::Parsed> {
    let mut chunks = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let chunk = connection.next().await.expect("the stream is open");
            chunks.push(chunk);
            if parse(chunks.clone()).iter().any(|e| e.event == last) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event {last} within {TIMEOUT:?}"));
    parse(chunks)
}

/// The names of the events that dispatch.
fn names(events: &[sse_core::test_util::frames::Parsed]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| !(e.event.is_empty() && e.data.is_empty()))
        .map(|e| e.event.as_str())
        .collect()
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("the hook ran")
        .expect("the hook is registered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_hook_frames_come_after_the_replay_and_before_concurrent_live_events() {
    let gate = Arc::new(Notify::new());
    let hook_gate = Arc::clone(&gate);
    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None))
        .on_connect(move |conn| {
            let gate = Arc::clone(&hook_gate);
            async move {
                if conn.info().user_id.as_deref() != Some("alice") {
                    return;
                }
                gate.notified().await;
                for n in 0..3 {
                    assert!(conn.send(&event("state", n.to_string())));
                }
            }
        })
        .build()
        .expect("valid");
    let first = manager.send_to_user("alice", event("old", "0")).await.expect("sent");
    manager.send_to_user("alice", event("missed", "1")).await.expect("sent");

    let mut alice = manager
        .connect(ConnectOptions::new().user("alice").last_event_id(first.id))
        .await
        .expect("connected");
    // Live events from two tasks while the hook waits, and while it runs.
    let senders: Vec<_> = (0..2)
        .map(|task| {
            let manager = manager.clone();
            tokio::spawn(async move {
                for n in 0..200 {
                    manager
                        .send_to_user("alice", event("live", format!("{task}-{n}")))
                        .await
                        .expect("sent");
                    if n % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    gate.notify_one();
    for sender in senders {
        sender.await.expect("sender done");
    }
    manager.send_to_user("alice", event("end", "")).await.expect("sent");
    let events = read_until(&mut alice, "end").await;
    let names = names(&events);
    assert_eq!(
        &names[..5],
        ["connected", "missed", "state", "state", "state"],
        "{names:?}"
    );
    assert!(names[5..].iter().all(|n| *n == "live" || *n == "end"), "{names:?}");
    for task in 0..2 {
        let order: Vec<&str> = events
            .iter()
            .filter(|e| e.event == "live" && e.data.starts_with(&format!("{task}-")))
            .map(|e| e.data.as_str())
            .collect();
        let expected: Vec<String> = (0..200).map(|n| format!("{task}-{n}")).collect();
        assert_eq!(order, expected, "every live event, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hook_is_contained() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None))
        .on_connect(move |conn| {
            let seen = seen_tx.clone();
            let user = conn.info().user_id.clone().unwrap_or_default();
            if user == "sync" {
                panic!("the hook panics before its future");
            }
            async move {
                if user == "async" {
                    panic!("the hook panics while it runs");
                }
                conn.send(&event("welcome", user.clone()));
                let _ = seen.send(user);
            }
        })
        .on_disconnect(|_| async { panic!("the disconnect hook panics") })
        .build()
        .expect("valid");
    let mut panicking = Vec::new();
    for user in ["sync", "async"] {
        panicking.push(
            manager
                .connect(ConnectOptions::new().user(user))
                .await
                .expect("connected"),
        );
    }
    let mut fine = manager
        .connect(ConnectOptions::new().user("fine"))
        .await
        .expect("connected");
    for user in ["sync", "async", "fine"] {
        manager.send_to_user(user, event("live", user)).await.expect("sent");
    }
    for connection in &mut panicking {
        let events = read_until(connection, "live").await;
        assert_eq!(names(&events), ["connected", "live"]);
    }
    let events = read_until(&mut fine, "live").await;
    assert_eq!(names(&events), ["connected", "welcome", "live"]);
    let ran = tokio::time::timeout(TIMEOUT, seen.recv()).await.expect("the hook ran");
    assert_eq!(ran.as_deref(), Some("fine"));
    drop(panicking);
    drop(fine);
    // The manager keeps working after the disconnect hooks panicked.
    let mut after = manager
        .connect(ConnectOptions::new().user("fine"))
        .await
        .expect("connected");
    manager.send_to_user("fine", event("again", "")).await.expect("sent");
    read_until(&mut after, "again").await;
    assert_eq!(manager.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hook_delays_no_other_connection_or_send() {
    let release = Arc::new(Notify::new());
    let hook_release = Arc::clone(&release);
    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None))
        .on_connect(move |conn| {
            let release = Arc::clone(&hook_release);
            async move {
                if conn.info().user_id.as_deref() == Some("slow") {
                    release.notified().await;
                    conn.send(&event("late-state", ""));
                }
            }
        })
        .build()
        .expect("valid");
    let mut slow = manager
        .connect(ConnectOptions::new().user("slow").channel("c"))
        .await
        .expect("connected");
    for n in 0..20 {
        let user = format!("u{n}");
        let mut other = tokio::time::timeout(
            TIMEOUT,
            manager.connect(ConnectOptions::new().user(&*user).channel("c")),
        )
        .await
        .expect("a connect does not wait for another's hook")
        .expect("connected");
        let sent = tokio::time::timeout(TIMEOUT, manager.send_to_channel("c", event("tick", user.clone())))
            .await
            .expect("a send does not wait for a hook")
            .expect("sent");
        assert_eq!(sent.delivered, 2, "queued for the slow connection too");
        read_until(&mut other, "tick").await;
    }
    release.notify_one();
    let events = read_until(&mut slow, "tick").await;
    let names = names(&events);
    assert_eq!(names[..3], ["connected", "late-state", "tick"], "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_hook_runs_after_unregistration_with_the_reason() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None))
        .on_disconnect(move |gone| {
            let tx = tx.clone();
            async move {
                let manager = gone.manager();
                let id = gone.info().client_id.clone();
                let _ = tx.send((
                    gone.info().user_id.clone(),
                    gone.reason(),
                    manager.has_connection(id.as_str()),
                    manager.is_user_connected("alice"),
                ));
            }
        })
        .build()
        .expect("valid");
    let dropped = manager
        .connect(ConnectOptions::new().user("alice"))
        .await
        .expect("connected");
    drop(dropped);
    assert_eq!(
        next(&mut rx).await,
        (Some("alice".to_owned()), CloseReason::ClientGone, false, false)
    );
    let kept = manager
        .connect(ConnectOptions::new().user("alice"))
        .await
        .expect("connected");
    assert!(manager.disconnect(kept.client_id().as_str()));
    assert_eq!(
        next(&mut rx).await,
        (Some("alice".to_owned()), CloseReason::Disconnected, false, false)
    );
    let _last = manager
        .connect(ConnectOptions::new().user("bob"))
        .await
        .expect("connected");
    manager.shutdown(None).await;
    assert_eq!(
        next(&mut rx).await,
        (Some("bob".to_owned()), CloseReason::Shutdown, false, false)
    );
}
