//! Publishing errors (`docs/http-api.md`, "Publishing", "Errors", and the
//! body limit): bad input is a `400` or `413` JSON error, and nothing is sent.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sse_examples::ServeFn;
use sse_tests::TestServer;

use crate::common::assert_error;

pub(crate) async fn publish_rejects_bad_input(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("userId=alice&sessionId=s1&channel=red").await;
    let cases = [
        (json!({"target": "planet", "data": 1}), "target"),
        (json!({"target": "user", "data": 1}), "targetId"),
        (json!({"target": "session", "data": 1}), "targetId"),
        (json!({"target": "client", "data": 1}), "targetId"),
        (json!({"target": "channel", "data": 1}), "targetId"),
        (json!({"target": "users", "data": 1}), "targetIds"),
        (json!({"event": "a\nb", "data": 1}), "event"),
        (json!({"event": "a\rb", "data": 1}), "event"),
        (json!({"event": "a\r\nb", "data": 1}), "event"),
        (json!({"id": "a\nb", "data": 1}), "id"),
        (json!({"id": "a\rb", "data": 1}), "id"),
    ];
    for (body, about) in &cases {
        let (status, answer) = server.publish(body).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, about, &body.to_string());
    }
    for raw in [r#"{"event": "x","#, "not json", "", r#"{"data": 1} trailing"#] {
        let request = server
            .api(Method::POST, "/api/sse/publish")
            .header("content-type", "application/json")
            .body(raw);
        let (status, answer) = TestServer::send(request).await;
        assert_error(
            status,
            &answer,
            StatusCode::BAD_REQUEST,
            "json",
            &format!("the body {raw:?}"),
        );
    }
    for raw in ["[1, 2]", r#"{"target": 5}"#] {
        let request = server
            .api(Method::POST, "/api/sse/publish")
            .header("content-type", "application/json")
            .body(raw);
        let (status, answer) = TestServer::send(request).await;
        assert!(status.is_client_error(), "the body {raw:?} answered {status} {answer}");
        assert!(
            answer["error"].is_string(),
            "the body {raw:?}: a JSON error, not {answer}"
        );
    }
    // Nothing was sent: the next event is the first valid one.
    server.publish_ok(&json!({"event": "ok", "data": 1})).await;
    let event = s.stream.next_event().await;
    assert_eq!(event.event, "ok", "nothing was sent on bad input");
}

pub(crate) async fn publish_rejects_oversized_body(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("").await;
    let oversized = json!({"event": "big", "data": "x".repeat(1 << 20)});
    let (status, answer) = server.publish(&oversized).await;
    assert_error(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "", "a body over 1 MiB");
    // Just under the limit is fine.
    let fits = json!({"event": "fits", "data": "y".repeat((1 << 20) - 64)});
    assert_eq!(server.publish_ok(&fits).await.delivered, 1);
    let event = s.stream.next_event().await;
    assert_eq!(event.event, "fits", "the oversized event was not sent");
}
