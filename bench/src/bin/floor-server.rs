//! The floor: what one delivery costs on this machine when a server does
//! nothing but the write. Not a usable server (no framework, no queues, no
//! heartbeats, no replay, a client that cannot keep up loses its
//! connection at once), a calibration for the load benchmark.
//!
//! `GET /api/sse` answers a close-delimited `text/event-stream` head and
//! keeps the socket in a list; `POST /api/sse/publish` encodes the event once
//! and writes it to every socket in the list, in place, with one
//! non-blocking `write` each: no task is woken per connection, nothing is
//! queued. What remains per delivery is the system call and the loopback
//! TCP path, which the load benchmark's servers pay too. Configured by
//! `SSE_ADDR`; prints `listening on http://ADDR` when ready.
//!
//! `SSE_FLOOR_MODE` adds what every server with a task per connection pays
//! on top of the write, one layer at a time, with nothing of the library in
//! them:
//!
//! - `write` (the default): the above.
//! - `task`: each stream has a task of its own; a publish puts the frame in
//!   each stream's slot and wakes its task, which writes what its slot
//!   holds. The difference from `write` is the runtime's wake and poll of a
//!   task per delivery: what the engine behind the bare socket of the
//!   transport server pays at the least.
//! - `hyper`: the same slots, read by a response body that axum and hyper
//!   serve (`axum::serve`, as the hand-written baseline does). The
//!   difference from `task` is what hyper and axum cost per delivery: the
//!   least any server built on them pays, the hand-written idiom and the
//!   library included.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::Stream;
use futures_util::task::AtomicWaker;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The head of every stream, close-delimited.
const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";

#[derive(Default)]
struct Floor {
    /// `write` mode: the sockets, written to in place.
    subscribers: Mutex<Vec<std::net::TcpStream>>,
    /// `task` and `hyper` modes: each stream's slot, dropped with its stream.
    slots: Mutex<Vec<Weak<Slot>>>,
    next_id: AtomicU64,
}

impl Floor {
    /// Sends `frame` to every subscriber; returns how many it reached.
    fn broadcast(&self, frame: &Bytes) -> usize {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        // A socket that cannot take the frame at once is dropped.
        subscribers.retain(|mut socket| matches!(socket.write(frame), Ok(n) if n == frame.len()));
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|slot| match slot.upgrade() {
            Some(slot) => {
                slot.put(frame.clone());
                true
            }
            None => false,
        });
        subscribers.len() + slots.len()
    }

    fn subscribe(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&slot));
        slot
    }
}

/// The frames published to one stream and not yet taken, and the waker of
/// the task that takes them.
#[derive(Default)]
struct Slot {
    frames: Mutex<VecDeque<Bytes>>,
    waker: AtomicWaker,
}

impl Slot {
    fn put(&self, frame: Bytes) {
        self.frames
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(frame);
        self.waker.wake();
    }

    /// The oldest frame not yet taken, or pending until one is put.
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Bytes> {
        self.waker.register(cx.waker());
        let frame = self.frames.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
        frame.map_or(Poll::Pending, Poll::Ready)
    }
}

/// A stream's frames, as an endless stream for a response body.
struct SlotStream(Arc<Slot>);

impl Stream for SlotStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_take(cx).map(|frame| Some(Ok(frame)))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    Task,
    Hyper,
}

#[derive(Deserialize)]
struct Publish {
    event: Option<String>,
    data: serde_json::Value,
}

/// Reads one request (head and `content-length` body) from `stream`.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<(String, Vec<u8>)>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Ok(Some((head, body)));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Encodes a publish's event once and sends it to every subscriber; the
/// answer's status and JSON body.
fn publish(floor: &Floor, body: &[u8]) -> (StatusCode, String) {
    match serde_json::from_slice::<Publish>(body) {
        Ok(publish) => {
            let id = floor.next_id.fetch_add(1, Ordering::Relaxed);
            let data = match publish.data {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            let event = publish.event.unwrap_or_else(|| "message".to_owned());
            let frame = Bytes::from(format!("id: {id}\nevent: {event}\ndata: {data}\n\n"));
            let delivered = floor.broadcast(&frame);
            (StatusCode::OK, format!("{{\"id\":\"{id}\",\"delivered\":{delivered}}}"))
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": error.to_string() }).to_string(),
        ),
    }
}

async fn serve(floor: Arc<Floor>, mode: Mode, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some((head, body)) = read_request(&mut stream, &mut buf).await? {
        let request_line = head.lines().next().unwrap_or_default();
        if request_line.starts_with("GET /api/sse") {
            stream.write_all(STREAM_HEAD).await?;
            if mode == Mode::Task {
                // The stream's own task writes what its slot holds.
                let slot = floor.subscribe();
                loop {
                    let frame = std::future::poll_fn(|cx| slot.poll_take(cx)).await;
                    stream.write_all(&frame).await?;
                }
            }
            let stream = stream.into_std()?;
            floor
                .subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(stream);
            return Ok(());
        }
        let (status, answer) = if request_line.starts_with("POST /api/sse/publish") {
            publish(&floor, &body)
        } else {
            (StatusCode::NOT_FOUND, "{\"error\":\"not found\"}".to_owned())
        };
        let response = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            status.as_str(),
            status.canonical_reason().unwrap_or(""),
            answer.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
    Ok(())
}

/// The `hyper` mode: the same endpoints as an axum router.
fn router(floor: Arc<Floor>) -> axum::Router {
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{HeaderValue, header};
    use axum::routing::{get, post};

    async fn subscribe(State(floor): State<Arc<Floor>>) -> axum::response::Response {
        let mut response = axum::response::Response::new(Body::from_stream(SlotStream(floor.subscribe())));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    async fn publish_route(State(floor): State<Arc<Floor>>, body: Bytes) -> (StatusCode, String) {
        publish(&floor, &body)
    }

    axum::Router::new()
        .route("/api/sse", get(subscribe))
        .route("/api/sse/publish", post(publish_route))
        .with_state(floor)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("SSE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let mode = match std::env::var("SSE_FLOOR_MODE").as_deref() {
        Ok("task") => Mode::Task,
        Ok("hyper") => Mode::Hyper,
        Ok("write") | Err(_) => Mode::Write,
        Ok(other) => return Err(format!("SSE_FLOOR_MODE: unknown mode {other:?}").into()),
    };
    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let floor = Arc::new(Floor::default());
    if mode == Mode::Hyper {
        // As the hand-written baseline serves.
        axum::serve(listener, router(floor)).await?;
        return Ok(());
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(floor.clone(), mode, stream));
    }
}
