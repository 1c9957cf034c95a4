//! Authentication with `SSE_AUTH_SECRET` (`docs/http-api.md`, "Identity"):
//! missing or invalid tokens, the token from header, query or cookie, the
//! `channels` claim, and the end of a stream at the token's expiry; with
//! `SSE_JWT_PUBLIC_KEY`: RS256 tokens, their issuer and audience, and the
//! roles that may publish and administer besides `SSE_PUBLISH_TOKEN`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sse_examples::ServeFn;
use sse_tests::{End, TestServer};

use crate::common::{assert_error, names_until, refused};

const AUTH_SECRET: &str = "conformance-secret-that-is-long-enough";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An HS256 token with `claims`, signed with `secret`.
fn jwt_signed(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encodable claims")
}

/// An HS256 token with `claims`, signed with [`AUTH_SECRET`].
fn jwt(claims: &Value) -> String {
    jwt_signed(claims, AUTH_SECRET)
}

/// The listed connections by clientId.
async fn listed_by_client(server: &TestServer) -> BTreeMap<String, Value> {
    server
        .connections()
        .await
        .into_iter()
        .map(|c| (c["clientId"].as_str().expect("clientId").to_owned(), c))
        .collect()
}

pub(crate) async fn jwt_missing_or_invalid_token_is_unauthorized(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_AUTH_SECRET", AUTH_SECRET)]).await;
    let exp = unix_now() + 600;
    let forged = jwt_signed(&json!({"sub": "alice", "exp": exp}), "another-secret");
    let expired = jwt(&json!({"sub": "alice", "exp": unix_now() - 10}));
    let no_sub = jwt(&json!({"sid": "s1", "exp": exp}));
    let valid = jwt(&json!({"sub": "alice", "exp": exp}));
    let tampered = format!("{}x", &valid[..valid.len() - 1]);
    for (what, query) in [
        ("no token", String::new()),
        ("no token, a userId", "userId=alice".to_owned()),
        ("not a JWT", "access_token=not.a.jwt".to_owned()),
        ("another secret", format!("access_token={forged}")),
        ("expired", format!("access_token={expired}")),
        ("no sub", format!("access_token={no_sub}")),
        ("a tampered signature", format!("access_token={tampered}")),
    ] {
        let (status, body) = refused(&server, &query, &[]).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "", what);
    }
    for (what, name, value) in [
        ("an empty bearer", "authorization", "Bearer ".to_owned()),
        ("another secret as bearer", "authorization", format!("Bearer {forged}")),
        ("another secret in the cookie", "cookie", format!("sse_token={forged}")),
    ] {
        let (status, body) = refused(&server, "", &[(name, &value)]).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "", what);
    }
    assert_eq!(server.stats().await["connections"], 0, "nothing was registered");
    // The valid token is let in.
    let _alice = server.subscribe(&format!("access_token={valid}")).await;
}

pub(crate) async fn jwt_token_from_header_query_or_cookie(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_AUTH_SECRET", AUTH_SECRET)]).await;
    let exp = unix_now() + 600;
    let token = |sub: &str, sid: &str| jwt(&json!({"sub": sub, "sid": sid, "exp": exp}));
    let header = format!("Bearer {}", token("alice", "s-header"));
    let by_header = server.subscribe_with("", &[("authorization", &header)]).await;
    let by_query = server
        .subscribe(&format!("access_token={}", token("bob", "s-query")))
        .await;
    let cookie = format!("theme=dark; sse_token={}", token("carol", "s-cookie"));
    let by_cookie = server.subscribe_with("", &[("cookie", &cookie)]).await;
    // Identity comes from the token alone: userId and sessionId in the
    // query are ignored, not even kept as metadata, and the other
    // parameters are the client's word, kept apart from the server's.
    let with_query_identity = server
        .subscribe(&format!(
            "access_token={}&userId=mallory&sessionId=stolen&device=phone&role=admin",
            jwt(&json!({"sub": "dave", "exp": exp}))
        ))
        .await;
    let listed = listed_by_client(&server).await;
    for (subscriber, user, session) in [
        (&by_header, "alice", json!("s-header")),
        (&by_query, "bob", json!("s-query")),
        (&by_cookie, "carol", json!("s-cookie")),
        (&with_query_identity, "dave", Value::Null),
    ] {
        let connection = &listed[&subscriber.client_id];
        assert_eq!(connection["userId"], user, "{connection}");
        assert_eq!(connection["sessionId"], session, "{connection}");
    }
    let listed_dave = &listed[&with_query_identity.client_id];
    assert_eq!(listed_dave["metadata"], json!({}), "{listed_dave}");
    assert_eq!(
        listed_dave["clientMetadata"],
        json!({"device": "phone", "role": "admin"}),
        "neither the token nor the ignored identity parameters are metadata"
    );
    for (body, delivered) in [
        (
            json!({"event": "x", "target": "user", "targetId": "mallory", "data": 1}),
            0,
        ),
        (
            json!({"event": "x", "target": "session", "targetId": "stolen", "data": 1}),
            0,
        ),
        (
            json!({"event": "x", "target": "user", "targetId": "dave", "data": 1}),
            1,
        ),
        (
            json!({"event": "x", "target": "session", "targetId": "s-cookie", "data": 1}),
            1,
        ),
        (
            json!({"event": "x", "target": "users", "targetIds": ["alice", "bob"], "data": 1}),
            2,
        ),
    ] {
        assert_eq!(server.publish_ok(&body).await.delivered, delivered, "{body}");
    }
}

pub(crate) async fn jwt_channels_claim_limits_channels(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_AUTH_SECRET", AUTH_SECRET)]).await;
    let exp = unix_now() + 600;
    let token = jwt(&json!({"sub": "alice", "channels": ["news", "orders/*"], "exp": exp}));
    for channel in ["admin", "newsroom", "orders", "ORDERS/1"] {
        let (status, body) = refused(
            &server,
            &format!("access_token={token}&channel=news&channel={channel}"),
            &[],
        )
        .await;
        assert_error(
            status,
            &body,
            StatusCode::FORBIDDEN,
            channel,
            &format!("channel {channel}"),
        );
        assert_eq!(body["channel"], channel, "the body names the refused channel");
    }
    assert_eq!(server.stats().await["connections"], 0, "nothing was registered");

    let mut alice = server
        .subscribe(&format!("access_token={token}&channel=news&channel=orders/17"))
        .await;
    assert_eq!(server.stats().await["channels"], json!({"news": 1, "orders/17": 1}));
    // At runtime too, the token's channels are the limit.
    for (channel, status) in [
        ("orders/18", StatusCode::OK),
        ("admin", StatusCode::FORBIDDEN),
        ("orders", StatusCode::FORBIDDEN),
    ] {
        let membership = json!({"clientId": alice.client_id, "channel": channel});
        let (got, body) = TestServer::send(server.api(Method::POST, "/api/sse/subscribe").json(&membership)).await;
        assert_eq!(got, status, "subscribing to {channel} answered {body}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(body["channel"], channel, "the body names the refused channel");
        }
    }
    for channel in ["orders/17", "orders/18", "admin"] {
        server
            .publish_ok(&json!({"event": channel, "target": "channel", "targetId": channel, "data": 1}))
            .await;
    }
    server.publish_ok(&json!({"event": "end", "data": 1})).await;
    assert_eq!(names_until(&mut alice.stream, "end").await, ["orders/17", "orders/18"]);

    // Without a channels claim, any channel.
    let anywhere = jwt(&json!({"sub": "bob", "exp": exp}));
    let _bob = server
        .subscribe(&format!("access_token={anywhere}&channel=admin"))
        .await;
}

pub(crate) async fn jwt_expiry_ends_the_stream(serve: ServeFn) {
    let server = TestServer::start(serve, &[("SSE_AUTH_SECRET", AUTH_SECRET), ("SSE_HEARTBEAT_MS", "500")]).await;
    let expired = jwt(&json!({"sub": "alice", "exp": unix_now() - 1}));
    let (status, body) = refused(&server, &format!("access_token={expired}"), &[]).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "", "an expired token");

    let exp = unix_now() + 2;
    let short = jwt(&json!({"sub": "alice", "exp": exp}));
    let mut alice = server.subscribe(&format!("access_token={short}")).await;
    server
        .publish_ok(&json!({"event": "alive", "target": "user", "targetId": "alice", "data": 1}))
        .await;
    alice.stream.expect_event("alive").await;
    let (_, end) = alice.stream.events_until_end().await;
    let ended = unix_now();
    assert_eq!(
        end,
        End::Clean,
        "the stream ends cleanly at expiry; the client reconnects"
    );
    // Token times are whole seconds: the stream ends within the second
    // before `exp` or soon after it.
    assert!(
        ended + 1 >= exp && ended <= exp + 2,
        "the stream ended at {ended}, the token expires at {exp}"
    );
    server.wait_for_connections(0).await;
    // The client comes back with a fresh token.
    let fresh = jwt(&json!({"sub": "alice", "exp": unix_now() + 600}));
    let _again = server.subscribe(&format!("access_token={fresh}")).await;
}

/// The path of a key fixture of `sse-core`'s tests.
fn key_fixture(name: &str) -> String {
    format!("{}/../sse-core/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// An RS256 token with `claims`, signed with the fixture `rsa-private.pem`.
fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(key_fixture("rsa-private.pem")).expect("the private key fixture");
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(&pem).expect("an RSA private key"),
    )
    .expect("encodable claims")
}

pub(crate) async fn jwt_rs256_public_key(serve: ServeFn) {
    let public = key_fixture("rsa-public.pem");
    let server = TestServer::start(
        serve,
        &[
            ("SSE_JWT_PUBLIC_KEY", &public),
            ("SSE_JWT_ISSUER", "https://login.example.com/"),
            ("SSE_JWT_AUDIENCE", "sse"),
        ],
    )
    .await;
    let exp = unix_now() + 600;
    let claims = |extra: Value| {
        let mut claims = json!({"sub": "alice", "iss": "https://login.example.com/", "aud": "sse", "exp": exp});
        for (key, value) in extra.as_object().expect("an object") {
            claims[key] = value.clone();
        }
        claims
    };
    // Key confusion: HS256 with the public key as the HMAC secret.
    let public_pem = std::fs::read_to_string(&public).expect("the public key fixture");
    let confused = jwt_signed(&claims(json!({})), &public_pem);
    for (what, token, message) in [
        (
            "HS256 signed with the public key",
            confused,
            "the token's algorithm is not accepted",
        ),
        (
            "another issuer",
            rs256(&claims(json!({"iss": "https://evil.example.com/"}))),
            "the token's issuer is not accepted",
        ),
        (
            "another audience",
            rs256(&claims(json!({"aud": "billing"}))),
            "the token's audience is not accepted",
        ),
        (
            "expired",
            rs256(&claims(json!({"exp": unix_now() - 10}))),
            "the token has expired",
        ),
        (
            "not valid yet",
            rs256(&claims(json!({"nbf": unix_now() + 3600}))),
            "the token is not valid yet",
        ),
    ] {
        let (status, body) = refused(&server, &format!("access_token={token}"), &[]).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, message, what);
    }
    assert_eq!(server.stats().await["connections"], 0, "nothing was registered");
    let alice = server
        .subscribe(&format!("access_token={}", rs256(&claims(json!({"sid": "s1"})))))
        .await;
    let listed = listed_by_client(&server).await;
    assert_eq!(listed[&alice.client_id]["userId"], "alice");
    assert_eq!(listed[&alice.client_id]["sessionId"], "s1");
}

pub(crate) async fn jwt_roles_publish_and_administer(serve: ServeFn) {
    const TOKEN: &str = "the-publish-token";
    let public = key_fixture("rsa-public.pem");
    let server = TestServer::start(serve, &[("SSE_JWT_PUBLIC_KEY", &public), ("SSE_PUBLISH_TOKEN", TOKEN)]).await;
    let exp = unix_now() + 600;
    let publisher = rs256(&json!({"sub": "backend", "roles": ["sse:publish"], "exp": exp}));
    let admin = rs256(&json!({"sub": "ops", "roles": ["sse:admin"], "exp": exp}));
    let subscriber = rs256(&json!({"sub": "alice", "exp": exp}));
    let mut alice = server.subscribe(&format!("access_token={subscriber}")).await;
    let membership = json!({"clientId": alice.client_id, "channel": "red"});
    let request = |method: Method, path: &str, bearer: &str| {
        server
            .client()
            .request(method, server.url(path))
            .header("authorization", format!("Bearer {bearer}"))
    };
    let publish = json!({"event": "hello", "target": "user", "targetId": "alice", "data": 1});
    // A subscriber's token, without roles, may neither publish nor administer.
    for (method, path, body) in [
        (Method::POST, "/api/sse/publish", Some(&publish)),
        (Method::GET, "/api/sse/stats", None),
    ] {
        let mut call = request(method.clone(), path, &subscriber);
        if let Some(body) = body {
            call = call.json(body);
        }
        let (status, body) = TestServer::send(call).await;
        assert_error(
            status,
            &body,
            StatusCode::FORBIDDEN,
            "roles",
            &format!("{method} {path} as a subscriber"),
        );
    }
    // sse:publish publishes, and administers nothing.
    let (status, body) = TestServer::send(request(Method::POST, "/api/sse/publish", &publisher).json(&publish)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delivered"], 1);
    alice.stream.expect_event("hello").await;
    for (method, path) in [
        (Method::GET, "/api/sse/stats"),
        (Method::GET, "/api/sse/connections"),
        (Method::POST, "/api/sse/subscribe"),
        (Method::GET, "/api/sse/presence/red"),
    ] {
        let (status, body) = TestServer::send(request(method.clone(), path, &publisher).json(&membership)).await;
        assert_error(
            status,
            &body,
            StatusCode::FORBIDDEN,
            "sse:admin",
            &format!("{method} {path} as a publisher"),
        );
    }
    // sse:admin does everything.
    let (status, body) = TestServer::send(request(Method::POST, "/api/sse/publish", &admin).json(&publish)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (method, path) in [
        (Method::GET, "/api/sse/stats"),
        (Method::GET, "/api/sse/connections"),
        (Method::POST, "/api/sse/subscribe"),
        (Method::GET, "/api/sse/presence/red"),
        (Method::POST, "/api/sse/unsubscribe"),
    ] {
        let (status, body) = TestServer::send(request(method.clone(), path, &admin).json(&membership)).await;
        assert_eq!(status, StatusCode::OK, "{method} {path} as an admin: {body}");
    }
    let disconnect = format!("/api/sse/connections/{}", alice.client_id);
    let (status, _) = TestServer::send(request(Method::DELETE, &disconnect, &admin)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The static token still does everything; an expired admin, nothing.
    assert_eq!(server.stats().await["connections"], 0);
    let expired = rs256(&json!({"sub": "ops", "roles": ["sse:admin"], "exp": unix_now() - 10}));
    let (status, body) = TestServer::send(request(Method::GET, "/api/sse/stats", &expired)).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "the token has expired",
        "an expired admin",
    );
}
