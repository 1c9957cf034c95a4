//! A chat room as a channel, with `join` and `leave` events.
//!
//! ```text
//! cargo run -p sse-examples --bin axum-chat
//! curl -N 'http://127.0.0.1:3000/rooms/rust/events?user=alice'
//! curl -N 'http://127.0.0.1:3000/rooms/rust/events?user=bob'     # alice sees bob join
//! curl -X POST localhost:3000/rooms/rust/messages -H 'content-type: application/json' \
//!      -d '{"user": "bob", "text": "hi"}'
//! ```
//!
//! Closing bob's curl makes alice see him `leave`: the stream is wrapped in a
//! guard that announces the departure when the server drops it.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use sse_axum::SseResponse;
use sse_core::{ConnectOptions, Connection, Event, SseManager};

#[derive(Deserialize)]
struct Member {
    user: String,
}

#[derive(Deserialize)]
struct Message {
    user: String,
    text: String,
}

fn channel(room: &str) -> String {
    format!("room/{room}")
}

async fn announce(manager: &SseManager, room: &str, kind: &str, user: &str) {
    if let Ok(event) = Event::json(kind, &serde_json::json!({ "room": room, "user": user })) {
        let _ = manager.send_to_channel(&channel(room), event).await;
    }
}

/// The member's stream; announces `leave` when the server drops it.
struct Presence {
    connection: Connection,
    manager: SseManager,
    room: String,
    user: String,
}

impl Stream for Presence {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connection.poll_next_unpin(cx).map(|frames| frames.map(Ok))
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let (manager, room, user) = (self.manager.clone(), self.room.clone(), self.user.clone());
        tokio::spawn(async move { announce(&manager, &room, "leave", &user).await });
    }
}

async fn join(State(manager): State<SseManager>, Path(room): Path<String>, Query(member): Query<Member>) -> Response {
    let options = ConnectOptions::new().user(&member.user).channel(channel(&room));
    let connection = match manager.connect(options).await {
        Ok(connection) => connection,
        Err(refused) => return axum::response::IntoResponse::into_response(SseResponse::new(Err(refused))),
    };
    announce(&manager, &room, "join", &member.user).await;
    let presence = Presence {
        connection,
        manager,
        room,
        user: member.user,
    };
    let mut response = Response::new(Body::from_stream(presence));
    *response.headers_mut() = sse_core::http::sse_headers();
    response
}

async fn say(State(manager): State<SseManager>, Path(room): Path<String>, Json(message): Json<Message>) {
    let payload = serde_json::json!({ "room": room, "user": message.user, "text": message.text });
    if let Ok(event) = Event::json("message", &payload) {
        let _ = manager.send_to_channel(&channel(&room), event).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = SseManager::builder().build()?;
    let app = Router::new()
        .route("/rooms/{room}/events", get(join))
        .route("/rooms/{room}/messages", post(say))
        .with_state(manager);
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
