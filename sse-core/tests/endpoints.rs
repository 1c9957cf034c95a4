//! The endpoints as a server sees them: requests built with the `http`
//! crate go through [`SseEndpoints`] and come back as responses, checked
//! for their status, headers and JSON bodies: routing under the mount point,
//! channel authorization at connect time and on runtime subscribes, the
//! provenance of connection metadata, and the `503` of a stream whose
//! channels the backplane cannot start reading.
#![cfg(all(feature = "http", feature = "tokio"))]

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use sse_core::SseManager;
use sse_core::http::{
    AuthError, Authenticator, BearerToken, ChannelAuthorizer, DevIdentity, Identity, RemoteAddr, SseEndpoints,
    SseReply, Subscriber, sse_headers,
};

/// Identifies every subscriber as `alice`, allowed `news` and `orders/*`.
struct Alice;

#[async_trait]
impl Authenticator for Alice {
    async fn authenticate(&self, _: &Parts) -> Result<Identity, AuthError> {
        Ok(Identity::user("alice").with_allowed_channels(["news", "orders/*"]))
    }
}

/// Refuses `orders/secret` to everybody.
struct NoSecrets;

#[async_trait]
impl ChannelAuthorizer for NoSecrets {
    async fn authorize(&self, _: &Subscriber<'_>, channel: &str) -> bool {
        channel != "orders/secret"
    }
}

fn request(method: Method, uri: &str) -> Parts {
    let mut parts = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .expect("valid request")
        .into_parts()
        .0;
    parts
        .extensions
        .insert(RemoteAddr(SocketAddr::from(([127, 0, 0, 1], 5000))));
    parts
}

fn body(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).expect("JSON body")
}

#[tokio::test]
async fn channels_are_authorized_at_connect_and_on_subscribe() {
    let manager = SseManager::builder()
        .configure(|c| c.max_connections_per_addr(Some(1)))
        .build()
        .expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), Alice).channel_authorizer(NoSecrets);
    for channel in ["admin", "orders/secret"] {
        let reply = endpoints
            .connect(&request(Method::GET, &format!("/?channel={channel}")))
            .await;
        let SseReply::Response(response) = reply else {
            panic!("{channel} was let in")
        };
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(&response)["channel"], channel);
    }
    let reply = endpoints
        .connect(&request(Method::GET, "/?channel=news&channel=orders/1"))
        .await;
    let SseReply::Stream(connection) = reply else {
        panic!("alice was refused")
    };
    let client_id = connection.client_id().to_string();

    let second = endpoints.connect(&request(Method::GET, "/")).await;
    let SseReply::Response(response) = second else {
        panic!("over the per-address limit")
    };
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    for (channel, status) in [
        ("orders/2", StatusCode::OK),
        ("admin", StatusCode::FORBIDDEN),
        ("orders/secret", StatusCode::FORBIDDEN),
    ] {
        let json = serde_json::json!({ "clientId": client_id, "channel": channel }).to_string();
        let response = endpoints
            .api(&request(Method::POST, "/subscribe"), "subscribe", Bytes::from(json))
            .await;
        assert_eq!(response.status(), status, "{channel}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(body(&response)["channel"], channel);
        }
    }
    let info = manager.connection_info(&client_id).expect("still connected");
    assert_eq!(
        info.channels.iter().collect::<Vec<_>>(),
        ["news", "orders/1", "orders/2"]
    );
    drop(connection);
    assert_eq!(manager.connection_count(), 0);
    let again = endpoints.connect(&request(Method::GET, "/")).await;
    assert!(matches!(again, SseReply::Stream(_)), "the address was freed");
}

#[tokio::test]
async fn handle_routes_the_mount_point() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    let request = |method: Method, uri: &str| {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri.parse().expect("uri");
        parts
    };
    let reply = endpoints
        .handle(&request(Method::GET, "/?userId=u"), "/", Bytes::new())
        .await;
    let response = reply.into_http_response(|frames| {
        Bytes::from(
            frames
                .connection()
                .map(|connection| connection.client_id().to_string())
                .unwrap_or_default(),
        )
    });
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers(), &sse_headers());
    assert_eq!(
        manager.connection_count(),
        0,
        "the connection was dropped with its stream"
    );
    for (method, path, status) in [
        (Method::POST, "", StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "stats", StatusCode::OK),
        (Method::GET, "nothing", StatusCode::NOT_FOUND),
    ] {
        let reply = endpoints.handle(&request(method, "/"), path, Bytes::new()).await;
        assert_eq!(reply.into_http_response(|_| Bytes::new()).status(), status, "{path}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_answered_with_the_allowed_ones() {
    let manager = SseManager::builder().build().expect("manager");
    // Wrong methods are answered before the publish token is asked for.
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable()).publish_authorizer(BearerToken::new("t"));
    for (path, wrong, allow) in [
        ("", [Method::POST, Method::HEAD], "GET"),
        ("/", [Method::DELETE, Method::PUT], "GET"),
        ("publish", [Method::GET, Method::PUT], "POST"),
        ("stats", [Method::POST, Method::HEAD], "GET"),
        ("stats/", [Method::DELETE, Method::PATCH], "GET"),
        ("connections", [Method::POST, Method::DELETE], "GET"),
        ("subscribe", [Method::GET, Method::DELETE], "POST"),
        ("unsubscribe", [Method::GET, Method::PUT], "POST"),
        ("client.js", [Method::POST, Method::OPTIONS], "GET, HEAD"),
        ("connections/some-client", [Method::GET, Method::POST], "DELETE"),
    ] {
        for method in wrong {
            let reply = endpoints
                .handle(&request(method.clone(), "/api/sse"), path, Bytes::new())
                .await;
            let response = reply.into_http_response(|_| Bytes::new());
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(
                response.headers().get(http::header::ALLOW).map(|v| v.as_bytes()),
                Some(allow.as_bytes()),
                "{method} {path}"
            );
            assert_eq!(response.headers()[http::header::CONTENT_TYPE], "application/json");
            assert_eq!(response.body(), r#"{"error":"method not allowed"}"#, "{method} {path}");
        }
    }
    // `api` opens no stream: the mount root is a 405 there even for GET.
    let response = endpoints.api(&request(Method::GET, "/api/sse"), "", Bytes::new()).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[http::header::ALLOW], "GET");
    // Unknown paths stay 404, with no Allow header.
    let response = endpoints
        .api(&request(Method::GET, "/api/sse"), "nothing", Bytes::new())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get(http::header::ALLOW).is_none());
    assert_eq!(manager.connection_count(), 0);
}

#[tokio::test]
async fn presence_route_decodes_the_channel_and_refuses_what_is_not_utf8() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    let _tab = manager
        .connect(sse_core::ConnectOptions::new().user("alice").channel("team/a b"))
        .await
        .expect("connected");
    let get = |path: &'static str| {
        let endpoints = endpoints.clone();
        async move {
            endpoints
                .api(&request(Method::GET, "/api/sse"), path, Bytes::new())
                .await
        }
    };
    let expected = serde_json::json!({"channel": "team/a b", "users": [{"userId": "alice", "connections": 1}]});
    for path in [
        "presence/team%2Fa%20b",
        "presence/team/a%20b",
        "/presence/team%2Fa%20b/",
    ] {
        let response = get(path).await;
        assert_eq!(
            (response.status(), body(&response)),
            (StatusCode::OK, expected.clone()),
            "{path}"
        );
    }
    // Hostile paths: bytes that are not UTF-8 once decoded, broken escapes,
    // control characters; each answered without a panic.
    for (path, status) in [
        ("presence/%FF", StatusCode::BAD_REQUEST),
        ("presence/%C3%28", StatusCode::BAD_REQUEST),
        ("presence/%", StatusCode::OK),
        ("presence/%zz", StatusCode::OK),
        ("presence/%00", StatusCode::OK),
    ] {
        let response = get(path).await;
        assert_eq!(response.status(), status, "{path}");
        assert!(body(&response).is_object(), "{path}: a JSON body");
    }
}

/// Verifies identities: the user `alice`, whose role (mapped from her
/// credentials by the application) is `member`.
struct AliceTheMember;

#[async_trait]
impl Authenticator for AliceTheMember {
    async fn authenticate(&self, _: &Parts) -> Result<Identity, AuthError> {
        let mut identity = Identity::user("alice");
        identity.metadata.insert("role".to_owned(), "member".to_owned());
        Ok(identity)
    }
}

#[tokio::test]
async fn query_parameters_cannot_pass_a_filter_on_the_identitys_metadata() {
    let manager = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), AliceTheMember);
    let reply = endpoints
        .connect(&request(Method::GET, "/?role=admin&tenant=other&device=phone"))
        .await;
    let SseReply::Stream(_alice) = reply else {
        panic!("alice is let in");
    };
    let listed = serde_json::to_value(manager.connections()).expect("JSON");
    assert_eq!(listed[0]["metadata"], serde_json::json!({"role": "member"}));
    assert_eq!(
        listed[0]["clientMetadata"],
        serde_json::json!({"role": "admin", "tenant": "other", "device": "phone"})
    );
    let admins = manager
        .send_where(
            |info| info.metadata.get("role").is_some_and(|role| role == "admin"),
            sse_core::Event::message("for admins"),
        )
        .await
        .expect("sent");
    assert_eq!(admins.delivered, 0, "the query's role=admin is not the identity's");

    // In development mode the identity is the query's: its parameters are
    // metadata, as before, and no clientMetadata is listed.
    let dev = SseManager::builder().build().expect("manager");
    let endpoints = SseEndpoints::new(dev.clone(), DevIdentity::enable());
    let SseReply::Stream(_bob) = endpoints
        .connect(&request(Method::GET, "/?userId=bob&role=admin"))
        .await
    else {
        panic!("bob is let in");
    };
    let listed = serde_json::to_value(dev.connections()).expect("JSON");
    assert_eq!(listed[0]["metadata"], serde_json::json!({"role": "admin"}));
    assert!(listed[0].get("clientMetadata").is_none(), "{listed}");
}

/// A backplane that puts every channel on shard 0 and never starts reading
/// it, as one whose log cannot be reached.
struct ShardNeverRead;

#[async_trait]
impl sse_core::Backplane for ShardNeverRead {
    async fn publish(&self, _: Bytes) -> Result<String, sse_core::BackplaneError> {
        Ok("1-0".to_owned())
    }

    async fn run(self: std::sync::Arc<Self>, _: sse_core::BackplaneSink) {
        std::future::pending::<()>().await;
    }

    fn channel_shard(&self, _: &str) -> Option<u32> {
        Some(0)
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_channels_cannot_be_read_is_answered_503() {
    let manager = SseManager::builder()
        .backplane(ShardNeverRead)
        .build()
        .expect("manager");
    let endpoints = SseEndpoints::new(manager.clone(), DevIdentity::enable());
    // It could miss events: refused once the wait for its shard is over.
    let reply = endpoints
        .connect(&request(Method::GET, "/?userId=alice&channel=news"))
        .await;
    let SseReply::Response(response) = reply else {
        panic!("a stream that could miss events was opened")
    };
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let error = body(&response)["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("did not start reading"), "{error}");
    assert_eq!(manager.connection_count(), 0);
    assert_eq!(manager.stats().connections_rejected, 1);

    // A stream without channels needs no shard.
    let reply = endpoints.connect(&request(Method::GET, "/?userId=bob")).await;
    assert!(matches!(reply, SseReply::Stream(_)), "bob is let in");
    assert_eq!(manager.connection_count(), 1);
}
