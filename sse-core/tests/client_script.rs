//! The browser client served at `client.js`: the copy in `assets/` is the
//! repository's `clients/js/sse-client.js`, byte for byte, and the endpoint
//! serves it as JavaScript to anyone, publish token or not.
#![cfg(all(feature = "http", feature = "tokio"))]

use std::path::Path;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use sse_core::SseManager;
use sse_core::http::{BearerToken, CLIENT_JS, DevIdentity, SseEndpoints};

#[test]
fn the_served_copy_matches_the_client_sources() {
    let asset = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sse-client.js");
    let served = std::fs::read(&asset).expect("sse-core/assets/sse-client.js");
    assert_eq!(served, CLIENT_JS.as_bytes(), "CLIENT_JS is the asset");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js/sse-client.js");
    // Outside the repository (a packaged crate) there is nothing to compare.
    let Ok(original) = std::fs::read(&source) else {
        eprintln!("{} not found: nothing to compare", source.display());
        return;
    };
    assert!(
        served == original,
        "sse-core/assets/sse-client.js differs from clients/js/sse-client.js: copy it over \
         (cp clients/js/sse-client.js sse-core/assets/sse-client.js)"
    );
}

#[tokio::test]
async fn client_js_is_served_without_authorization() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager, DevIdentity::enable()).publish_authorizer(BearerToken::new("secret"));
    let request = |method: Method| {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = "/api/sse/client.js".parse().expect("uri");
        parts
    };
    for method in [Method::GET, Method::HEAD] {
        let response = endpoints.api(&request(method.clone()), "client.js", Bytes::new()).await;
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8",
            "{method}"
        );
        assert_eq!(response.body(), CLIENT_JS.as_bytes(), "{method}");
    }
    let response = endpoints.api(&request(Method::POST), "client.js", Bytes::new()).await;
    assert_eq!(
        response.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "other methods are not served"
    );
    let response = endpoints.api(&request(Method::GET), "stats", Bytes::new()).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "administration still needs the token"
    );
    assert!(CLIENT_JS.contains("export class SSEClient"));
}
