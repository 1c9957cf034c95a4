//! What only the demos serve (`docs/http-api.md`, "Running a demo", "Health
//! and readiness" and "The demo page"): graceful shutdown of open streams,
//! the probes and their flip while draining, and the demo page.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sse_examples::ServeFn;
use sse_tests::{End, TestServer, WAIT};

pub(crate) async fn shutdown_closes_open_streams(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut streams = Vec::new();
    for query in ["userId=alice", "userId=alice&channel=red", "userId=bob", ""] {
        streams.push(server.subscribe(query).await);
    }
    let started = Instant::now();
    let result = server.stop().await;
    let took = started.elapsed();
    assert!(result.is_ok(), "the server stopped cleanly: {result:?}");
    assert!(took < WAIT, "stopped in {took:?}");
    for mut s in streams {
        let (_, end) = s.stream.events_until_end().await;
        assert_eq!(end, End::Clean, "an open stream ends at shutdown: {:?}", s.stream);
    }
}

pub(crate) async fn demo_page(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let response = server
        .client()
        .get(server.url("/sse-demo"))
        .send()
        .await
        .expect("the demo page is answered");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "content-type {content_type:?}");
    let page = response.text().await.expect("the page is text");
    assert!(page.contains("EventSource"), "the page connects with EventSource");
}

pub(crate) async fn probes_and_readiness_flip_while_draining(serve: ServeFn) {
    let mut server = TestServer::start(serve, &[("SSE_DRAIN_MS", "1500")]).await;
    let probe = |path: &'static str| TestServer::send(server.client().get(server.url(path)));
    assert_eq!(probe("/healthz").await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(probe("/readyz").await, (StatusCode::OK, json!({"status": "ready"})));
    let (status, _) = TestServer::send(server.client().post(server.url("/readyz"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let mut open = server.subscribe("userId=alice").await;

    // A shutdown signal: not ready at once, while the stream stays open and
    // publishing still works, until the drain is over.
    server.begin_stop();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = TestServer::send(server.client().get(server.url("/readyz"))).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body, json!({"status": "not-ready", "reason": "draining"}));
            break;
        }
        assert!(Instant::now() < deadline, "readiness never turned: {status} {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        TestServer::send(server.client().get(server.url("/healthz"))).await.0,
        StatusCode::OK,
        "alive while draining"
    );
    let (status, _) = TestServer::send(
        server
            .api(Method::POST, "/api/sse/publish")
            .json(&json!({"event": "still", "data": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "publishing goes on while draining");
    open.stream.expect_event("still").await;
    let (events, end) = open.stream.events_until_end().await;
    assert_eq!(end, End::Clean);
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("system"), "{events:?}");
    assert!(server.stop().await.is_ok());
}
