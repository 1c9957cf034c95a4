//! A Redis that stalls (`SIGSTOP`) while publishes flow: every publish is
//! answered as published, not published or of unknown outcome, and a
//! publisher that retries with the same idempotency key gets each event
//! delivered exactly once on every instance.
//!
//! Starts a `redis-server` of its own (skipped, or failed under
//! `SSE_CI_STRICT=1`, without the binary), so that stopping it disturbs no
//! other test.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sse_core::{ConnectOptions, Event, SendError, SseManager, Target};

/// What a publish answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Published,
    NotPublished,
    Unknown,
}

fn outcome(result: &Result<sse_core::Delivery, SendError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Published,
        Err(error) if error.is_outcome_unknown() => Outcome::Unknown,
        Err(_) => Outcome::NotPublished,
    }
}

fn signal(server: &Server, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_gives_honest_outcomes_and_keyed_retries_deliver_once() {
    let Some((server, fx, _)) = own_server("stall").await else {
        return;
    };
    let instance = || async {
        let backplane = fx
            .backplane(1000)
            .timeout(Duration::from_millis(300))
            .build()
            .await
            .expect("backplane");
        SseManager::builder()
            .configure(|c| c.history_size(1000))
            .backplane(backplane)
            .build()
            .expect("manager")
    };
    let (a, b) = (instance().await, instance().await);
    let mut watchers = [
        connect(&a, ConnectOptions::new()).await,
        connect(&b, ConnectOptions::new()).await,
    ];

    // Publishes flow from both instances; Redis stops for a while in the
    // middle of them.
    let messages = 40;
    let mut outcomes = Vec::new();
    for n in 0..messages {
        if n == 10 {
            signal(&server, "-STOP");
        }
        if n == 30 {
            signal(&server, "-CONT");
        }
        let publisher = if n % 2 == 0 { &a } else { &b };
        let started = Instant::now();
        let result = publisher
            .send_idempotent(&format!("m{n}"), Target::All, Event::message(format!("m{n}")))
            .await;
        assert!(started.elapsed() < WAIT, "a publish hung");
        outcomes.push(outcome(&result));
    }
    let count = |kind| outcomes.iter().filter(|o| **o == kind).count();
    println!(
        "{} published, {} not published, {} unknown while Redis was stopped for publishes 10 to 29",
        count(Outcome::Published),
        count(Outcome::NotPublished),
        count(Outcome::Unknown)
    );
    assert!(
        count(Outcome::Unknown) > 0,
        "a stalled append has an unknown outcome: {outcomes:?}"
    );
    assert!(outcomes[..10].iter().all(|o| *o == Outcome::Published), "{outcomes:?}");

    // Every publish that did not say "published" is retried with its key
    // until it does; on either instance.
    for (n, first) in outcomes.iter().enumerate() {
        if *first == Outcome::Published {
            continue;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let publisher = if n % 2 == 0 { &b } else { &a };
            let retry = publisher
                .send_idempotent(&format!("m{n}"), Target::All, Event::message(format!("m{n}")))
                .await;
            if retry.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "m{n} could not be retried: {retry:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.broadcast(Event::message("end")).await.expect("sent");
    for watcher in &mut watchers {
        watcher.until("data: end").await;
        for n in 0..messages {
            let line = format!("data: m{n}\n");
            assert_eq!(watcher.seen.matches(&line).count(), 1, "m{n}: {}", watcher.seen);
        }
    }
    drop(fx);
}
