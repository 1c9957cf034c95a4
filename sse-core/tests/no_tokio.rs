//! The manager on an executor other than Tokio: the `futures` thread pool with `futures-timer`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use futures::executor::{ThreadPool, block_on};
use futures::future::{Either, select};
use sse_core::runtime::{BoxFuture, Runtime};
use sse_core::{CloseReason, ConnectOptions, Connection, Event, SseConfig, SseConfigBuilder, SseManager, Target};

const TIMEOUT: Duration = Duration::from_secs(10);

/// [`Runtime`] on the `futures` thread pool, timed by `futures-timer`.
struct ThreadPoolRuntime(ThreadPool);

impl Runtime for ThreadPoolRuntime {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.0.spawn_ok(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(futures_timer::Delay::new(duration))
    }
}

fn manager(config: SseConfigBuilder) -> SseManager {
    let pool = ThreadPool::builder().pool_size(2).create().expect("thread pool");
    SseManager::builder()
        .configure(|_| config)
        .runtime(ThreadPoolRuntime(pool))
        .build()
        .expect("a runtime was given")
}

/// A manager on the thread pool with `config`, and one connection to it.
async fn connected(config: SseConfigBuilder, options: ConnectOptions) -> (SseManager, Connection) {
    let manager = manager(config);
    let connection = manager.connect(options).await.expect("connection accepted");
    (manager, connection)
}

/// `future`, or a panic after [`TIMEOUT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match select(pin!(future), futures_timer::Delay::new(TIMEOUT)).await {
        Either::Left((value, _)) => value,
        Either::Right(_) => panic!("timed out waiting for {what}"),
    }
}

async fn next_chunk(connection: &mut Connection) -> Bytes {
    within("a frame", connection.next())
        .await
        .expect("the stream stays open")
}

#[test]
fn connect_send_and_receive() {
    block_on(async {
        let (manager, connection) = connected(
            SseConfig::builder().heartbeat_interval(None),
            ConnectOptions::new().user("u").channel("news"),
        )
        .await;
        let client_id = connection.client_id().to_string();
        let delivery = manager
            .send(
                Target::channel("news"),
                Event::named("headline", "hello").expect("valid name"),
            )
            .await
            .expect("running");
        assert_eq!(delivery.delivered, 1);

        let mut events = connection.map(Ok::<_, Infallible>).eventsource();
        let connected = within("connected", events.next()).await.expect("open").expect("parses");
        assert_eq!(connected.event, "connected");
        let data: serde_json::Value = serde_json::from_str(&connected.data).expect("JSON");
        assert_eq!(data["clientId"].as_str(), Some(client_id.as_str()));
        let headline = within("the event", events.next()).await.expect("open").expect("parses");
        assert_eq!(headline.event, "headline");
        assert_eq!(headline.data, "hello");
        assert_eq!(Some(headline.id), delivery.id);

        drop(events);
        assert_eq!(manager.connection_count(), 0);
    });
}

#[test]
fn heartbeats_come_from_the_given_runtime() {
    block_on(async {
        let (manager, mut connection) = connected(
            SseConfig::builder().heartbeat_interval(Some(Duration::from_millis(50))),
            ConnectOptions::new(),
        )
        .await;
        let mut text = String::new();
        while text.matches(": heartbeat\n\n").count() < 2 {
            let chunk = next_chunk(&mut connection).await;
            text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
        // The counter moves just after a tick's frames are queued: every tick
        // before the last one seen is counted.
        assert!(manager.stats().heartbeats >= 1);
    });
}

#[test]
fn lifetimes_are_enforced_by_the_given_runtime() {
    block_on(async {
        let (manager, mut connection) = connected(
            SseConfig::builder().heartbeat_interval(None),
            ConnectOptions::new().expires_after(Duration::from_millis(100)),
        )
        .await;
        let frames: Vec<Bytes> = within("the end of the stream", connection.by_ref().collect()).await;
        assert!(!frames.is_empty());
        assert_eq!(connection.close_reason(), Some(CloseReason::Expired));
        assert_eq!(manager.connection_count(), 0);
    });
}

#[test]
fn shutdown_ends_streams_without_tokio() {
    block_on(async {
        let (manager, mut connection) = connected(
            SseConfig::builder().heartbeat_interval(Some(Duration::from_millis(50))),
            ConnectOptions::new(),
        )
        .await;
        manager
            .shutdown(Some(Event::named("bye", "").expect("valid name")))
            .await;
        let frames: Vec<Bytes> = within("the end of the stream", connection.by_ref().collect()).await;
        let text: String = frames.iter().map(|f| String::from_utf8_lossy(f)).collect();
        assert!(text.ends_with("event: bye\ndata:\n\n"), "{text}");
        assert_eq!(connection.close_reason(), Some(CloseReason::Shutdown));
    });
}
