//! Memory budgets: the replay history bounded by bytes, each connection's
//! queue bounded by bytes, and the bytes of event frames held at once
//! bounded for the whole manager, each with its refusal or close reason and
//! its counter; and a flood of newline-inflated events that leaves the
//! resident size under a stated ceiling.
//!
//! These tests build the manager on the current Tokio runtime (default
//! feature `tokio`).
#![cfg(feature = "tokio")]

mod common;

use futures::StreamExt as _;
use sse_core::{CloseReason, ConnectOptions, Event, SendError, SseConfigBuilder, SseManager};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn manager(configure: impl FnOnce(SseConfigBuilder) -> SseConfigBuilder) -> SseManager {
    SseManager::builder()
        .configure(|c| configure(c.heartbeat_interval(None)))
        .build()
        .expect("valid configuration")
}

/// An event whose frame is about `len` bytes.
fn event(len: usize) -> Event {
    Event::message("x".repeat(len))
}

#[tokio::test]
async fn the_history_is_bounded_by_bytes() {
    let manager = manager(|c| c.history_size(1000).history_max_bytes(10 * KIB));
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.extend(manager.broadcast(event(3 * KIB)).await.expect("sent").id);
    }
    // Three frames of 3 KiB fit in 10 KiB, four do not: resuming from the
    // second event replays the last three, from the first gets a reset.
    let mut resumed = manager
        .connect(ConnectOptions::new().last_event_id(Some(ids[1].clone())))
        .await
        .expect("connected");
    let frames = common::parse(common::drain(&mut resumed));
    let replayed: Vec<&str> = frames
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    assert_eq!(replayed, &ids[2..]);
    let mut reset = manager
        .connect(ConnectOptions::new().last_event_id(Some(ids[0].clone())))
        .await
        .expect("connected");
    let frames = common::parse(common::drain(&mut reset));
    assert!(frames.iter().any(|e| e.event == "reset"), "{frames:?}");
}

#[tokio::test]
async fn a_queue_past_its_bytes_is_closed_as_too_slow() {
    let manager = manager(|c| c.client_queue(1000).client_queue_bytes(64 * KIB));
    let mut stalled = manager.connect(ConnectOptions::new()).await.expect("connected");
    // The first large event reaches even a queue that holds nothing else.
    manager.broadcast(event(100 * KIB)).await.expect("sent");
    // Then 64 KiB fit behind... nothing: the queue holds 100 KiB already.
    let delivery = manager.broadcast(event(KIB)).await.expect("sent");
    assert_eq!(delivery.delivered, 0);
    assert_eq!(stalled.close_reason(), Some(CloseReason::SlowConsumer));
    let stats = manager.stats();
    assert_eq!((stats.slow_closed, stats.connections), (1, 0));
    // What was queued before the overflow is dropped with it.
    let rest: Vec<_> = stalled.by_ref().collect().await;
    assert!(rest.is_empty(), "{} frames after the close", rest.len());

    // A client that keeps up is never closed, however large the events.
    let mut reader = manager.connect(ConnectOptions::new()).await.expect("connected");
    for _ in 0..4 {
        manager.broadcast(event(100 * KIB)).await.expect("sent");
        common::drain(&mut reader);
    }
    assert_eq!(reader.close_reason(), None);
}

#[tokio::test]
async fn sends_past_the_frame_budget_are_refused_and_counted() {
    let manager = manager(|c| c.history_size(0).frame_memory_budget(100 * KIB));
    let mut stalled = manager.connect(ConnectOptions::new()).await.expect("connected");
    manager.broadcast(event(60 * KIB)).await.expect("fits");
    let refused = manager.broadcast(event(60 * KIB)).await;
    assert!(
        matches!(refused, Err(SendError::OverBudget { budget, .. }) if budget == 100 * KIB),
        "{refused:?}"
    );
    let stats = manager.stats();
    assert_eq!(stats.budget_refused, 1);
    assert!(
        stats.frame_bytes > 60 * KIB && stats.frame_bytes < 61 * KIB,
        "{stats:?}"
    );
    // Once the stalled client takes its frame, the bytes are free again.
    common::drain(&mut stalled);
    assert_eq!(manager.stats().frame_bytes, 0);
    manager.broadcast(event(60 * KIB)).await.expect("fits again");
}

/// A publisher floods a manager with no subscriber with events whose data
/// is all line breaks: each byte of data becomes 6 on the wire (`data:`
/// and the break). The history keeps them within its byte budget, so the
/// resident size stays under a ceiling however many are sent. (Scaled down
/// from the 1,100 events of 3 MiB of the attack suite's figures, so that a
/// debug build runs it in seconds: 100 frames of 384 KiB against a 4 MiB
/// history.)
#[tokio::test(flavor = "current_thread")]
async fn newline_inflated_events_stay_within_the_history_budget() {
    let manager = manager(|c| c.history_max_bytes(4 * MIB));
    let before = common::rss();
    let data = "\n".repeat(64 * KIB);
    for _ in 0..100 {
        manager.broadcast(Event::message(data.clone())).await.expect("sent");
    }
    let stats = manager.stats();
    assert!(stats.frame_bytes <= 4 * MIB, "{stats:?}");
    if let (Some(before), Some(after)) = (before, common::rss()) {
        let grown = after.saturating_sub(before);
        println!(
            "resident size grew {} KiB over 100 events of 384 KiB",
            grown / KIB as u64
        );
        assert!(grown < 32 * MIB as u64, "grew {grown} bytes");
    }
}
