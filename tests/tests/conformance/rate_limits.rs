//! The publish rate limit (`docs/http-api.md`, "Publishing", "Rate limit:
//! `SSE_PUBLISH_RATE`"): a publisher past its allowance is answered `429`
//! with `Retry-After` and a JSON error, nothing is sent, another publisher
//! is not limited, and the limited one publishes again after the wait.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::{TestServer, WAIT};

use crate::common::{assert_error, names_until};

const AUTH_SECRET: &str = "conformance-secret-that-is-long-enough";
const TOKEN: &str = "the-publish-token";

/// An HS256 JWT with `claims` and an expiry in ten minutes.
fn jwt(mut claims: Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    claims["exp"] = json!(exp);
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(AUTH_SECRET.as_bytes()),
    )
    .expect("encodable claims")
}

/// `POST /api/sse/publish` of `body` with `bearer`: its status, its
/// `Retry-After` header and its JSON body.
async fn publish(server: &TestServer, bearer: &str, body: &Value) -> (StatusCode, Option<String>, Value) {
    let response = tokio::time::timeout(
        WAIT,
        server
            .client()
            .request(Method::POST, server.url("/api/sse/publish"))
            .bearer_auth(bearer)
            .json(body)
            .send(),
    )
    .await
    .expect("an answer within the wait")
    .expect("the request is answered");
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "application/json");
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("a text header").to_owned());
    let json = response.json().await.expect("a JSON body");
    (status, retry_after, json)
}

pub(crate) async fn publish_rate_answers_429_per_publisher(serve: ServeFn) {
    let server = TestServer::start(
        serve,
        &[
            ("SSE_PUBLISH_RATE", "3"),
            ("SSE_PUBLISH_TOKEN", TOKEN),
            ("SSE_AUTH_SECRET", AUTH_SECRET),
        ],
    )
    .await;
    let event = json!({"event": "tick", "data": 1});
    // A fresh publisher has a whole second's worth: the first three pass
    // however slowly they go; then one is refused, well before its
    // allowance could refill a hundred times.
    let mut accepted = 0;
    let refused = loop {
        let (status, retry_after, body) = publish(&server, TOKEN, &event).await;
        if status == StatusCode::OK {
            accepted += 1;
            assert!(accepted < 100, "the publisher is never limited");
            continue;
        }
        break (status, retry_after, body);
    };
    assert!(accepted >= 3, "the burst passes: {accepted}");
    let (status, retry_after, body) = refused;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "rate limit",
        "a publish past the limit",
    );
    assert_eq!(
        retry_after.as_deref(),
        Some("1"),
        "Retry-After in whole seconds, rounded up: one event comes back every third of a second"
    );
    // Refused before the body is read: one that is not even JSON too (a
    // junk body that came after a refill is a 400, and takes the refill).
    let mut attempts = 0;
    loop {
        let junk = server
            .api(Method::POST, "/api/sse/publish")
            .header("content-type", "application/json")
            .body("not json");
        let (status, body) = TestServer::send(junk).await;
        if status != StatusCode::BAD_REQUEST {
            assert_error(
                status,
                &body,
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit",
                "junk past the limit",
            );
            break;
        }
        attempts += 1;
        assert!(attempts < 100, "a junk body is never limited");
    }
    // The administration endpoints are not limited.
    let stats = server.stats().await;
    assert_eq!(
        stats["eventsPublished"], accepted,
        "the refused publish sent nothing: {stats}"
    );

    // Another publisher, a JWT with the publish role, is not limited.
    let mut alice = server
        .subscribe(&format!("access_token={}", jwt(json!({"sub": "alice"}))))
        .await;
    let publisher = jwt(json!({"sub": "backend", "roles": ["sse:publish"]}));
    let (status, _, body) = publish(&server, &publisher, &json!({"event": "other", "data": 2})).await;
    assert_eq!(status, StatusCode::OK, "another publisher: {body}");

    // After the wait, the limited publisher publishes again.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = publish(&server, TOKEN, &json!({"event": "again", "data": 3})).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(Instant::now() < deadline, "still limited after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names_until(&mut alice.stream, "again").await, ["other"]);
}
