//! The axum demo server: [`sse_axum::router`] nested at `/api/sse`, the demo
//! page, [`sse_axum::admin_router`] at `/sse-admin`, tower-http's [`CorsLayer`] for `SSE_CORS_ORIGINS`, the client's
//! address from [`ConnectInfo`](axum::extract::ConnectInfo), the probes and
//! `/metrics`, served by
//! [`sse_axum::serve`] with the limits of `SSE_*` (timeouts, socket cap)
//! until the graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use sse_axum::SseResponse;
use tokio::net::TcpListener;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

use crate::{CORS_HEADERS, CORS_METHODS, Demo, Shutdown};

/// Serves the demo contract with axum on `listener` until `shutdown`
/// completes and every connection has closed.
pub fn serve(
    demo: Demo,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    let manager = demo.endpoints.manager().clone();
    let metrics = demo.metrics;
    let mut app = Router::new()
        .nest("/api/sse", sse_axum::router(demo.endpoints))
        .nest(crate::ADMIN_PATH, sse_axum::admin_router(demo.admin))
        .fallback(move |method: Method, uri: Uri, headers: HeaderMap| async move {
            let mut answer = metrics.answer(&method, uri.path(), &headers).await;
            if answer.is_none() {
                answer = crate::probe(&manager, &method, uri.path()).await;
            }
            SseResponse::new(answer.unwrap_or_else(|| crate::page(&method, uri.path())))
        });
    if !demo.config.cors_origins.is_empty() {
        app = app.layer(cors(&demo.config.cors_origins));
    }
    // `sse_axum::serve` passes each client's address on for the per-address
    // limit.
    Box::pin(sse_axum::serve(listener, app, demo.config.server, shutdown))
}

/// Exactly `origins`, with credentials; a request from another origin gets
/// neither `access-control-allow-origin` nor
/// `access-control-allow-credentials`, as in the warp and poem demos.
fn cors(origins: &[String]) -> CorsLayer {
    let listed = origins.to_vec();
    let credentials = AllowCredentials::predicate(move |origin, _| crate::is_listed_origin(&listed, Some(origin)));
    // EnvConfig accepts only serialized origins, which are valid header values.
    let origins = origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok());
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(credentials)
        .allow_methods(CORS_METHODS)
        .allow_headers(CORS_HEADERS.map(HeaderName::from_static))
}
