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

/// `docs/http-api.md`, "Errors": a path the API does not have is a `404`; a
/// path it has, with another method, a `405` whose `Allow` header names the
/// methods that path accepts, as the table there lists them.
pub(crate) async fn unknown_paths_and_wrong_methods(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let wrong_methods: [(Method, &str, &str); 10] = [
        (Method::POST, "/api/sse", "GET"),
        (Method::HEAD, "/api/sse", "GET"),
        (Method::POST, "/api/sse/client.js", "GET, HEAD"),
        (Method::GET, "/api/sse/publish", "POST"),
        (Method::GET, "/api/sse/subscribe", "POST"),
        (Method::PUT, "/api/sse/unsubscribe", "POST"),
        (Method::POST, "/api/sse/stats", "GET"),
        (Method::DELETE, "/api/sse/connections", "GET"),
        (Method::GET, "/api/sse/connections/some-client", "DELETE"),
        (Method::DELETE, "/sse-demo", "GET, HEAD"),
    ];
    for (method, path, allow) in wrong_methods {
        let request = format!("{method} {path}");
        let response = server
            .api(method.clone(), path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: {e}"));
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{request}");
        let allowed = response.headers().get("allow").map(|value| value.as_bytes().to_vec());
        assert_eq!(
            allowed.as_deref(),
            Some(allow.as_bytes()),
            "{request}: the Allow header"
        );
        if method != Method::HEAD {
            let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{request}: {e}"));
            assert_eq!(body, json!({"error": "method not allowed"}), "{request}");
        }
    }
    for (method, path) in [
        (Method::GET, "/api/sse/"),
        (Method::GET, "/api/sse/nothing"),
        (Method::POST, "/api/sse/publish/more"),
        (Method::GET, "/elsewhere"),
    ] {
        let request = format!("{method} {path}");
        let response = server
            .api(method, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: {e}"));
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{request}");
        assert!(
            response.headers().get("allow").is_none(),
            "{request}: a 404 names no methods"
        );
        let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{request}: {e}"));
        assert_eq!(body, json!({"error": "no such endpoint"}), "{request}");
    }
}
