//! Progress of a long-running job, streamed to the client that started it.
//!
//! ```text
//! cargo run -p sse-examples --bin axum-progress
//! curl -N 'http://127.0.0.1:3000/api/sse'                # note the clientId in `connected`
//! curl -X POST 'localhost:3000/jobs?clientId=<clientId>'  # that stream shows the progress
//! ```
//!
//! The job reports to one client by id; a client that reconnects gets a new
//! id, so progress targets a session instead when tabs must survive reloads
//! (`Target::session`).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use sse_core::http::{DevIdentity, SseEndpoints};
use sse_core::{Event, SseManager};

#[derive(Deserialize)]
struct Start {
    #[serde(rename = "clientId")]
    client_id: String,
}

async fn start_job(
    State(manager): State<SseManager>,
    Query(start): Query<Start>,
) -> (StatusCode, Json<serde_json::Value>) {
    if !manager.has_connection(&start.client_id) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "no such client" })),
        );
    }
    let job = format!("job-{}", fastrand::u32(..));
    let reply = serde_json::json!({ "jobId": job });
    tokio::spawn(async move {
        for percent in (0..=100).step_by(10) {
            tokio::time::sleep(Duration::from_millis(300)).await; // the work
            let step = serde_json::json!({ "jobId": job, "percent": percent });
            let Ok(event) = Event::json("progress", &step) else {
                return;
            };
            match manager.send_to_client(&start.client_id, event).await {
                Ok(sent) if sent.delivered == 1 => {}
                _ => return, // the client left: stop reporting
            }
        }
        if let Ok(done) = Event::json("done", &serde_json::json!({ "jobId": job })) {
            let _ = manager.send_to_client(&start.client_id, done).await;
        }
    });
    (StatusCode::ACCEPTED, Json(reply))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = SseManager::builder().build()?;
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    let app = Router::new()
        .nest("/api/sse", sse_axum::router(endpoints))
        .route("/jobs", post(start_job))
        .with_state(manager);
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_axum::serve(listener, app, sse_axum::ServerLimits::default(), std::future::pending()).await?;
    Ok(())
}
