//! What only the demos serve (`docs/http-api.md`, "Running a demo" and "The
//! demo page"): graceful shutdown of open streams, and the demo page.

use std::time::Instant;

use reqwest::StatusCode;
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
