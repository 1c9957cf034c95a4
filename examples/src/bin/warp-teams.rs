//! A team board on warp: log in, follow your team's stream, post messages;
//! the stream route is the application's own, built on
//! `sse_warp::connect_options`.
//!
//! ```text
//! cargo run -p sse-examples --bin warp-teams
//! TOKEN=$(curl -s localhost:3000/login -H 'content-type: application/json' \
//!         -d '{"user": "alice", "team": "red"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
//! curl -N localhost:3000/events -H "authorization: Bearer $TOKEN"     # or ?access_token=$TOKEN
//! curl localhost:3000/messages -H "authorization: Bearer $TOKEN" \
//!      -H 'content-type: application/json' -d '{"text": "hello, red"}'
//! TEAMS_ADMIN_KEY=k cargo run -p sse-examples --bin warp-teams         # then:
//! curl localhost:3000/admin/presence/team%2Fred -H 'x-admin-key: k'
//! ```
//!
//! The board itself (sessions, the authenticator, messages, the `snapshot`
//! sent on connect, presence for `team/*`) is `sse_examples::teams`, shared
//! with `axum-teams` and `poem-teams`; this file routes and extracts.
//! `connect_options` reads the request as the built-in stream route does,
//! so `Last-Event-ID` resumes (or gets a `reset`) and the per-address limit
//! applies; `sse_warp::recover` answers its refusals. The ready-made
//! administration routes sit under `/admin`, behind the application's own
//! check of `x-admin-key`.

use bytes::Bytes;
use http::HeaderMap;
use sse_core::ConnectOptions;
use sse_core::http::RouteGroup;
use sse_examples::teams::{self, Teams};
use sse_warp::SseResponse;
use warp::reject::Reject;
use warp::{Filter, Rejection};

/// The rejection of a request to the administration routes without the key,
/// holding the answer.
#[derive(Debug)]
struct NotAdmin(http::Response<Bytes>);

impl Reject for NotAdmin {}

/// Answers the application's rejections; passes the others on.
async fn refused(rejection: Rejection) -> Result<SseResponse, Rejection> {
    if let Some(NotAdmin(refused)) = rejection.find::<NotAdmin>() {
        return Ok(SseResponse::new(refused.clone()));
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(SseResponse::new(teams::body_too_large()));
    }
    sse_warp::recover(rejection).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let teams = Teams::from_env()?;
    let with_teams = {
        let teams = teams.clone();
        warp::any().map(move || teams.clone())
    };
    let body = warp::body::content_length_limit(teams::MAX_BODY_BYTES as u64).and(warp::body::bytes());

    let manager = teams.manager().clone();
    let events = warp::path!("events")
        .and(warp::get())
        .and(sse_warp::connect_options(teams.endpoints().clone()))
        .then(move |options: ConnectOptions| {
            let manager = manager.clone();
            async move { SseResponse::from(manager.connect(options).await) }
        });
    let login = warp::path!("login")
        .and(warp::post())
        .and(with_teams.clone())
        .and(body)
        .then(|teams: Teams, body: Bytes| async move { SseResponse::new(teams.login(&body).await) });
    let messages = warp::path!("messages")
        .and(warp::post())
        .and(with_teams.clone())
        .and(warp::header::headers_cloned())
        .and(body)
        .then(|teams: Teams, headers: HeaderMap, body: Bytes| async move {
            SseResponse::new(teams.post_message(&headers, &body).await)
        });
    let admin_only = with_teams
        .and(warp::header::headers_cloned())
        .and_then(|teams: Teams, headers: HeaderMap| async move {
            teams
                .admin_check(&headers)
                .map_err(|refused| warp::reject::custom(NotAdmin(refused.response())))
        })
        .untuple_one();
    let admin = warp::path("admin")
        .and(admin_only)
        .and(sse_warp::routes(teams.endpoints().clone(), RouteGroup::Admin));

    let app = events
        .or(login)
        .unify()
        .or(messages)
        .unify()
        .or(admin)
        .unify()
        .recover(refused);
    let listener = tokio::net::TcpListener::bind(sse_examples::scenario_addr()?).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let limits = sse_warp::ServerLimits::default();
    sse_warp::serve(listener, warp::service(app), limits, std::future::pending()).await?;
    Ok(())
}
