//! SSE served through the [`Transport`] trait from a server that is none of
//! the supported frameworks: a raw TCP socket, with the request head parsed
//! by `httparse`.
//!
//! ```text
//! cargo run -p sse-examples --bin custom-transport
//! curl -N 'http://127.0.0.1:3000/events?userId=alice'
//! ```
//!
//! Every second the server broadcasts a `tick` event and sends `alice` a
//! private `hello`; reconnect with `-H 'Last-Event-ID: <id>'` to see replay.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sse_core::{ConnectOptions, Event, SseManager, Transport, TransportError, async_trait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Writes frames straight to the socket.
struct TcpTransport(TcpStream);

#[async_trait]
impl Transport for TcpTransport {
    async fn send(&mut self, frames: Bytes) -> Result<(), TransportError> {
        Ok(self.0.write_all(&frames).await?)
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        Ok(self.0.shutdown().await?)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr: SocketAddr = std::env::var("SSE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let manager = SseManager::builder().build()?;
    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let ticker = manager.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            n += 1;
            let tick = Event::json("tick", &serde_json::json!({ "n": n }));
            let hello = Event::named("hello", format!("private message {n}"));
            if let (Ok(tick), Ok(hello)) = (tick, hello) {
                let _ = ticker.broadcast(tick).await;
                let _ = ticker.send_to_user("alice", hello).await;
            }
        }
    });

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, _) = accepted?;
                tokio::spawn(serve(manager.clone(), socket));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    manager.shutdown(None).await;
    Ok(())
}

/// Answers one request: `GET /events` streams, anything else is a 404.
async fn serve(manager: SseManager, mut socket: TcpStream) -> Result<(), TransportError> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let options = loop {
        let n = socket.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => match connect_options(&request) {
                Some(options) => break options,
                None => return respond(&mut socket, "404 Not Found", "not found\n").await,
            },
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return respond(&mut socket, "400 Bad Request", "bad request\n").await,
        }
    };
    let connection = match manager.connect(options).await {
        Ok(connection) => connection,
        Err(error) => return respond(&mut socket, "503 Service Unavailable", &format!("{error}\n")).await,
    };
    // The standard head: `200`, the event-stream headers (no caching, no
    // proxy buffering) and `connection: close`, the body being the frames.
    socket.write_all(&sse_core::http::stream_head()).await?;
    connection.pipe(&mut TcpTransport(socket)).await.map(|_| ())
}

/// The connect options of a `GET /events?userId=..&channel=..` request.
fn connect_options(request: &httparse::Request<'_, '_>) -> Option<ConnectOptions> {
    let (path, query) = request.path?.split_once('?').unwrap_or((request.path?, ""));
    if request.method != Some("GET") || path != "/events" {
        return None;
    }
    let mut options = ConnectOptions::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        options = match &*key {
            "userId" => options.user(value),
            "channel" => options.channel(value),
            _ => options.metadata(key, value),
        };
    }
    let last_event_id = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("last-event-id"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    Some(options.last_event_id(last_event_id))
}

async fn respond(socket: &mut TcpStream, status: &str, body: &str) -> Result<(), TransportError> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    Ok(())
}
