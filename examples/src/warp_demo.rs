//! The warp demo server: [`sse_warp::filter`] behind `/api/sse`, the demo
//! page, and warp's graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;

use futures_util::FutureExt as _;
use tokio::net::TcpListener;
use warp::Filter;
use warp::http::Method;
use warp::path::FullPath;

use crate::{Demo, Shutdown};

/// Serves the demo contract with warp on `listener` until `shutdown`
/// completes and every connection has closed.
pub fn serve(
    demo: Demo,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    let sse = warp::path!("api" / "sse" / ..).and(sse_warp::filter(demo.endpoints));
    let page = warp::method()
        .and(warp::path::full())
        .map(|method: Method, path: FullPath| crate::page(&method, path.as_str()));
    let routes = sse.or(page);
    let server = warp::serve(routes).incoming(listener).graceful(shutdown).run();
    // Boxed as it is: awaited inside an `async` block, warp 0.4's server
    // future fails the compiler's `Send` check (warp issue #1130).
    Box::pin(server.map(Ok))
}
