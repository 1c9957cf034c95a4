//! The demo server under test: [`TestServer`] starts one in-process with
//! contract settings, gives the requests and waits the cases are made of,
//! and stops it; [`over_http2`] makes the servers started in a case speak
//! HTTP/2.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::time::Instant;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use sse_core::SseManager;
use sse_examples::{Demo, EnvConfig, ServeFn};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::stream::{SseResponse, SseStream};
use crate::{POLL, WAIT};

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

pub(crate) async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
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
