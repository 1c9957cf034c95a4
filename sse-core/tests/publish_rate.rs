//! The publish route's rate limits, as a server sees them: a publisher past
//! its burst is answered `429` with `Retry-After` and a JSON error; a
//! publisher is its accepted bearer token, else its address; and a send
//! over the manager's per-user limit is answered the same way.
#![cfg(all(feature = "http", feature = "tokio"))]

use std::net::SocketAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use sse_core::http::{BearerToken, DevIdentity, RemoteAddr, SseEndpoints};
use sse_core::{RateLimit, SseConfigBuilder, SseManager};

fn endpoints(configure: impl FnOnce(SseConfigBuilder) -> SseConfigBuilder) -> SseEndpoints {
    let manager = SseManager::builder()
        .configure(|c| configure(c.heartbeat_interval(None)))
        .build()
        .expect("valid configuration");
    SseEndpoints::new(manager, DevIdentity::enable())
}

/// `POST publish` from `port` on loopback, with `token` as bearer token.
fn publish(port: u16, token: Option<&str>) -> Parts {
    let mut request = http::Request::post("/publish");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut parts = request.body(()).expect("valid request").into_parts().0;
    parts
        .extensions
        .insert(RemoteAddr(SocketAddr::from(([127, 0, 0, port.to_be_bytes()[1]], port))));
    parts
}

async fn send(endpoints: &SseEndpoints, request: &Parts, body: &'static str) -> Response<Bytes> {
    endpoints
        .api(request, "publish", Bytes::from_static(body.as_bytes()))
        .await
}

const EVENT: &str = r#"{"event":"tick","data":1}"#;

/// A `429` with a `Retry-After` of whole seconds, at least 1, and a JSON
/// error naming the rate limit.
fn assert_limited(response: &Response<Bytes>) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("whole seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(response.body()).expect("JSON body");
    let message = body["error"].as_str().expect("{\"error\": ...}");
    assert!(message.contains("rate limit"), "{message}");
}

#[tokio::test]
async fn a_publisher_is_its_address_without_an_authorizer() {
    let endpoints = endpoints(|c| c.publish_rate(Some(RateLimit::per_second(1).with_burst(2))));
    for _ in 0..2 {
        assert_eq!(
            send(&endpoints, &publish(1, None), EVENT).await.status(),
            StatusCode::OK
        );
    }
    assert_limited(&send(&endpoints, &publish(1, None), EVENT).await);
    // Limited before the body is read: junk is refused the same way.
    assert_limited(&send(&endpoints, &publish(1, None), "not json").await);
    // A token proves nothing without an authorizer: still the address.
    assert_limited(&send(&endpoints, &publish(1, Some("made-up")), EVENT).await);
    assert_eq!(
        send(&endpoints, &publish(2, None), EVENT).await.status(),
        StatusCode::OK,
        "another address has its own allowance"
    );
    assert_eq!(endpoints.manager().stats().events_published, 3);
}

#[tokio::test]
async fn a_publisher_is_its_accepted_token() {
    let endpoints = endpoints(|c| c.publish_rate(Some(RateLimit::per_second(1).with_burst(1))))
        .publish_authorizer(BearerToken::new("backend"));
    assert_eq!(
        send(&endpoints, &publish(1, Some("backend")), EVENT).await.status(),
        StatusCode::OK
    );
    // The same token from elsewhere is the same publisher.
    assert_limited(&send(&endpoints, &publish(2, Some("backend")), EVENT).await);
    // A refused token is answered by the authorizer, and takes nothing.
    let refused = send(&endpoints, &publish(1, Some("wrong")), EVENT).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(endpoints.manager().rate_limit_keys(), 1);
    // Other routes are not limited.
    let stats = http::Request::get("/stats")
        .header("authorization", "Bearer backend")
        .body(())
        .expect("valid request")
        .into_parts()
        .0;
    let answer = endpoints.api(&stats, "stats", Bytes::new()).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(stats.method, Method::GET);
}

#[tokio::test]
async fn a_send_over_a_users_limit_is_answered_429() {
    let endpoints = endpoints(|c| c.user_send_rate(Some(RateLimit::per_second(1).with_burst(1))));
    let to_alice = r#"{"target":"user","targetId":"alice","data":1}"#;
    assert_eq!(
        send(&endpoints, &publish(1, None), to_alice).await.status(),
        StatusCode::OK
    );
    assert_limited(&send(&endpoints, &publish(2, None), to_alice).await);
    let to_bob = r#"{"target":"user","targetId":"bob","data":1}"#;
    assert_eq!(
        send(&endpoints, &publish(1, None), to_bob).await.status(),
        StatusCode::OK
    );
}
