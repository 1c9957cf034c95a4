//! The idiom the library replaces, as users write it by hand: axum's `Sse`
//! fed by a `tokio::sync::broadcast` channel. Every event is re-encoded for
//! every client, every connection has its own keep-alive timer, a targeted
//! send is broadcast and filtered in every connection, and a receiver that
//! lags silently loses events.
//!
//! It serves the subset of the demo contract the load benchmark uses:
//! `GET /api/sse?userId=..` and `POST /api/sse/publish` with targets `all`
//! and `user`. Configured by `SSE_ADDR` and `SSE_HEARTBEAT_MS`; prints
//! `listening on http://ADDR` when ready.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

struct Message {
    id: u64,
    user: Option<String>,
    event: String,
    data: String,
}

#[derive(Clone)]
struct App {
    sender: broadcast::Sender<Arc<Message>>,
    next_id: Arc<AtomicU64>,
    heartbeat: Duration,
}

#[derive(Deserialize)]
struct Subscriber {
    #[serde(rename = "userId")]
    user_id: Option<String>,
}

async fn subscribe(
    State(app): State<App>,
    Query(who): Query<Subscriber>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(app.sender.subscribe()).filter_map(move |message| {
        let event = match message {
            Ok(message) if message.user.is_none() || message.user == who.user_id => Some(Ok(Event::default()
                .id(message.id.to_string())
                .event(&message.event)
                .data(&message.data))),
            // Not for this connection, or lagged: silently dropped.
            _ => None,
        };
        std::future::ready(event)
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(app.heartbeat))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Publish {
    event: Option<String>,
    data: serde_json::Value,
    target: Option<String>,
    target_id: Option<String>,
}

async fn publish(State(app): State<App>, Json(publish): Json<Publish>) -> Json<serde_json::Value> {
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    let data = match publish.data {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    let user = match publish.target.as_deref() {
        Some("user") => publish.target_id,
        _ => None,
    };
    let message = Message {
        id,
        user,
        event: publish.event.unwrap_or_else(|| "message".to_owned()),
        data,
    };
    let delivered = app.sender.send(Arc::new(message)).unwrap_or(0);
    Json(serde_json::json!({ "id": id.to_string(), "delivered": delivered }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("SSE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let heartbeat_ms: u64 = std::env::var("SSE_HEARTBEAT_MS").map_or(Ok(30_000), |v| v.parse())?;
    let (sender, _) = broadcast::channel(1024);
    let app = App {
        sender,
        next_id: Arc::new(AtomicU64::new(1)),
        heartbeat: Duration::from_millis(heartbeat_ms),
    };
    let router = Router::new()
        .route("/api/sse", get(subscribe))
        .route("/api/sse/publish", post(publish))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
