//! The write batch window: once a frame reaches a connection's empty queue,
//! its writer waits for the window before it takes what is queued, so the
//! frames sent meanwhile leave in one write; without a window each leaves
//! as soon as it is queued. The windows here are a runtime's sleeps that
//! the test ends itself, so nothing depends on how fast the machine is.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::channel::oneshot;
use futures::{FutureExt as _, StreamExt as _, poll};
use sse_core::runtime::{BoxFuture, Runtime};
use sse_core::{ConnectOptions, Connection, Event, SseConfig, SseManager};

/// Tokio for tasks; sleeps of the batch window's length end when the test
/// says so (every other sleep is Tokio's).
#[derive(Clone, Default)]
struct Windows {
    open: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
}

const WINDOW: Duration = Duration::from_millis(777);

impl Windows {
    /// Ends every window running; returns how many there were.
    fn end_all(&self) -> usize {
        let open: Vec<_> = self.open.lock().expect("windows").drain(..).collect();
        let n = open.len();
        for window in open {
            let _ = window.send(());
        }
        n
    }
}

impl Runtime for Windows {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        if duration != WINDOW {
            return Box::pin(tokio::time::sleep(duration));
        }
        let (sender, receiver) = oneshot::channel();
        self.open.lock().expect("windows").push(sender);
        Box::pin(receiver.map(|_| ()))
    }
}

fn manager(window: Duration, runtime: &Windows) -> SseManager {
    let config = SseConfig::builder()
        .heartbeat_interval(None)
        .write_batch_window(window)
        .build()
        .expect("config");
    SseManager::builder()
        .config(config)
        .runtime(runtime.clone())
        .build()
        .expect("manager")
}

async fn send(manager: &SseManager, n: usize) {
    manager.broadcast(Event::message(n.to_string())).await.expect("sent");
}

fn data_lines(chunk: &[u8]) -> usize {
    String::from_utf8_lossy(chunk).matches("data: ").count()
}

/// Takes what the connection has ready, if anything.
async fn ready(connection: &mut Connection) -> Option<bytes::Bytes> {
    match poll!(connection.next()) {
        Poll::Ready(chunk) => Some(chunk.expect("the stream stays open")),
        Poll::Pending => None,
    }
}

#[tokio::test]
async fn frames_sent_within_the_window_leave_in_one_write() {
    let runtime = Windows::default();
    let manager = manager(WINDOW, &runtime);
    let mut connection = manager.connect(ConnectOptions::new()).await.expect("connect");
    // The opening frames wait for their window too.
    assert!(ready(&mut connection).await.is_none());
    assert_eq!(runtime.end_all(), 1);
    let opening = ready(&mut connection)
        .await
        .expect("the opening, once the window ended");
    assert!(String::from_utf8_lossy(&opening).contains("event: connected"));
    assert!(ready(&mut connection).await.is_none(), "nothing more queued");

    // The first event opens a window; the next ones join it.
    send(&manager, 1).await;
    assert!(ready(&mut connection).await.is_none(), "held for the window");
    for n in 2..=5 {
        send(&manager, n).await;
        assert!(ready(&mut connection).await.is_none(), "still held");
    }
    assert_eq!(runtime.end_all(), 1, "one window for the five");
    let chunk = ready(&mut connection).await.expect("the five, together");
    assert_eq!(data_lines(&chunk), 5, "{chunk:?}");
    // A writer polls until nothing is ready, as a server's does.
    assert!(ready(&mut connection).await.is_none());

    // Empty again: the next event opens a window of its own.
    send(&manager, 6).await;
    assert!(ready(&mut connection).await.is_none());
    assert_eq!(runtime.end_all(), 1);
    assert_eq!(data_lines(&ready(&mut connection).await.expect("the sixth")), 1);
}

#[tokio::test]
async fn without_a_window_each_frame_leaves_at_once() {
    let runtime = Windows::default();
    let manager = manager(Duration::ZERO, &runtime);
    let mut connection = manager.connect(ConnectOptions::new()).await.expect("connect");
    assert!(ready(&mut connection).await.is_some(), "the opening at once");
    for n in 1..=3 {
        send(&manager, n).await;
        let chunk = ready(&mut connection).await.expect("at once");
        assert_eq!(data_lines(&chunk), 1);
    }
    assert_eq!(runtime.end_all(), 0, "no window ever ran");
}

#[tokio::test]
async fn a_window_longer_than_a_second_is_refused() {
    let refused = SseConfig::builder()
        .write_batch_window(Duration::from_millis(1001))
        .build()
        .expect_err("too long");
    assert!(refused.to_string().contains("write_batch_window"), "{refused}");
}
