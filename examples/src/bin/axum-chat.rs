//! A chat room as a channel, with presence: who is in the room on arrival,
//! and `presence` events as members join and leave.
//!
//! ```text
//! cargo run -p sse-examples --bin axum-chat
//! curl -N 'http://127.0.0.1:3000/rooms/rust/events?userId=alice'
//! curl -N 'http://127.0.0.1:3000/rooms/rust/events?userId=bob'   # alice sees bob join
//! curl -X POST localhost:3000/rooms/rust/messages -H 'content-type: application/json' \
//!      -d '{"user": "bob", "text": "hi"}'
//! ```
//!
//! Every `room/*` channel is a presence channel: the manager sends the other
//! members a `presence` event (`{"channel", "userId", "state": "join" |
//! "leave"}`) when a user's first tab in the room opens and when their last
//! one closes, so two tabs are one member and a member never hears about
//! themselves. On connect, a hook sends the new connection, and only it, a
//! `members` event with who is already there, queued after any replay and
//! before the live events that follow. The stream route takes its options
//! from `SseConnect`, so a tab that reconnects with `Last-Event-ID` gets the
//! messages it missed. (The `userId` query parameter, `DevIdentity`, stands
//! in for real authentication; see `sse_core::http::Authenticator`.)

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sse_axum::{SseConnect, SseResponse};
use sse_core::http::{DevIdentity, SseEndpoints};
use sse_core::{ConnectContext, Event};

#[derive(Deserialize)]
struct Message {
    user: String,
    text: String,
}

fn channel(room: &str) -> String {
    format!("room/{room}")
}

/// Sends a newcomer the members of the rooms it joined.
async fn welcome(connection: ConnectContext) {
    for channel in &connection.info().channels {
        let members = match connection.manager().presence(channel).await {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(%error, "cannot list the members of {channel}");
                continue;
            }
        };
        if let Ok(event) = Event::json(
            "members",
            &serde_json::json!({ "channel": channel, "members": members }),
        ) {
            connection.send(&event);
        }
    }
}

async fn join(
    State(endpoints): State<SseEndpoints>,
    Path(room): Path<String>,
    SseConnect(options): SseConnect,
) -> SseResponse {
    endpoints
        .manager()
        .connect(options.channel(channel(&room)))
        .await
        .into()
}

async fn say(State(endpoints): State<SseEndpoints>, Path(room): Path<String>, Json(message): Json<Message>) {
    let payload = serde_json::json!({ "room": room, "user": message.user, "text": message.text });
    if let Ok(event) = Event::json("message", &payload) {
        let _ = endpoints.manager().send_to_channel(&channel(&room), event).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = sse_core::SseManager::builder()
        .configure(|config| config.presence_channels(vec!["room/*".to_owned()]))
        .on_connect(welcome)
        .build()?;
    let app = Router::new()
        .route("/rooms/{room}/events", get(join))
        .route("/rooms/{room}/messages", post(say))
        .with_state(SseEndpoints::new(manager, DevIdentity::enable()));
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_axum::serve(listener, app, sse_axum::ServerLimits::default(), std::future::pending()).await?;
    Ok(())
}
