//! The values of `GET /metrics` after a scripted scenario, on every
//! framework's demo: connections opened, refused and closed, events
//! published by target kind, a replay and a reset, the delivery latency
//! samples.
//!
//! The Prometheus recorder is global to the process, so the scenarios run
//! one at a time (this binary holds no other scenario) and compare a scrape
//! after each with one before. Also: the Grafana dashboard of `docs/`
//! queries exactly the documented metrics.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sse_examples::ServeFn;
use sse_tests::{End, TestServer};
use tokio::sync::Mutex;

/// One scenario at a time: the figures are process-wide.
static SERIAL: Mutex<()> = Mutex::const_new(());

const TOKEN: &str = "metrics-token";

/// How much `series` grew from `before` to `after`.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    let get = |samples: &BTreeMap<String, f64>| samples.get(series).copied().unwrap_or(0.0);
    get(after) - get(before)
}

async fn scenario(serve: ServeFn) {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(serve, &[("SSE_PUBLISH_TOKEN", TOKEN), ("SSE_MAX_CONNECTIONS", "2")]).await;
    let before = server.metrics().await;

    let mut alice = server.subscribe("userId=alice").await;
    let first = server.publish_ok(&json!({"event": "one", "data": 1})).await;
    server
        .publish_ok(&json!({"event": "for-alice", "target": "user", "targetId": "alice", "data": 2}))
        .await;
    server.publish_ok(&json!({"event": "two", "data": 3})).await;
    for name in ["one", "for-alice", "two"] {
        alice.stream.expect_event(name).await;
    }

    // The second connection fills the server; a third is refused.
    let bob = server.subscribe("userId=bob").await;
    let (_, events, end) = server.connect("userId=carol").await.read_to_end().await;
    assert_eq!(end, End::Clean);
    assert_eq!(events.len(), 1, "one overloaded event: {events:?}");

    // Bob is disconnected; dave resumes after the first event and misses
    // only the second broadcast (the other was for alice).
    disconnect(&server, &bob.client_id).await;
    let mut dave = server
        .subscribe_with("userId=dave", &[("last-event-id", first.id.as_str())])
        .await;
    dave.stream.expect_event("two").await;
    disconnect(&server, &dave.client_id).await;
    // Erin resumes from an id the history never held: a reset.
    let mut erin = server
        .subscribe_with("userId=erin", &[("last-event-id", "no-such-id")])
        .await;
    erin.stream.expect_event("reset").await;

    let after = server.metrics().await;
    let expected = [
        ("sse_connections", 2.0),
        ("sse_connections_opened_total", 4.0),
        ("sse_connections_refused_total{reason=\"overloaded\"}", 1.0),
        ("sse_connections_closed_total{reason=\"disconnected\"}", 2.0),
        ("sse_events_published_total{target=\"all\"}", 2.0),
        ("sse_events_published_total{target=\"user\"}", 1.0),
        ("sse_events_replayed_total", 1.0),
        ("sse_resets_total", 1.0),
        ("sse_delivery_latency_seconds_count", 3.0),
    ];
    for (series, change) in expected {
        assert_eq!(
            delta(&before, &after, series),
            change,
            "{series}: before {before:?}, after {after:?}"
        );
    }
    // Each of alice's three events, dave's replay and erin's reset were
    // handed to a writer, with the opening frames of every stream.
    let frames = delta(&before, &after, "sse_frames_delivered_total");
    assert!(frames >= 5.0, "{after:?}");
    // Each frame is at least `data:` and a blank line. The queue depth
    // samples each connection's first take of frames (and one in 16 after):
    // four streams, each of at least one frame.
    let bytes = delta(&before, &after, "sse_bytes_written_total");
    assert!(bytes >= 8.0 * frames, "{bytes} bytes for {frames} frames");
    let takes = delta(&before, &after, "sse_queue_depth_count");
    assert!(
        (4.0..=frames).contains(&takes),
        "{takes} sampled takes of {frames} frames"
    );
    let depths = delta(&before, &after, "sse_queue_depth_sum");
    assert!(
        depths >= takes && depths <= frames,
        "sampled depths {depths} of {frames} frames"
    );
    assert!(
        after.contains_key("sse_queue_depth_bucket{le=\"1\"}"),
        "a histogram with buckets: {after:?}"
    );
    // No series names a user, a client or a channel.
    for series in after.keys() {
        for name in ["alice", "bob", "carol", "dave", "erin", &bob.client_id] {
            assert!(!series.contains(name), "{series} names {name}");
        }
    }
    server.stop().await.expect("the server stops cleanly");
}

async fn disconnect(server: &TestServer, client_id: &str) {
    let path = format!("/api/sse/connections/{client_id}");
    let (status, _) = TestServer::send(server.api(Method::DELETE, &path)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server
        .wait_for_stats("the disconnected connection to go", |s| {
            s["connections"].as_u64().is_some_and(|n| n < 2)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_metrics_after_a_scenario() {
    scenario(sse_examples::axum_demo::serve).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn warp_metrics_after_a_scenario() {
    scenario(sse_examples::warp_demo::serve).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poem_metrics_after_a_scenario() {
    scenario(sse_examples::poem_demo::serve).await;
}

/// The metric names `docs/grafana-dashboard.json` queries: every `sse_...`
/// token of its expressions, without a histogram's `_bucket`, `_count` or
/// `_sum`.
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let mut names = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for token in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if token.starts_with("sse_") {
                    let name = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|suffix| token.strip_suffix(suffix))
                        .unwrap_or(token);
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn the_grafana_dashboard_queries_only_documented_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sse-core/src/metrics.rs");
    let source = std::fs::read_to_string(path).expect("the metrics module");
    // The module's table: "//! | `name` | kind | labels |".
    let documented: std::collections::BTreeSet<String> = source
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect();
    assert!(documented.len() >= 12, "{documented:?}");
    let queried = dashboard_metrics();
    let unknown: Vec<&String> = queried.difference(&documented).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries undocumented metrics: {unknown:?}"
    );
    let unused: Vec<&String> = documented.difference(&queried).collect();
    assert!(unused.is_empty(), "the dashboard shows no panel for {unused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_off_serves_no_metrics_route() {
    // Its servers record into the process's recorder all the same.
    let _serial = SERIAL.lock().await;
    for serve in [
        sse_examples::axum_demo::serve as ServeFn,
        sse_examples::warp_demo::serve,
        sse_examples::poem_demo::serve,
    ] {
        let server = TestServer::start(serve, &[("SSE_METRICS", "off")]).await;
        let (status, body) = TestServer::send(server.api(Method::GET, "/metrics")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        server.stop().await.expect("the server stops cleanly");
    }
}
