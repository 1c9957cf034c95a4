//! Serving SSE from a raw TCP socket through the `Transport` trait, with a raw socket client.
//!
//! These tests build the manager on the current Tokio runtime (default feature `tokio`).
#![cfg(feature = "tokio")]

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event as Parsed, Eventsource as _};
use futures::{Stream, StreamExt as _};
use sse_core::{CloseReason, ConnectOptions, Event, SseManager, Transport, TransportError, async_trait};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(10);
const HEAD_LIMIT: usize = 16 * 1024;

/// The response body goes straight to the socket.
struct Socket(TcpStream);

#[async_trait]
impl Transport for Socket {
    async fn send(&mut self, frames: Bytes) -> Result<(), TransportError> {
        self.0.write_all(&frames).await?;
        self.0.flush().await?;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        Ok(self.0.shutdown().await?)
    }
}

/// Reads up to the blank line ending an HTTP head; returns the head and any
/// bytes read past it.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            let head = String::from_utf8(buffer).map_err(std::io::Error::other)?;
            return Ok((head, rest));
        }
        if buffer.len() > HEAD_LIMIT {
            return Err(std::io::Error::other("head too long"));
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// How each served connection ended.
type Outcome = Result<CloseReason, TransportError>;

/// Serves `GET /events` on a loopback port; reports how each connection ended.
async fn serve(manager: SseManager) -> (SocketAddr, mpsc::UnboundedReceiver<Outcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let address = listener.local_addr().expect("bound address");
    let (outcomes, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let manager = manager.clone();
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                let (head, _) = read_head(&mut socket).await.expect("a request head");
                assert!(head.starts_with("GET /events HTTP/1.1\r\n"), "{head}");
                let last_event_id = header(&head, "last-event-id").map(str::to_owned);
                let connection = manager
                    .connect(ConnectOptions::new().last_event_id(last_event_id))
                    .await
                    .expect("connection accepted");
                socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                          cache-control: no-cache\r\nconnection: close\r\n\r\n",
                    )
                    .await
                    .expect("write the response head");
                let outcome = connection.pipe(&mut Socket(socket)).await;
                // The test may have stopped listening.
                let _ = outcomes.send(outcome);
            });
        }
    });
    (address, receiver)
}

type Events = Pin<Box<dyn Stream<Item = Parsed> + Send>>;

/// Opens `GET /events`, checks the response head and returns its events.
async fn open(address: SocketAddr, last_event_id: Option<&str>) -> Events {
    let mut socket = TcpStream::connect(address).await.expect("connect");
    let mut request = format!("GET /events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.expect("send the request");
    let (head, rest) = read_head(&mut socket).await.expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"));

    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(rest))]);
    let more = futures::stream::unfold(socket, |mut socket| async move {
        let mut buffer = vec![0u8; 4096];
        match socket.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), socket))
            }
            Err(error) => Some((Err(error), socket)),
        }
    });
    Box::pin(
        first
            .chain(more)
            .eventsource()
            .map(|event| event.expect("the body parses")),
    )
}

async fn next(events: &mut Events) -> Parsed {
    tokio::time::timeout(TIMEOUT, events.next())
        .await
        .expect("an event arrives")
        .expect("the stream stays open")
}

async fn wait_until_no_connection(manager: &SseManager) {
    let waited = tokio::time::timeout(TIMEOUT, async {
        while manager.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the server noticed the client left");
}

fn manager() -> SseManager {
    SseManager::builder()
        .configure(|c| c.heartbeat_interval(Some(Duration::from_millis(100))))
        .build()
        .expect("valid configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_events_over_a_raw_socket() {
    let manager = manager();
    let (address, mut outcomes) = serve(manager.clone()).await;
    let mut events = open(address, None).await;

    let connected = next(&mut events).await;
    assert_eq!(connected.event, "connected");
    let data: serde_json::Value = serde_json::from_str(&connected.data).expect("JSON");
    let client_id = data["clientId"].as_str().expect("a client id").to_owned();
    assert!(manager.has_connection(&client_id));

    let direct = manager
        .send_to_client(
            &client_id,
            Event::named("greeting", "hello\nover TCP").expect("valid name"),
        )
        .await
        .expect("running");
    assert_eq!(direct.delivered, 1);
    let greeting = next(&mut events).await;
    assert_eq!(greeting.event, "greeting");
    assert_eq!(greeting.data, "hello\nover TCP");
    assert_eq!(Some(greeting.id), direct.id);

    // The client goes away; the next heartbeat write fails and the server
    // unregisters the connection.
    drop(events);
    wait_until_no_connection(&manager).await;
    let outcome = tokio::time::timeout(TIMEOUT, outcomes.recv())
        .await
        .expect("the server's pipe returns")
        .expect("an outcome");
    assert!(outcome.is_err(), "writing to a closed socket fails: {outcome:?}");
    assert!(!manager.has_connection(&client_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_with_the_last_event_id_header() {
    let manager = manager();
    let (address, _outcomes) = serve(manager.clone()).await;
    let mut events = open(address, None).await;
    assert_eq!(next(&mut events).await.event, "connected");
    let first = manager.broadcast(Event::message("one")).await.expect("running");
    let seen = next(&mut events).await;
    assert_eq!(seen.data, "one");
    drop(events);
    wait_until_no_connection(&manager).await;

    // Published while the client is away.
    manager.broadcast(Event::message("two")).await.expect("running");
    manager.broadcast(Event::message("three")).await.expect("running");

    let mut events = open(address, first.id.as_deref()).await;
    assert_eq!(next(&mut events).await.event, "connected");
    assert_eq!(next(&mut events).await.data, "two");
    assert_eq!(next(&mut events).await.data, "three");
    manager.broadcast(Event::message("four")).await.expect("running");
    assert_eq!(next(&mut events).await.data, "four");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_disconnect_ends_the_response() {
    let manager = manager();
    let (address, mut outcomes) = serve(manager.clone()).await;
    let mut events = open(address, None).await;
    let connected = next(&mut events).await;
    let data: serde_json::Value = serde_json::from_str(&connected.data).expect("JSON");
    let client_id = data["clientId"].as_str().expect("a client id").to_owned();

    manager
        .send_to_client(&client_id, Event::message("last words"))
        .await
        .expect("running");
    assert!(manager.disconnect(&client_id));
    assert_eq!(next(&mut events).await.data, "last words");
    let end = tokio::time::timeout(TIMEOUT, events.next())
        .await
        .expect("the response ends");
    assert!(end.is_none(), "the server closed the response: {end:?}");
    let outcome = tokio::time::timeout(TIMEOUT, outcomes.recv())
        .await
        .expect("the server's pipe returns")
        .expect("an outcome");
    assert!(matches!(outcome, Ok(CloseReason::Disconnected)), "{outcome:?}");
}
