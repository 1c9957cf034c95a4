//! The axum adapter over real HTTP: headers, first frames, a publish, the
//! body limit, and unregistration when the client goes away
//! (`sse_core::test_util::adapter::check_endpoints`).

use sse_core::SseManager;
use sse_core::http::{DevIdentity, SseEndpoints};

#[tokio::test]
async fn streams_publishes_and_unregisters() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    let app = axum::Router::new().nest("/api/sse", sse_axum::router(endpoints));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    sse_core::test_util::adapter::check_endpoints(address, "/api/sse", &manager).await;
}
