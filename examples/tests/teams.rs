//! The team board examples (`axum-teams`, `warp-teams`, `poem-teams`) as
//! processes, driven over HTTP through one scenario: logins, refused
//! tokens, the `snapshot` on connect, presence joins and leaves, messages
//! kept within their team, a resume with `Last-Event-ID` replaying exactly
//! what was missed, a `reset` for an unknown id, and the administration
//! routes behind their key.

mod apps;

use apps::{App, PATIENCE, Stream, open_stream};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "test-admin-key";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn login(&self, user: &str, team: &str) -> String {
        let (status, answer) = self.post("/login", None, &json!({ "user": user, "team": team })).await;
        assert_eq!(status, 200, "{answer}");
        answer["token"].as_str().expect("a token").to_owned()
    }

    /// POSTs `body` as JSON, with `token` as a bearer token: the status and
    /// the answer's JSON.
    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = tokio::time::timeout(PATIENCE, request.send())
            .await
            .expect("an answer in time")
            .expect("an answer");
        let status = response.status().as_u16();
        let answer = response.bytes().await.expect("the body");
        (status, serde_json::from_slice(&answer).expect("a JSON answer"))
    }

    async fn say(&self, token: &str, text: &str) -> Value {
        let (status, message) = self.post("/messages", Some(token), &json!({ "text": text })).await;
        assert_eq!(status, 201, "{message}");
        message
    }

    /// `GET path` with `headers`: the status and the answer's JSON.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(PATIENCE, request.send())
            .await
            .expect("an answer in time")
            .expect("an answer");
        let status = response.status().as_u16();
        let answer = tokio::time::timeout(PATIENCE, response.bytes())
            .await
            .expect("the body in time")
            .expect("the body");
        (status, serde_json::from_slice(&answer).expect("a JSON answer"))
    }

    /// Opens `/events` with `query` and `headers`; checks the `connected`
    /// event.
    async fn connect(&self, query: &str, headers: &[(&str, &str)]) -> Stream {
        open_stream(&self.http, &format!("{}/events{query}", self.base), headers)
            .await
            .1
    }

    /// Follows the team's stream from `last_event_id`, as `EventSource`
    /// does when it reconnects.
    async fn follow_from(&self, token: &str, last_event_id: &str) -> Stream {
        self.connect(
            "",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("last-event-id", last_event_id),
            ],
        )
        .await
    }

    async fn follow(&self, token: &str) -> Stream {
        self.connect("", &[("authorization", &format!("Bearer {token}"))]).await
    }
}

fn presence(user: &str, state: &str) -> Value {
    json!({ "channel": "team/red", "userId": user, "state": state })
}

fn message(id: u64, user: &str, text: &str) -> Value {
    json!({ "id": id, "user": user, "text": text })
}

/// The user ids of a snapshot's members.
fn member_ids(snapshot: &Value) -> Vec<&str> {
    snapshot["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| member["userId"].as_str().expect("a userId"))
        .collect()
}

async fn team_board(binary: &str) {
    let app = App::start(binary, &[("TEAMS_ADMIN_KEY", ADMIN_KEY)]);
    let client = Client {
        http: reqwest::Client::new(),
        base: app.base.clone(),
    };

    let alice = client.login("alice", "red").await;
    let bob = client.login("bob", "red").await;
    let carol = client.login("carol", "blue").await;
    for (user, team) in [("", "red"), ("alice", "r/d"), (&*"x".repeat(65), "red")] {
        let (status, answer) = client
            .post("/login", None, &json!({ "user": user, "team": team }))
            .await;
        assert_eq!(status, 400, "{user:?} in {team:?}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }

    // An unknown token opens no stream and posts nothing.
    for (query, headers) in [
        ("?access_token=nope", &[][..]),
        ("", &[("authorization", "Bearer nope")][..]),
        ("", &[][..]),
    ] {
        let (status, answer) = client.get(&format!("/events{query}"), headers).await;
        assert_eq!(status, 401, "{query} {headers:?}: {answer}");
    }
    let (status, _) = client.post("/messages", Some("nope"), &json!({ "text": "hi" })).await;
    assert_eq!(status, 401);
    // Nor does a valid one reach another team's channel.
    let (status, _) = client
        .get(&format!("/events?access_token={alice}&channel=team/blue"), &[])
        .await;
    assert_eq!(status, 403);

    // The snapshot is sent once the connection is registered: its own user
    // is among the members.
    let mut on_alice = client.follow(&alice).await;
    let (snapshot, _) = on_alice.expect("snapshot").await;
    assert_eq!(
        snapshot,
        json!({ "team": "red", "messages": [], "members": [{ "userId": "alice", "connections": 1 }] })
    );
    let mut on_carol = client.connect(&format!("?access_token={carol}"), &[]).await;
    let (snapshot, _) = on_carol.expect("snapshot").await;
    assert_eq!(
        snapshot,
        json!({ "team": "blue", "messages": [], "members": [{ "userId": "carol", "connections": 1 }] })
    );

    let mut on_bob = client.follow(&bob).await;
    let (snapshot, _) = on_bob.expect("snapshot").await;
    assert_eq!(member_ids(&snapshot), ["alice", "bob"]);
    assert_eq!(on_alice.expect("presence").await.0, presence("bob", "join"));

    let posted = client.say(&bob, "hello, red").await;
    assert_eq!(posted, message(1, "bob", "hello, red"));
    let (received, event) = on_alice.expect("message").await;
    assert_eq!(received, posted);
    let last_seen = event.id;
    assert!(!last_seen.is_empty(), "a message carries an event id");
    // Carol's first event after her snapshot is her own team's message.
    client.say(&carol, "hello, blue").await;
    assert_eq!(on_carol.expect("message").await.0, message(1, "carol", "hello, blue"));

    // Alice goes away, misses two messages, and comes back: exactly those
    // two are replayed, then her new snapshot.
    drop(on_alice);
    client.say(&bob, "missed one").await;
    client.say(&bob, "missed two").await;
    let mut on_alice = client.follow_from(&alice, &last_seen).await;
    let (first, first_event) = on_alice.expect("message").await;
    assert_eq!(first, message(2, "bob", "missed one"));
    let (second, second_event) = on_alice.expect("message").await;
    assert_eq!(second, message(3, "bob", "missed two"));
    assert!(
        !first_event.id.is_empty() && first_event.id != last_seen && second_event.id != first_event.id,
        "replayed with their ids: {first_event:?} {second_event:?}"
    );
    let (snapshot, _) = on_alice.expect("snapshot").await;
    assert_eq!(
        snapshot["messages"],
        json!([
            message(1, "bob", "hello, red"),
            message(2, "bob", "missed one"),
            message(3, "bob", "missed two")
        ])
    );
    // (Alice's first stream may not be unregistered yet: counts may vary.)
    assert_eq!(member_ids(&snapshot), ["alice", "bob"]);

    // An id the server never issued: a `reset`, then the snapshot.
    let mut resumed = client.follow_from(&alice, "not-an-id").await;
    let (reset, _) = resumed.expect("reset").await;
    assert_eq!(reset, json!({ "reason": "last-event-id-unknown" }));
    resumed.expect("snapshot").await;
    drop(resumed);

    // The administration routes need the key.
    let (status, _) = client.get("/admin/stats", &[]).await;
    assert_eq!(status, 403);
    let (status, _) = client.get("/admin/stats", &[("x-admin-key", "wrong")]).await;
    assert_eq!(status, 403);
    let (status, present) = client
        .get("/admin/presence/team%2Fblue", &[("x-admin-key", ADMIN_KEY)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        present,
        json!({ "channel": "team/blue", "users": [{ "userId": "carol", "connections": 1 }] })
    );

    // Bob leaves: alice is told.
    drop(on_bob);
    assert_eq!(on_alice.expect("presence").await.0, presence("bob", "leave"));
}

#[tokio::test]
async fn axum_teams() {
    team_board(env!("CARGO_BIN_EXE_axum-teams")).await;
}

#[tokio::test]
async fn warp_teams() {
    team_board(env!("CARGO_BIN_EXE_warp-teams")).await;
}

#[tokio::test]
async fn poem_teams() {
    team_board(env!("CARGO_BIN_EXE_poem-teams")).await;
}
