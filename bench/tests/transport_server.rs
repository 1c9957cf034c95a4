//! The transport server answers the part of the contract the load benchmark
//! uses: a stream, a publish on a kept-alive connection, the body limit and
//! unknown paths, and it forgets a client that goes away.

mod common;

use std::time::{Duration, Instant};

use common::WAIT;
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::process::Child;

async fn start() -> (Child, String) {
    common::start(env!("CARGO_BIN_EXE_transport-server"), &[]).await
}

async fn stats(client: &reqwest::Client, base: &str) -> Value {
    let response = client.get(format!("{base}/api/sse/stats")).send().await.expect("stats");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON stats")
}

#[tokio::test]
async fn streams_publishes_and_forgets_gone_clients() {
    let (_server, base) = start().await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("{base}/api/sse?userId=alice"))
        .send()
        .await
        .expect("connect");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let mut received = String::new();
    let mut read_until = async |needle: &str| {
        while !received.contains(needle) {
            let chunk = tokio::time::timeout(WAIT, body.next())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in time; got {received:?}"))
                .expect("the stream goes on")
                .expect("a chunk");
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until("event: connected\n").await;

    // Two publishes on one kept-alive connection.
    for n in 1..=2 {
        let answer = client
            .post(format!("{base}/api/sse/publish"))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"event":"n","data":"{n}","target":"user","targetId":"alice"}}"#
            ))
            .send()
            .await
            .expect("publish");
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.expect("JSON");
        assert_eq!(answer["delivered"], 1);
        read_until(&format!("event: n\ndata: {n}\n\n")).await;
    }

    let too_large = client
        .post(format!("{base}/api/sse/publish"))
        .body(vec![b' '; sse_core::http::MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("oversized publish");
    assert_eq!(too_large.status(), 413);
    let unknown = client
        .get(format!("{base}/elsewhere"))
        .send()
        .await
        .expect("unknown path");
    assert_eq!(unknown.status(), 404);
    let invalid = client
        .post(format!("{base}/api/sse/publish"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("invalid publish");
    assert_eq!(invalid.status(), 400);

    assert_eq!(stats(&client, &base).await["connections"], 1);
    drop(body);
    let started = Instant::now();
    while stats(&client, &base).await["connections"] != 0 {
        assert!(started.elapsed() < WAIT, "the gone client is still registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
