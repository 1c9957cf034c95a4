//! A team board on poem: log in, follow your team's stream, post messages;
//! the stream route is the application's own, built on `sse_poem::SseConnect`.
//!
//! ```text
//! cargo run -p sse-examples --bin poem-teams
//! TOKEN=$(curl -s localhost:3000/login -H 'content-type: application/json' \
//!         -d '{"user": "alice", "team": "red"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
//! curl -N localhost:3000/events -H "authorization: Bearer $TOKEN"     # or ?access_token=$TOKEN
//! curl localhost:3000/messages -H "authorization: Bearer $TOKEN" \
//!      -H 'content-type: application/json' -d '{"text": "hello, red"}'
//! TEAMS_ADMIN_KEY=k cargo run -p sse-examples --bin poem-teams         # then:
//! curl localhost:3000/admin/presence/team%2Fred -H 'x-admin-key: k'
//! ```
//!
//! The board itself (sessions, the authenticator, messages, the `snapshot`
//! sent on connect, presence for `team/*`) is `sse_examples::teams`, shared
//! with `axum-teams` and `warp-teams`; this file routes and extracts.
//! `SseConnect` reads the request as the built-in stream route does, so
//! `Last-Event-ID` resumes (or gets a `reset`) and the per-address limit
//! applies. The ready-made administration routes sit under `/admin`,
//! behind the application's own check of `x-admin-key`.
//!
//! Served by `sse_poem::serve`, which notices a client that went away as
//! soon as its socket closes (poem's own server noticed only when a write
//! to it failed, up to a heartbeat later), so its `presence` leave is
//! prompt.

use poem::error::ReadBodyError;
use poem::http::HeaderMap;
use poem::web::Data;
use poem::{Body, EndpointExt as _, Request, Route, get, handler, post};
use sse_core::http::{RouteGroup, SseEndpoints, unreadable_body};
use sse_examples::teams::{self, Teams};
use sse_poem::{SseConnect, SseEndpoint, SseResponse};

#[handler]
async fn events(Data(endpoints): Data<&SseEndpoints>, SseConnect(options): SseConnect) -> SseResponse {
    endpoints.manager().connect(options).await.into()
}

/// The answer to a body that cannot be read.
fn unreadable(failure: &ReadBodyError) -> http::Response<bytes::Bytes> {
    match failure {
        ReadBodyError::PayloadTooLarge => teams::body_too_large(),
        _ => unreadable_body(),
    }
}

#[handler]
async fn login(Data(teams): Data<&Teams>, body: Body) -> SseResponse {
    SseResponse::new(match body.into_bytes_limit(teams::MAX_BODY_BYTES).await {
        Ok(body) => teams.login(&body).await,
        Err(failure) => unreadable(&failure),
    })
}

#[handler]
async fn messages(Data(teams): Data<&Teams>, headers: &HeaderMap, body: Body) -> SseResponse {
    SseResponse::new(match body.into_bytes_limit(teams::MAX_BODY_BYTES).await {
        Ok(body) => teams.post_message(headers, &body).await,
        Err(failure) => unreadable(&failure),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let teams = Teams::from_env()?;
    let endpoints = teams.endpoints().clone();
    let admin_only = {
        let teams = teams.clone();
        move |request: Request| {
            let checked = teams.admin_check(request.headers());
            async move {
                checked.map(|()| request).map_err(|refused| {
                    poem::Error::from_response(poem::IntoResponse::into_response(SseResponse::new(refused.response())))
                })
            }
        }
    };
    let admin = SseEndpoint::only(endpoints.clone(), RouteGroup::Admin).before(admin_only);
    let app = Route::new()
        .at("/events", get(events))
        .at("/login", post(login))
        .at("/messages", post(messages))
        .nest("/admin", sse_poem::mount(Route::new(), RouteGroup::Admin, admin))
        .data(endpoints)
        .data(teams);
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_poem::serve(listener, app, sse_poem::ServerLimits::default(), std::future::pending()).await?;
    Ok(())
}
