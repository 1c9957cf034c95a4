//! Presence (`docs/http-api.md`, "Presence"): `presence` events to the other
//! members of a channel named by `SSE_PRESENCE_CHANNELS`, never to the
//! user's own connections, several tabs being one presence; and the query
//! route `GET /api/sse/presence/{channel}`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::{SseStream, TestServer};

use crate::common::names_until;

/// Publishes a `mark` event to `channel`, to read up to; returns its id.
async fn mark(server: &TestServer, channel: &str) -> String {
    server
        .publish_ok(&json!({"event": "mark", "target": "channel", "targetId": channel, "data": 1}))
        .await
        .id
}

/// The presence notices `stream` receives before the next `mark`.
async fn notices_until_mark(stream: &mut SseStream) -> Vec<Value> {
    let mut notices = Vec::new();
    loop {
        let event = stream.next_event().await;
        match event.event.as_str() {
            "mark" => return notices,
            "presence" => {
                notices.push(serde_json::from_str(&event.data).expect("JSON data"));
            }
            other => panic!("unexpected event {other}: {event:?}"),
        }
    }
}

fn notice(channel: &str, user: &str, state: &str) -> Value {
    json!({"channel": channel, "userId": user, "state": state})
}

async fn disconnect(server: &TestServer, client_id: &str) {
    let (status, _) = TestServer::send(server.api(Method::DELETE, &format!("/api/sse/connections/{client_id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

pub(crate) async fn presence_notices_reach_other_members_once_per_user(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_PRESENCE_CHANNELS", "team/*")]).await;
    let mut observer = server.subscribe("channel=team/a").await;
    let mut alice1 = server.subscribe("userId=alice&channel=team/a").await;
    let alice2 = server.subscribe("userId=alice&channel=team/a&channel=news").await;
    let mut bob = server.subscribe("userId=bob&channel=team/a").await;
    let first_mark = mark(&server, "team/a").await;
    assert_eq!(
        notices_until_mark(&mut observer.stream).await,
        [notice("team/a", "alice", "join"), notice("team/a", "bob", "join")],
        "two tabs of alice are one join"
    );
    assert_eq!(
        notices_until_mark(&mut alice1.stream).await,
        [notice("team/a", "bob", "join")],
        "alice is not told of her own join"
    );
    assert_eq!(notices_until_mark(&mut bob.stream).await, Vec::<Value>::new());

    disconnect(&server, &alice1.client_id).await;
    server.wait_for_connections(3).await;
    mark(&server, "team/a").await;
    assert_eq!(
        notices_until_mark(&mut observer.stream).await,
        Vec::<Value>::new(),
        "alice is still present in her other tab"
    );
    assert_eq!(notices_until_mark(&mut bob.stream).await, Vec::<Value>::new());
    disconnect(&server, &alice2.client_id).await;
    server.wait_for_connections(2).await;
    mark(&server, "team/a").await;
    assert_eq!(
        notices_until_mark(&mut observer.stream).await,
        [notice("team/a", "alice", "leave")]
    );
    assert_eq!(
        notices_until_mark(&mut bob.stream).await,
        [notice("team/a", "alice", "leave")]
    );

    // A channel outside SSE_PRESENCE_CHANNELS gets no presence events.
    let mut news = server.subscribe("channel=news").await;
    let _carol = server.subscribe("userId=carol&channel=news").await;
    server
        .publish_ok(&json!({"event": "end", "target": "channel", "targetId": "news", "data": 1}))
        .await;
    assert_eq!(names_until(&mut news.stream, "end").await, Vec::<String>::new());

    // Live only: resuming after the first mark replays the marks since,
    // and none of the presence events sent between them.
    let mut resumed = server
        .subscribe(&format!("channel=team/a&lastEventId={first_mark}"))
        .await;
    server
        .publish_ok(&json!({"event": "done", "target": "channel", "targetId": "team/a", "data": 1}))
        .await;
    assert_eq!(names_until(&mut resumed.stream, "done").await, ["mark", "mark"]);
}

pub(crate) async fn presence_query_route(serve: ServeFn) {
    const TOKEN: &str = "presence-token";
    let server = TestServer::start(
        serve,
        &[("SSE_PRESENCE_CHANNELS", "team/*"), ("SSE_PUBLISH_TOKEN", TOKEN)],
    )
    .await;
    let _a1 = server.subscribe("userId=alice&channel=team/a").await;
    let _a2 = server.subscribe("userId=alice&channel=team/a").await;
    let _b = server.subscribe("userId=bob&channel=team/a").await;
    let _anonymous = server.subscribe("channel=team/a").await;
    let _elsewhere = server.subscribe("userId=carol&channel=team/b").await;
    let expected = json!({"channel": "team/a", "users": [
        {"userId": "alice", "connections": 2},
        {"userId": "bob", "connections": 1},
    ]});
    for path in ["/api/sse/presence/team%2Fa", "/api/sse/presence/team/a"] {
        let (status, body) = TestServer::send(server.api(Method::GET, path)).await;
        assert_eq!((status, &body), (StatusCode::OK, &expected), "{path}");
    }
    let (status, body) = TestServer::send(server.api(Method::GET, "/api/sse/presence/nobody%20here")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"channel": "nobody here", "users": []}))
    );

    // Guarded like the administration endpoints.
    let (status, _) = TestServer::send(server.client().get(server.url("/api/sse/presence/team%2Fa"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = server
        .api(Method::POST, "/api/sse/presence/team%2Fa")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers().get("allow").map(|v| v.as_bytes().to_vec()),
        Some(b"GET".to_vec())
    );
}
