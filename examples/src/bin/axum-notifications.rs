//! Per-user notifications with an unread count.
//!
//! ```text
//! cargo run -p sse-examples --bin axum-notifications
//! curl -N 'http://127.0.0.1:3000/events?userId=alice'        # every tab of alice
//! curl -X POST localhost:3000/notify/alice -H 'content-type: application/json' \
//!      -d '{"title": "New comment", "message": "Bob replied"}'
//! curl -X POST localhost:3000/read/alice                      # all of alice's tabs drop to 0
//! ```
//!
//! Every tab of a user receives each `notification` and the `unread` count;
//! a tab that opens gets the current count at once, as its initial state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sse_axum::SseResponse;
use sse_core::{ConnectOptions, Event, NotificationKind, SseManager};

#[derive(Clone)]
struct App {
    sse: SseManager,
    unread: Arc<Mutex<HashMap<String, u64>>>,
}

impl App {
    /// Changes a user's unread count and tells every one of their tabs.
    async fn set_unread(&self, user: &str, change: impl FnOnce(&mut u64)) {
        let count = {
            let mut unread = self.unread.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = unread.entry(user.to_owned()).or_default();
            change(count);
            *count
        };
        if let Ok(event) = Event::json("unread", &serde_json::json!({ "count": count })) {
            let _ = self.sse.send_to_user(user, event).await;
        }
    }
}

#[derive(Deserialize)]
struct Subscriber {
    #[serde(rename = "userId")]
    user_id: String,
}

async fn events(State(app): State<App>, Query(who): Query<Subscriber>) -> SseResponse {
    let connection = app.sse.connect(ConnectOptions::new().user(&who.user_id)).await;
    // Queued right after registration: the tab's first event is its count.
    app.set_unread(&who.user_id, |_| {}).await;
    connection.into()
}

#[derive(Deserialize)]
struct Notification {
    title: String,
    message: String,
}

async fn notify(
    State(app): State<App>,
    Path(user): Path<String>,
    Json(note): Json<Notification>,
) -> Json<serde_json::Value> {
    let event = Event::notification(&note.title, &note.message, NotificationKind::Info, None::<&()>);
    let delivered = match event {
        Ok(event) => app.sse.send_to_user(&user, event).await.map_or(0, |d| d.delivered),
        Err(_) => 0,
    };
    app.set_unread(&user, |count| *count += 1).await;
    Json(serde_json::json!({ "delivered": delivered }))
}

async fn read_all(State(app): State<App>, Path(user): Path<String>) {
    app.set_unread(&user, |count| *count = 0).await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = App {
        sse: SseManager::builder().build()?,
        unread: Arc::default(),
    };
    let router = Router::new()
        .route("/events", get(events))
        .route("/notify/{user}", post(notify))
        .route("/read/{user}", post(read_all))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
