//! Denial of service: connection floods leave no residue, and a client that never reads holds no more than its bounded queue.
//!
//! The memory checks read the resident set size from `/proc/self/statm` and
//! run on Linux only; elsewhere only the registry checks run. Tests that
//! measure memory run one at a time, so no other test of this binary
//! allocates meanwhile.
//!
//! These tests build the manager on a Tokio runtime (default feature `tokio`).
#![cfg(feature = "tokio")]

mod common;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use sse_core::{CloseReason, ConnectOptions, Connection, Event, SseConfig, SseManager, Target, UserLimitPolicy};

/// Connect/disconnect cycles per round.
const CYCLES: usize = 50_000;
/// Users the flood connects as.
const USERS: usize = 500;
const MIB: u64 = 1 << 20;

static ALONE: Mutex<()> = Mutex::new(());

/// Runs the calling test alone among this binary's tests.
fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

use common::rss;

fn user(n: usize) -> String {
    format!("user{n}")
}

/// Asserts the manager holds nothing of any connection.
fn assert_no_residue(manager: &SseManager) {
    assert_eq!(manager.connection_count(), 0);
    assert!(manager.connections().is_empty());
    let stats = manager.stats();
    assert_eq!(stats.connections, 0);
    assert_eq!(stats.unique_users, 0);
    assert!(stats.channels.is_empty(), "channels left: {:?}", stats.channels);
    for n in 0..USERS {
        assert!(!manager.is_user_connected(&user(n)), "{} still connected", user(n));
    }
    assert!(!manager.is_user_connected("crowd"));
}

/// `cycles` connections, each with some of: a user (a shared one that keeps
/// evicting its oldest connection, for some), a session, channels, metadata,
/// a client address, an expiry, a `Last-Event-ID` (valid or not). Most are
/// dropped at once; a window of them is held a while, some read once; events
/// are published and connections disconnected by the server meanwhile.
async fn flood(manager: &SseManager, cycles: usize) {
    let mut held: VecDeque<Connection> = VecDeque::new();
    // Ids of the latest events: resuming from the oldest of them replays
    // the rest.
    let mut recent: VecDeque<String> = VecDeque::new();
    let payload = "p".repeat(200);
    for i in 0..cycles {
        let mut options = ConnectOptions::new();
        if i % 13 == 0 {
            options = options.user("crowd");
        } else if i % 2 == 0 {
            options = options.user(user(i % USERS));
        }
        if i % 3 == 0 {
            options = options.session(format!("session{}", i % 1000));
        }
        if i % 4 != 0 {
            options = options.channel(format!("room/{}", i % 97)).channel("news");
        }
        if i % 5 == 0 {
            options = options
                .metadata("device", format!("device-{i}"))
                .metadata("agent", payload.clone());
        }
        if i % 6 == 0 {
            let n = i % 200;
            options = options.remote_addr(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8 + 1)));
        }
        if i % 11 == 0 {
            options = options.expires_after(Duration::from_secs(3600));
        }
        match i % 7 {
            0 => options = options.last_event_id(recent.front().cloned()),
            1 => options = options.last_event_id(Some(format!("unknown-{i}"))),
            _ => {}
        }
        let mut connection = manager.connect(options).await.expect("connection accepted");
        if i % 5 == 0 {
            let first = connection.next().now_or_never().flatten().unwrap_or_default();
            assert!(first.starts_with(b"retry:"), "a connection opens with the retry hint");
        }
        if i % 3 == 0 {
            held.push_back(connection);
            if held.len() > 32 {
                held.pop_front();
            }
        } else {
            drop(connection);
        }
        if i % 64 == 0 {
            let target = match i % 3 {
                0 => Target::channel(format!("room/{}", i % 97)),
                1 => Target::user(user(i % USERS)),
                _ => Target::All,
            };
            let event = Event::named("flood", format!("{i} {payload}")).expect("valid name");
            let delivery = manager.send(target, event).await.expect("the manager runs");
            recent.extend(delivery.id);
            if recent.len() > 8 {
                recent.pop_front();
            }
        }
        if i % 1000 == 999 {
            manager.disconnect_user("crowd");
            if let Some(connection) = held.back() {
                manager.disconnect(connection.client_id().as_str());
            }
        }
    }
    drop(held);
}

fn flood_config() -> SseConfig {
    SseConfig::builder()
        .heartbeat_interval(None)
        .max_connections_per_user(Some(3))
        .user_limit_policy(UserLimitPolicy::CloseOldest)
        // Every held connection with an address has one of its own: a
        // leaked address count would soon refuse connections.
        .max_connections_per_addr(Some(2))
        .build()
        .expect("valid configuration")
}

#[test]
fn a_connection_flood_leaves_no_residue() {
    let _alone = alone();
    runtime().block_on(async {
        let manager = SseManager::new(flood_config()).expect("valid configuration");

        // Warm-up: the history fills to its bound, the registry's maps and
        // the allocator's caches grow to their working size.
        flood(&manager, CYCLES).await;
        assert_no_residue(&manager);
        let before = rss();

        for _ in 0..2 {
            flood(&manager, CYCLES).await;
            assert_no_residue(&manager);
        }
        let stats = manager.stats();
        assert_eq!(stats.connections_opened, 3 * CYCLES as u64);
        assert_eq!(stats.connections_rejected, 0);
        assert!(stats.resets > 0 && stats.events_replayed > 0, "{stats:?}");

        // Two more rounds of the same flood may not keep memory: the history
        // is full already (1000 events of ~250 bytes) and the maps have
        // their working size. Allocator caching and fragmentation move the
        // resident size by well under 1 MiB here; the bound leaves 8 MiB for
        // that, which a leak of 90 bytes per connection over these 100,000
        // connections would still exceed (a leaked queue alone is about
        // 120 bytes; with its info, metadata and index entries, a leaked
        // connection is hundreds of bytes: tens of MiB).
        if let (Some(before), Some(after)) = (before, rss()) {
            let growth = after.saturating_sub(before);
            assert!(
                growth < 8 * MIB,
                "resident memory grew by {} KiB over {} connections",
                growth / 1024,
                2 * CYCLES
            );
        }

        // The per-address and per-user counts were released: the same
        // address and user connect again up to their limits.
        let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let mut again = Vec::new();
        for _ in 0..2 {
            let options = ConnectOptions::new().user("crowd").remote_addr(addr);
            again.push(manager.connect(options).await.expect("the address is free"));
        }
        assert_eq!(manager.user_connections("crowd").len(), 2);
        drop(again);
        assert_no_residue(&manager);
    });
}

#[cfg(feature = "http")]
#[test]
fn a_flood_through_the_http_endpoints_leaves_no_residue() {
    use sse_core::http::{DevIdentity, RemoteAddr, SseEndpoints, SseReply};
    use std::net::SocketAddr;

    let _alone = alone();
    runtime().block_on(async {
        let manager = SseManager::new(flood_config()).expect("valid configuration");
        let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
        let mut last_id = String::from("none");
        for i in 0..CYCLES / 5 {
            let uri = match i % 4 {
                0 => "/api/sse".to_owned(),
                1 => format!(
                    "/api/sse?userId={}&channel=news&channel=room/{}",
                    user(i % USERS),
                    i % 97
                ),
                2 => format!("/api/sse?userId={}&sessionId=s{i}&tab={i}&theme=dark", user(i % USERS)),
                _ => format!("/api/sse?channel=room/{}&lastEventId={last_id}", i % 97),
            };
            let mut builder = http::Request::builder().uri(uri);
            if i % 3 == 0 {
                builder = builder.header("last-event-id", last_id.as_str());
            }
            let (mut parts, ()) = builder.body(()).expect("valid request").into_parts();
            let port = u16::try_from(i % 60_000).expect("a port");
            parts
                .extensions
                .insert(RemoteAddr(SocketAddr::from(([127, 0, 0, 1], port))));
            match endpoints.connect(&parts).await {
                SseReply::Stream(connection) => drop(connection),
                other => panic!("connection {i} refused: {other:?}"),
            }
            if i % 100 == 0 {
                let delivery = manager
                    .send(
                        Target::channel("news"),
                        Event::named("n", i.to_string()).expect("valid name"),
                    )
                    .await
                    .expect("the manager runs");
                last_id = delivery.id.expect("an id");
            }
        }
        assert_no_residue(&manager);
        assert_eq!(manager.stats().connections_opened, (CYCLES / 5) as u64);
    });
}

#[test]
fn a_client_that_never_reads_holds_at_most_its_queue() {
    const QUEUE: usize = 64;
    const EVENTS: usize = 10_000;
    let _alone = alone();
    runtime().block_on(async {
        let manager = SseManager::builder()
            .configure(|c| c.heartbeat_interval(None).client_queue(QUEUE).history_size(16))
            .build()
            .expect("valid configuration");
        let mut reader = manager
            .connect(ConnectOptions::new().user("reader"))
            .await
            .expect("connection accepted");
        let mut sleeper = manager
            .connect(ConnectOptions::new().user("sleeper").channel("news"))
            .await
            .expect("connection accepted");
        let sleeper_id = sleeper.client_id().to_string();
        while let Some(Some(_)) = reader.next().now_or_never() {}

        let before = rss();
        // 10,000 events of 4 KiB: 40 MiB that the sleeper would hold if its
        // queue were not bounded.
        let payload = "x".repeat(4096);
        let mut read = 0;
        for i in 0..EVENTS {
            let event = Event::named("e", format!("{i} {payload}")).expect("valid name");
            let delivery = manager.broadcast(event).await.expect("the manager runs");
            let expected = if i < QUEUE { 2 } else { 1 };
            assert_eq!(delivery.delivered, expected, "event {i}");
            assert_eq!(
                manager.has_connection(&sleeper_id),
                i < QUEUE,
                "the sleeper holds {QUEUE} events, and is closed on the next one"
            );
            while let Some(Some(chunk)) = reader.next().now_or_never() {
                read += chunk.windows(9).filter(|w| w == b"event: e\n").count();
            }
        }
        assert_eq!(read, EVENTS, "the reader got every event");

        let stats = manager.stats();
        assert_eq!(stats.slow_closed, 1);
        assert!(stats.frames_dropped > QUEUE as u64, "{stats:?}");
        assert_eq!(stats.connections, 1);
        assert!(stats.channels.is_empty(), "the sleeper's channel entry is gone");
        assert!(!manager.is_user_connected("sleeper"));
        assert_eq!(sleeper.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(
            sleeper.next().now_or_never(),
            Some(None),
            "the sleeper's queued frames were released, not kept for it"
        );

        // 40 MiB went through; the sleeper kept at most 64 × 4 KiB of it and
        // the history 16 × 4 KiB. The bound leaves room for the allocator
        // keeping freed blocks.
        if let (Some(before), Some(after)) = (before, rss()) {
            let growth = after.saturating_sub(before);
            assert!(growth < 16 * MIB, "resident memory grew by {} KiB", growth / 1024);
        }
        drop(sleeper);
        drop(reader);
        assert_eq!(manager.connection_count(), 0);
    });
}
