//! What `RUST_LOG=sse_core=debug` shows: one `sse_connection` span per
//! connection with its client and user ids, around the connection's own
//! events, and one debug event per send with its target kind, id and
//! delivered count, locally and through a backplane, so that a single event
//! can be followed.
#![cfg(all(feature = "test-util", feature = "tokio"))]

use std::io::Write;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use sse_core::test_util::MemoryLog;
use sse_core::{ConnectOptions, Event, SseManager};
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A subscriber at `filter`, writing without colors or timestamps.
fn subscriber(filter: &str, captured: &Captured) -> impl tracing::Subscriber + Send + Sync + use<> {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(captured.clone())
        .with_ansi(false)
        .without_time()
        .finish()
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_has_a_span_and_every_send_a_debug_event() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(subscriber("sse_core=trace", &captured));
    let manager = SseManager::builder().build().expect("manager");
    let mut alice = manager
        .connect(ConnectOptions::new().user("alice"))
        .await
        .expect("alice");
    let id = alice.client_id().to_string();
    let sent = manager
        .send_to_user("alice", Event::named("greeting", "hi").expect("event"))
        .await
        .expect("sent");
    let _ = alice.next().await.expect("frames");
    manager.broadcast(Event::message("everyone")).await.expect("sent");

    let text = captured.text();
    let span = format!("sse_connection{{client_id={id} user_id=\"alice\"}}");
    let opened = text
        .lines()
        .find(|line| line.contains("sse connection opened"))
        .unwrap_or_else(|| panic!("no opened event in {text}"));
    assert!(opened.contains(&span), "{opened}");
    let written = text
        .lines()
        .find(|line| line.contains("sse frames written"))
        .unwrap_or_else(|| panic!("no written event in {text}"));
    assert!(written.contains(&span) && written.contains("TRACE"), "{written}");
    let sends: Vec<&str> = text.lines().filter(|line| line.contains("sse event sent")).collect();
    assert_eq!(sends.len(), 2, "{text}");
    let event_id = sent.id.expect("an id");
    assert!(
        sends[0].contains("DEBUG")
            && sends[0].contains("target_kind=\"user\"")
            && sends[0].contains(&format!("id=\"{event_id}\""))
            && sends[0].contains("delivered=1"),
        "{}",
        sends[0]
    );
    assert!(sends[1].contains("target_kind=\"all\""), "{}", sends[1]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_send_through_a_backplane_is_followed_to_every_instance() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(subscriber("sse_core=debug", &captured));
    let log = MemoryLog::new();
    let a = SseManager::builder().backplane(log.clone()).build().expect("a");
    let b = SseManager::builder().backplane(log).build().expect("b");
    let _bob = b.connect(ConnectOptions::new().channel("news")).await.expect("bob");
    let sent = a
        .send(sse_core::Target::channel("news"), Event::message("news"))
        .await
        .expect("sent");
    let id = sent.id.expect("an id");
    // b delivers it asynchronously: wait for its line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !captured.text().contains("published_here=false") {
        assert!(std::time::Instant::now() < deadline, "{}", captured.text());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let text = captured.text();
    let id_field = format!("log_id={id}");
    let published: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("published to the backplane"))
        .collect();
    assert_eq!(published.len(), 1, "{text}");
    assert!(published[0].contains(&id_field) && published[0].contains("target_kind=\"channel\""));
    let sends: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("sse event sent") && line.contains(&id_field))
        .collect();
    assert_eq!(sends.len(), 2, "one line per instance: {text}");
    assert!(
        sends
            .iter()
            .any(|l| l.contains("published_here=true") && l.contains("delivered=0"))
    );
    assert!(
        sends
            .iter()
            .any(|l| l.contains("published_here=false") && l.contains("delivered=1"))
    );
    assert!(!text.contains("TRACE"), "nothing below debug: {text}");
}
