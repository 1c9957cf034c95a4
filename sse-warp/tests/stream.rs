//! The warp adapter over real HTTP: headers, first frames, a publish, the
//! body limit, and unregistration when the client goes away.

use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt as _};
use sse_core::SseManager;
use sse_core::http::{DevIdentity, MAX_BODY_BYTES, SseEndpoints};
use warp::Filter as _;

/// Reads from `body` into `received` until it holds `needle`.
async fn read_until<S, E>(body: &mut S, received: &mut Vec<u8>, needle: &str)
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    let deadline = Duration::from_secs(10);
    while !String::from_utf8_lossy(received).contains(needle) {
        let chunk = tokio::time::timeout(deadline, body.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within {deadline:?}; got {:?}",
                    String::from_utf8_lossy(received)
                )
            })
            .expect("the stream ended")
            .expect("a chunk");
        received.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn streams_publishes_and_unregisters() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    let routes = warp::path!("api" / "sse" / ..).and(sse_warp::filter(endpoints));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/api/sse", listener.local_addr().expect("address"));
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    let client = reqwest::Client::new();

    let response = client
        .get(format!("{base}?userId=alice"))
        .send()
        .await
        .expect("connect");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache, no-transform"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    assert_eq!(header("content-encoding"), None);
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    read_until(&mut body, &mut received, "event: connected\n").await;
    read_until(&mut body, &mut received, "\n\n").await;
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(text.starts_with("retry: 3000\n"), "{text:?}");
    assert!(text.contains("\"clientId\""), "{text:?}");
    assert_eq!(manager.connection_count(), 1);

    let publish = client
        .post(format!("{base}/publish"))
        .header("content-type", "application/json")
        .body(r#"{"event":"greeting","data":"line1\nline2","target":"user","targetId":"alice"}"#)
        .send()
        .await
        .expect("publish");
    assert_eq!(publish.status(), 200);
    let answer: serde_json::Value = serde_json::from_slice(&publish.bytes().await.expect("body")).expect("JSON");
    assert_eq!(answer["delivered"], 1);
    read_until(
        &mut body,
        &mut received,
        "event: greeting\ndata: line1\ndata: line2\n\n",
    )
    .await;

    let too_large = client
        .post(format!("{base}/publish"))
        .body(vec![b' '; MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("oversized publish");
    assert_eq!(too_large.status(), 413);
    let answer: serde_json::Value = serde_json::from_slice(&too_large.bytes().await.expect("body")).expect("JSON");
    assert!(answer["error"].is_string());

    let unknown = client
        .get(format!("{base}/nothing"))
        .send()
        .await
        .expect("unknown path");
    assert_eq!(unknown.status(), 404);

    drop(body);
    let started = Instant::now();
    while manager.connection_count() != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dropped client is still registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
