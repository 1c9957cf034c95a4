//! Stream routes of an application's own: `SseEndpoints::connect_options`
//! (which the stream endpoint calls) and `ConnectOptions::from_request`
//! resume after the `Last-Event-ID` header, which wins over `lastEventId`,
//! an authenticator's channels are joined with replay, and one endpoint
//! group mounted alone answers only its paths, whatever the path.
#![cfg(all(feature = "http", feature = "tokio"))]

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use sse_core::http::{AuthError, Authenticator, Identity, RouteGroup, SseEndpoints, SseReply};
use sse_core::test_util::frames::{drain, parse};
use sse_core::{ConnectOptions, Connection, Event, SseManager, Target};

/// Identifies every subscriber as `alice`, who joins `team`.
struct JoinsTeam;

#[async_trait]
impl Authenticator for JoinsTeam {
    async fn authenticate(&self, _: &Parts) -> Result<Identity, AuthError> {
        Ok(Identity::user("alice").with_channels(["team"]))
    }
}

fn request(uri: &str, last_event_id: Option<&str>) -> Parts {
    let mut request = http::Request::get(uri);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.body(()).expect("a request").into_parts().0
}

/// Three events on `team`, and their ids.
async fn three_events(manager: &SseManager) -> Vec<String> {
    let mut ids = Vec::new();
    for data in ["1", "2", "3"] {
        let sent = manager
            .send(Target::channel("team"), Event::named("note", data).expect("event"))
            .await
            .expect("sent");
        ids.push(sent.id.expect("an id"));
    }
    ids
}

/// The data of the `note` events queued on `connection`.
fn notes(connection: &mut Connection) -> Vec<String> {
    parse(drain(connection))
        .into_iter()
        .filter(|event| event.event == "note")
        .map(|event| event.data)
        .collect()
}

#[tokio::test]
async fn assigned_channels_are_joined_with_replay_and_the_header_wins() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), JoinsTeam);
    let ids = three_events(&manager).await;
    let uri = format!("/own?lastEventId={}", ids[1]);
    let options = endpoints
        .connect_options(&request(&uri, Some(&ids[0])))
        .await
        .expect("accepted");
    let mut connection = manager.connect(options).await.expect("connected");
    assert_eq!(notes(&mut connection), ["2", "3"]);
    let info = manager
        .connection_info(connection.client_id().as_str())
        .expect("registered");
    assert!(info.channels.contains("team"));

    let SseReply::Stream(mut connection) = endpoints.connect(&request(&uri, None)).await else {
        panic!("the stream endpoint refused");
    };
    assert_eq!(notes(&mut connection), ["3"], "the query's id without a header");
}

#[tokio::test]
async fn from_request_reads_the_protocol_parts_alone() {
    let manager = SseManager::builder().build().expect("manager");
    let ids = three_events(&manager).await;
    let uri = "/own?channel=team&lastEventId=unknown&token=secret";
    let options = ConnectOptions::from_request(&request(uri, Some(&ids[1])));
    let mut connection = manager.connect(options).await.expect("connected");
    assert_eq!(notes(&mut connection), ["3"]);
    let info = manager
        .connection_info(connection.client_id().as_str())
        .expect("registered");
    assert!(info.metadata.is_empty(), "other parameters are the application's");
    assert_eq!(info.user_id, None);

    let reset = ConnectOptions::from_request(&request("/own?channel=team", Some("no-such-id")));
    let mut connection = manager.connect(reset).await.expect("connected");
    let events = parse(drain(&mut connection));
    assert!(events.iter().any(|event| event.event == "reset"));
}

#[tokio::test]
async fn a_group_answers_its_paths_alone_whatever_the_path() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), JoinsTeam);
    let mut paths: Vec<String> = [
        "",
        "/",
        "publish",
        "stats",
        "connections",
        "connections/x",
        "connections/",
        "subscribe",
        "unsubscribe",
        "client.js",
        "client.js/",
        "..",
        "%2e%2e/stats",
        "stats/extra",
        "//",
        "publish%00",
    ]
    .iter()
    .map(|path| (*path).to_owned())
    .collect();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        let length = rng.usize(0..40);
        paths.push((0..length).map(|_| char::from(rng.u8(0x21..0x7f))).collect());
    }
    for path in &paths {
        let expected = RouteGroup::of(path);
        for group in RouteGroup::ALL {
            let parts = request("/", None);
            let reply = endpoints.handle_group(group, &parts, path, Bytes::new()).await;
            let status = reply.into_http_response(|_| Bytes::new()).status();
            if expected == Some(group) {
                assert_ne!(status, StatusCode::NOT_FOUND, "{group:?} {path:?}");
            } else {
                assert_eq!(status, StatusCode::NOT_FOUND, "{group:?} {path:?}");
            }
        }
    }
    assert_eq!(manager.connection_count(), 0, "the replies are dropped");
}
