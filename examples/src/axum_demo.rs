//! The axum demo server: [`sse_axum::router`] nested at `/api/sse`, the demo
//! page, and axum's graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;

use axum::Router;
use axum::http::{Method, Uri};
use sse_axum::SseResponse;
use tokio::net::TcpListener;

use crate::{Demo, Shutdown};

/// Serves the demo contract with axum on `listener` until `shutdown`
/// completes and every connection has closed.
pub fn serve(
    demo: Demo,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    let app = Router::new()
        .nest("/api/sse", sse_axum::router(demo.endpoints))
        .fallback(|method: Method, uri: Uri| async move { SseResponse::new(crate::page(&method, uri.path())) });
    Box::pin(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await })
}
