//! Two instances sharing Redis with `SSE_REDIS_URL` (`docs/http-api.md`,
//! "Several instances"): targets across instances, `delivered` counting the
//! publishing instance only, resuming on another instance, presence
//! spanning both ("Presence"), and the statistics of both ("Cluster
//! statistics"). The cases that do not depend on Redis take the instances'
//! settings, and run on NATS too (`nats.rs`).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::{RedisPrefix, Subscriber, TestServer};

use crate::common::names_until;
use crate::replay::assert_replay;

/// Two servers of `serve` with the backplane `settings`.
async fn two_instances(serve: ServeFn, settings: &[(&str, &str)]) -> (TestServer, TestServer) {
    let a = TestServer::start(serve, settings).await;
    let b = TestServer::start(serve, settings).await;
    (a, b)
}

pub(crate) async fn redis_targets_across_instances(serve: ServeFn) {
    let Some(prefix) = RedisPrefix::new_or_skip("redis_targets_across_instances").await else {
        return;
    };
    targets_across_instances(serve, &prefix.settings()).await;
}

/// Every target kind across two instances sharing a backplane.
pub(crate) async fn targets_across_instances(serve: ServeFn, settings: &[(&str, &str)]) {
    let (a, b) = two_instances(serve, settings).await;
    // p and q on instance a, r and s on instance b.
    let mut p = a.subscribe("userId=alice&sessionId=s1&channel=red").await;
    let mut q = a.subscribe("userId=bob&sessionId=s3").await;
    let mut r = b.subscribe("userId=alice&sessionId=s2&channel=blue").await;
    let mut s = b.subscribe("channel=red").await;
    // (event, published on b?, who receives it); `delivered` counts the
    // publishing instance's connections only.
    let cases = [
        (json!({"event": "all", "data": 1}), true, "pqrs"),
        (json!({"event": "all-on-a", "target": "all", "data": 1}), false, "pqrs"),
        (
            json!({"event": "user", "target": "user", "targetId": "alice", "data": 1}),
            true,
            "pr",
        ),
        (
            json!({"event": "user-bob", "target": "user", "targetId": "bob", "data": 1}),
            true,
            "q",
        ),
        (
            json!({"event": "users", "target": "users", "targetIds": ["bob", "carol"], "data": 1}),
            true,
            "q",
        ),
        (
            json!({"event": "users-both", "target": "users", "targetIds": ["alice", "bob"], "data": 1}),
            false,
            "pqr",
        ),
        (
            json!({"event": "session-s1", "target": "session", "targetId": "s1", "data": 1}),
            true,
            "p",
        ),
        (
            json!({"event": "session-s2", "target": "session", "targetId": "s2", "data": 1}),
            false,
            "r",
        ),
        (
            json!({"event": "client-p", "target": "client", "targetId": p.client_id, "data": 1}),
            true,
            "p",
        ),
        (
            json!({"event": "client-s", "target": "client", "targetId": s.client_id, "data": 1}),
            false,
            "s",
        ),
        (
            json!({"event": "red", "target": "channel", "targetId": "red", "data": 1}),
            true,
            "ps",
        ),
        (
            json!({"event": "blue", "target": "channel", "targetId": "blue", "data": 1}),
            false,
            "r",
        ),
        (
            json!({"event": "nobody", "target": "user", "targetId": "carol", "data": 1}),
            true,
            "",
        ),
    ];
    for (body, on_b, audience) in &cases {
        let (publisher, local) = if *on_b { (&b, "rs") } else { (&a, "pq") };
        let published = publisher.publish_ok(body).await;
        let expected = audience.chars().filter(|c| local.contains(*c)).count() as u64;
        assert_eq!(
            published.delivered,
            expected,
            "delivered count of {body} on instance {}: its own connections only",
            if *on_b { "b" } else { "a" }
        );
    }
    b.publish_ok(&json!({"event": "end", "data": 1})).await;
    for (name, subscriber) in [("p", &mut p), ("q", &mut q), ("r", &mut r), ("s", &mut s)] {
        let expected: Vec<&str> = cases
            .iter()
            .filter(|(_, _, audience)| audience.contains(name))
            .map(|(body, _, _)| body["event"].as_str().expect("event name"))
            .collect();
        let got = names_until(&mut subscriber.stream, "end").await;
        assert_eq!(got, expected, "events received by connection {name}");
    }
    // Each instance lists and counts its own connections.
    assert_eq!(a.stats().await["connections"], 2);
    assert_eq!(b.stats().await["channels"], json!({"blue": 1, "red": 1}));
}

pub(crate) async fn redis_resume_on_another_instance(serve: ServeFn) {
    let Some(prefix) = RedisPrefix::new_or_skip("redis_resume_on_another_instance").await else {
        return;
    };
    resume_on_another_instance(serve, &prefix.settings()).await;
}

/// The same two cases with channel events on shards (`SSE_REDIS_SHARDS`,
/// "Shards"): nothing a client sees changes.
pub(crate) async fn redis_sharded_targets_and_resume(serve: ServeFn) {
    let Some(prefix) = RedisPrefix::new_or_skip("redis_sharded_targets_and_resume").await else {
        return;
    };
    let [url, key] = prefix.settings();
    let settings = [url, key, ("SSE_REDIS_SHARDS", "8")];
    targets_across_instances(serve, &settings).await;
    let Some(prefix) = RedisPrefix::new_or_skip("redis_sharded_resume").await else {
        return;
    };
    let [url, key] = prefix.settings();
    resume_on_another_instance(serve, &[url, key, ("SSE_REDIS_SHARDS", "8")]).await;
}

/// Resuming on the other instance of two sharing a backplane.
pub(crate) async fn resume_on_another_instance(serve: ServeFn, settings: &[(&str, &str)]) {
    let (a, b) = two_instances(serve, settings).await;
    let query = "userId=alice&sessionId=s1&channel=red";
    let mut alice: Subscriber = a.subscribe(query).await;
    let mark = b.publish_ok(&json!({"event": "mark", "data": 0})).await;
    let event = alice.stream.expect_event("mark").await;
    assert_eq!(event.id, mark.id, "both instances give the event the log's id");
    drop(alice);

    // While alice is away, events on both instances, for her and others.
    let gap = [
        (
            json!({"event": "to-alice", "target": "user", "targetId": "alice", "data": 1}),
            false,
            true,
        ),
        (
            json!({"event": "to-bob", "target": "user", "targetId": "bob", "data": 2}),
            true,
            false,
        ),
        (json!({"event": "all", "data": 3}), true, true),
        (
            json!({"event": "red", "target": "channel", "targetId": "red", "data": 4}),
            false,
            true,
        ),
        (
            json!({"event": "blue", "target": "channel", "targetId": "blue", "data": 5}),
            true,
            false,
        ),
        (
            json!({"event": "s1", "target": "session", "targetId": "s1", "data": 6}),
            false,
            true,
        ),
        (
            json!({"event": "s9", "target": "session", "targetId": "s9", "data": 7}),
            true,
            false,
        ),
        (
            json!({"event": "users", "target": "users", "targetIds": ["bob", "alice"], "data": 8}),
            false,
            true,
        ),
        (
            json!({"event": "last", "target": "user", "targetId": "alice", "data": 9}),
            true,
            true,
        ),
    ];
    let mut expected = Vec::new();
    for (body, on_b, for_alice) in gap {
        let publisher = if on_b { &b } else { &a };
        let published = publisher.publish_ok(&body).await;
        if for_alice {
            expected.push((body["event"].as_str().expect("name").to_owned(), published.id));
        }
    }
    // She comes back on instance b with the last id she had from a: exactly
    // the gap, then live events published on a, each once.
    let mut again = b.subscribe_with(query, &[("last-event-id", &mark.id)]).await;
    assert_replay(&a, &mut again.stream, &expected, "b").await;
}

/// Waits until `server`'s presence route answers `users` for `team/a`.
async fn until_presence(server: &TestServer, users: &Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = TestServer::send(server.api(Method::GET, "/api/sse/presence/team%2Fa")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["users"] == *users {
            assert_eq!(body["channel"], "team/a");
            return;
        }
        assert!(Instant::now() < deadline, "presence stayed {body}, expected {users}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn redis_presence_across_instances(serve: ServeFn) {
    let Some(prefix) = RedisPrefix::new_or_skip("redis_presence_across_instances").await else {
        return;
    };
    let mut settings = prefix.settings().to_vec();
    settings.push(("SSE_PRESENCE_CHANNELS", "team/*"));
    let a = TestServer::start(serve, &settings).await;
    let b = TestServer::start(serve, &settings).await;
    let mut alice = a.subscribe("userId=alice&channel=team/a").await;
    let bob_on_b = b.subscribe("userId=bob&channel=team/a").await;
    let notice = |state: &str| json!({"channel": "team/a", "userId": "bob", "state": state});
    let joined = alice.stream.expect_event("presence").await;
    assert_eq!(
        serde_json::from_str::<Value>(&joined.data).expect("JSON"),
        notice("join")
    );
    assert_eq!(joined.id, "", "presence events have no id");

    // A second tab on the other instance is the same presence, counted on
    // both instances.
    let bob_on_a = a.subscribe("userId=bob&channel=team/a").await;
    let both = json!([{"userId": "alice", "connections": 1}, {"userId": "bob", "connections": 2}]);
    until_presence(&b, &both).await;
    until_presence(&a, &both).await;
    for (server, bob) in [(&b, &bob_on_b), (&a, &bob_on_a)] {
        let path = format!("/api/sse/connections/{}", bob.client_id);
        let (status, _) = TestServer::send(server.api(Method::DELETE, &path)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    // One leave, after the last tab: a second join or an early leave would
    // come first.
    let left = alice.stream.expect_event("presence").await;
    assert_eq!(
        serde_json::from_str::<Value>(&left.data).expect("JSON"),
        notice("leave")
    );
    until_presence(&b, &json!([{"userId": "alice", "connections": 1}])).await;
    drop((bob_on_a, bob_on_b));
}

pub(crate) async fn redis_idempotency_key_spans_instances(serve: ServeFn) {
    let Some(prefix) = RedisPrefix::new_or_skip("redis_idempotency_key_spans_instances").await else {
        return;
    };
    idempotency_key_spans_instances(serve, &prefix.settings()).await;
}

/// An idempotency key holds across two instances sharing a backplane.
pub(crate) async fn idempotency_key_spans_instances(serve: ServeFn, settings: &[(&str, &str)]) {
    let (a, b) = two_instances(serve, settings).await;
    let mut on_b = b.subscribe("").await;
    let body = json!({"event": "paid", "data": "order 17"});
    let (status, first) = a.publish_with_key(&body, "order-17-paid").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // The retry reaches the other instance: answered with the first id.
    let (status, again) = b.publish_with_key(&body, "order-17-paid").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, json!({"id": first["id"], "delivered": 0, "duplicate": true}));
    a.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(names_until(&mut on_b.stream, "end").await, ["paid"]);
}

pub(crate) async fn redis_cluster_stats_across_instances(serve: ServeFn) {
    let Some(prefix) = RedisPrefix::new_or_skip("redis_cluster_stats_across_instances").await else {
        return;
    };
    let mut settings = prefix.settings().to_vec();
    settings.push(("SSE_STATS_INTERVAL_MS", "200"));
    let a = TestServer::start(serve, &settings).await;
    let b = TestServer::start(serve, &settings).await;
    let _p = a.subscribe("userId=alice&channel=red").await;
    let _q = b.subscribe("userId=alice&channel=red").await;
    let _r = b.subscribe("userId=bob&channel=blue").await;
    a.publish_ok(&json!({"event": "one", "data": 1})).await;
    for (name, server) in [("a", &a), ("b", &b)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stats = loop {
            let (status, stats) = TestServer::send(server.api(Method::GET, "/api/sse/stats/cluster")).await;
            assert_eq!(status, StatusCode::OK, "{stats}");
            let complete = stats["instances"].as_array().is_some_and(|i| i.len() == 2)
                && stats["totals"]["connections"] == 3
                && stats["totals"]["eventsPublished"] == 1;
            if complete {
                break stats;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the cluster never showed both instances: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert_eq!(stats["totals"]["uniqueUsers"], 2, "{name}: alice counts once: {stats}");
        assert_eq!(stats["totals"]["channels"], json!({"red": 2, "blue": 1}), "{name}");
        let local = &stats["instances"][0];
        assert_eq!((&local["local"], &local["ageMs"]), (&json!(true), &json!(0)), "{name}");
        assert_eq!(
            local["stats"]["connections"],
            server.stats().await["connections"],
            "{name}"
        );
        let other = &stats["instances"][1];
        assert_eq!(other["local"], false, "{name}");
        assert!(other["ageMs"].as_u64().is_some_and(|age| age <= 600), "{name}: {other}");
    }
}
