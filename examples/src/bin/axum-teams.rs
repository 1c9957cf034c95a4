//! A team board on axum: log in, follow your team's stream, post messages;
//! the stream route is the application's own, built on `sse_axum::SseConnect`.
//!
//! ```text
//! cargo run -p sse-examples --bin axum-teams
//! TOKEN=$(curl -s localhost:3000/login -H 'content-type: application/json' \
//!         -d '{"user": "alice", "team": "red"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
//! curl -N localhost:3000/events -H "authorization: Bearer $TOKEN"     # or ?access_token=$TOKEN
//! curl localhost:3000/messages -H "authorization: Bearer $TOKEN" \
//!      -H 'content-type: application/json' -d '{"text": "hello, red"}'
//! TEAMS_ADMIN_KEY=k cargo run -p sse-examples --bin axum-teams         # then:
//! curl localhost:3000/admin/presence/team%2Fred -H 'x-admin-key: k'
//! ```
//!
//! The board itself (sessions, the authenticator, messages, the `snapshot`
//! sent on connect, presence for `team/*`) is `sse_examples::teams`, shared
//! with `warp-teams` and `poem-teams`; this file routes and extracts.
//! `SseConnect` reads the request as the built-in stream route does, so
//! `Last-Event-ID` resumes (or gets a `reset`) and the per-address limit
//! applies. The ready-made administration routes sit under `/admin`,
//! behind the application's own check of `x-admin-key`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use sse_axum::{SseConnect, SseResponse};
use sse_core::http::{RouteGroup, SseEndpoints, unreadable_body};
use sse_examples::teams::{self, Teams};

async fn events(State(endpoints): State<SseEndpoints>, SseConnect(options): SseConnect) -> SseResponse {
    endpoints.manager().connect(options).await.into()
}

/// The answer to a body that cannot be read.
fn unreadable(rejection: &BytesRejection) -> http::Response<Bytes> {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => teams::body_too_large(),
        _ => unreadable_body(),
    }
}

async fn login(State(teams): State<Teams>, body: Result<Bytes, BytesRejection>) -> SseResponse {
    SseResponse::new(match body {
        Ok(body) => teams.login(&body).await,
        Err(rejection) => unreadable(&rejection),
    })
}

async fn messages(State(teams): State<Teams>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> SseResponse {
    SseResponse::new(match body {
        Ok(body) => teams.post_message(&headers, &body).await,
        Err(rejection) => unreadable(&rejection),
    })
}

async fn admins_only(State(teams): State<Teams>, request: Request, next: Next) -> Response {
    match teams.admin_check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => SseResponse::new(refused.response()).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let teams = Teams::from_env()?;
    let endpoints = teams.endpoints().clone();
    let admin = sse_axum::routes(endpoints.clone(), RouteGroup::Admin)
        .layer(middleware::from_fn_with_state(teams.clone(), admins_only));
    let app = Router::new()
        .route("/events", get(events))
        .with_state(endpoints)
        .merge(
            Router::new()
                .route("/login", post(login))
                .route("/messages", post(messages))
                .layer(DefaultBodyLimit::max(teams::MAX_BODY_BYTES))
                .with_state(teams),
        )
        .nest("/admin", admin);
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_axum::serve(listener, app, sse_axum::ServerLimits::default(), std::future::pending()).await?;
    Ok(())
}
