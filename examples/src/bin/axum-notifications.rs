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
//! a tab that opens gets the current count at once, as its initial state,
//! from a connect hook (after whatever it missed, when it resumes with
//! `Last-Event-ID`). The stream route takes its options from `SseConnect`,
//! so resuming works as on the built-in route; the `userId` query parameter
//! (`DevIdentity`) stands in for real authentication.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sse_axum::{SseConnect, SseResponse};
use sse_core::http::{DevIdentity, SseEndpoints};
use sse_core::{ConnectContext, Event, NotificationKind, SseManager};

/// Unread counts, by user.
type Unread = Arc<Mutex<HashMap<String, u64>>>;

#[derive(Clone)]
struct App {
    endpoints: SseEndpoints,
    unread: Unread,
}

impl FromRef<App> for SseEndpoints {
    fn from_ref(app: &App) -> Self {
        app.endpoints.clone()
    }
}

fn unread_event(count: u64) -> Option<Event> {
    Event::json("unread", &serde_json::json!({ "count": count })).ok()
}

impl App {
    fn sse(&self) -> &SseManager {
        self.endpoints.manager()
    }

    /// Changes a user's unread count and tells every one of their tabs.
    async fn set_unread(&self, user: &str, change: impl FnOnce(&mut u64)) {
        let count = {
            let mut unread = self.unread.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = unread.entry(user.to_owned()).or_default();
            change(count);
            *count
        };
        if let Some(event) = unread_event(count) {
            let _ = self.sse().send_to_user(user, event).await;
        }
    }
}

/// The connect hook: a new tab, and only it, gets the current count.
async fn send_count(unread: Unread, connection: ConnectContext) {
    let Some(user) = connection.info().user_id.as_deref() else {
        return;
    };
    let count = unread
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(user)
        .copied()
        .unwrap_or_default();
    if let Some(event) = unread_event(count) {
        connection.send(&event);
    }
}

async fn events(State(app): State<App>, SseConnect(options): SseConnect) -> SseResponse {
    app.sse().connect(options).await.into()
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
        Ok(event) => app.sse().send_to_user(&user, event).await.map_or(0, |d| d.delivered),
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
    let unread = Unread::default();
    let hook_unread = unread.clone();
    let manager = SseManager::builder()
        .on_connect(move |connection| send_count(hook_unread.clone(), connection))
        .build()?;
    let app = App {
        endpoints: SseEndpoints::new(manager, DevIdentity::enable()),
        unread,
    };
    let router = Router::new()
        .route("/events", get(events))
        .route("/notify/{user}", post(notify))
        .route("/read/{user}", post(read_all))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_axum::serve(
        listener,
        router,
        sse_axum::ServerLimits::default(),
        std::future::pending(),
    )
    .await?;
    Ok(())
}
