//! The floor server, in each of its modes, delivers one publish to every
//! stream, answers how many it reached, and forgets a stream whose client
//! went away: the calibrations measure deliveries, not a server that
//! loses them.

mod common;

use std::time::{Duration, Instant};

use common::WAIT;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::process::Child;

async fn start(mode: &str) -> (Child, String) {
    common::start(env!("CARGO_BIN_EXE_floor-server"), &[("SSE_FLOOR_MODE", mode)]).await
}

async fn publish(client: &reqwest::Client, base: &str, data: &str) -> Value {
    let response = client
        .post(format!("{base}/api/sse/publish"))
        .json(&json!({ "event": "tick", "data": data }))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON answer")
}

/// Reads `stream` until it holds `needle`.
async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    needle: &str,
) -> String {
    let mut received = String::new();
    tokio::time::timeout(WAIT, async {
        while !received.contains(needle) {
            let chunk = stream.next().await.expect("the stream goes on").expect("a chunk");
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} arrives in time; got {received:?}"));
    received
}

#[tokio::test]
async fn every_mode_delivers_to_each_stream_and_forgets_gone_ones() {
    let client = reqwest::Client::new();
    for mode in ["write", "task", "hyper"] {
        let (_server, base) = start(mode).await;
        let mut streams = Vec::new();
        for _ in 0..2 {
            let response = client.get(format!("{base}/api/sse")).send().await.expect("connect");
            assert_eq!(response.status(), 200, "{mode}");
            assert_eq!(
                response.headers().get("content-type").and_then(|v| v.to_str().ok()),
                Some("text/event-stream"),
                "{mode}"
            );
            streams.push(response.bytes_stream());
        }
        // Subscribed once the head is read in the `write` and `task` modes,
        // once the body exists in the `hyper` mode: publish until both count.
        let deadline = Instant::now() + WAIT;
        let mut round = 0;
        loop {
            round += 1;
            let answer = publish(&client, &base, &format!("hello {round}")).await;
            if answer["delivered"] == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{mode}: both streams subscribed: {answer}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for stream in &mut streams {
            let received = read_until(stream, &format!("data: hello {round}\n\n")).await;
            assert!(received.contains("event: tick\n"), "{mode}: {received:?}");
        }

        // A client that goes away is forgotten at a later publish.
        drop(streams.pop());
        let deadline = Instant::now() + WAIT;
        loop {
            round += 1;
            let answer = publish(&client, &base, &format!("hello {round}")).await;
            if answer["delivered"] == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode}: the gone stream is forgotten: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        read_until(&mut streams[0], &format!("data: hello {round}\n\n")).await;

        let answer = client
            .post(format!("{base}/api/sse/publish"))
            .body("not json")
            .send()
            .await
            .expect("publish");
        assert_eq!(answer.status(), 400, "{mode}");
    }
}
