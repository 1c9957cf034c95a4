//! The server limits (`docs/http-api.md`, "Server limits"; `docs/deployment.md`)
//! against clients that hold connections without using them, checked over
//! raw TCP on loopback against every framework's demo: a request head or
//! body that never finishes, an idle keep-alive connection, a client that
//! stops reading, thousands of half-open sockets, the open socket cap, a
//! stream's place freed as soon as its client leaves, and a flood of
//! publishes held to the publisher's rate limit (`SSE_PUBLISH_RATE`).
//!
//! Timeouts are set short (a few hundred milliseconds) through the settings;
//! every wait is bounded by [`WAIT`], and the measured figures are printed.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sse_examples::ServeFn;
use sse_tests::{TestServer, WAIT};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// Generates, for one framework, a module with one test per case.
macro_rules! attack_tests {
    ($framework:ident, $serve:path) => {
        mod $framework {
            attack_tests!(@cases $serve;
                stalled_request_head_is_closed,
                stalled_request_body_is_closed,
                idle_keep_alive_is_closed,
                busy_keep_alive_outlives_the_head_timeout,
                slow_reader_socket_is_closed,
                normal_client_served_beside_half_open_sockets,
                sockets_beyond_the_cap_are_closed,
                stream_place_is_freed_when_the_client_leaves,
                publish_flood_is_rate_limited,
            );
        }
    };
    (@cases $serve:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                crate::$case($serve).await;
            }
        )*
    };
}

attack_tests!(axum, sse_examples::axum_demo::serve);
attack_tests!(warp, sse_examples::warp_demo::serve);
attack_tests!(poem, sse_examples::poem_demo::serve);

/// `127.0.0.1:PORT` of a server.
fn addr(server: &TestServer) -> String {
    server.base_url().trim_start_matches("http://").to_owned()
}

/// A new TCP connection to the server.
async fn open(server: &TestServer) -> TcpStream {
    TcpStream::connect(addr(server)).await.expect("connect to the server")
}

/// Reads until the server closes the connection (end of file, or a reset);
/// returns what was read and how long the wait took.
///
/// # Panics
/// If the connection is still open after [`WAIT`].
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0_u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    if tokio::time::timeout(WAIT, read).await.is_err() {
        panic!("{what}: the server did not close the connection within {WAIT:?}");
    }
    (received, started.elapsed())
}

async fn stalled_request_head_is_closed(serve: ServeFn) {
    let server = TestServer::start(
        serve,
        &[("SSE_HEADER_TIMEOUT_MS", "300"), ("SSE_KEEP_ALIVE_TIMEOUT_MS", "60000")],
    )
    .await;
    // Nothing at all, and a head that stops half-way.
    let mut silent = open(&server).await;
    let mut partial = open(&server).await;
    partial
        .write_all(b"GET /api/sse/stats HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("send half a head");
    let (_, silent_took) = read_until_closed(&mut silent, "a connection that sends nothing").await;
    let (_, partial_took) = read_until_closed(&mut partial, "a half-sent request head").await;
    println!(
        "header timeout 300 ms: silent connection closed after {silent_took:?}, half a head after {partial_took:?}"
    );
    assert_eq!(server.stats().await["connections"], 0);
}

async fn stalled_request_body_is_closed(serve: ServeFn) {
    let server = TestServer::start(
        serve,
        &[("SSE_BODY_TIMEOUT_MS", "300"), ("SSE_KEEP_ALIVE_TIMEOUT_MS", "60000")],
    )
    .await;
    let mut stream = open(&server).await;
    stream
        .write_all(
            b"POST /api/sse/publish HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"event\":",
        )
        .await
        .expect("send the head and part of the body");
    let (answer, took) = read_until_closed(&mut stream, "a request body that stops").await;
    let answer = String::from_utf8_lossy(&answer);
    println!(
        "body timeout 300 ms: closed after {took:?}, answered {:?}",
        answer.lines().next()
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "a stalled body is answered 400 or not at all: {answer}"
    );
}

async fn idle_keep_alive_is_closed(serve: ServeFn) {
    let server = TestServer::start(
        serve,
        &[("SSE_KEEP_ALIVE_TIMEOUT_MS", "300"), ("SSE_HEADER_TIMEOUT_MS", "60000")],
    )
    .await;
    let mut stream = open(&server).await;
    stream
        .write_all(b"GET /api/sse/stats HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send a request");
    let (answer, took) = read_until_closed(&mut stream, "an idle keep-alive connection").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "the request is answered: {answer}");
    println!("keep-alive timeout 300 ms: closed {took:?} after the request was sent");
}

/// A kept-alive connection busy with one request after another for many
/// times the head timeout is never cut: the head timeout bounds each wait
/// for a head, not the connection's life.
async fn busy_keep_alive_outlives_the_head_timeout(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_HEADER_TIMEOUT_MS", "200")]).await;
    let mut stream = open(&server).await;
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        stream
            .write_all(b"GET /api/sse/stats HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("the connection is still open");
        let mut answer = Vec::new();
        let mut buffer = [0_u8; 4096];
        // The stats answer is small JSON: read up to its closing brace.
        while !answer.ends_with(b"}") {
            let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
                .await
                .expect("an answer in time")
                .expect("the connection is still open");
            assert!(read > 0, "closed after {answered} answers, {:?} in", started.elapsed());
            answer.extend_from_slice(&buffer[..read]);
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "head timeout 200 ms: {answered} requests over one connection in {:?}",
        started.elapsed()
    );
}

async fn slow_reader_socket_is_closed(serve: ServeFn) {
    // A queue the publishes below cannot overflow: the engine never closes
    // the stream itself, and only the write timeout can end it (a stream is
    // a request in progress, which the idle timeouts leave alone).
    let server = TestServer::start(
        serve,
        &[
            ("SSE_CLIENT_QUEUE", "10000"),
            ("SSE_CLIENT_QUEUE_BYTES", "67108864"),
            ("SSE_WRITE_TIMEOUT_MS", "500"),
            ("SSE_HEADER_TIMEOUT_MS", "60000"),
            ("SSE_KEEP_ALIVE_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut slow = socket
        .connect(addr(&server).parse().expect("a socket address"))
        .await
        .expect("connect");
    slow.write_all(b"GET /api/sse?userId=slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("open a stream");
    server.wait_for_connections(1).await;
    // The client reads nothing. 16 MiB is far more than the kernel's buffers
    // of the two ends hold, so the server's write stops making progress.
    let body = json!({"event": "big", "target": "user", "targetId": "slow", "data": "x".repeat(64 * 1024)});
    let published = Instant::now();
    for _ in 0..256 {
        if server.publish_ok(&body).await.delivered == 0 {
            break;
        }
    }
    server.wait_for_connections(0).await;
    let stats = server.stats().await;
    assert_eq!(
        stats["slowClosed"], 0,
        "the write timeout closed it, not the engine: {stats}"
    );
    let (received, _) = read_until_closed(&mut slow, "a reader that stopped reading").await;
    println!(
        "write timeout 500 ms: the stalled reader's stream ended {:?} after the first publish ({} bytes had been delivered)",
        published.elapsed(),
        received.len()
    );
}

/// How many half-open sockets this process can hold beside the server's
/// ends of them: 2,000, or fewer when the descriptor limit is lower.
fn half_open_count() -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3)?.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    // Both ends live in this process, the other frameworks' cases run at the
    // same time, and the harness needs a few hundred of its own.
    let count = (limit.saturating_sub(600) / 6).min(2000);
    if count < 2000 {
        println!("the descriptor limit is {limit}: holding {count} half-open sockets instead of 2,000");
    }
    count
}

async fn normal_client_served_beside_half_open_sockets(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_HEADER_TIMEOUT_MS", "60000")]).await;
    let count = half_open_count();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = open(&server).await;
        stream
            .write_all(b"GET /api/sse HTTP/1.1\r\nHost: te")
            .await
            .expect("send part of a head");
        held.push(stream);
    }
    let started = Instant::now();
    let mut subscriber = server.subscribe("userId=normal").await;
    server.publish_ok(&json!({"event": "hello", "data": 1})).await;
    subscriber.stream.expect_event("hello").await;
    println!(
        "{count} half-open sockets held: a normal client subscribed and got an event in {:?}",
        started.elapsed()
    );
    drop(held);
}

async fn sockets_beyond_the_cap_are_closed(serve: ServeFn) {
    const CAP: usize = 20;
    let server = TestServer::start(serve, &[("SSE_MAX_SOCKETS", "20"), ("SSE_HEADER_TIMEOUT_MS", "60000")]).await;
    // The harness's client may hold a pooled connection of its own, so the
    // cap is reached by at most CAP of these; the last ones are beyond it.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut stream = open(&server).await;
        stream.write_all(b"GET / HTTP/1.1\r\n").await.expect("part of a head");
        held.push(stream);
    }
    let mut beyond = Vec::new();
    for _ in 0..5 {
        beyond.push(open(&server).await);
    }
    for (i, stream) in beyond.iter_mut().enumerate() {
        let (received, took) = read_until_closed(stream, "a connection beyond the socket cap").await;
        assert!(received.is_empty(), "closed without an answer: {received:?}");
        println!("connection {} beyond the cap of {CAP}: closed after {took:?}", i + 1);
    }
    // Once the held sockets go, a normal client is served again.
    drop(held);
    let deadline = Instant::now() + WAIT;
    loop {
        if server.client().get(server.url("/sse-demo")).send().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a normal client is served once the held sockets close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stream_place_is_freed_when_the_client_leaves(serve: ServeFn) {
    // The default heartbeat (30 s) is longer than any wait here: the place
    // must be freed when the socket closes, not at the next write.
    let server = TestServer::start(serve, &[("SSE_MAX_CONNECTIONS", "2")]).await;
    let first = server.subscribe("userId=a").await;
    let second = server.subscribe("userId=b").await;
    server.wait_for_connections(2).await;
    drop((first, second));
    let left = Instant::now();
    server.wait_for_connections(0).await;
    let took = left.elapsed();
    let mut third = server.subscribe("userId=c").await;
    let _fourth = server.subscribe("userId=d").await;
    server.publish_ok(&json!({"event": "hello", "data": 1})).await;
    third.stream.expect_event("hello").await;
    println!("two clients left: their places were free after {took:?}");
}

/// 2,000 publishes from one publisher, eight at a time over kept-alive
/// connections, each with a bearer token of its own making (which, without
/// `SSE_PUBLISH_TOKEN`, proves nothing, so the publisher is its address):
/// it gets no more than its allowance, every other publish is a `429` with
/// `Retry-After`, the limiter holds one key, and the server keeps serving.
async fn publish_flood_is_rate_limited(serve: ServeFn) {
    const FLOOD: usize = 2000;
    const WORKERS: usize = 8;
    const RATE: u64 = 20;
    let server = TestServer::start(serve, &[("SSE_PUBLISH_RATE", "20")]).await;
    let mut watcher = server.subscribe("userId=watcher").await;
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let client = server.client().clone();
            let url = server.url("/api/sse/publish");
            tokio::spawn(async move {
                let (mut accepted, mut limited) = (0_u64, 0_u64);
                for n in (worker..FLOOD).step_by(WORKERS) {
                    let response = client
                        .post(&url)
                        .bearer_auth(format!("made-up-{n}"))
                        .json(&json!({"event": "flood", "data": n}))
                        .send()
                        .await
                        .expect("every publish is answered");
                    match response.status() {
                        StatusCode::OK => accepted += 1,
                        StatusCode::TOO_MANY_REQUESTS => {
                            let retry_after = response.headers().get("retry-after").expect("a Retry-After header");
                            assert_eq!(retry_after, "1", "one event comes back every 50 ms");
                            limited += 1;
                        }
                        other => panic!("publish {n} answered {other}"),
                    }
                }
                (accepted, limited)
            })
        })
        .collect();
    let (mut accepted, mut limited) = (0, 0);
    for worker in workers {
        let (a, l) = tokio::time::timeout(6 * WAIT, worker)
            .await
            .expect("the flood is answered within the wait")
            .expect("the worker finished");
        accepted += a;
        limited += l;
    }
    let took = started.elapsed();
    assert_eq!(accepted + limited, FLOOD as u64);
    // The burst, and one event every 1/RATE s while the flood lasted.
    let allowance = RATE + (took.as_secs_f64() * RATE as f64).ceil() as u64;
    assert!(
        accepted <= allowance,
        "{accepted} publishes accepted in {took:?}: at most {allowance}"
    );
    assert!(limited > 0, "the flood is limited");
    assert_eq!(
        server.manager().rate_limit_keys(),
        1,
        "one publisher is one key, whatever tokens it makes up"
    );
    assert_eq!(server.stats().await["eventsPublished"], accepted);
    println!(
        "publish flood: {FLOOD} publishes in {took:?}, {accepted} accepted (allowance {allowance}), {limited} answered 429; \
         the limiter holds {} key",
        server.manager().rate_limit_keys()
    );

    // The server is healthy: its probe answers, and once the allowance
    // comes back the publisher reaches the subscriber, after every flood
    // event that was accepted.
    let (status, _) = TestServer::send(server.client().get(server.url("/healthz"))).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = server.publish(&json!({"event": "after", "data": 1})).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(Instant::now() < deadline, "still limited after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut floods = 0;
    loop {
        let event = watcher.stream.next_event().await;
        if event.event == "after" {
            break;
        }
        assert_eq!(event.event, "flood");
        floods += 1;
    }
    assert_eq!(floods, accepted, "the subscriber got every accepted publish");
}
