//! The poem demo server: [`sse_poem::SseEndpoint`] nested at `/api/sse`, the
//! demo page, and poem's graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;

use poem::error::NotFoundError;
use poem::listener::TcpAcceptor;
use poem::{EndpointExt as _, Request, Route, Server, handler};
use sse_poem::{SseEndpoint, SseResponse};
use tokio::net::TcpListener;

use crate::{Demo, SHUTDOWN_GRACE, Shutdown};

/// Serves the demo contract with poem on `listener` until `shutdown`
/// completes and every connection has closed.
pub fn serve(
    demo: Demo,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    let app = Route::new()
        .nest("/api/sse", SseEndpoint::new(demo.endpoints))
        .at("/", page)
        .at("/*path", page)
        // `/api/sse/` is no endpoint: the same JSON 404 as in the other demos.
        .catch_error(|_: NotFoundError| async { SseResponse::new(crate::not_found()) });
    Box::pin(async move {
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(SHUTDOWN_GRACE))
            .await
    })
}

#[handler]
fn page(request: &Request) -> SseResponse {
    SseResponse::new(crate::page(request.method(), request.uri().path()))
}
