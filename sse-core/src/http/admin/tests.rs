use std::time::Duration;

use futures_util::StreamExt as _;
use http::{Method, Request, StatusCode};

use super::*;
use crate::connection::ConnectOptions;
use crate::http::{BearerToken, DevIdentity, FrameStream};

fn parts(method: Method, token: Option<&str>) -> Parts {
    let mut request = Request::builder().method(method).uri("/stream");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(()).expect("a request").into_parts().0
}

fn admin() -> SseAdmin {
    let manager = SseManager::builder().build().expect("a manager");
    let endpoints = SseEndpoints::new(manager, DevIdentity::enable()).publish_authorizer(BearerToken::new("secret"));
    SseAdmin::new(&endpoints).interval(Duration::from_millis(100))
}

async fn feed(admin: &SseAdmin) -> FrameStream {
    match admin.handle(&parts(Method::GET, Some("secret")), "stream").await {
        SseReply::Frames(frames) => frames,
        other => panic!("a feed, not {other:?}"),
    }
}

/// The data of the next `snapshot` event.
async fn next_snapshot(frames: &mut FrameStream) -> serde_json::Value {
    let frame = tokio::time::timeout(Duration::from_secs(10), frames.next())
        .await
        .expect("a snapshot within the wait")
        .expect("the feed goes on");
    let text = std::str::from_utf8(&frame).expect("UTF-8");
    let data = text
        .strip_prefix("event: snapshot\ndata: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("a snapshot event: {text:?}"));
    serde_json::from_str(data).expect("JSON")
}

#[tokio::test]
async fn the_feed_is_guarded_and_the_page_is_not() {
    let admin = admin();
    for token in [None, Some("wrong")] {
        let SseReply::Response(refused) = admin.handle(&parts(Method::GET, token), "/stream").await else {
            panic!("a refusal");
        };
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    }
    let SseReply::Response(page) = admin.handle(&parts(Method::GET, None), "/").await else {
        panic!("the page");
    };
    assert_eq!(page.status(), StatusCode::OK);
    let html = std::str::from_utf8(page.body()).expect("UTF-8");
    assert!(html.contains(r#"<meta name="sse-api" content="/api/sse">"#));
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "no external resource: {external}");
    }
    let SseReply::Response(wrong) = admin.handle(&parts(Method::POST, Some("secret")), "stream").await else {
        panic!("a 405");
    };
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    let SseReply::Response(unknown) = admin.handle(&parts(Method::GET, Some("secret")), "other").await else {
        panic!("a 404");
    };
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn snapshots_list_the_newest_connections_and_viewers_are_not_counted() {
    let admin = admin().max_listed(2);
    let manager = admin.manager().clone();
    let mut open = Vec::new();
    for user in ["a", "b", "c"] {
        open.push(
            manager
                .connect(ConnectOptions::new().user(user))
                .await
                .expect("connected"),
        );
    }
    let mut viewer = feed(&admin).await;
    let first = next_snapshot(&mut viewer).await;
    assert_eq!(first["stats"]["connections"], 3);
    assert_eq!(first["notListed"], 1);
    let users: Vec<&str> = first["connections"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["userId"].as_str())
        .collect();
    assert_eq!(users, ["c", "b"], "the newest first");
    let second = next_snapshot(&mut viewer).await;
    assert!(second["atMs"].as_u64() >= first["atMs"].as_u64());
    assert_eq!(manager.stats().connections, 3, "a viewer is no connection");
    assert_eq!(manager.stats().connections_opened, 3);
    assert_eq!(admin.viewers(), 1);
}

#[tokio::test]
async fn the_ticker_stops_without_viewers_and_feeds_end_at_shutdown() {
    let admin = admin();
    let viewer = feed(&admin).await;
    drop(viewer);
    assert_eq!(admin.viewers(), 0);
    // The ticker notices at its next tick, and a new viewer starts another.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!admin.hub.is_ticking(), "no ticker runs without viewers");
    let mut viewer = feed(&admin).await;
    next_snapshot(&mut viewer).await;
    next_snapshot(&mut viewer).await;

    admin.manager().shutdown(None).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while viewer.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the feed ends after the shutdown");
    let SseReply::Response(refused) = admin.handle(&parts(Method::GET, Some("secret")), "stream").await else {
        panic!("a refusal");
    };
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn viewers_are_capped() {
    let admin = admin().max_viewers(1);
    let _first = feed(&admin).await;
    let SseReply::Response(refused) = admin.handle(&parts(Method::GET, Some("secret")), "stream").await else {
        panic!("a refusal");
    };
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}
