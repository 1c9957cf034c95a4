//! The check every framework adapter runs over real HTTP (features
//! `test-util`, `http` and `tokio`): [`check_endpoints`] speaks HTTP/1.1 to
//! a server that mounts [`SseEndpoints`](crate::http::SseEndpoints) and
//! asserts what `docs/http-api.md` promises of the stream, a publish, the
//! body limit and unknown paths, and that a client that goes away is
//! unregistered. An adapter's test builds its router or server on a loopback
//! port and calls it; the client is written here, on a plain TCP socket, so
//! that no adapter needs an HTTP client of its own and every adapter is
//! checked by the same bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::SseManager;
use crate::http::MAX_BODY_BYTES;

/// How long any single wait may take before the check fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Checks the endpoints a server at `address` mounts at `mount` (e.g.
/// `"/api/sse"`), over `manager`, with subscribers identified by
/// [`DevIdentity`](crate::http::DevIdentity):
///
/// * `GET {mount}?userId=alice` answers `200` with exactly the event-stream
///   headers (`content-type: text/event-stream`, `cache-control: no-cache,
///   no-transform`, `x-accel-buffering: no`, no `content-encoding`), and the
///   stream opens with the manager's `retry:` hint and the `connected` event
///   holding the `clientId`; the manager then holds one connection;
/// * `POST {mount}/publish` of a two-line event for alice answers `200` with
///   `delivered: 1`, and the stream carries the event's exact frame;
/// * a body one byte over [`MAX_BODY_BYTES`] answers `413` with a JSON
///   error, and `GET {mount}/nothing` answers `404`;
/// * once the client drops the stream, the manager unregisters the
///   connection within [`WAIT`].
///
/// ```no_run
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// use sse_core::SseManager;
/// use sse_core::http::{DevIdentity, SseEndpoints};
///
/// let manager = SseManager::builder().build()?;
/// let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let address = listener.local_addr()?;
/// // Serve `endpoints` under `/api/sse` on `listener` with the framework, then:
/// sse_core::test_util::adapter::check_endpoints(address, "/api/sse", &manager).await;
/// # let _ = endpoints;
/// # Ok(())
/// # }
/// ```
///
/// # Panics
/// On the first promise not kept, naming it, or when a wait takes longer
/// than [`WAIT`].
pub async fn check_endpoints(address: SocketAddr, mount: &str, manager: &SseManager) {
    let mut stream = open_stream(address, &format!("{mount}?userId=alice")).await;
    stream.read_until("\n\n").await;
    let text = stream.text();
    let retry = format!("retry: {}\n", manager.config().retry().as_millis());
    assert!(text.starts_with(&retry), "{text:?}");
    assert!(text.contains("\"clientId\""), "{text:?}");
    assert_eq!(manager.connection_count(), 1);

    let body = r#"{"event":"greeting","data":"line1\nline2","target":"user","targetId":"alice"}"#;
    let publish = send(
        address,
        "POST",
        &format!("{mount}/publish"),
        body.as_bytes().to_vec(),
        true,
    )
    .await;
    assert_eq!(publish.head.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&publish.body).expect("JSON");
    assert_eq!(answer["delivered"], 1);
    stream.read_until("event: greeting\ndata: line1\ndata: line2\n\n").await;

    let oversized = vec![b' '; MAX_BODY_BYTES + 1];
    let too_large = send(address, "POST", &format!("{mount}/publish"), oversized, false).await;
    assert_eq!(too_large.head.status, 413);
    let answer: serde_json::Value = serde_json::from_slice(&too_large.body).expect("JSON");
    assert!(answer["error"].is_string());

    let unknown = send(address, "GET", &format!("{mount}/nothing"), Vec::new(), false).await;
    assert_eq!(unknown.head.status, 404);

    drop(stream);
    connections(manager, 0).await;
}

/// Waits until the manager holds `count` connections (a dropped client is
/// unregistered).
pub(super) async fn connections(manager: &SseManager, count: usize) {
    let started = Instant::now();
    while manager.connection_count() != count {
        assert!(
            started.elapsed() < WAIT,
            "{} connections, not {count}",
            manager.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status line and headers of a response.
pub(super) struct Head {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    chunked: bool,
    length: Option<usize>,
}

impl Head {
    /// The value of header `name` (the first, if repeated).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A complete response.
pub(super) struct Answer {
    pub(super) head: Head,
    pub(super) body: Vec<u8>,
}

/// An event-stream response being read: its head, and the body decoded so
/// far. Dropping it closes the connection.
pub(super) struct EventStream {
    pub(super) head: Head,
    socket: TcpStream,
    /// Bytes read from the socket and not decoded yet.
    raw: Vec<u8>,
    /// The body decoded so far.
    received: Vec<u8>,
}

impl EventStream {
    /// Reads until the decoded body holds `needle`.
    pub(super) async fn read_until(&mut self, needle: &str) {
        while !self.text().contains(needle) {
            let mut ended = false;
            if self.head.chunked {
                let (data, used, last) = decode_chunks(&self.raw);
                self.raw.drain(..used);
                self.received.extend(data);
                ended = last;
            } else {
                self.received.append(&mut self.raw);
            }
            if self.text().contains(needle) {
                return;
            }
            assert!(
                !ended && read_more(&mut self.socket, &mut self.raw).await,
                "the stream ended without {needle:?}; got {:?}",
                self.text()
            );
        }
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// Opens `GET path`, checks that it answers `200` with exactly the
/// event-stream headers, and reads up to the `connected` event.
pub(super) async fn open_stream(address: SocketAddr, path: &str) -> EventStream {
    let mut stream = get_stream_with(address, path, &[]).await;
    assert_eq!(stream.head.status, 200);
    assert_eq!(stream.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.head.header("cache-control"), Some("no-cache, no-transform"));
    assert_eq!(stream.head.header("x-accel-buffering"), Some("no"));
    assert_eq!(stream.head.header("content-encoding"), None);
    stream.read_until("event: connected\n").await;
    stream
}

/// Opens `GET path` with `headers` and reads the response's head.
pub(super) async fn get_stream_with(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> EventStream {
    let mut socket = bounded("a connection", TcpStream::connect(address))
        .await
        .expect("connect to the server");
    let headers = header_lines(headers);
    let request = format!("GET {path} HTTP/1.1\r\nhost: {address}\r\n{headers}\r\n");
    bounded("the request to be written", socket.write_all(request.as_bytes()))
        .await
        .expect("write the request");
    let mut raw = Vec::new();
    let head = read_head(&mut socket, &mut raw).await;
    EventStream {
        head,
        socket,
        raw,
        received: Vec::new(),
    }
}

/// Sends `method path` with `body` on a connection of its own, writing the
/// body while the answer is read (the server may answer before it has read
/// it all), and reads the whole answer.
async fn send(address: SocketAddr, method: &str, path: &str, body: Vec<u8>, json: bool) -> Answer {
    let content_type: &[(&str, &str)] = if json {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    send_with(address, method, path, body, content_type).await
}

/// [`send`] with `headers`.
pub(super) async fn send_with(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Answer {
    let socket = bounded("a connection", TcpStream::connect(address))
        .await
        .expect("connect to the server");
    let (mut reader, mut writer) = socket.into_split();
    let headers = header_lines(headers);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    );
    let writing = tokio::spawn(async move {
        // A server that answers early may close before reading it all.
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut raw = Vec::new();
    let head = read_head(&mut reader, &mut raw).await;
    // A stream where a complete answer was due would never end.
    let body = bounded("the whole answer", read_body(&mut reader, &head, raw)).await;
    writing.abort();
    Answer { head, body }
}

/// `headers` as lines of a request head.
fn header_lines(headers: &[(&str, &str)]) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect()
}

/// Reads up to the blank line ending a response's head, skipping interim
/// (`1xx`) responses; leaves the bytes read past it in `raw`.
async fn read_head(socket: &mut (impl AsyncRead + Unpin), raw: &mut Vec<u8>) -> Head {
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&raw[..end]).into_owned();
            raw.drain(..end + 4);
            let head = parse_head(&text);
            if !(100..200).contains(&head.status) {
                return head;
            }
            continue;
        }
        assert!(
            read_more(socket, raw).await,
            "the connection closed before a response head; got {:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

fn parse_head(text: &str) -> Head {
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let find = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value);
    let chunked = find("transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
    let length = find("content-length").and_then(|value| value.parse().ok());
    Head {
        status,
        headers,
        chunked,
        length,
    }
}

/// Reads the rest of a body whose first bytes are `raw`: by its length, its
/// chunks, or to the end of the connection.
async fn read_body(socket: &mut (impl AsyncRead + Unpin), head: &Head, mut raw: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        if head.chunked {
            let (data, used, last) = decode_chunks(&raw);
            raw.drain(..used);
            body.extend(data);
            if last {
                return body;
            }
        } else {
            body.append(&mut raw);
            if let Some(length) = head.length.filter(|&length| body.len() >= length) {
                body.truncate(length);
                return body;
            }
        }
        if !read_more(socket, &mut raw).await {
            assert!(!head.chunked && head.length.is_none(), "the body was cut short");
            return body;
        }
    }
}

/// Decodes the complete chunks at the start of `raw`: their data, how many
/// bytes they took, and whether the last (empty) chunk was among them.
fn decode_chunks(raw: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut data = Vec::new();
    let mut used = 0;
    loop {
        let rest = &raw[used..];
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (data, used, false);
        };
        let line = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).unwrap_or_else(|_| panic!("not a chunk size: {line:?}"));
        if size == 0 {
            return (data, used, true);
        }
        let start = line_end + 2;
        if rest.len() < start + size + 2 {
            return (data, used, false);
        }
        data.extend_from_slice(&rest[start..start + size]);
        used += start + size + 2;
    }
}

/// Reads what the socket has into `raw`; `false` at the end of the
/// connection.
async fn read_more(socket: &mut (impl AsyncRead + Unpin), raw: &mut Vec<u8>) -> bool {
    let mut buffer = [0; 16 * 1024];
    let n = bounded("more of the response", socket.read(&mut buffer))
        .await
        .expect("read from the server");
    raw.extend_from_slice(&buffer[..n]);
    n > 0
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("waited {WAIT:?} for {what}"),
    }
}
