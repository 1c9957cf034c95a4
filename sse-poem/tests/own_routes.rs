//! Routes of an application's own on poem: a stream route on the
//! `SseConnect` extractor, a decorated stream, and the endpoint groups
//! mounted one by one with the administration routes behind a `before`
//! check (`sse_core::test_util::own_routes::check_own_routes`).

use poem::http::StatusCode;
use poem::web::Data;
use poem::{EndpointExt as _, Error, Request, Route, get, handler};
use sse_core::http::{RouteGroup, SseEndpoints};
use sse_core::test_util::own_routes::{ADMIN_HEADER, check_own_routes, decorate, own_routes_endpoints};
use sse_poem::{SseConnect, SseEndpoint, SseResponse, mount};

#[handler]
async fn own(Data(endpoints): Data<&SseEndpoints>, SseConnect(options): SseConnect) -> SseResponse {
    endpoints.manager().connect(options).await.into()
}

#[handler]
async fn decorated(Data(endpoints): Data<&SseEndpoints>, SseConnect(options): SseConnect) -> SseResponse {
    match endpoints.manager().connect(options).await {
        Ok(connection) => SseResponse::from_stream(decorate(connection)),
        Err(refused) => refused.into(),
    }
}

async fn admins_only(request: Request) -> poem::Result<Request> {
    match request.header(ADMIN_HEADER.0) {
        Some(value) if value == ADMIN_HEADER.1 => Ok(request),
        _ => Err(Error::from_status(StatusCode::FORBIDDEN)),
    }
}

#[tokio::test]
async fn own_routes_answer_as_the_stream_route() {
    let endpoints = own_routes_endpoints();
    let only = |group| SseEndpoint::only(endpoints.clone(), group);
    let split = mount(Route::new(), RouteGroup::Stream, only(RouteGroup::Stream));
    let split = mount(split, RouteGroup::ClientScript, only(RouteGroup::ClientScript));
    let split = mount(split, RouteGroup::Admin, only(RouteGroup::Admin).before(admins_only));
    let app = Route::new()
        .at("/own", get(own))
        .at("/decorated", get(decorated))
        .nest("/api/sse", SseEndpoint::new(endpoints.clone()))
        .nest("/split", split)
        .data(endpoints.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    check_own_routes(address, &endpoints).await;
}
