//! The library without a framework: the demo's engine and endpoints
//! ([`sse_examples::Demo`], configured by the same `SSE_*` variables) behind
//! a minimal HTTP/1.1 front of this file's own, each stream written through
//! the engine's [`Transport`] seam with [`Connection::pipe`](sse_core::Connection::pipe).
//!
//! A calibration for the load benchmark, not a server to deploy: it reads a
//! request head with `httparse` and a `content-length` body, answers the
//! endpoints under `/api/sse` (others get a 404), keeps the connection for
//! the next request after a complete answer, and streams an event stream
//! as a close-delimited body, written to the socket as the engine hands the
//! frames over. What it keeps per idle stream is the socket, the engine's
//! entry and one task; the difference from the axum demo in the same
//! scenario is what the framework and hyper cost.
//!
//! Prints `listening on http://ADDR` when ready, like the demos, and stops
//! on SIGINT or SIGTERM.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::{Buf as _, Bytes, BytesMut};
use http::Request;
use sse_core::http::{MAX_BODY_BYTES, RemoteAddr, SseEndpoints, SseReply, payload_too_large};
use sse_core::{Connection, Transport, TransportError, async_trait};
use sse_examples::{Demo, Shutdown};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The mount point of the endpoints, as in the demos.
const PREFIX: &str = "/api/sse";
/// The largest request head read; a larger one is answered `431`.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// The most bytes of a body over [`MAX_BODY_BYTES`] read and dropped before
/// answering `413`.
const MAX_DISCARD: usize = 16 * MAX_BODY_BYTES;

/// Writes the engine's frames to the socket as they come.
struct Socket<'a>(tokio::net::tcp::WriteHalf<'a>);

#[async_trait]
impl Transport for Socket<'_> {
    async fn send(&mut self, frames: Bytes) -> Result<(), TransportError> {
        Ok(self.0.write_all(&frames).await?)
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        Ok(self.0.shutdown().await?)
    }
}

fn main() -> std::process::ExitCode {
    sse_examples::run(serve)
}

fn serve(
    demo: Demo,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    Box::pin(async move {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (socket, peer) = accepted?;
                    let _ = socket.set_nodelay(true);
                    let endpoints = demo.endpoints.clone();
                    tokio::spawn(async move {
                        if let Err(error) = connection(endpoints, socket, peer).await {
                            tracing::debug!(%error, "connection ended");
                        }
                    });
                }
                () = &mut shutdown => return Ok(()),
            }
        }
    })
}

/// One client connection: requests until it closes or turns into a stream.
async fn connection(endpoints: SseEndpoints, mut socket: TcpStream, peer: SocketAddr) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        // Boxed, like the handler below: the task keeps no room for them.
        let Some((parts, body)) = Box::pin(read_request(&mut socket, &mut buf, peer)).await? else {
            return Ok(());
        };
        let too_large = matches!(body, Body::TooLarge);
        let reply = match parts.uri.path().strip_prefix(PREFIX) {
            Some(below) if below.is_empty() || below.starts_with('/') => match body {
                // Boxed: the task is sized for its largest state, and the
                // handler's is larger than a stream's; its box is freed
                // once it has answered.
                Body::Complete(body) => Box::pin(endpoints.handle(&parts, below, body)).await,
                Body::TooLarge => SseReply::Response(payload_too_large()),
            },
            _ => SseReply::Response(sse_examples::not_found()),
        };
        // `handle` streams connections, never other frames.
        let (head, answer) = reply
            .into_http_response(|frames| {
                frames
                    .into_connection()
                    .map_or(Answer::Complete(Bytes::new()), Answer::Stream)
            })
            .into_parts();
        match answer {
            Answer::Stream(connection) => {
                // The head of `SseReply::Stream`: `200`, `sse_headers` and
                // `connection: close`, the body lasting until it closes.
                let out = sse_core::http::stream_head();
                // Keep nothing of the request or the head while the stream
                // lasts.
                drop((buf, parts, head));
                socket.write_all(&out).await?;
                drop(out);
                let (mut reader, writer) = socket.split();
                let mut writer = Socket(writer);
                let mut probe = [0u8; 1];
                // The client sends nothing more: a read that returns means
                // it went away, and dropping the pipe unregisters it.
                tokio::select! {
                    _ = connection.pipe(&mut writer) => {}
                    _ = reader.read(&mut probe) => {}
                }
                return Ok(());
            }
            Answer::Complete(body) => {
                let close = too_large || wants_close(&parts);
                let mut out = response_head(&head, body.len(), close);
                out.extend_from_slice(&body);
                socket.write_all(&out).await?;
                if close {
                    return Ok(());
                }
            }
        }
    }
}

/// A reply's body as this front writes it: a live stream, or complete bytes.
enum Answer {
    Stream(Connection),
    Complete(Bytes),
}

impl From<Bytes> for Answer {
    fn from(body: Bytes) -> Self {
        Answer::Complete(body)
    }
}

enum Body {
    Complete(Bytes),
    TooLarge,
}

/// Reads one request head and its `content-length` body; `None` when the
/// client closed the connection between requests.
async fn read_request(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
) -> io::Result<Option<(http::request::Parts, Body)>> {
    loop {
        // Parsed without holding httparse's header array across a read, so
        // that a connection's task does not keep room for it while it streams.
        if let Some((mut parts, head_len, length)) = parse_head(buf)? {
            parts.extensions.insert(RemoteAddr(peer));
            buf.advance(head_len);
            if length > MAX_BODY_BYTES {
                // Read the body to its end (a client may only read the
                // answer once it has sent everything), up to a bound; the
                // connection closes after the answer.
                let mut left = length.min(MAX_DISCARD);
                loop {
                    let taken = left.min(buf.len());
                    buf.advance(taken);
                    left -= taken;
                    if left == 0 {
                        break;
                    }
                    buf.reserve(8 * 1024);
                    if socket.read_buf(buf).await? == 0 {
                        break;
                    }
                }
                return Ok(Some((parts, Body::TooLarge)));
            }
            while buf.len() < length {
                if socket.read_buf(buf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            let body = buf.split_to(length).freeze();
            return Ok(Some((parts, Body::Complete(body))));
        }
        if buf.len() >= MAX_HEAD {
            socket
                .write_all(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await?;
            return Ok(None);
        }
        buf.reserve(1024);
        if socket.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// The request head at the start of `buf`, its length and the body's
/// `content-length`, or `None` if the head is not complete yet.
fn parse_head(buf: &[u8]) -> io::Result<Option<(http::request::Parts, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf).map_err(invalid)? {
        httparse::Status::Complete(head_len) => head_len,
        httparse::Status::Partial => return Ok(None),
    };
    let mut builder = Request::builder()
        .method(request.method.unwrap_or("GET"))
        .uri(request.path.unwrap_or("/"));
    let mut length = 0usize;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
        }
        builder = builder.header(header.name, header.value);
    }
    let (parts, ()) = builder.body(()).map_err(invalid)?.into_parts();
    Ok(Some((parts, head_len, length)))
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

fn wants_close(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// The HTTP/1.1 head of a complete response: the body is `length` bytes, and
/// the connection closes after it if `close`.
fn response_head(head: &http::response::Parts, length: usize, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(head.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &head.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}
