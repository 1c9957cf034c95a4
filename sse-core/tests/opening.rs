//! The shape of the opening `connected` event and of heartbeats, for
//! clients that listen with `onmessage` and switch on `data.type`.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use futures::StreamExt as _;
use sse_core::{ConfigError, ConnectOptions, ConnectedEvent, Heartbeat, SseConfig, SseManager};

use common::{drain, parse};

#[tokio::test]
async fn connected_event_as_an_unnamed_typed_message() {
    let manager = SseManager::builder()
        .configure(|c| c.heartbeat_interval(None).connected_event(ConnectedEvent::Message))
        .build()
        .expect("valid");
    let mut connection = manager
        .connect(ConnectOptions::new().user("u").channel("c"))
        .await
        .expect("connected");
    let events = parse(drain(&mut connection));
    let first = events.iter().find(|e| !e.data.is_empty()).expect("an opening event");
    assert_eq!(first.event, "message", "unnamed: {first:?}");
    let data: serde_json::Value = serde_json::from_str(&first.data).expect("JSON");
    assert_eq!(data["type"], "connected");
    assert_eq!(data["clientId"], connection.client_id().as_str());
    assert_eq!(data["userId"], "u");
    assert_eq!(data["channels"], serde_json::json!(["c"]));
    assert!(first.data.starts_with(r#"{"type":"connected","#), "{}", first.data);
}

#[tokio::test]
async fn connected_event_default_and_renamed() {
    assert_eq!(
        SseConfig::default().connected_event(),
        &ConnectedEvent::Named("connected".to_owned())
    );
    let manager = SseManager::builder()
        .configure(|c| c.connected_event(ConnectedEvent::Named("hello".to_owned())))
        .build()
        .expect("valid");
    let mut connection = manager.connect(ConnectOptions::new()).await.expect("connected");
    let first = connection.next().await.expect("opening frames");
    assert!(first.starts_with(b"retry: 3000\n\nevent: hello\ndata: {\"clientId\":"));
    for bad in ["", "a\nb"] {
        let refused = SseConfig::builder()
            .connected_event(ConnectedEvent::Named(bad.to_owned()))
            .build();
        assert!(matches!(
            refused,
            Err(ConfigError::Invalid {
                name: "connected_event",
                ..
            })
        ));
    }
}

#[tokio::test]
async fn heartbeat_as_an_unnamed_typed_message() {
    let manager = SseManager::builder()
        .configure(|c| {
            c.heartbeat_interval(Some(Duration::from_millis(20)))
                .heartbeat(Heartbeat::Message(r#"{"type":"heartbeat"}"#.to_owned()))
        })
        .build()
        .expect("valid");
    let mut connection = manager.connect(ConnectOptions::new()).await.expect("connected");
    let mut chunks = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            chunks.push(connection.next().await.expect("open"));
            let beat = parse(chunks.clone())
                .into_iter()
                .find(|e| e.event == "message" && e.data == r#"{"type":"heartbeat"}"#);
            if beat.is_some() {
                return beat;
            }
        }
    })
    .await
    .expect("a heartbeat within 10 s");
    assert!(found.is_some());
}
