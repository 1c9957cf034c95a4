//! Targets and channels (`docs/http-api.md`, "Publishing" and "Subscribe and
//! unsubscribe"): each target reaches exactly its connections, channels are
//! joined at connect time and joined and left at runtime.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::{Subscriber, TestServer};

use crate::common::{assert_error, names_until};

/// Publishes each case (a body and the letters of the connections it
/// reaches), checking its delivered count, then an `end` event to all;
/// checks that each connection received exactly the cases naming it.
async fn publish_to_audiences(server: &TestServer, cases: &[(Value, &str)], subscribers: [(&str, &mut Subscriber); 4]) {
    for (body, audience) in cases {
        let published = server.publish_ok(body).await;
        assert_eq!(published.delivered, audience.len() as u64, "delivered count of {body}");
    }
    let end = server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(end.delivered, 4);
    for (name, subscriber) in subscribers {
        let expected: Vec<&str> = cases
            .iter()
            .filter(|(_, audience)| audience.contains(name))
            .map(|(body, _)| body["event"].as_str().expect("event name"))
            .collect();
        let got = names_until(&mut subscriber.stream, "end").await;
        assert_eq!(got, expected, "events received by connection {name}");
    }
}

pub(crate) async fn targets_reach_exactly_their_connections(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut a = server.subscribe("userId=alice&sessionId=s1&channel=red").await;
    let mut b = server.subscribe("userId=alice&sessionId=s2").await;
    let mut c = server
        .subscribe("userId=bob&sessionId=s3&channel=red&channel=blue")
        .await;
    let mut d = server.subscribe("").await;
    let cases = [
        (json!({"event": "default-all", "data": 1}), "abcd"),
        (json!({"event": "all", "target": "all", "data": 1}), "abcd"),
        (
            json!({"event": "user", "target": "user", "targetId": "alice", "data": 1}),
            "ab",
        ),
        (
            json!({"event": "users", "target": "users", "targetIds": ["alice", "bob", "carol"], "data": 1}),
            "abc",
        ),
        (
            json!({"event": "users-twice", "target": "users", "targetIds": ["bob", "bob"], "data": 1}),
            "c",
        ),
        (
            json!({"event": "users-none", "target": "users", "targetIds": [], "data": 1}),
            "",
        ),
        (
            json!({"event": "session", "target": "session", "targetId": "s2", "data": 1}),
            "b",
        ),
        (
            json!({"event": "client", "target": "client", "targetId": d.client_id, "data": 1}),
            "d",
        ),
        (
            json!({"event": "client-c", "target": "client", "targetId": c.client_id, "data": 1}),
            "c",
        ),
        (
            json!({"event": "red", "target": "channel", "targetId": "red", "data": 1}),
            "ac",
        ),
        (
            json!({"event": "blue", "target": "channel", "targetId": "blue", "data": 1}),
            "c",
        ),
        (
            json!({"event": "nobody-user", "target": "user", "targetId": "carol", "data": 1}),
            "",
        ),
        (
            json!({"event": "nobody-session", "target": "session", "targetId": "s9", "data": 1}),
            "",
        ),
        (
            json!({"event": "nobody-channel", "target": "channel", "targetId": "green", "data": 1}),
            "",
        ),
        (
            json!({"event": "nobody-client", "target": "client", "targetId": "no-such-client", "data": 1}),
            "",
        ),
    ];
    let subscribers = [("a", &mut a), ("b", &mut b), ("c", &mut c), ("d", &mut d)];
    publish_to_audiences(&server, &cases, subscribers).await;
}

pub(crate) async fn channels_joined_at_connect(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("channel=news&channel=sport&channel=weather").await;
    let mut other = server.subscribe("channel=sport").await;
    for (channel, delivered) in [("news", 1), ("sport", 2), ("weather", 1), ("politics", 0)] {
        let published = server
            .publish_ok(&json!({"event": channel, "target": "channel", "targetId": channel, "data": channel}))
            .await;
        assert_eq!(published.delivered, delivered, "delivered on channel {channel}");
    }
    server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(names_until(&mut s.stream, "end").await, ["news", "sport", "weather"]);
    assert_eq!(names_until(&mut other.stream, "end").await, ["sport"]);
    let stats = server.stats().await;
    assert_eq!(stats["channels"], json!({"news": 1, "sport": 2, "weather": 1}));
}

pub(crate) async fn channels_joined_and_left_at_runtime(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("userId=alice").await;
    let to_news = json!({"event": "news", "target": "channel", "targetId": "news", "data": "x"});
    assert_eq!(server.publish_ok(&to_news).await.delivered, 0, "not subscribed yet");

    let membership = json!({"clientId": s.client_id, "channel": "news"});
    let (status, body) = TestServer::send(server.api(Method::POST, "/api/sse/subscribe").json(&membership)).await;
    assert_eq!(status, StatusCode::OK, "subscribe answered {body}");
    assert_eq!(server.publish_ok(&to_news).await.delivered, 1, "subscribed");
    assert_eq!(server.stats().await["channels"], json!({"news": 1}));
    let listed = server.connections().await;
    assert_eq!(listed[0]["channels"], json!(["news"]));

    let (status, body) = TestServer::send(server.api(Method::POST, "/api/sse/unsubscribe").json(&membership)).await;
    assert_eq!(status, StatusCode::OK, "unsubscribe answered {body}");
    assert_eq!(server.publish_ok(&to_news).await.delivered, 0, "unsubscribed");
    assert_eq!(
        server.stats().await["channels"]
            .get("news")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        0
    );

    server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(
        names_until(&mut s.stream, "end").await,
        ["news"],
        "only the news sent while subscribed"
    );
}

pub(crate) async fn subscribe_unknown_client_is_not_found(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let _s = server.subscribe("").await;
    for path in ["/api/sse/subscribe", "/api/sse/unsubscribe"] {
        let body = json!({"clientId": "no-such-client", "channel": "news"});
        let (status, answer) = TestServer::send(server.api(Method::POST, path).json(&body)).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "client", path);
    }
    assert_eq!(server.stats().await["channels"], json!({}), "no channel was created");
}

pub(crate) async fn exclusions_skip_users_and_clients(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut a = server.subscribe("userId=alice&channel=red").await;
    let mut b = server.subscribe("userId=alice&channel=red").await;
    let mut c = server.subscribe("userId=bob&channel=red").await;
    let mut d = server.subscribe("channel=red").await;
    let red = |name: &str| json!({"event": name, "target": "channel", "targetId": "red", "data": 1});
    let with = |mut body: Value, field: &str, ids: Value| {
        body[field] = ids;
        body
    };
    let cases = [
        (with(red("no-alice"), "exceptUserIds", json!(["alice"])), "cd"),
        (with(red("no-c"), "exceptClientIds", json!([c.client_id])), "abd"),
        (
            with(
                with(red("no-alice-no-d"), "exceptUserIds", json!(["alice", "nobody"])),
                "exceptClientIds",
                json!([d.client_id, "no-such-client"]),
            ),
            "c",
        ),
        (
            with(
                json!({"event": "all-but-bob", "data": 1}),
                "exceptUserIds",
                json!(["bob"]),
            ),
            "abd",
        ),
        (
            with(
                json!({"event": "alice-but-a", "target": "user", "targetId": "alice", "data": 1}),
                "exceptClientIds",
                json!([a.client_id]),
            ),
            "b",
        ),
        (
            with(
                json!({"event": "users-but-bob", "target": "users", "targetIds": ["alice", "bob"], "data": 1}),
                "exceptUserIds",
                json!(["bob"]),
            ),
            "ab",
        ),
        (with(red("empty-lists"), "exceptUserIds", json!([])), "abcd"),
    ];
    let subscribers = [("a", &mut a), ("b", &mut b), ("c", &mut c), ("d", &mut d)];
    publish_to_audiences(&server, &cases, subscribers).await;
}
