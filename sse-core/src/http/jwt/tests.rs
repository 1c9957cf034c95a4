//! The authenticator on its own: where the token is taken from, and the
//! tokens it refuses.

use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const SECRET: &[u8] = b"test secret";

fn token(claims: &serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encodable claims")
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid request").into_parts().0
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[tokio::test]
async fn token_from_header_query_or_cookie() {
    let auth = JwtAuthenticator::hs256(SECRET);
    let jwt = token(
        &serde_json::json!({"sub": "alice", "sid": "s1", "channels": ["news", "orders/*"], "exp": now() + 600}),
        SECRET,
    );
    let bearer = format!("Bearer {jwt}");
    let cookie = format!("theme=dark; {TOKEN_COOKIE}={jwt}");
    for parts in [
        request("/api/sse", &[("authorization", &bearer)]),
        request(&format!("/api/sse?access_token={jwt}"), &[]),
        request("/api/sse", &[("cookie", &cookie)]),
    ] {
        let identity = auth.authenticate(&parts).await.expect("valid token");
        assert_eq!(identity.user_id.as_deref(), Some("alice"));
        assert_eq!(identity.session_id.as_deref(), Some("s1"));
        assert!(identity.may_join("orders/17") && !identity.may_join("admin"));
        assert!(identity.expires_in.is_some_and(|left| left <= Duration::from_secs(600)));
    }
}

#[tokio::test]
async fn refuses_missing_forged_and_expired_tokens() {
    let auth = JwtAuthenticator::hs256(SECRET);
    let forged = token(&serde_json::json!({"sub": "alice"}), b"another secret");
    let expired = token(&serde_json::json!({"sub": "alice", "exp": now() - 5}), SECRET);
    let no_sub = token(&serde_json::json!({"exp": now() + 60}), SECRET);
    for parts in [
        request("/api/sse", &[]),
        request(&format!("/api/sse?access_token={forged}"), &[]),
        request(&format!("/api/sse?access_token={expired}"), &[]),
        request(&format!("/api/sse?access_token={no_sub}"), &[]),
        request("/api/sse?access_token=not.a.jwt", &[]),
        request("/api/sse", &[("authorization", "Bearer")]),
    ] {
        let refused = auth.authenticate(&parts).await;
        assert!(matches!(refused, Err(AuthError::Unauthorized(_))), "{:?}", parts.uri);
    }
}
