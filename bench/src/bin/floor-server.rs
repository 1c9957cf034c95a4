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

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Floor {
    subscribers: Mutex<Vec<std::net::TcpStream>>,
    next_id: AtomicU64,
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

async fn serve(floor: Arc<Floor>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some((head, body)) = read_request(&mut stream, &mut buf).await? {
        let request_line = head.lines().next().unwrap_or_default();
        if request_line.starts_with("GET /api/sse") {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n")
                .await?;
            let stream = stream.into_std()?;
            floor
                .subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(stream);
            return Ok(());
        }
        let (status, answer) = if request_line.starts_with("POST /api/sse/publish") {
            match serde_json::from_slice::<Publish>(&body) {
                Ok(publish) => {
                    let id = floor.next_id.fetch_add(1, Ordering::Relaxed);
                    let data = match publish.data {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    };
                    let event = publish.event.unwrap_or_else(|| "message".to_owned());
                    let frame = format!("id: {id}\nevent: {event}\ndata: {data}\n\n");
                    let mut subscribers = floor.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
                    // A socket that cannot take the frame at once is dropped.
                    subscribers
                        .retain(|mut socket| matches!(socket.write(frame.as_bytes()), Ok(n) if n == frame.len()));
                    (
                        "200 OK",
                        format!("{{\"id\":\"{id}\",\"delivered\":{}}}", subscribers.len()),
                    )
                }
                Err(error) => (
                    "400 Bad Request",
                    serde_json::json!({ "error": error.to_string() }).to_string(),
                ),
            }
        } else {
            ("404 Not Found", "{\"error\":\"not found\"}".to_owned())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("SSE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let floor = Arc::new(Floor::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(floor.clone(), stream));
    }
}
