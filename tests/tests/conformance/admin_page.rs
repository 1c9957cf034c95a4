//! The administration page and its feed (`docs/http-api.md`, "The
//! administration page"): the page is open HTML, the feed is guarded like
//! the statistics, its snapshots agree with `GET /api/sse/stats` and
//! `GET /api/sse/connections`, and its viewers are no connections.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::{SseStream, TestServer};

use crate::common::assert_error;

const TOKEN: [(&str, &str); 1] = [("SSE_PUBLISH_TOKEN", "admin-secret")];

/// Opens the feed with the server's token; the stream, past its headers.
async fn watch(server: &TestServer) -> SseStream {
    let response = server.open_stream(server.api(Method::GET, "/sse-admin/stream")).await;
    response.assert_event_stream();
    response.into_stream()
}

/// Reads snapshots until one satisfies `done`; returns its data.
async fn snapshot_where(stream: &mut SseStream, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let event = stream.expect_event("snapshot").await;
        let snapshot: Value = serde_json::from_str(&event.data).expect("a snapshot is JSON");
        if done(&snapshot) {
            return snapshot;
        }
    }
}

pub(crate) async fn admin_page_is_open_html(serve: ServeFn) {
    let server = TestServer::start(serve, &TOKEN).await;
    for method in [Method::GET, Method::HEAD] {
        let response = server
            .client()
            .request(method.clone(), server.url("/sse-admin"))
            .send()
            .await
            .expect("the page is answered");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{method} /sse-admin, without a token"
        );
        let content_type = response.headers()["content-type"].to_str().expect("text").to_owned();
        assert_eq!(content_type, "text/html; charset=utf-8");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .expect("text")
            .to_owned();
        assert!(
            policy.contains("default-src 'none'"),
            "nothing from elsewhere: {policy}"
        );
        let page = response.text().await.expect("the page is text");
        if method == Method::GET {
            assert!(
                page.contains(r#"<meta name="sse-api" content="/api/sse">"#),
                "the page names the API"
            );
        } else {
            assert!(page.is_empty(), "HEAD has no body");
        }
    }
    let (status, body) = TestServer::send(server.client().post(server.url("/sse-admin"))).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method",
        "POST /sse-admin",
    );
    let (status, body) = TestServer::send(server.api(Method::POST, "/sse-admin/stream")).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method",
        "POST /sse-admin/stream",
    );
    let (status, body) = TestServer::send(server.api(Method::GET, "/sse-admin/elsewhere")).await;
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "no such endpoint",
        "GET /sse-admin/elsewhere",
    );
}

pub(crate) async fn admin_feed_is_guarded(serve: ServeFn) {
    let server = TestServer::start(serve, &TOKEN).await;
    let url = server.url("/sse-admin/stream");
    for (request, what) in [
        (server.client().get(&url), "without a token"),
        (server.client().get(&url).bearer_auth("wrong"), "with a wrong token"),
    ] {
        let response = request.send().await.expect("the feed is answered");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "the feed {what}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.expect("a JSON error");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("unauthorized")),
            "{body}"
        );
    }
    // The disconnect the page calls: an unknown id is a JSON 404.
    let (status, body) = TestServer::send(server.api(Method::DELETE, "/api/sse/connections/no-such-client")).await;
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "no connection",
        "DELETE an unknown clientId",
    );
    let mut feed = watch(&server).await;
    let snapshot = snapshot_where(&mut feed, |_| true).await;
    assert_eq!(snapshot["stats"]["connections"], 0, "{snapshot}");
}

pub(crate) async fn admin_snapshot_matches_stats(serve: ServeFn) {
    let server = TestServer::start(serve, &TOKEN).await;
    let _alice = server.subscribe("userId=alice&channel=news").await;
    let _bob = server.subscribe("userId=bob&channel=news").await;
    let _alice_again = server.subscribe("userId=alice").await;
    for body in [
        json!({"event": "all", "data": 1}),
        json!({"event": "news", "data": 2, "target": "channel", "targetId": "news"}),
        json!({"event": "bob", "data": 3, "target": "user", "targetId": "bob"}),
    ] {
        server.publish_ok(&body).await;
    }
    let mut feed = watch(&server).await;
    let snapshot = snapshot_where(&mut feed, |s| {
        s["stats"]["connections"] == 3 && s["stats"]["eventsPublished"] == 3
    })
    .await;
    let stats = server.stats().await;
    for field in [
        "connections",
        "uniqueUsers",
        "channels",
        "connectionsOpened",
        "connectionsRejected",
        "slowClosed",
        "eventsDropped",
        "eventsConflated",
        "eventsPublished",
        "sendsTimed",
        "sendLatencyMicros",
    ] {
        assert_eq!(
            snapshot["stats"][field], stats[field],
            "{field}: {snapshot} against {stats}"
        );
    }
    assert_eq!(stats["uniqueUsers"], 2);
    assert_eq!(stats["channels"], json!({"news": 2}));
    let ids = |list: &[Value]| -> BTreeSet<String> {
        list.iter()
            .map(|c| c["clientId"].as_str().expect("a clientId").to_owned())
            .collect()
    };
    let listed = snapshot["connections"].as_array().expect("a list");
    assert_eq!(ids(listed), ids(&server.connections().await));
    assert_eq!(listed[0]["userId"], "alice", "the newest first: {snapshot}");
    assert_eq!(listed[0]["channels"], json!([]));
    assert_eq!(snapshot["notListed"], 0);
    assert!(snapshot["atMs"].as_u64().is_some() && snapshot["intervalMs"].as_u64().is_some());
    // The next snapshot comes by itself.
    let later = snapshot_where(&mut feed, |s| s["atMs"].as_u64() > snapshot["atMs"].as_u64()).await;
    assert_eq!(later["stats"]["eventsPublished"], 3);
}

pub(crate) async fn admin_viewers_are_not_connections(serve: ServeFn) {
    let server = TestServer::start(serve, &TOKEN).await;
    let _subscriber = server.subscribe("userId=carol").await;
    let mut first = watch(&server).await;
    let mut second = watch(&server).await;
    snapshot_where(&mut second, |_| true).await;
    let snapshot = snapshot_where(&mut first, |s| s["viewers"] == 2).await;
    assert_eq!(snapshot["stats"]["connections"], 1, "{snapshot}");
    let stats = server.stats().await;
    assert_eq!(stats["connections"], 1, "viewers are not counted: {stats}");
    assert_eq!(stats["connectionsOpened"], 1, "{stats}");
    assert_eq!(server.connections().await.len(), 1);
}

pub(crate) async fn admin_feed_takes_the_admin_role(serve: ServeFn) {
    const SECRET: &str = "admin-page-secret-that-is-long-enough";
    let settings = [("SSE_AUTH_SECRET", SECRET), TOKEN[0]];
    let server = TestServer::start(serve, &settings).await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    let token = |roles: &[&str]| {
        let claims = json!({"sub": "ops", "roles": roles, "exp": exp});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encodable claims")
    };
    let feed = server.url("/sse-admin/stream");
    let publisher = server.client().get(&feed).bearer_auth(token(&["sse:publish"]));
    let (status, body) = TestServer::send(publisher).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "roles",
        "the feed with sse:publish",
    );
    let admin = server.client().get(&feed).bearer_auth(token(&["sse:admin"]));
    let response = server.open_stream(admin).await;
    response.assert_event_stream();
    let snapshot = snapshot_where(&mut response.into_stream(), |_| true).await;
    assert_eq!(snapshot["stats"]["connections"], 0, "{snapshot}");
}
