//! The idle timeout: a connection that receives no event (heartbeats do not
//! count) for the timeout is closed with `CloseReason::IdleTimeout` and
//! counted; one that receives events stays open; off by default.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use futures::StreamExt as _;
use sse_core::{CloseReason, ConfigError, ConnectOptions, Event, SseConfig, SseManager};

use common::parse;

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn idle_connections_close_and_active_ones_stay() {
    let manager = SseManager::builder()
        .configure(|c| {
            c.heartbeat_interval(Some(Duration::from_millis(20)))
                .idle_timeout(Some(Duration::from_millis(400)))
        })
        .build()
        .expect("valid");
    let mut idle = manager
        .connect(ConnectOptions::new().user("idle"))
        .await
        .expect("connected");
    let mut active = manager
        .connect(ConnectOptions::new().user("active"))
        .await
        .expect("connected");
    let keep_alive = {
        let manager = manager.clone();
        tokio::spawn(async move {
            loop {
                let event = Event::named("tick", "").expect("valid");
                if manager.send_to_user("active", event).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let frames = tokio::time::timeout(TIMEOUT, idle.by_ref().collect::<Vec<_>>())
        .await
        .expect("the idle connection is closed");
    assert_eq!(idle.close_reason(), Some(CloseReason::IdleTimeout));
    assert_eq!(CloseReason::IdleTimeout.as_str(), "idle_timeout");
    let text: String = frames.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    assert!(
        text.contains(": heartbeat"),
        "heartbeats went out, and did not count: {text}"
    );
    assert!(
        manager.has_connection(active.client_id().as_str()),
        "the active one stays"
    );
    assert_eq!(manager.stats().idle_closed, 1);
    keep_alive.abort();
    let events = parse(vec![active.next().await.expect("open")]);
    assert!(events.iter().all(|e| e.event != "idle"));
}

#[tokio::test]
async fn idle_timeout_is_off_by_default_and_validated() {
    assert_eq!(SseConfig::default().idle_timeout(), None);
    let refused = SseConfig::builder()
        .idle_timeout(Some(Duration::from_millis(1)))
        .build();
    assert!(matches!(
        refused,
        Err(ConfigError::Invalid {
            name: "idle_timeout",
            ..
        })
    ));
}
