//! The poem demo server: [`sse_poem::SseEndpoint`] nested at `/api/sse`, the
//! demo page, [`sse_poem::SseAdminEndpoint`] at `/sse-admin`, the probes and `/metrics`, poem's [`Cors`] middleware for `SSE_CORS_ORIGINS`, served by
//! [`sse_poem::serve`] with the limits of `SSE_*` (timeouts, socket cap)
//! until the graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use poem::error::NotFoundError;
use poem::http::header;
use poem::middleware::Cors;
use poem::web::Data;
use poem::{Endpoint, EndpointExt as _, Request, Route, handler};
use sse_core::SseManager;
use sse_poem::{SseAdminEndpoint, SseEndpoint, SseResponse};
use tokio::net::TcpListener;

use crate::{CORS_HEADERS, CORS_METHODS, Demo, MetricsRoute, Shutdown};

/// Serves the demo contract with poem on `listener` until `shutdown`
/// completes and every connection has closed.
pub fn serve(
    demo: Demo,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    let origins = demo.config.cors_origins.clone();
    let manager = demo.endpoints.manager().clone();
    let app = Route::new()
        .nest("/api/sse", SseEndpoint::new(demo.endpoints))
        .nest(crate::ADMIN_PATH, SseAdminEndpoint::new(demo.admin))
        .at("/", page)
        .at("/*path", page)
        .data(manager)
        .data(demo.metrics)
        // `/api/sse/` is no endpoint: the same JSON 404 as in the other demos.
        .catch_error(|_: NotFoundError| async { SseResponse::new(crate::not_found()) })
        .map_to_response();
    let app = if origins.is_empty() {
        app.boxed()
    } else {
        let app = Arc::new(app);
        let cors = Cors::new()
            .allow_origins(origins.iter().map(String::as_str))
            .allow_credentials(true)
            .allow_methods(CORS_METHODS)
            .allow_headers(CORS_HEADERS);
        let cross_origin = Arc::new(app.clone().with(cors));
        // Only requests from a listed origin go through poem's CORS
        // middleware, which would refuse the others (see `is_listed_origin`).
        poem::endpoint::make(move |request: Request| {
            let listed = crate::is_listed_origin(&origins, request.headers().get(header::ORIGIN));
            let (app, cross_origin) = (app.clone(), cross_origin.clone());
            async move {
                if listed {
                    cross_origin.call(request).await
                } else {
                    app.call(request).await
                }
            }
        })
        .boxed()
    };
    Box::pin(sse_poem::serve(listener, app, demo.config.server, shutdown))
}

#[handler]
async fn page(request: &Request, Data(manager): Data<&SseManager>, Data(metrics): Data<&MetricsRoute>) -> SseResponse {
    let (method, path) = (request.method(), request.uri().path());
    let mut answer = metrics.answer(method, path, request.headers()).await;
    if answer.is_none() {
        answer = crate::probe(manager, method, path).await;
    }
    SseResponse::new(answer.unwrap_or_else(|| crate::page(method, path)))
}
