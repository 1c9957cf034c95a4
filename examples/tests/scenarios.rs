//! The axum scenario examples as processes, each driven over HTTP through
//! what its documentation promises: `axum-chat` (members on arrival,
//! presence, messages, a resume with exactly the missed messages),
//! `axum-notifications` (the unread count as a new tab's first event, to
//! that tab only, and a resume), `axum-dashboard` (statistics pushed on a
//! schedule) and `axum-progress` (a job's progress to the client that
//! started it).

mod apps;

use apps::{App, PATIENCE, Stream, open_stream};
use serde_json::{Value, json};

/// Opens `path` on `app` with `headers`; checks the `connected` event and
/// returns it with the stream.
async fn open(app: &App, path: &str, headers: &[(&str, &str)]) -> (Value, Stream) {
    open_stream(&reqwest::Client::new(), &format!("{}{path}", app.base), headers).await
}

/// POSTs `body` as JSON to `path`: the status and the answer's body.
async fn post(app: &App, path: &str, body: &Value) -> (u16, String) {
    let response = tokio::time::timeout(
        PATIENCE,
        reqwest::Client::new()
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send(),
    )
    .await
    .expect("an answer in time")
    .expect("an answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("the body"))
}

#[tokio::test]
async fn axum_chat() {
    let app = App::start(env!("CARGO_BIN_EXE_axum-chat"), &[]);
    let (_, mut alice) = open(&app, "/rooms/rust/events?userId=alice", &[]).await;
    let (members, _) = alice.expect("members").await;
    assert_eq!(
        members,
        json!({"channel": "room/rust", "members": [{"userId": "alice", "connections": 1}]})
    );

    let (_, mut bob) = open(&app, "/rooms/rust/events?userId=bob", &[]).await;
    let (members, _) = bob.expect("members").await;
    assert_eq!(members["members"].as_array().map(Vec::len), Some(2), "{members}");
    let (joined, _) = alice.expect("presence").await;
    assert_eq!(
        joined,
        json!({"channel": "room/rust", "userId": "bob", "state": "join"})
    );

    let say = |text: &str| json!({"user": "bob", "text": text});
    assert_eq!(post(&app, "/rooms/rust/messages", &say("one")).await.0, 200);
    let (first, seen) = alice.expect("message").await;
    assert_eq!(first, json!({"room": "rust", "user": "bob", "text": "one"}));
    drop(alice);

    // Alice is away for two messages, then resumes from the last she saw.
    for text in ["two", "three"] {
        assert_eq!(post(&app, "/rooms/rust/messages", &say(text)).await.0, 200);
    }
    let (_, mut again) = open(&app, "/rooms/rust/events?userId=alice", &[("last-event-id", &seen.id)]).await;
    for text in ["two", "three"] {
        let (message, _) = again.expect("message").await;
        assert_eq!(message["text"], text, "{message}");
    }
    // Then the connect hook's list, after the replay.
    again.expect("members").await;
}

#[tokio::test]
async fn axum_notifications() {
    let app = App::start(env!("CARGO_BIN_EXE_axum-notifications"), &[]);
    let (_, mut tab) = open(&app, "/events?userId=alice", &[]).await;
    assert_eq!(tab.expect("unread").await.0, json!({"count": 0}));

    let note = json!({"title": "New comment", "message": "Bob replied"});
    let (status, answer) = post(&app, "/notify/alice", &note).await;
    assert_eq!((status, answer.as_str()), (200, r#"{"delivered":1}"#));
    let (notification, seen) = tab.expect("notification").await;
    assert_eq!(notification["title"], "New comment", "{notification}");
    assert_eq!(tab.expect("unread").await.0, json!({"count": 1}));

    // A second tab gets the count as its first event; the first tab gets
    // nothing for it.
    let (_, mut second) = open(&app, "/events?userId=alice", &[]).await;
    assert_eq!(second.expect("unread").await.0, json!({"count": 1}));
    assert_eq!(post(&app, "/read/alice", &json!({})).await.0, 200);
    assert_eq!(tab.expect("unread").await.0, json!({"count": 0}));
    assert_eq!(second.expect("unread").await.0, json!({"count": 0}));

    // The first tab resumes after the notification: the count changes it
    // missed, then the current count from the connect hook.
    drop(tab);
    let (_, mut resumed) = open(&app, "/events?userId=alice", &[("last-event-id", &seen.id)]).await;
    assert_eq!(resumed.expect("unread").await.0, json!({"count": 1}));
    assert_eq!(resumed.expect("unread").await.0, json!({"count": 0}));
    assert_eq!(resumed.expect("unread").await.0, json!({"count": 0}));
}

#[tokio::test]
async fn axum_dashboard() {
    let app = App::start(env!("CARGO_BIN_EXE_axum-dashboard"), &[]);
    let (_, mut watcher) = open(&app, "/api/sse?channel=dashboard", &[]).await;
    let (first, _) = watcher.expect("stats").await;
    let (second, _) = watcher.expect("stats").await;
    assert!(first.is_object() && second.is_object(), "{first} {second}");
    assert_eq!(
        (&second["connections"], &second["viewers"]),
        (&json!(1), &json!(1)),
        "{second}"
    );
}

#[tokio::test]
async fn axum_progress() {
    let app = App::start(env!("CARGO_BIN_EXE_axum-progress"), &[]);
    let (connected, mut client) = open(&app, "/api/sse", &[]).await;
    let client_id = connected["clientId"].as_str().expect("clientId");
    let (status, _) = post(&app, "/jobs?clientId=nobody", &json!({})).await;
    assert_eq!(status, 404);
    let (status, answer) = post(&app, &format!("/jobs?clientId={client_id}"), &json!({})).await;
    assert_eq!(status, 202, "{answer}");
    let job: Value = serde_json::from_str(&answer).expect("JSON");
    for percent in (0..=100).step_by(10) {
        let (step, _) = client.expect("progress").await;
        assert_eq!(step, json!({"jobId": job["jobId"], "percent": percent}));
    }
    assert_eq!(client.expect("done").await.0, json!({"jobId": job["jobId"]}));
}
