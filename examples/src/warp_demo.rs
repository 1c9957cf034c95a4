//! The warp demo server: [`sse_warp::filter`] behind `/api/sse`, the demo
//! page, [`sse_warp::admin_filter`] behind `/sse-admin`, the probes and `/metrics`, [`warp::cors()`] for `SSE_CORS_ORIGINS`, served by
//! [`sse_warp::serve`] with the limits of `SSE_*` (timeouts, socket cap)
//! until the graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use warp::Filter;
use warp::http::{HeaderMap, Method};
use warp::path::FullPath;

use crate::{CORS_HEADERS, CORS_METHODS, Demo, Shutdown};

/// Serves the demo contract with warp on `listener` until `shutdown`
/// completes and every connection has closed.
pub fn serve(
    demo: Demo,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    let origins = demo.config.cors_origins.clone();
    let manager = demo.endpoints.manager().clone();
    let metrics = demo.metrics;
    let sse = warp::path!("api" / "sse" / ..).and(sse_warp::filter(demo.endpoints));
    let admin = warp::path!("sse-admin" / ..).and(sse_warp::admin_filter(demo.admin));
    let page = warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .then(move |method: Method, path: FullPath, headers: HeaderMap| {
            let (manager, metrics) = (manager.clone(), metrics.clone());
            async move {
                let mut answer = metrics.answer(&method, path.as_str(), &headers).await;
                if answer.is_none() {
                    answer = crate::probe(&manager, &method, path.as_str()).await;
                }
                answer.unwrap_or_else(|| crate::page(&method, path.as_str()))
            }
        });
    let routes = sse.or(admin).or(page);
    let limits = demo.config.server;
    if origins.is_empty() {
        return Box::pin(sse_warp::serve(listener, warp::service(routes), limits, shutdown));
    }
    let cors = warp::cors()
        .allow_origins(origins.iter().map(String::as_str))
        .allow_credentials(true)
        .allow_methods(CORS_METHODS)
        .allow_headers(CORS_HEADERS);
    // Only requests from a listed origin go through warp's CORS filter,
    // which would refuse the others (see `is_listed_origin`).
    let origins = Arc::new(origins);
    let from_listed_origin = warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let listed = crate::is_listed_origin(&origins, headers.get("origin"));
            async move { if listed { Ok(()) } else { Err(warp::reject::not_found()) } }
        })
        .untuple_one();
    let routes = from_listed_origin.and(routes.clone().with(cors)).or(routes);
    Box::pin(sse_warp::serve(listener, warp::service(routes), limits, shutdown))
}
