//! CORS with `SSE_CORS_ORIGINS` (`docs/http-api.md`, "CORS"): listed origins
//! with credentials, everyone else as without CORS, and no CORS header at all
//! when unset.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sse_examples::ServeFn;
use sse_tests::TestServer;

const ORIGIN: &str = "http://app.test";
const OTHER_ORIGIN: &str = "https://admin.test:8443";

/// The comma-separated values of header `name`, trimmed and lowercased.
fn header_list(response: &reqwest::Response, name: &str) -> BTreeSet<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().expect("text").split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().expect("text"))
}

async fn preflight(server: &TestServer, path: &str, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    server
        .client()
        .request(Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("the preflight is answered")
}

/// Checks that `response` lets `origin` read it, with credentials.
fn assert_allows(response: &reqwest::Response, origin: &str, what: &str) {
    assert_eq!(
        header(response, "access-control-allow-origin"),
        Some(origin),
        "{what}: allow-origin is exactly the origin"
    );
    assert_eq!(
        header(response, "access-control-allow-credentials"),
        Some("true"),
        "{what}: with credentials"
    );
}

pub(crate) async fn cors_listed_origins_with_credentials(serve: ServeFn) {
    let origins = format!("{ORIGIN},{OTHER_ORIGIN}");
    let server = TestServer::start(serve, &[("SSE_CORS_ORIGINS", &origins)]).await;
    for (path, method, headers, origin) in [
        (
            "/api/sse/publish",
            "POST",
            "authorization, content-type, idempotency-key",
            ORIGIN,
        ),
        ("/api/sse", "GET", "last-event-id", OTHER_ORIGIN),
        ("/api/sse/connections/someone", "DELETE", "authorization", ORIGIN),
    ] {
        let response = preflight(&server, path, origin, method, headers).await;
        let what = format!("the preflight of {method} {path} from {origin}");
        assert!(response.status().is_success(), "{what} answered {}", response.status());
        assert_allows(&response, origin, &what);
        let methods = header_list(&response, "access-control-allow-methods");
        for method in ["get", "post", "delete", "options"] {
            assert!(methods.contains(method), "{what}: {method} is allowed: {methods:?}");
        }
        let allowed = header_list(&response, "access-control-allow-headers");
        for name in ["authorization", "content-type", "last-event-id", "idempotency-key"] {
            assert!(allowed.contains(name), "{what}: {name} is allowed: {allowed:?}");
        }
        assert!(!allowed.contains("*") && !methods.contains("*"), "{what}: no wildcard");
    }

    // Other origins, look-alikes included, are never allowed: whatever the
    // status of the preflight (frameworks differ), it carries no
    // allow-origin, so the browser sends nothing.
    for origin in [
        "http://evil.test",
        "null",
        "http://app.test.evil.test",
        "http://app.test:80",
        "https://app.test",
        "HTTP://APP.TEST",
    ] {
        let response = preflight(&server, "/api/sse/publish", origin, "POST", "content-type").await;
        let status = response.status();
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            None,
            "the preflight from {origin} ({status}) allows no origin"
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            None,
            "the preflight from {origin} ({status}) allows no credentials"
        );
    }

    // The stream, from a listed origin.
    let mut alice = server.subscribe_with("userId=alice", &[("origin", ORIGIN)]).await;
    let response = server
        .client()
        .get(server.url("/api/sse?userId=bob"))
        .header("origin", OTHER_ORIGIN)
        .send()
        .await
        .expect("the stream is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_allows(&response, OTHER_ORIGIN, "the stream");
    drop(response);

    // Publishing and administration, from a listed origin.
    let response = server
        .api(Method::POST, "/api/sse/publish")
        .header("origin", ORIGIN)
        .json(&json!({"event": "hello", "target": "user", "targetId": "alice", "data": 1}))
        .send()
        .await
        .expect("the publish is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_allows(&response, ORIGIN, "the publish");
    alice.stream.expect_event("hello").await;
    let response = server
        .api(Method::GET, "/api/sse/stats")
        .header("origin", OTHER_ORIGIN)
        .send()
        .await
        .expect("the stats are answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_allows(&response, OTHER_ORIGIN, "the stats");

    // A request from an unlisted origin is answered as without CORS (as a
    // same-origin POST of the demo page, which carries its Origin, must be),
    // with nothing that lets a browser on that origin read it.
    let response = server
        .api(Method::POST, "/api/sse/publish")
        .header("origin", "http://evil.test")
        .json(&json!({"event": "same-origin", "target": "user", "targetId": "alice", "data": 1}))
        .send()
        .await
        .expect("the publish is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
    alice.stream.expect_event("same-origin").await;
}

pub(crate) async fn cors_unset_sends_no_cors_headers(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let cors_headers = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .keys()
            .map(|name| name.as_str().to_owned())
            .filter(|name| name.starts_with("access-control-"))
            .collect()
    };
    for origin in [ORIGIN, "http://evil.test", "null"] {
        let response = preflight(&server, "/api/sse/publish", origin, "POST", "content-type").await;
        assert_eq!(
            cors_headers(&response),
            Vec::<String>::new(),
            "the preflight from {origin}"
        );
        let response = server
            .client()
            .get(server.url("/api/sse/stats"))
            .header("origin", origin)
            .send()
            .await
            .expect("the stats are answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "the stats for {origin}");
        let response = server.connect_with("userId=alice", &[("origin", origin)]).await;
        response.assert_event_stream();
        let stream: Vec<&str> = response
            .headers()
            .keys()
            .map(reqwest::header::HeaderName::as_str)
            .filter(|name| name.starts_with("access-control-"))
            .collect();
        assert!(stream.is_empty(), "the stream for {origin}: {stream:?}");
    }
}
