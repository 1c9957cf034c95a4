//! Administration (`docs/http-api.md`, "Administration" and "The publish
//! token"): cleanup of dropped clients, disconnect, statistics, the
//! connection listing, and the publish token guarding publish and every
//! administration endpoint.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::{End, TestServer};

use crate::common::{assert_error, names_until};

pub(crate) async fn dropped_client_is_cleaned_up(serve: ServeFn) {
    const HEARTBEAT_MS: u64 = 300;
    let server = TestServer::start(serve, &[("SSE_HEARTBEAT_MS", "300")]).await;
    let s = server.subscribe("userId=alice&channel=red").await;
    let _other = server.subscribe("userId=bob").await;
    server.wait_for_connections(2).await;
    drop(s);
    let dropped = Instant::now();
    let stats = server.wait_for_connections(1).await;
    let took = dropped.elapsed();
    assert_eq!(stats["uniqueUsers"], 1);
    assert_eq!(stats["channels"], json!({}));
    // A closed peer is noticed when a write to it fails: at the latest at the
    // second heartbeat (the first may still land in the socket buffer), plus
    // a second for scheduling on a loaded machine.
    let bound = Duration::from_millis(2 * HEARTBEAT_MS + 1000);
    assert!(
        took < bound,
        "a dropped client disappears within {bound:?}; it took {took:?}"
    );
}

pub(crate) async fn delete_connection(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let mut s = server.subscribe("userId=alice").await;
    let mut other = server.subscribe("userId=bob").await;
    let path = format!("/api/sse/connections/{}", s.client_id);
    let response = server.api(Method::DELETE, &path).send().await.expect("delete answered");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.expect("body").is_empty(), "204 has no body");
    let (_, end) = s.stream.events_until_end().await;
    assert_eq!(end, End::Clean, "the deleted connection's stream ends");
    let stats = server.wait_for_connections(1).await;
    assert_eq!(stats["uniqueUsers"], 1);

    let (status, answer) = TestServer::send(server.api(Method::DELETE, &path)).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "", "deleting it again");
    let (status, answer) = TestServer::send(server.api(Method::DELETE, "/api/sse/connections/no-such-client")).await;
    assert_error(
        status,
        &answer,
        StatusCode::NOT_FOUND,
        "",
        "deleting an unknown connection",
    );

    server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert!(
        names_until(&mut other.stream, "end").await.is_empty(),
        "the other stream is intact"
    );
}

pub(crate) async fn stats_fields(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let empty = server.stats().await;
    assert_eq!((&empty["connections"], &empty["uniqueUsers"]), (&json!(0), &json!(0)));
    assert_eq!(empty["channels"], json!({}));

    let a = server.subscribe("userId=alice&channel=red&channel=blue").await;
    let _b = server.subscribe("userId=alice&sessionId=s2&channel=red").await;
    let _c = server.subscribe("userId=bob").await;
    let _d = server.subscribe("channel=red").await;
    let stats = server.stats().await;
    assert_eq!(stats["connections"], 4, "{stats}");
    assert_eq!(stats["uniqueUsers"], 2, "{stats}");
    assert_eq!(stats["channels"], json!({"red": 3, "blue": 1}), "{stats}");

    let (status, _) =
        TestServer::send(server.api(Method::DELETE, &format!("/api/sse/connections/{}", a.client_id))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stats = server.wait_for_connections(3).await;
    assert_eq!(stats["uniqueUsers"], 2, "{stats}");
    assert_eq!(stats["channels"]["red"], 2, "{stats}");
    assert_eq!(
        stats["channels"].get("blue").and_then(Value::as_u64).unwrap_or(0),
        0,
        "{stats}"
    );
}

pub(crate) async fn connection_listing(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    assert!(server.connections().await.is_empty());
    let a = server
        .subscribe(
            "userId=alice&sessionId=s1&channel=red&channel=blue&device=phone&lang=en%20GB&lastEventId=x&access_token=t",
        )
        .await;
    let d = server.subscribe("").await;
    let listed = server.connections().await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let find = |id: &str| {
        listed
            .iter()
            .find(|c| c["clientId"] == id)
            .unwrap_or_else(|| panic!("{id} is listed: {listed:?}"))
            .clone()
    };
    let alice = find(&a.client_id);
    assert_eq!(alice["userId"], "alice");
    assert_eq!(alice["sessionId"], "s1");
    let channels: BTreeSet<&str> = alice["channels"]
        .as_array()
        .expect("channels is an array")
        .iter()
        .map(|c| c.as_str().expect("a channel name"))
        .collect();
    assert_eq!(channels, BTreeSet::from(["red", "blue"]));
    assert_eq!(
        alice["metadata"],
        json!({"device": "phone", "lang": "en GB"}),
        "other query parameters are metadata"
    );
    let anonymous = find(&d.client_id);
    for field in ["userId", "sessionId"] {
        assert!(
            anonymous.get(field).is_some_and(Value::is_null),
            "an anonymous connection has {field}: null, {anonymous}"
        );
    }
    assert_eq!(anonymous["channels"], json!([]));
    assert_eq!(anonymous["metadata"], json!({}));
    for connection in [&alice, &anonymous] {
        let at = &connection["connectedAt"];
        assert!(
            at.as_str().is_some_and(|s| !s.is_empty()) || at.is_number(),
            "connectedAt is a time: {connection}"
        );
    }
}

pub(crate) async fn publish_token_guards_publish_and_admin(serve: ServeFn) {
    const TOKEN: &str = "s3cret-token";
    let server = TestServer::start(serve, &[("SSE_PUBLISH_TOKEN", TOKEN)]).await;
    // Subscribing needs no publish token.
    let mut s = server.subscribe("userId=alice").await;
    let membership = json!({"clientId": s.client_id, "channel": "red"});
    let disconnect = format!("/api/sse/connections/{}", s.client_id);
    let endpoints = [
        (
            Method::POST,
            "/api/sse/publish",
            Some(json!({"event": "sneaky", "data": 1})),
        ),
        (Method::GET, "/api/sse/stats", None),
        (Method::GET, "/api/sse/stats/cluster", None),
        (Method::GET, "/api/sse/connections", None),
        (Method::POST, "/api/sse/subscribe", Some(membership.clone())),
        (Method::POST, "/api/sse/unsubscribe", Some(membership.clone())),
        (Method::DELETE, disconnect.as_str(), None),
    ];
    for (method, path, body) in &endpoints {
        for authorization in [
            None,
            Some("Bearer wrong-token"),
            Some("Basic czNjcmV0LXRva2Vu"),
            Some(TOKEN),
        ] {
            let mut request = server.client().request(method.clone(), server.url(path));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let (status, answer) = TestServer::send(request).await;
            let what = format!("{method} {path} with authorization {authorization:?}");
            assert_error(status, &answer, StatusCode::UNAUTHORIZED, "", &what);
        }
    }
    // Nothing above took effect. With the token, everything works.
    let stats = server.stats().await;
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(stats["channels"], json!({}), "{stats}");
    assert_eq!(server.connections().await.len(), 1);
    let (status, _) = TestServer::send(server.api(Method::POST, "/api/sse/subscribe").json(&membership)).await;
    assert_eq!(status, StatusCode::OK);
    let published = server
        .publish_ok(&json!({"event": "hello", "target": "channel", "targetId": "red", "data": 1}))
        .await;
    assert_eq!(published.delivered, 1);
    assert_eq!(
        s.stream.next_event().await.event,
        "hello",
        "the refused publish sent nothing"
    );
    let (status, _) = TestServer::send(server.api(Method::POST, "/api/sse/unsubscribe").json(&membership)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = TestServer::send(server.api(Method::DELETE, &disconnect)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, end) = s.stream.events_until_end().await;
    assert_eq!(end, End::Clean);
}

pub(crate) async fn cluster_stats_of_a_single_instance(serve: ServeFn) {
    let server = TestServer::start(serve, &[]).await;
    let _a = server.subscribe("userId=alice&channel=red").await;
    server.wait_for_connections(1).await;
    let (status, cluster) = TestServer::send(server.api(Method::GET, "/api/sse/stats/cluster")).await;
    assert_eq!(status, StatusCode::OK, "{cluster}");
    let instances = cluster["instances"].as_array().expect("instances");
    assert_eq!(
        instances.len(),
        1,
        "without a backplane, the instance is the cluster: {cluster}"
    );
    assert_eq!(
        (&instances[0]["local"], &instances[0]["ageMs"]),
        (&json!(true), &json!(0))
    );
    assert!(
        instances[0]["instance"].as_str().is_some_and(|id| id.len() == 16),
        "{cluster}"
    );
    let totals = &cluster["totals"];
    assert_eq!((&totals["connections"], &totals["uniqueUsers"]), (&json!(1), &json!(1)));
    assert_eq!(totals["channels"], json!({"red": 1}));
    assert_eq!(totals, &instances[0]["stats"]);
    let (status, _) = TestServer::send(server.api(Method::POST, "/api/sse/stats/cluster")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
