//! A live dashboard: the server pushes its statistics on a schedule to every
//! subscriber of the `dashboard` channel.
//!
//! ```text
//! cargo run -p sse-examples --bin axum-dashboard
//! curl -N 'http://127.0.0.1:3000/api/sse?channel=dashboard'
//! ```
//!
//! The ready-made endpoints of `sse_axum::router` serve the stream; a task
//! publishes a `stats` event every second. Nobody subscribed? The send
//! reaches no one and costs next to nothing.

use std::time::{Duration, Instant};

use axum::Router;
use sse_core::http::{DevIdentity, SseEndpoints};
use sse_core::{Event, SseManager, Target};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = SseManager::builder().build()?;
    let publisher = manager.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        loop {
            every_second.tick().await;
            let stats = publisher.stats();
            let snapshot = serde_json::json!({
                "uptimeSeconds": started.elapsed().as_secs(),
                "viewers": stats.channels.get("dashboard").copied().unwrap_or(0),
                "connections": stats.connections,
                "eventsPublished": stats.events_published,
            });
            if let Ok(event) = Event::json("stats", &snapshot) {
                let _ = publisher.send(Target::channel("dashboard"), event).await;
            }
        }
    });
    let app = Router::new().nest(
        "/api/sse",
        sse_axum::router(SseEndpoints::new(manager, DevIdentity::enable())),
    );
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_axum::serve(listener, app, sse_axum::ServerLimits::default(), std::future::pending()).await?;
    Ok(())
}
