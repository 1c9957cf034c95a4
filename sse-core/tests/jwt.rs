//! JWTs as identity providers issue them, with keys given in PEM: RS256,
//! ES256 and EdDSA accepted with the right key; the accepted algorithms
//! pinned by configuration (no `alg: none`, no HS256 token signed with an
//! RSA public key as its secret); `exp`, `nbf`, `iss` and `aud`; the
//! refusals in the crate's words; and publishers authorized by their
//! token's roles.
#![cfg(all(feature = "jwt", feature = "tokio"))]

mod jwt_support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sse_core::SseManager;
use sse_core::http::jwt::{JwtAlgorithm, JwtAuthenticator, JwtConfigError, JwtPublishAuthorizer};
use sse_core::http::{AuthError, BearerToken, SseEndpoints, auth_error};

use jwt_support::{fixture, now, sign};

fn refusal(auth: &JwtAuthenticator, token: &str) -> String {
    match auth.identity(token) {
        Ok(identity) => panic!("accepted as {identity:?}"),
        Err(refused) => {
            let response = auth_error(&refused);
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused}");
            let body: Value = serde_json::from_slice(response.body()).expect("a JSON body");
            body["error"].as_str().expect("an error message").to_owned()
        }
    }
}

#[test]
fn rs256_es256_and_eddsa_are_accepted_with_their_key() {
    let claims = json!({"sub": "alice", "sid": "s1", "exp": now() + 600});
    for (public, private, algorithm) in [
        ("rsa-public.pem", "rsa-private.pem", JwtAlgorithm::Rs256),
        ("ec-public.pem", "ec-private.pem", JwtAlgorithm::Es256),
        ("ed-public.pem", "ed-private.pem", JwtAlgorithm::EdDsa),
    ] {
        let token = sign(algorithm, private, None, &claims);
        let by_kind = match algorithm {
            JwtAlgorithm::Rs256 => JwtAuthenticator::builder().rsa_pem(fixture(public)),
            JwtAlgorithm::Es256 => JwtAuthenticator::builder().ec_pem(fixture(public)),
            _ => JwtAuthenticator::builder().ed_pem(fixture(public)),
        };
        for builder in [by_kind, JwtAuthenticator::builder().public_key_pem(fixture(public))] {
            let auth = builder.build().expect("a valid key");
            assert_eq!(auth.algorithms(), [algorithm], "the key's algorithm by default");
            let identity = auth.identity(&token).expect("the right key");
            assert_eq!(identity.user_id.as_deref(), Some("alice"));
            assert_eq!(identity.session_id.as_deref(), Some("s1"));
            assert!(identity.expires_in.is_some_and(|left| left <= Duration::from_secs(600)));
        }
        // Another key of the same kind does not verify it.
        if algorithm == JwtAlgorithm::Rs256 {
            let other = JwtAuthenticator::builder()
                .rsa_pem(fixture("rsa2-public.pem"))
                .build()
                .expect("a valid key");
            assert_eq!(
                refusal(&other, &token),
                "unauthorized: the token's signature is invalid"
            );
        }
    }
}

#[test]
fn the_accepted_algorithms_are_pinned_by_configuration() {
    let claims = json!({"sub": "mallory", "exp": now() + 600});
    let public = fixture("rsa-public.pem");
    let rsa = JwtAuthenticator::builder()
        .rsa_pem(&public)
        .build()
        .expect("a valid key");
    // Key confusion: HS256 with the RSA public key as the HMAC secret.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .expect("encodable");
    assert_eq!(
        refusal(&rsa, &confused),
        "unauthorized: the token's algorithm is not accepted"
    );
    // Even with HS256 accepted too, an HS256 token meets only the secret.
    let both = JwtAuthenticator::builder()
        .hs256("a shared secret")
        .rsa_pem(&public)
        .algorithms([JwtAlgorithm::Hs256, JwtAlgorithm::Rs256])
        .build()
        .expect("both keys");
    assert_eq!(
        refusal(&both, &confused),
        "unauthorized: the token's signature is invalid"
    );
    // `alg: none`, with or without a signature, and unknown names.
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"alg": "rs256"}),
        json!({"typ": "JWT"}),
        json!({"alg": 256}),
    ] {
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}.c2ln")] {
            assert_eq!(
                refusal(&rsa, &token),
                "unauthorized: the token's algorithm is not accepted",
                "{token}"
            );
        }
    }
    // An algorithm of the right kind, but not the accepted one.
    let ps256 = sign(JwtAlgorithm::Ps256, "rsa-private.pem", None, &claims);
    assert_eq!(
        refusal(&rsa, &ps256),
        "unauthorized: the token's algorithm is not accepted"
    );
    let accepting_ps256 = JwtAuthenticator::builder()
        .rsa_pem(&public)
        .algorithms([JwtAlgorithm::Rs256, JwtAlgorithm::Ps256])
        .build()
        .expect("a valid key");
    accepting_ps256.identity(&ps256).expect("PS256 once accepted");
    for malformed in ["", "not.a.jwt", "a.b", "a.b.c.d", "bm90IGpzb24.e30.e30"] {
        assert_eq!(
            refusal(&rsa, malformed),
            "unauthorized: the token is malformed",
            "{malformed:?}"
        );
    }
}

#[test]
fn time_issuer_and_audience_claims() {
    let auth = JwtAuthenticator::builder()
        .ec_pem(fixture("ec-public.pem"))
        .issuer("https://login.example.com/")
        .audience("sse")
        .leeway(Duration::from_secs(30))
        .build()
        .expect("a valid configuration");
    let token = |claims: Value| sign(JwtAlgorithm::Es256, "ec-private.pem", None, &claims);
    let good =
        || json!({"sub": "alice", "iss": "https://login.example.com/", "aud": ["other", "sse"], "exp": now() + 600});
    auth.identity(&token(good())).expect("every claim right");
    let with = |key: &str, value: Value| {
        let mut claims = good();
        claims[key] = value;
        token(claims)
    };
    let without = |key: &str| {
        let mut claims = good();
        claims.as_object_mut().expect("an object").remove(key);
        token(claims)
    };
    for (what, token, message) in [
        ("expired", with("exp", json!(now() - 1)), "the token has expired"),
        ("expiring now", with("exp", json!(now())), "the token has expired"),
        (
            "nbf beyond the leeway",
            with("nbf", json!(now() + 120)),
            "the token is not valid yet",
        ),
        (
            "another issuer",
            with("iss", json!("https://evil.example.com/")),
            "the token's issuer is not accepted",
        ),
        ("no issuer", without("iss"), "the token has no iss claim"),
        (
            "another audience",
            with("aud", json!("billing")),
            "the token's audience is not accepted",
        ),
        ("no audience", without("aud"), "the token has no aud claim"),
        ("no sub", without("sub"), "the token has no sub claim"),
        ("an empty sub", with("sub", json!("")), "the token's sub claim is empty"),
        (
            "a malformed exp",
            with("exp", json!("tomorrow")),
            "the token's exp claim is malformed",
        ),
        (
            "malformed channels",
            with("channels", json!("news")),
            "the token's channels claim is not a list of strings",
        ),
    ] {
        assert_eq!(refusal(&auth, &token), format!("unauthorized: {message}"), "{what}");
    }
    // nbf within the leeway (an issuer's clock a little ahead) is accepted.
    auth.identity(&with("nbf", json!(now() + 10)))
        .expect("nbf within the leeway");
    let strict = JwtAuthenticator::builder()
        .ec_pem(fixture("ec-public.pem"))
        .leeway(Duration::ZERO)
        .build()
        .expect("a valid key");
    let early = token(json!({"sub": "alice", "nbf": now() + 10}));
    assert_eq!(refusal(&strict, &early), "unauthorized: the token is not valid yet");
    // Without a configured audience, a token issued for one is refused.
    let for_someone = token(json!({"sub": "alice", "aud": "billing"}));
    assert_eq!(
        refusal(&strict, &for_someone),
        "unauthorized: the token's audience is not accepted"
    );
}

#[test]
fn hs256_keeps_its_behaviour() {
    let auth = JwtAuthenticator::hs256(jwt_support::SECRET);
    let built = JwtAuthenticator::builder()
        .hs256(jwt_support::SECRET)
        .build()
        .expect("a secret");
    let claims = json!({"sub": "alice", "channels": ["news"], "exp": now() + 60});
    for auth in [&auth, &built] {
        let token = sign(JwtAlgorithm::Hs256, "", None, &claims);
        let identity = auth.identity(&token).expect("the right secret");
        assert!(identity.may_join("news") && !identity.may_join("admin"));
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"another secret"),
        )
        .expect("encodable");
        assert_eq!(refusal(auth, &forged), "unauthorized: the token's signature is invalid");
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let rsa = fixture("rsa-public.pem");
    let error = |builder: sse_core::http::jwt::JwtAuthenticatorBuilder| builder.build().expect_err("refused");
    assert_eq!(error(JwtAuthenticator::builder()), JwtConfigError::NoKey);
    assert_eq!(
        error(JwtAuthenticator::builder().hs256("")),
        JwtConfigError::EmptySecret
    );
    assert!(matches!(
        error(JwtAuthenticator::builder().rsa_pem("not a key")),
        JwtConfigError::InvalidKey { .. }
    ));
    assert!(matches!(
        error(JwtAuthenticator::builder().ec_pem(&rsa)),
        JwtConfigError::InvalidKey { .. }
    ));
    assert!(matches!(
        error(
            JwtAuthenticator::builder().public_key_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
        ),
        JwtConfigError::InvalidKey { .. }
    ));
    assert_eq!(
        error(JwtAuthenticator::builder().rsa_pem(&rsa).algorithms([])),
        JwtConfigError::NoAlgorithms
    );
    assert_eq!(
        error(
            JwtAuthenticator::builder()
                .rsa_pem(&rsa)
                .algorithms([JwtAlgorithm::Hs256])
        ),
        JwtConfigError::AlgorithmWithoutKey(JwtAlgorithm::Hs256)
    );
    assert!(matches!(
        error(
            JwtAuthenticator::builder()
                .rsa_pem(&rsa)
                .hs256("secret")
                .algorithms([JwtAlgorithm::Rs256])
        ),
        JwtConfigError::KeyWithoutAlgorithm(_)
    ));
}

/// Endpoints whose publishing is guarded by roles, and the static token
/// `static-token`.
fn guarded() -> SseEndpoints {
    let manager = SseManager::builder().build().expect("a manager");
    let jwt = JwtAuthenticator::builder()
        .rsa_pem(fixture("rsa-public.pem"))
        .build()
        .expect("a valid key");
    SseEndpoints::new(manager, jwt.clone()).publish_authorizer(JwtPublishAuthorizer::new(jwt).token("static-token"))
}

async fn call(endpoints: &SseEndpoints, method: Method, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(format!("/api/sse/{path}"));
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    let (parts, ()) = request.body(()).expect("a request").into_parts();
    let body = if method == Method::POST {
        Bytes::from(json!({"event": "e", "data": 1}).to_string())
    } else {
        Bytes::new()
    };
    let response = endpoints.api(&parts, path, body).await;
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (response.status(), body)
}

#[tokio::test]
async fn roles_allow_publishing_and_administration() {
    let endpoints = guarded();
    let token = |roles: Value| {
        sign(
            JwtAlgorithm::Rs256,
            "rsa-private.pem",
            None,
            &json!({"sub": "backend", "roles": roles, "exp": now() + 600}),
        )
    };
    let publisher = token(json!(["sse:publish"]));
    let admin = token(json!(["other", "sse:admin"]));
    let subscriber = token(json!([]));
    let no_roles = sign(JwtAlgorithm::Rs256, "rsa-private.pem", None, &json!({"sub": "alice"}));
    let expired = sign(
        JwtAlgorithm::Rs256,
        "rsa-private.pem",
        None,
        &json!({"sub": "a", "roles": ["sse:admin"], "exp": now() - 5}),
    );
    let forbidden_publish = json!({"error": "forbidden: the token's roles do not include sse:publish or sse:admin"});
    let forbidden_admin = json!({"error": "forbidden: the token's roles do not include sse:admin"});
    for (who, bearer, publish, admin_routes) in [
        ("the static token", Some("static-token"), StatusCode::OK, StatusCode::OK),
        (
            "sse:publish",
            Some(publisher.as_str()),
            StatusCode::OK,
            StatusCode::FORBIDDEN,
        ),
        ("sse:admin", Some(admin.as_str()), StatusCode::OK, StatusCode::OK),
        (
            "no role",
            Some(subscriber.as_str()),
            StatusCode::FORBIDDEN,
            StatusCode::FORBIDDEN,
        ),
        (
            "no roles claim",
            Some(no_roles.as_str()),
            StatusCode::FORBIDDEN,
            StatusCode::FORBIDDEN,
        ),
        (
            "an expired admin",
            Some(expired.as_str()),
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another token",
            Some("static-token2"),
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
        ),
        ("no token", None, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED),
    ] {
        let (status, body) = call(&endpoints, Method::POST, "publish", bearer).await;
        assert_eq!(status, publish, "{who} publishing: {body}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(body, forbidden_publish);
        }
        for path in ["stats", "connections", "presence/news"] {
            let (status, body) = call(&endpoints, Method::GET, path, bearer).await;
            assert_eq!(status, admin_routes, "{who} on {path}: {body}");
            if status == StatusCode::FORBIDDEN {
                assert_eq!(body, forbidden_admin);
            }
        }
    }
    let (_, body) = call(&endpoints, Method::POST, "publish", None).await;
    assert_eq!(body, json!({"error": "unauthorized: a valid bearer token is required"}));
    let (_, body) = call(&endpoints, Method::POST, "publish", Some(&expired)).await;
    assert_eq!(body, json!({"error": "unauthorized: the token has expired"}));
    // The token is read from the header only.
    let (parts, ()) = http::Request::post(format!("/api/sse/publish?access_token={admin}"))
        .header("cookie", format!("sse_token={admin}"))
        .body(())
        .expect("a request")
        .into_parts();
    let response = endpoints
        .api(&parts, "publish", Bytes::from_static(b"{\"data\":1}"))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_roles_claim_is_configurable() {
    let manager = SseManager::builder().build().expect("a manager");
    let jwt = JwtAuthenticator::hs256(b"secret");
    let endpoints = SseEndpoints::new(manager, jwt.clone())
        .publish_authorizer(JwtPublishAuthorizer::new(jwt).roles_claim("https://example.com/roles"));
    let claims = json!({"sub": "svc", "https://example.com/roles": ["sse:admin"], "roles": "ignored"});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .expect("encodable");
    assert_eq!(
        call(&endpoints, Method::GET, "stats", Some(&token)).await.0,
        StatusCode::OK
    );
    let malformed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "svc", "https://example.com/roles": "sse:admin"}),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .expect("encodable");
    let (status, body) = call(&endpoints, Method::GET, "stats", Some(&malformed)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": "unauthorized: the token's https://example.com/roles claim is not a list of strings"})
    );
}

#[tokio::test]
async fn a_plain_bearer_token_answers_as_before() {
    let manager = SseManager::builder().build().expect("a manager");
    let endpoints = SseEndpoints::new(manager, JwtAuthenticator::hs256(b"s")).publish_authorizer(BearerToken::new("t"));
    for path in ["publish", "stats"] {
        let method = if path == "publish" { Method::POST } else { Method::GET };
        assert_eq!(
            call(&endpoints, method.clone(), path, Some("t")).await.0,
            StatusCode::OK
        );
        let (status, body) = call(&endpoints, method, path, Some("x")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({"error": "unauthorized: a valid bearer token is required"}));
    }
    let refused = AuthError::Unauthorized("x".to_owned());
    assert_eq!(auth_error(&refused).headers()["www-authenticate"], "Bearer");
}
