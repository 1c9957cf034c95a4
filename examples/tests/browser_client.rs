//! The browser client of `clients/js` in a real browser: headless Chromium,
//! driven through chromedriver, against the `axum-demo` binary behind a
//! small reverse proxy in the test process, which also serves the test pages
//! so that everything is same-origin. The proxy answers `502` while the demo
//! is down, as a production proxy would; `EventSource` treats that as final,
//! so the client's own backoff takes over.
//!
//! `sse_client_in_a_real_browser`: `SSEClient` (loaded from the demo's
//! `/api/sse/client.js`) connects and receives; resumes through
//! `Last-Event-ID` after a server-side disconnect and through the
//! `lastEventId` query parameter after `disconnect()` and `connect()`;
//! honours its backoff and `maxReconnectAttempts` while the demo is killed;
//! gets a `reset` (and calls `onReset`) when the demo comes back empty on the
//! same address.
//!
//! `react_hook_in_a_real_browser`: a small React application on `useSSE`,
//! bundled with esbuild from `clients/js/node_modules`, renders live events,
//! follows a reconnection, and closes its connection on unmount.
//!
//! Needs `chromium` and `chromedriver` (see `browser.rs`), and for the React
//! test `npm ci` in `clients/js`. Without them the tests are skipped, unless
//! `SSE_CI_STRICT=1`, where they fail.

mod common;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get};
use fantoccini::{Client, Locator};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use common::{Harness, POLL, TIMEOUT, browser_or_skip, open_browser, publish, strict};

/// How long each scenario may take.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// The two scenarios each start a server, chromedriver and a browser: one
/// at a time, so that timings are not disturbed by the other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CLIENT_JS: &str = include_str!("../../clients/js/sse-client.js");
const CLIENT_PAGE: &str = include_str!("../../clients/js/test/browser/client-page.html");
const REACT_PAGE: &str = include_str!("../../clients/js/test/browser/react-page.html");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_client_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_or_skip("the SSEClient browser test") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut harness = Harness::new();
    match tokio::time::timeout(
        SCENARIO_TIMEOUT,
        client_scenario(&mut harness, &chromium, &chromedriver),
    )
    .await
    {
        Ok(()) => eprintln!(
            "SSEClient browser scenario passed in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => panic!("the SSEClient browser scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn react_hook_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_or_skip("the useSSE browser test") else {
        return;
    };
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js");
    let esbuild = js.join("node_modules/.bin/esbuild");
    let missing: Vec<&str> = [
        "node_modules/.bin/esbuild",
        "node_modules/react",
        "node_modules/react-dom",
    ]
    .into_iter()
    .filter(|path| !js.join(path).exists())
    .collect();
    if !missing.is_empty() {
        let reason = format!("{} not found: run `npm ci` in {}", missing.join(", "), js.display());
        assert!(
            !strict(),
            "SSE_CI_STRICT=1 and the useSSE browser test cannot run: {reason}"
        );
        eprintln!("skipping the useSSE browser test: {reason} (set SSE_CI_STRICT=1 to make this a failure)");
        return;
    }
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut harness = Harness::new();
    let bundle = bundle_react_app(&esbuild, &js, harness.dir.path());
    match tokio::time::timeout(
        SCENARIO_TIMEOUT,
        react_scenario(&mut harness, &chromium, &chromedriver, bundle),
    )
    .await
    {
        Ok(()) => eprintln!(
            "useSSE browser scenario passed in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => panic!("the useSSE browser scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

/// Bundles `test/browser/react-app.js` (React, react-dom and the hook) into
/// one ES module for the browser.
fn bundle_react_app(esbuild: &Path, js: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("react-app.js");
    let output = Command::new(esbuild)
        .current_dir(js)
        .args([
            "test/browser/react-app.js",
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--define:process.env.NODE_ENV=\"development\"",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", out.display()))
        .output()
        .expect("run esbuild");
    assert!(
        output.status.success(),
        "esbuild failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).expect("the bundle")
}

async fn client_scenario(harness: &mut Harness, chromium: &Path, chromedriver: &Path) {
    let http = http_client();
    let addr = harness
        .start_server("127.0.0.1:0")
        .await
        .expect("the demo server starts");
    let demo = format!("http://{addr}");

    // The demo serves the client as JavaScript, byte for byte.
    let response = http
        .get(format!("{demo}/api/sse/client.js"))
        .send()
        .await
        .expect("GET /api/sse/client.js");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let served = response.text().await.expect("the script");
    assert!(
        served == CLIENT_JS,
        "the demo serves a client other than clients/js/sse-client.js"
    );

    let front = Front::start(addr, None).await;
    let driver = harness
        .start_chromedriver(chromedriver, &http)
        .await
        .expect("chromedriver starts");
    let profile = harness.dir.path().join("profile");
    let browser = open_browser(&driver, chromium, &profile).await;
    browser
        .goto(&format!("{}/client-page.html", front.base))
        .await
        .expect("open the client page");
    poll::<bool>(
        &browser,
        "return window.clientPageReady === true;",
        "the page to load the client",
        |ready| *ready,
    )
    .await;

    // a. Two clients connect: "main" (alice) gives up after 3 failed
    // attempts, with a backoff base of 200 ms and its jitter fixed at 0.99
    // so that the delays can be checked; "steady" (bob) never gives up.
    start_client(
        &browser,
        "main",
        json!({
            "url": "/api/sse?userId=alice&tag=main",
            "reconnectInterval": 200,
            "maxReconnectInterval": 5000,
            "maxReconnectAttempts": 3,
            "randomValue": 0.99,
            "eventTypes": ["notification"],
        }),
    )
    .await;
    start_client(
        &browser,
        "steady",
        json!({
            "url": "/api/sse?userId=bob&tag=steady",
            "reconnectInterval": 200,
            "maxReconnectInterval": 1000,
            "maxReconnectAttempts": 0,
            "eventTypes": ["notification"],
        }),
    )
    .await;
    let clients = wait_clients(&browser, "both clients to connect", |c| {
        c.main.state == "connected"
            && c.steady.state == "connected"
            && c.main.has("connected")
            && c.steady.has("connected")
    })
    .await;
    assert!(
        clients
            .main
            .url
            .as_deref()
            .is_some_and(|url| !url.contains("lastEventId"))
    );
    let client_id = clients.main.client_id();

    let hello = publish(&http, &demo, &notification("alice", "hello alice")).await;
    let for_bob = publish(&http, &demo, &notification("bob", "hello bob")).await;
    let (hello, for_bob) = (id_of(&hello), id_of(&for_bob));
    let clients = wait_clients(&browser, "the published events", |c| {
        c.main.count(&hello) == 1 && c.steady.count(&for_bob) == 1
    })
    .await;
    assert_eq!(clients.main.count(&for_bob), 0, "bob's event never reaches alice");
    assert_eq!(clients.main.last_event_id, hello);
    let event = clients.main.event(&hello);
    assert_eq!(
        (event.kind.as_str(), event.data.as_deref()),
        ("event", Some("hello alice"))
    );

    // b. The server closes the connection: the browser reconnects by
    // itself with Last-Event-ID, and the events published meanwhile arrive
    // exactly once, in order.
    let before = front.stream_requests("main").len();
    let response = http
        .delete(format!("{demo}/api/sse/connections/{client_id}"))
        .send()
        .await
        .expect("disconnect request");
    assert_eq!(response.status(), 204);
    let mut missed = Vec::new();
    for n in 1..=3 {
        let answer = publish(&http, &demo, &notification("alice", &format!("while reconnecting {n}"))).await;
        missed.push(id_of(&answer));
    }
    let clients = wait_clients(&browser, "the reconnection and the missed events", |c| {
        c.main.state == "connected" && c.main.opens() == 2 && missed.iter().all(|id| c.main.count(id) == 1)
    })
    .await;
    let positions: Vec<usize> = missed.iter().map(|id| clients.main.position(id)).collect();
    assert!(positions.is_sorted(), "in order: {:#?}", clients.main.log);
    assert_eq!(clients.main.count(&hello), 1, "no duplicate");
    assert!(!clients.main.has("reset"), "no reset while the ids are held");
    assert_eq!(clients.main.reconnect_attempts, 0);
    let requests = front.stream_requests("main");
    assert_eq!(requests.len(), before + 1, "one reconnection: {requests:#?}");
    let resumed = &requests[before];
    assert_eq!(
        resumed.last_event_id.as_deref(),
        Some(hello.as_str()),
        "the browser sent Last-Event-ID"
    );
    assert!(
        !resumed.query.contains("lastEventId"),
        "the browser's own reconnection keeps the URL"
    );

    // c. disconnect() and connect(): the new EventSource resumes through the
    // lastEventId query parameter.
    client_call(&browser, "main", "disconnect").await;
    wait_clients(&browser, "the client to close", |c| c.main.state == "closed").await;
    let last_seen = missed[2].clone();
    let mut while_closed = Vec::new();
    for n in 1..=2 {
        let answer = publish(&http, &demo, &notification("alice", &format!("while closed {n}"))).await;
        while_closed.push(id_of(&answer));
    }
    client_call(&browser, "main", "connect").await;
    let clients = wait_clients(&browser, "the resumed client", |c| {
        c.main.state == "connected" && while_closed.iter().all(|id| c.main.count(id) == 1)
    })
    .await;
    assert!(
        clients.main.position(&while_closed[0]) < clients.main.position(&while_closed[1]),
        "in order"
    );
    let requests = front.stream_requests("main");
    let resumed = requests.last().expect("a stream request");
    assert!(
        resumed.query.contains(&format!("lastEventId={last_seen}")),
        "the client passed lastEventId: {resumed:?}"
    );
    assert_eq!(
        resumed.last_event_id, None,
        "a new EventSource has no Last-Event-ID header"
    );
    assert!(!clients.main.has("reset"));

    // d. The server is killed. The browser retries once by itself (after
    // the server's 500 ms retry hint) and gets 502 from the proxy; from then
    // on the client backs off (0.99 × 400 ms, then 0.99 × 800 ms) and gives
    // up after its 3rd failed attempt.
    let before = front.stream_requests("main").len();
    harness.kill_server();
    let clients = wait_clients(&browser, "the client to give up", |c| c.main.state == "closed").await;
    let requests = front.stream_requests("main");
    let attempts = &requests[before..];
    assert_eq!(attempts.len(), 3, "3 reconnection attempts: {attempts:#?}");
    assert!(attempts.iter().all(|r| r.status == 502), "{attempts:#?}");
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    eprintln!("reconnection attempts while the server is down, apart by {gaps:?}");
    for (gap, delay) in gaps.iter().zip([396_u64, 792]) {
        let delay = Duration::from_millis(delay);
        assert!(
            *gap >= delay - Duration::from_millis(20) && *gap <= delay + Duration::from_millis(1500),
            "attempts {gaps:?} apart; the backoff asks for 396 ms, then 792 ms"
        );
    }
    assert_eq!(clients.main.last_error.as_deref(), Some("gave-up"));
    let errors: Vec<(String, u64)> = clients
        .main
        .log
        .iter()
        .rev()
        .take_while(|e| e.kind != "open")
        .filter(|e| e.kind == "error")
        .map(|e| (e.error_kind.clone().unwrap_or_default(), e.attempt.unwrap_or_default()))
        .collect();
    let attempt_numbers: Vec<u64> = errors.iter().rev().map(|(_, attempt)| *attempt).collect();
    assert_eq!(attempt_numbers, [1, 2, 3, 4], "{errors:?}");
    let closes: Vec<&LogEntry> = clients.main.log.iter().filter(|e| e.kind == "close").collect();
    assert_eq!(closes.last().and_then(|e| e.reason.as_deref()), Some("max-attempts"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        front.stream_requests("main").len(),
        requests.len(),
        "no attempt after giving up"
    );
    let clients = read_clients(&browser).await;
    assert_eq!(clients.main.state, "closed");
    assert!(
        clients.steady.state == "connecting" && front.stream_requests("steady").len() >= 4,
        "the unlimited client keeps trying: {:?}",
        clients.steady
    );

    // e. The server comes back, empty, on the same address: the retrying
    // client reconnects with its last event id, which the new process does
    // not know: a reset, and onReset. The closed client does the same on
    // connect().
    harness
        .restart_server(&addr.to_string())
        .await
        .expect("the demo restarts on the same address");
    let clients = wait_clients(&browser, "the steady client to reconnect and reset", |c| {
        c.steady.state == "connected" && c.steady.resets() == 1
    })
    .await;
    let resumed = front.stream_requests("steady");
    let resumed = resumed.last().expect("a stream request");
    assert!(
        resumed.status == 200 && resumed.query.contains(&format!("lastEventId={for_bob}")),
        "{resumed:?}"
    );
    assert_eq!(clients.steady.reconnect_attempts, 0);
    client_call(&browser, "main", "connect").await;
    wait_clients(&browser, "the main client to reconnect and reset", |c| {
        c.main.state == "connected" && c.main.resets() == 1
    })
    .await;
    let after_alice = id_of(&publish(&http, &demo, &notification("alice", "after the restart")).await);
    let after_bob = id_of(&publish(&http, &demo, &notification("bob", "after the restart")).await);
    let clients = wait_clients(&browser, "events from the new server", |c| {
        c.main.count(&after_alice) == 1 && c.steady.count(&after_bob) == 1
    })
    .await;
    for (client, after) in [(&clients.main, &after_alice), (&clients.steady, &after_bob)] {
        let reset = client
            .log
            .iter()
            .position(|e| e.kind == "reset")
            .expect("the reset is logged");
        assert!(
            reset < client.position(after),
            "the reset comes first: {:#?}",
            client.log
        );
        assert_eq!(client.resets(), 1, "one reset");
    }

    browser.close().await.expect("end the browser session");
}

async fn react_scenario(harness: &mut Harness, chromium: &Path, chromedriver: &Path, bundle: Vec<u8>) {
    let http = http_client();
    let addr = harness
        .start_server("127.0.0.1:0")
        .await
        .expect("the demo server starts");
    let demo = format!("http://{addr}");
    let front = Front::start(addr, Some(bundle)).await;
    let driver = harness
        .start_chromedriver(chromedriver, &http)
        .await
        .expect("chromedriver starts");
    let profile = harness.dir.path().join("profile");
    let browser = open_browser(&driver, chromium, &profile).await;
    browser
        .goto(&format!("{}/react-page.html?userId=carol", front.base))
        .await
        .expect("open the React page");

    // a. The component mounts (twice, under StrictMode in development) and
    // ends with one connection.
    wait_react(&browser, "the component to connect", |p| p.status == "connected").await;
    let carol = wait_until("one connection for carol", || async {
        let ids = connections_of(&http, &demo, "carol").await;
        (ids.len() == 1).then_some(ids)
    })
    .await;
    let first_client = carol[0].clone();

    // b. Live events are rendered as they come; another user's are not.
    let mut expected = Vec::new();
    for text in ["first", "second"] {
        expected.push(id_of(&publish(&http, &demo, &notification("carol", text)).await));
    }
    let not_mine = id_of(&publish(&http, &demo, &notification("dave", "for dave")).await);
    let page = wait_react(&browser, "the events to render", |p| {
        expected.iter().all(|id| p.count(id) == 1)
    })
    .await;
    assert_eq!(page.count(&not_mine), 0);
    assert_eq!(page.last, "second", "lastEvent is the newest");
    assert!(page.events.iter().any(|e| e.kind == "connected"));

    // c. A server-side disconnect: the hook shows the reconnection and the
    // events missed meanwhile.
    let response = http
        .delete(format!("{demo}/api/sse/connections/{first_client}"))
        .send()
        .await
        .expect("disconnect request");
    assert_eq!(response.status(), 204);
    let missed = id_of(&publish(&http, &demo, &notification("carol", "while reconnecting")).await);
    let page = wait_react(&browser, "the missed event", |p| {
        p.status == "connected" && p.count(&missed) == 1
    })
    .await;
    assert!(expected.iter().all(|id| page.count(id) == 1), "no duplicate: {page:#?}");
    assert_eq!(page.resets, 0);

    // d. Unmounting closes the connection: the server sees it go.
    click(&browser, "toggle").await;
    wait_react(&browser, "the component to unmount", |p| p.unmounted).await;
    wait_until("carol's connection to close", || async {
        connections_of(&http, &demo, "carol").await.is_empty().then_some(())
    })
    .await;

    // e. Mounting again: a new connection and an empty history.
    click(&browser, "toggle").await;
    let page = wait_react(&browser, "the component to connect again", |p| p.status == "connected").await;
    assert!(
        page.events.iter().all(|e| e.kind == "connected"),
        "a new component starts with an empty history: {page:#?}"
    );
    let again = id_of(&publish(&http, &demo, &notification("carol", "again")).await);
    wait_react(&browser, "an event after mounting again", |p| p.count(&again) == 1).await;
    wait_until("one connection for carol", || async {
        (connections_of(&http, &demo, "carol").await.len() == 1).then_some(())
    })
    .await;

    browser.close().await.expect("end the browser session");
}

// ---- the reverse proxy and static pages ----------------------------------

/// A stream request (`GET /api/sse`) seen by the proxy.
#[derive(Debug, Clone)]
struct StreamRequest {
    at: Instant,
    query: String,
    last_event_id: Option<String>,
    status: u16,
}

/// The test pages, and `/api/sse` forwarded to the demo.
struct Front {
    base: String,
    upstream: String,
    http: reqwest::Client,
    react_app: Option<Vec<u8>>,
    requests: Mutex<Vec<StreamRequest>>,
}

impl Front {
    async fn start(upstream: SocketAddr, react_app: Option<Vec<u8>>) -> Arc<Front> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let front = Arc::new(Front {
            base: format!("http://{addr}"),
            upstream: format!("http://{upstream}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(2))
                // A pooled connection to a killed server would fail the
                // next request.
                .pool_max_idle_per_host(0)
                .build()
                .expect("the proxy's HTTP client"),
            react_app,
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route(
                "/client-page.html",
                get(|| async { page("text/html; charset=utf-8", CLIENT_PAGE) }),
            )
            .route(
                "/react-page.html",
                get(|| async { page("text/html; charset=utf-8", REACT_PAGE) }),
            )
            .route("/react-app.js", get(react_app_js))
            .route("/api/sse", any(forward))
            .route("/api/sse/{*rest}", any(forward))
            .with_state(Arc::clone(&front));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        front
    }

    /// The stream requests whose query holds `tag={tag}`, in order.
    fn stream_requests(&self, tag: &str) -> Vec<StreamRequest> {
        let needle = format!("tag={tag}");
        self.requests
            .lock()
            .expect("the request log")
            .iter()
            .filter(|r| r.query.split('&').any(|pair| pair == needle))
            .cloned()
            .collect()
    }
}

fn page(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn react_app_js(State(front): State<Arc<Front>>) -> Response {
    match &front.react_app {
        Some(bundle) => page("text/javascript; charset=utf-8", bundle.clone()),
        None => {
            let mut response = page("text/plain", "no React bundle in this test");
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

/// Forwards a request to the demo, streaming the answer back; `502` when the
/// demo cannot be reached.
async fn forward(State(front): State<Arc<Front>>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = front
        .http
        .request(parts.method.clone(), format!("{}{path_and_query}", front.upstream));
    for name in [
        header::CONTENT_TYPE,
        header::AUTHORIZATION,
        header::ACCEPT,
        header::COOKIE,
        header::HeaderName::from_static("last-event-id"),
    ] {
        if let Some(value) = parts.headers.get(&name) {
            upstream = upstream.header(name, value);
        }
    }
    let result = upstream.body(body).send().await;
    let response = match result {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !matches!(name.as_str(), "connection" | "transfer-encoding" | "keep-alive") {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .expect("a response")
        }
        Err(error) => {
            let mut response = page("application/json", json!({ "error": error.to_string() }).to_string());
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    };
    if parts.method == axum::http::Method::GET && parts.uri.path() == "/api/sse" {
        front.requests.lock().expect("the request log").push(StreamRequest {
            at,
            query: parts.uri.query().unwrap_or_default().to_owned(),
            last_event_id: parts
                .headers
                .get("last-event-id")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            status: response.status().as_u16(),
        });
    }
    response
}

// ---- the client page -------------------------------------------------------

/// What the client page reports about its two clients.
#[derive(Debug, Deserialize)]
struct Clients {
    main: ClientState,
    steady: ClientState,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientState {
    state: String,
    last_event_id: String,
    reconnect_attempts: u64,
    last_error: Option<String>,
    url: Option<String>,
    log: Vec<LogEntry>,
}

/// One callback call, as the page recorded it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEntry {
    kind: String,
    #[serde(rename = "type")]
    event_type: Option<String>,
    id: Option<String>,
    data: Option<String>,
    error_kind: Option<String>,
    attempt: Option<u64>,
    reason: Option<String>,
}

impl ClientState {
    fn is_event(entry: &LogEntry, id: &str) -> bool {
        entry.kind == "event" && entry.id.as_deref() == Some(id) && entry.event_type.as_deref() != Some("connected")
    }

    fn count(&self, id: &str) -> usize {
        self.log.iter().filter(|e| Self::is_event(e, id)).count()
    }

    fn event(&self, id: &str) -> &LogEntry {
        self.log
            .iter()
            .find(|e| Self::is_event(e, id))
            .expect("the event is logged")
    }

    fn position(&self, id: &str) -> usize {
        self.log
            .iter()
            .position(|e| Self::is_event(e, id))
            .expect("the event is logged")
    }

    fn has(&self, event_type: &str) -> bool {
        self.log
            .iter()
            .any(|e| e.kind == "event" && e.event_type.as_deref() == Some(event_type))
    }

    fn opens(&self) -> usize {
        self.log.iter().filter(|e| e.kind == "open").count()
    }

    fn resets(&self) -> usize {
        self.log.iter().filter(|e| e.kind == "reset").count()
    }

    /// The clientId of the last `connected` event.
    fn client_id(&self) -> String {
        let data = self
            .log
            .iter()
            .rev()
            .find(|e| e.event_type.as_deref() == Some("connected"))
            .and_then(|e| e.data.clone())
            .expect("a connected event");
        let info: Value = serde_json::from_str(&data).expect("connected data is JSON");
        info["clientId"].as_str().expect("a clientId").to_owned()
    }
}

async fn start_client(browser: &Client, name: &str, options: Value) {
    browser
        .execute(
            "window.startClient(arguments[0], arguments[1]);",
            vec![json!(name), options],
        )
        .await
        .expect("start a client");
}

async fn client_call(browser: &Client, name: &str, method: &str) {
    browser
        .execute(
            "window.clientCall(arguments[0], arguments[1]);",
            vec![json!(name), json!(method)],
        )
        .await
        .expect("call the client");
}

async fn read_clients(browser: &Client) -> Clients {
    let value = browser
        .execute("return window.readClients();", Vec::new())
        .await
        .expect("read the clients");
    serde_json::from_value(value).expect("the clients' state")
}

async fn wait_clients(browser: &Client, what: &str, ready: impl Fn(&Clients) -> bool) -> Clients {
    poll(browser, "return window.readClients();", what, ready).await
}

// ---- the React page --------------------------------------------------------

/// What the React page shows.
#[derive(Debug, Deserialize)]
struct ReactPage {
    status: String,
    last: String,
    unmounted: bool,
    resets: u64,
    events: Vec<Rendered>,
}

/// One rendered event.
#[derive(Debug, Deserialize)]
struct Rendered {
    kind: String,
    id: String,
}

impl ReactPage {
    fn count(&self, id: &str) -> usize {
        self.events
            .iter()
            .filter(|e| e.id == id && e.kind != "connected")
            .count()
    }
}

const READ_REACT_PAGE: &str = r##"
const text = (id) => { const el = document.getElementById(id); return el ? el.textContent : ""; };
return {
  status: text("status"),
  last: text("last"),
  unmounted: document.getElementById("unmounted") !== null,
  resets: window.resets || 0,
  events: Array.from(document.querySelectorAll("#events > li")).map((li) => ({
    kind: li.dataset.type,
    id: li.dataset.id,
  })),
};
"##;

async fn wait_react(browser: &Client, what: &str, ready: impl Fn(&ReactPage) -> bool) -> ReactPage {
    poll(browser, READ_REACT_PAGE, what, ready).await
}

async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
}

// ---- helpers ---------------------------------------------------------------

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
        .expect("HTTP client")
}

fn notification(user: &str, text: &str) -> Value {
    json!({"event": "notification", "data": text, "target": "user", "targetId": user})
}

fn id_of(answer: &Value) -> String {
    answer["id"].as_str().expect("the publish answer has an id").to_owned()
}

/// The clientIds of `user`'s connections.
async fn connections_of(http: &reqwest::Client, demo: &str, user: &str) -> Vec<String> {
    let list: Vec<Value> = http
        .get(format!("{demo}/api/sse/connections"))
        .send()
        .await
        .expect("GET /api/sse/connections")
        .text()
        .await
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        .expect("the connections as JSON");
    list.iter()
        .filter(|c| c["userId"] == user)
        .map(|c| c["clientId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Runs `script` until what it returns satisfies `ready`, failing after
/// [`TIMEOUT`] with the last answer.
async fn poll<T: DeserializeOwned + Debug>(
    browser: &Client,
    script: &str,
    what: &str,
    ready: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let value = browser
            .execute(script, Vec::new())
            .await
            .expect("run a script in the page");
        let answer: Result<T, _> = serde_json::from_value(value.clone());
        match answer {
            Ok(answer) if ready(&answer) => return answer,
            Ok(answer) => assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what}; the page shows {answer:#?}"
            ),
            Err(error) => assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what}; the page answers {value} ({error})"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Calls `check` until it returns `Some`, failing after [`TIMEOUT`].
async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
