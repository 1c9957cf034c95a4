//! Routes of an application's own on axum: a stream route on the
//! `SseConnect` extractor, a decorated stream, and the endpoint groups
//! merged one by one with the administration routes behind a middleware
//! (`sse_core::test_util::own_routes::check_own_routes`).

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use sse_axum::{SseConnect, SseResponse};
use sse_core::http::{RouteGroup, SseEndpoints};
use sse_core::test_util::own_routes::{ADMIN_HEADER, check_own_routes, decorate, own_routes_endpoints};

async fn own(State(endpoints): State<SseEndpoints>, SseConnect(options): SseConnect) -> SseResponse {
    endpoints.manager().connect(options).await.into()
}

async fn decorated(State(endpoints): State<SseEndpoints>, SseConnect(options): SseConnect) -> SseResponse {
    match endpoints.manager().connect(options).await {
        Ok(connection) => SseResponse::from_stream(decorate(connection)),
        Err(refused) => refused.into(),
    }
}

async fn admins_only(request: Request, next: Next) -> Result<Response, StatusCode> {
    match request.headers().get(ADMIN_HEADER.0) {
        Some(value) if value == ADMIN_HEADER.1 => Ok(next.run(request).await),
        _ => Err(StatusCode::FORBIDDEN),
    }
}

#[tokio::test]
async fn own_routes_answer_as_the_stream_route() {
    let endpoints = own_routes_endpoints();
    let admin = sse_axum::routes(endpoints.clone(), RouteGroup::Admin).layer(middleware::from_fn(admins_only));
    let split = axum::Router::new()
        .merge(sse_axum::routes(endpoints.clone(), RouteGroup::Stream))
        .merge(sse_axum::routes(endpoints.clone(), RouteGroup::ClientScript))
        .merge(admin);
    let app = axum::Router::new()
        .route("/own", get(own))
        .route("/decorated", get(decorated))
        .with_state(endpoints.clone())
        .nest("/api/sse", sse_axum::router(endpoints.clone()))
        .nest("/split", split);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    check_own_routes(address, &endpoints).await;
}
