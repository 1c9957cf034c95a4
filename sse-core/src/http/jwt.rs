//! Subscribers authenticated with HS256 JSON Web Tokens (feature `jwt`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthError, Authenticator, Identity, bearer_token, query_pairs};

/// The cookie a browser may carry the token in.
pub const TOKEN_COOKIE: &str = "sse_token";

/// Authenticates subscribers with an HS256 JWT, checked with
/// [`jsonwebtoken`].
///
/// The token is taken from, in this order: the `Authorization: Bearer`
/// header, the `access_token` query parameter (browsers' `EventSource`
/// cannot send headers), and the `sse_token` cookie (for same-site pages,
/// or cross-origin with `withCredentials`).
///
/// Claims: `sub` (required) is the user id, `sid` (optional) the session id,
/// `channels` (optional) the channels this user may join (an entry ending in
/// `*` is a prefix pattern; without the claim, any channel), `exp`
/// (optional) the expiry: an expired token is refused, and a connection
/// opened with one is closed when it expires so the client reconnects with
/// a fresh token.
///
/// ```
/// use sse_core::http::jwt::JwtAuthenticator;
///
/// let auth = JwtAuthenticator::hs256(b"a long random secret");
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct JwtAuthenticator {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator").finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    sid: Option<String>,
    channels: Option<Vec<String>>,
    exp: Option<u64>,
}

impl JwtAuthenticator {
    /// Accepts tokens signed with HMAC-SHA256 and `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims = ["sub".to_owned()].into_iter().collect();
        validation.validate_exp = true;
        validation.leeway = 0;
        JwtAuthenticator {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The token of a request, from header, query or cookie.
    fn token(request: &Parts) -> Option<String> {
        if let Some(token) = bearer_token(&request.headers) {
            return Some(token.to_owned());
        }
        if let Some((_, token)) = query_pairs(request).find(|(key, _)| key == "access_token") {
            return Some(token.into_owned());
        }
        request
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|cookie| cookie.name() == TOKEN_COOKIE)
            .map(|cookie| cookie.value().to_owned())
    }

    /// The identity a token stands for.
    ///
    /// # Errors
    /// [`AuthError::Unauthorized`] for a missing, malformed, badly signed or
    /// expired token.
    pub fn identity(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Unauthorized(format!("invalid token: {e}")))?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Unauthorized("the token's sub claim is empty".to_owned()));
        }
        let expires_in = match claims.exp {
            None => None,
            Some(exp) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                match exp.checked_sub(now) {
                    Some(left) if left > 0 => Some(Duration::from_secs(left)),
                    _ => return Err(AuthError::Unauthorized("the token has expired".to_owned())),
                }
            }
        };
        Ok(Identity {
            user_id: Some(claims.sub),
            session_id: claims.sid.filter(|sid| !sid.is_empty()),
            allowed_channels: claims.channels,
            channels: Vec::new(),
            metadata: BTreeMap::new(),
            expires_in,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, request: &Parts) -> Result<Identity, AuthError> {
        match Self::token(request) {
            Some(token) => self.identity(&token),
            None => Err(AuthError::Unauthorized(
                "a token is required (Authorization: Bearer, access_token or the sse_token cookie)".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

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
}
