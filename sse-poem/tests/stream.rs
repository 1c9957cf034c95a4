//! The poem adapter over real HTTP: headers, first frames, a publish, the
//! body limit, and unregistration when the client goes away (at the next
//! heartbeat: see the crate documentation)
//! (`sse_core::test_util::adapter::check_endpoints`).

use std::time::Duration;

use sse_core::SseManager;
use sse_core::http::{DevIdentity, SseEndpoints};

#[tokio::test]
async fn streams_publishes_and_unregisters() {
    // poem's server notices a client that went away only when it next writes
    // to it: frequent heartbeats keep that wait short.
    let manager = SseManager::builder()
        .configure(|config| config.heartbeat_interval(Some(Duration::from_millis(200))))
        .build()
        .expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    let app = poem::Route::new().nest("/api/sse", sse_poem::SseEndpoint::new(endpoints));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    sse_core::test_util::adapter::check_endpoints(address, "/api/sse", &manager).await;
}
