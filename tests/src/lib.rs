//! The harness of the conformance suite: every demo server of the HTTP API
//! (described in `docs/http-api.md`, the suite's reference; the demos live in
//! `sse-examples`), run in-process on a loopback port and driven over real
//! HTTP. The cases are in `tests/conformance/`, one module per topic.
//!
//! [`TestServer`] starts one demo's [`ServeFn`] with contract settings (the
//! `SSE_*` variables, given as a list instead of the process environment) and
//! stops it through the same graceful shutdown the binaries use. [`SseStream`]
//! reads an event stream with the `eventsource-stream` parser and records the
//! raw bytes and their arrival times, for the tests that check exact bytes or
//! heartbeat timing (heartbeats are comments, which the parser skips).
//!
//! Every wait is bounded by [`WAIT`]; a test that waits longer fails with a
//! message naming what it waited for.
//!
//! Inside [`over_http2`], the servers started are spoken to over HTTP/2
//! without TLS (prior knowledge, as `curl --http2-prior-knowledge` does):
//! the suite runs a selection of its cases that way, since browsers speak
//! HTTP/2 to any HTTPS origin.
//!
//! The Redis cases run two servers on one stream of the Redis at
//! [`REDIS_URL`], under a key prefix of their own ([`RedisPrefix`]); without
//! a Redis there they print why and pass, unless `SSE_CI_STRICT=1`, which
//! makes a missing Redis a failure.
//!
//! The NATS cases do the same on a JetStream stream of their own on the
//! NATS at [`NATS_ADDR`] ([`NatsPrefix`]).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use sse_core::SseManager;
use sse_examples::{Demo, EnvConfig, ServeFn};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use eventsource_stream::Event;
pub use metrics::prometheus_samples;

mod metrics;

/// How long any single wait may take before the test fails: generous, so a
/// loaded machine slows the suite down instead of failing it.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often the polling helpers ([`TestServer::wait_for_stats`]) look again.
const POLL: Duration = Duration::from_millis(20);

tokio::task_local! {
    /// Whether the servers started in this scope are spoken to over HTTP/2.
    static HTTP2: bool;
}

/// Runs `case` with every [`TestServer`] it starts spoken to over HTTP/2
/// with prior knowledge (no TLS, no upgrade): its client sends the HTTP/2
/// preface on every connection, and [`TestServer::start`] checks that the
/// server answers in HTTP/2.
pub async fn over_http2<F: Future>(case: F) -> F::Output {
    HTTP2.scope(true, case).await
}

/// One demo server, serving on `127.0.0.1` on an ephemeral port until
/// [`TestServer::stop`] (or until it is dropped).
pub struct TestServer {
    base_url: String,
    manager: SseManager,
    publish_token: Option<String>,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Starts `serve` with the contract variables `settings` (for example
    /// `[("SSE_HEARTBEAT_MS", "300")]`); unset variables take their defaults.
    /// `SSE_ADDR` is always `127.0.0.1:0`: the server gets a loopback
    /// listener on an ephemeral port.
    ///
    /// Returns once the server answers HTTP requests.
    ///
    /// # Panics
    /// If the settings are refused, or the server stops or does not answer
    /// within [`WAIT`].
    pub async fn start(serve: ServeFn, settings: &[(&str, &str)]) -> TestServer {
        let mut variables: BTreeMap<String, String> = settings
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        variables.insert("SSE_ADDR".to_owned(), "127.0.0.1:0".to_owned());
        let config = EnvConfig::from_lookup(|name| variables.get(name).cloned()).expect("valid contract settings");
        let publish_token = config.publish_token.clone();
        let drain = config.drain;
        let demo = bounded("the demo to start", Demo::new(config))
            .await
            .expect("the demo accepts the settings");
        let manager = demo.manager().clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let base_url = format!("http://{}", listener.local_addr().expect("local address"));

        let (stop, stopped) = oneshot::channel::<()>();
        // Completes on `stop` and also when the sender is dropped, so that a
        // server whose test panicked shuts down too.
        let signal = async move {
            let _ = stopped.await;
        };
        let shutdown = sse_examples::graceful(manager.clone(), drain, signal);
        let mut task = tokio::spawn(serve(demo, listener, shutdown));

        let http2 = HTTP2.try_with(|on| *on).unwrap_or(false);
        let mut client = reqwest::Client::builder().no_proxy();
        if http2 {
            client = client.http2_prior_knowledge();
        }
        let client = client.build().expect("an HTTP client");
        let probe_url = format!("{base_url}/sse-demo");
        let ready = async {
            loop {
                if let Ok(response) = client.get(&probe_url).send().await {
                    let expected = if http2 {
                        reqwest::Version::HTTP_2
                    } else {
                        reqwest::Version::HTTP_11
                    };
                    assert_eq!(response.version(), expected, "the server's HTTP version");
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::select! {
            result = &mut task => panic!("the server stopped before answering: {}", describe(result)),
            ready = tokio::time::timeout(WAIT, ready) => ready.expect("the server answers within the wait"),
        }
        TestServer {
            base_url,
            manager,
            publish_token,
            client,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The server's manager, for checks the HTTP contract cannot make.
    pub fn manager(&self) -> &SseManager {
        &self.manager
    }

    /// The HTTP client the helpers use (no proxy, no timeout of its own).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Triggers the graceful shutdown without waiting for it: the server
    /// drains (for `SSE_DRAIN_MS`), then ends its streams. [`TestServer::stop`]
    /// waits for the end.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Triggers the graceful shutdown and waits for the server to finish.
    ///
    /// # Panics
    /// If the server has not finished within [`WAIT`], or its task panicked.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("the server task is held until stop");
        match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => panic!("the server task failed: {join_error}"),
            Err(_) => panic!("the server did not stop within {WAIT:?}"),
        }
    }

    /// A request to an administration or publish endpoint, carrying the
    /// bearer token when the server was started with `SSE_PUBLISH_TOKEN`.
    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.publish_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` and returns its status and body, the body parsed as
    /// JSON (`Value::Null` when empty).
    ///
    /// # Panics
    /// If the request fails, or a non-empty body is not JSON.
    pub async fn send(request: RequestBuilder) -> (StatusCode, Value) {
        let response = bounded("an HTTP answer", request.send())
            .await
            .expect("the request is answered");
        let status = response.status();
        let body = bounded("a response body", response.bytes())
            .await
            .expect("the response body is read");
        if body.is_empty() {
            return (status, Value::Null);
        }
        let value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "the {status} answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, value)
    }

    /// `POST /api/sse/publish` with `body`; the status and JSON answer.
    pub async fn publish(&self, body: &Value) -> (StatusCode, Value) {
        TestServer::send(self.api(Method::POST, "/api/sse/publish").json(body)).await
    }

    /// `POST /api/sse/publish` with `body` and the `Idempotency-Key` header
    /// `key`; the status and JSON answer.
    pub async fn publish_with_key(&self, body: &Value, key: &str) -> (StatusCode, Value) {
        let request = self
            .api(Method::POST, "/api/sse/publish")
            .header("idempotency-key", key);
        TestServer::send(request.json(body)).await
    }

    /// Publishes `body`, which must succeed.
    ///
    /// # Panics
    /// Unless the answer is `200` with an `id` and a `delivered` count.
    pub async fn publish_ok(&self, body: &Value) -> Published {
        let (status, answer) = self.publish(body).await;
        assert_eq!(status, StatusCode::OK, "publish {body} answered {answer}");
        Published {
            id: answer["id"].as_str().expect("the answer holds the event id").to_owned(),
            delivered: answer["delivered"]
                .as_u64()
                .expect("the answer holds the delivered count"),
        }
    }

    /// `GET /api/sse/stats`, which must answer `200`.
    pub async fn stats(&self) -> Value {
        let (status, stats) = TestServer::send(self.api(Method::GET, "/api/sse/stats")).await;
        assert_eq!(status, StatusCode::OK, "stats answered {stats}");
        stats
    }

    /// `GET /api/sse/connections`, which must answer `200` with an array.
    pub async fn connections(&self) -> Vec<Value> {
        let (status, list) = TestServer::send(self.api(Method::GET, "/api/sse/connections")).await;
        assert_eq!(status, StatusCode::OK, "connections answered {list}");
        match list {
            Value::Array(items) => items,
            other => panic!("the connection list is not an array: {other}"),
        }
    }

    /// Polls the stats until `done` holds for them; returns them.
    ///
    /// # Panics
    /// If `done` does not hold within [`WAIT`]; the message shows the last
    /// stats and `what`.
    pub async fn wait_for_stats(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let stats = self.stats().await;
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {what}; the stats are {stats}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until exactly `count` connections are registered.
    pub async fn wait_for_connections(&self, count: u64) -> Value {
        self.wait_for_stats(&format!("{count} connections"), |stats| {
            stats["connections"].as_u64() == Some(count)
        })
        .await
    }

    /// `GET /api/sse?query` with extra `headers`; the response, unread.
    pub async fn connect_with(&self, query: &str, headers: &[(&str, &str)]) -> SseResponse {
        let mut request = self.client.get(self.url(&format!("/api/sse?{query}")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let opened = Instant::now();
        let response = bounded("the event stream's response", request.send())
            .await
            .expect("the subscribe request is answered");
        SseResponse { response, opened }
    }

    /// Sends `request` for an event stream (the administration feed, say);
    /// the response, unread.
    pub async fn open_stream(&self, request: RequestBuilder) -> SseResponse {
        let opened = Instant::now();
        let response = bounded("the event stream's response", request.send())
            .await
            .expect("the stream request is answered");
        SseResponse { response, opened }
    }

    /// `GET /api/sse?query`; the response, unread.
    pub async fn connect(&self, query: &str) -> SseResponse {
        self.connect_with(query, &[]).await
    }

    /// Subscribes with `query`, checks the answer is an event stream, and
    /// reads up to the `connected` event.
    pub async fn subscribe(&self, query: &str) -> Subscriber {
        self.subscribe_with(query, &[]).await
    }

    /// Subscribes as [`TestServer::subscribe`] does, with extra `headers`.
    pub async fn subscribe_with(&self, query: &str, headers: &[(&str, &str)]) -> Subscriber {
        let response = self.connect_with(query, headers).await;
        response.assert_event_stream();
        let mut stream = response.into_stream();
        let connected = stream.next_event().await;
        assert_eq!(
            connected.event, "connected",
            "the first event is `connected`: {connected:?}"
        );
        let data: Value = serde_json::from_str(&connected.data).expect("the connected event's data is JSON");
        let client_id = data["clientId"]
            .as_str()
            .expect("the connected event names the clientId")
            .to_owned();
        assert!(!client_id.is_empty(), "the clientId is not empty");
        Subscriber {
            client_id,
            connected: data,
            stream,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Dropping the sender completes the shutdown signal.
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn describe(result: Result<io::Result<()>, tokio::task::JoinError>) -> String {
    match result {
        Ok(Ok(())) => "it returned Ok".to_owned(),
        Ok(Err(error)) => format!("it failed: {error}"),
        Err(join_error) => format!("its task failed: {join_error}"),
    }
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("waited {WAIT:?} for {what}"),
    }
}

/// The answer of a successful publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event's id.
    pub id: String,
    /// How many connections of the answering instance got it (with Redis,
    /// other instances' connections are not counted).
    pub delivered: u64,
}

/// An open connection, read past its `connected` event.
#[derive(Debug)]
pub struct Subscriber {
    /// The server-assigned client id, from the `connected` event.
    pub client_id: String,
    /// The `connected` event's data.
    pub connected: Value,
    /// The rest of the stream.
    pub stream: SseStream,
}

/// The answer to `GET /api/sse`, before its body is read.
#[derive(Debug)]
pub struct SseResponse {
    response: reqwest::Response,
    opened: Instant,
}

impl SseResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The value of header `name` as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap_or_else(|_| panic!("header {name} is not text")))
    }

    /// When the request was sent.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Checks the status and headers the contract requires of an event
    /// stream: `200`, `content-type: text/event-stream`, a `cache-control`
    /// holding `no-cache` and `no-transform`, `x-accel-buffering: no`, and
    /// no `content-encoding`.
    ///
    /// # Panics
    /// On the first requirement not met.
    pub fn assert_event_stream(&self) {
        assert_eq!(self.status(), StatusCode::OK, "status of the event stream");
        let content_type = self.header("content-type").expect("a content-type");
        assert!(
            content_type.split(';').next().map(str::trim) == Some("text/event-stream"),
            "content-type is text/event-stream, not {content_type:?}"
        );
        let cache_control: Vec<String> = self
            .headers()
            .get_all("cache-control")
            .iter()
            .flat_map(|value| value.to_str().expect("cache-control is text").split(','))
            .map(|directive| directive.trim().to_ascii_lowercase())
            .collect();
        for directive in ["no-cache", "no-transform"] {
            assert!(
                cache_control.iter().any(|d| d == directive),
                "cache-control holds {directive}: {cache_control:?}"
            );
        }
        assert_eq!(self.header("x-accel-buffering"), Some("no"), "x-accel-buffering");
        assert_eq!(
            self.header("content-encoding"),
            None,
            "an event stream is never compressed"
        );
    }

    /// Reads the body as an event stream.
    pub fn into_stream(self) -> SseStream {
        let recording = Arc::new(Mutex::new(Recording::default()));
        let tee = recording.clone();
        let bytes = self.response.bytes_stream().map(move |chunk| {
            if let Ok(bytes) = &chunk {
                tee.lock().expect("recording lock").push(bytes);
            }
            chunk
        });
        SseStream {
            events: Box::pin(bytes.eventsource()),
            recording,
            opened: self.opened,
            end: None,
        }
    }

    /// Reads the whole body (which must end within [`WAIT`]) as an event
    /// stream: the events, and how it ended.
    pub async fn read_to_end(self) -> (SseStream, Vec<Event>, End) {
        let mut stream = self.into_stream();
        let (events, end) = stream.events_until_end().await;
        (stream, events, end)
    }
}

/// The raw bytes of a stream, as they arrived.
#[derive(Debug, Default)]
struct Recording {
    bytes: Vec<u8>,
    /// For each chunk: when it arrived, and the length of `bytes` after it.
    chunks: Vec<(Instant, usize)>,
}

impl Recording {
    fn push(&mut self, chunk: &Bytes) {
        self.bytes.extend_from_slice(chunk);
        self.chunks.push((Instant::now(), self.bytes.len()));
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The body ended normally (the final chunk of a chunked body, or the
    /// announced length).
    Clean,
    /// The connection broke, or the stream could not be parsed.
    Error(String),
}

/// One step of a stream.
#[derive(Debug)]
pub enum Next {
    /// A dispatched event.
    Event(Event),
    /// The stream ended.
    End(End),
    /// Nothing happened within the time given.
    Idle,
}

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// An event stream being read: parsed events, plus the raw bytes and their
/// arrival times.
pub struct SseStream {
    events: Events,
    recording: Arc<Mutex<Recording>>,
    opened: Instant,
    end: Option<End>,
}

impl fmt::Debug for SseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseStream")
            .field("raw", &String::from_utf8_lossy(&self.raw()))
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl SseStream {
    /// The next event, or the end, or [`Next::Idle`] after `within`.
    pub async fn next_within(&mut self, within: Duration) -> Next {
        if let Some(end) = &self.end {
            return Next::End(end.clone());
        }
        match tokio::time::timeout(within, self.events.next()).await {
            Err(_) => Next::Idle,
            Ok(Some(Ok(event))) => Next::Event(event),
            Ok(None) => {
                self.end = Some(End::Clean);
                Next::End(End::Clean)
            }
            Ok(Some(Err(error))) => {
                let end = End::Error(error.to_string());
                self.end = Some(end.clone());
                Next::End(end)
            }
        }
    }

    /// The next event.
    ///
    /// # Panics
    /// If the stream ends, or no event arrives within [`WAIT`].
    pub async fn next_event(&mut self) -> Event {
        match self.next_within(WAIT).await {
            Next::Event(event) => event,
            Next::End(end) => panic!("expected an event, the stream ended ({end:?}); it held {self:?}"),
            Next::Idle => panic!("expected an event, none came within {WAIT:?}; the stream held {self:?}"),
        }
    }

    /// The next event, which must be named `name`.
    pub async fn expect_event(&mut self, name: &str) -> Event {
        let event = self.next_event().await;
        assert_eq!(event.event, name, "expected event {name:?}, got {event:?}");
        event
    }

    /// Every event until the stream ends, and how it ended.
    ///
    /// # Panics
    /// If the stream has not ended within [`WAIT`].
    pub async fn events_until_end(&mut self) -> (Vec<Event>, End) {
        let deadline = Instant::now() + WAIT;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Next::Event(event) => events.push(event),
                Next::End(end) => return (events, end),
                Next::Idle => panic!("the stream did not end within {WAIT:?}; it held {self:?}"),
            }
        }
    }

    /// Reads for `duration`; returns the events that came.
    ///
    /// # Panics
    /// If the stream ends meanwhile.
    pub async fn events_during(&mut self, duration: Duration) -> Vec<Event> {
        let deadline = Instant::now() + duration;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return events;
            }
            match self.next_within(left).await {
                Next::Event(event) => events.push(event),
                Next::End(end) => panic!("the stream ended ({end:?}) while it should stay open; it held {self:?}"),
                Next::Idle => return events,
            }
        }
    }

    /// Whether the stream has been seen to end.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// When the request was sent.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Every byte read so far.
    pub fn raw(&self) -> Vec<u8> {
        self.recording.lock().expect("recording lock").bytes.clone()
    }

    /// The frames read so far (the raw text up to and including each blank
    /// line), with the instant each one had fully arrived. The server ends
    /// lines with LF, so a frame ends at `\n\n`. This only delimits frames to
    /// time them and compare their bytes; events are parsed by the
    /// `eventsource-stream` parser.
    pub fn frames(&self) -> Vec<(Instant, String)> {
        let recording = self.recording.lock().expect("recording lock");
        let bytes = &recording.bytes;
        let mut frames = Vec::new();
        let mut start = 0;
        let mut chunk = 0;
        for end in 1..bytes.len() {
            if bytes[end - 1] == b'\n' && bytes[end] == b'\n' && end > start {
                while recording.chunks[chunk].1 <= end {
                    chunk += 1;
                }
                let arrived = recording.chunks[chunk].0;
                frames.push((arrived, String::from_utf8_lossy(&bytes[start..=end]).into_owned()));
                start = end + 1;
            }
        }
        frames
    }
}

/// The value of a leading `retry:` frame (`retry: N` and a blank line), the
/// reconnection hint an event stream opens with.
pub fn leading_retry(raw: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(raw).ok()?;
    let (frame, _) = text.split_once("\n\n")?;
    frame.strip_prefix("retry: ")?.parse().ok()
}

/// The Redis of the Redis cases.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

const REDIS_ADDR: &str = "127.0.0.1:6379";

/// Whether `SSE_CI_STRICT=1`: what a test needs must be there.
pub fn strict() -> bool {
    std::env::var("SSE_CI_STRICT").is_ok_and(|value| value == "1")
}

/// A key prefix of one test's own on the Redis at [`REDIS_URL`], for the
/// servers of that test (`SSE_REDIS_PREFIX`); its keys are deleted when
/// the prefix is dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    prefix: String,
}

impl RedisPrefix {
    /// A fresh prefix for `test`, or `None` (after printing why) when
    /// nothing answers `PING` at [`REDIS_URL`].
    ///
    /// # Panics
    /// Instead of returning `None`, under `SSE_CI_STRICT=1`.
    pub async fn new_or_skip(test: &str) -> Option<RedisPrefix> {
        let ping = async {
            let mut stream = TcpStream::connect(REDIS_ADDR).await?;
            stream.write_all(b"PING\r\n").await?;
            let mut answer = [0; 7];
            stream.read_exact(&mut answer).await?;
            Ok::<_, io::Error>(answer)
        };
        let reason = match tokio::time::timeout(Duration::from_secs(3), ping).await {
            Ok(Ok(answer)) if &answer == b"+PONG\r\n" => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let prefix = format!("sse-conformance-{test}-{}-{nanos:x}-{n}", std::process::id());
                return Some(RedisPrefix { prefix });
            }
            Ok(Ok(answer)) => format!("{REDIS_ADDR} answered PING with {:?}", String::from_utf8_lossy(&answer)),
            Ok(Err(error)) => format!("no Redis at {REDIS_ADDR}: {error}"),
            Err(_) => format!("no answer to PING from {REDIS_ADDR} within 3 s"),
        };
        assert!(!strict(), "SSE_CI_STRICT=1 and {test} cannot run: {reason}");
        eprintln!("skipping {test}: {reason} (set SSE_CI_STRICT=1 to make this a failure)");
        None
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `SSE_REDIS_URL` and `SSE_REDIS_PREFIX` for [`TestServer::start`].
    pub fn settings(&self) -> [(&str, &str); 2] {
        [("SSE_REDIS_URL", REDIS_URL), ("SSE_REDIS_PREFIX", &self.prefix)]
    }
}

impl Drop for RedisPrefix {
    /// Deletes every key of the prefix: the stream, and the presence
    /// records of instances that did not withdraw theirs.
    fn drop(&mut self) {
        const DELETE: &str = "local keys = redis.call('KEYS', ARGV[1]) \
            for _, key in ipairs(keys) do redis.call('DEL', key) end return #keys";
        let pattern = format!("{}:*", self.prefix);
        let args = ["EVAL", DELETE, "0", pattern.as_str()];
        let mut command = format!("*{}\r\n", args.len());
        for arg in args {
            command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        let deleted = (|| {
            let addr = REDIS_ADDR.parse().map_err(io::Error::other)?;
            let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(command.as_bytes())?;
            let mut answer = [0; 1];
            stream.read_exact(&mut answer)
        })();
        if let Err(error) = deleted {
            eprintln!("could not delete the keys {pattern}: {error}");
        }
    }
}

/// The NATS server of the NATS cases.
pub const NATS_ADDR: &str = "127.0.0.1:4222";

/// A stream of one test's own on the NATS at [`NATS_ADDR`], for the servers
/// of that test (`SSE_NATS_PREFIX`); the stream is deleted when the prefix
/// is dropped.
#[derive(Debug)]
pub struct NatsPrefix {
    prefix: String,
}

impl NatsPrefix {
    /// A fresh prefix for `test`, or `None` (after printing why) when no
    /// NATS with JetStream answers at [`NATS_ADDR`].
    ///
    /// # Panics
    /// Instead of returning `None`, under `SSE_CI_STRICT=1`.
    pub async fn new_or_skip(test: &str) -> Option<NatsPrefix> {
        let info = async {
            let stream = TcpStream::connect(NATS_ADDR).await?;
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(stream), &mut line).await?;
            Ok::<_, io::Error>(line)
        };
        let reason = match tokio::time::timeout(Duration::from_secs(3), info).await {
            Ok(Ok(line)) if line.starts_with("INFO ") && line.contains("\"jetstream\":true") => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let prefix = format!("sse-conformance-{test}-{}-{nanos:x}-{n}", std::process::id());
                return Some(NatsPrefix { prefix });
            }
            Ok(Ok(line)) => format!("{NATS_ADDR} is not a NATS server with JetStream: {line:?}"),
            Ok(Err(error)) => format!("no NATS at {NATS_ADDR}: {error}"),
            Err(_) => format!("no greeting from {NATS_ADDR} within 3 s"),
        };
        assert!(!strict(), "SSE_CI_STRICT=1 and {test} cannot run: {reason}");
        eprintln!("skipping {test}: {reason} (set SSE_CI_STRICT=1 to make this a failure)");
        None
    }

    /// `SSE_NATS_URL` and `SSE_NATS_PREFIX` for [`TestServer::start`].
    pub fn settings(&self) -> [(&str, &str); 2] {
        [
            ("SSE_NATS_URL", "nats://127.0.0.1:4222"),
            ("SSE_NATS_PREFIX", &self.prefix),
        ]
    }
}

impl Drop for NatsPrefix {
    /// Deletes the stream, through the JetStream API, waiting for its
    /// answer.
    fn drop(&mut self) {
        let command = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB _sse_cleanup 1\r\n\
             PUB $JS.API.STREAM.DELETE.{}-events _sse_cleanup 0\r\n\r\n",
            self.prefix
        );
        let deleted = (|| {
            let addr = NATS_ADDR.parse().map_err(io::Error::other)?;
            let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(command.as_bytes())?;
            let mut seen = Vec::new();
            let mut buffer = [0; 512];
            while !String::from_utf8_lossy(&seen).contains("MSG _sse_cleanup") {
                let read = stream.read(&mut buffer)?;
                if read == 0 {
                    return Err(io::Error::other("the connection closed"));
                }
                seen.extend_from_slice(&buffer[..read]);
            }
            Ok(())
        })();
        if let Err(error) = deleted {
            eprintln!("could not delete the stream {}-events: {error}", self.prefix);
        }
    }
}
