//! Routes of an application's own on warp: a stream route on the
//! `connect_options` filter, a decorated stream, and the endpoint groups
//! combined with `or`, the administration routes behind a header filter
//! (`sse_core::test_util::own_routes::check_own_routes`).

use sse_core::http::RouteGroup;
use sse_core::test_util::own_routes::{ADMIN_HEADER, check_own_routes, decorate, own_routes_endpoints};
use sse_core::{ConnectOptions, SseManager};
use sse_warp::{SseResponse, connect_options, routes};
use warp::Filter as _;

#[tokio::test]
async fn own_routes_answer_as_the_stream_route() {
    let endpoints = own_routes_endpoints();
    let manager = endpoints.manager().clone();
    let with_manager = warp::any().map(move || manager.clone());
    let own = warp::path!("own")
        .and(connect_options(endpoints.clone()))
        .and(with_manager.clone())
        .then(|options: ConnectOptions, manager: SseManager| async move {
            SseResponse::from(manager.connect(options).await)
        });
    let decorated = warp::path!("decorated")
        .and(connect_options(endpoints.clone()))
        .and(with_manager)
        .then(|options: ConnectOptions, manager: SseManager| async move {
            match manager.connect(options).await {
                Ok(connection) => SseResponse::from_stream(decorate(connection)),
                Err(refused) => refused.into(),
            }
        });
    let admins_only = warp::header::exact(ADMIN_HEADER.0, ADMIN_HEADER.1);
    let split = routes(endpoints.clone(), RouteGroup::Stream)
        .or(routes(endpoints.clone(), RouteGroup::ClientScript))
        .unify()
        .or(admins_only.and(routes(endpoints.clone(), RouteGroup::Admin)))
        .unify();
    let app = own
        .or(decorated)
        .unify()
        .or(warp::path!("split" / ..).and(split))
        .unify()
        .or(warp::path!("api" / "sse" / ..).and(sse_warp::filter(endpoints.clone())))
        .unify()
        .recover(sse_warp::recover);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(warp::serve(app).incoming(listener).run());
    check_own_routes(address, &endpoints).await;
}
