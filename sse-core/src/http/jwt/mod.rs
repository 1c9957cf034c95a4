//! Subscribers and publishers authenticated with JSON Web Tokens (feature
//! `jwt`): [`JwtAuthenticator`] checks a token's signature, with the
//! algorithms and keys its [`JwtAuthenticatorBuilder`] was given (an HMAC
//! secret, public keys in PEM, or, with feature `jwks`, an identity
//! provider's JWKS URL), and its claims; [`JwtPublishAuthorizer`] lets a
//! token's roles publish and administer.
//!
//! A refused token is answered in the crate's own words ("the token has
//! expired", "the token's signature is invalid", ...), never with the JWT
//! library's messages.

mod builder;
#[cfg(feature = "jwks")]
mod jwks;
mod publish;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::request::Parts;
use jsonwebtoken::DecodingKey;

use super::{AuthError, Authenticator, Identity, bearer_token, query_pairs};

pub use builder::{DEFAULT_LEEWAY, JwtAlgorithm, JwtAuthenticatorBuilder, JwtConfigError, UnknownAlgorithm};
#[cfg(feature = "jwks")]
pub use jwks::{DEFAULT_MAX_AGE, DEFAULT_MIN_REFRESH, DEFAULT_TIMEOUT, MAX_JWKS_BYTES};
pub use publish::{DEFAULT_ROLES_CLAIM, JwtPublishAuthorizer, ROLE_ADMIN, ROLE_PUBLISH};

use builder::Family;

/// The cookie a browser may carry the token in.
pub const TOKEN_COOKIE: &str = "sse_token";

/// Authenticates subscribers with a JWT, checked with [`jsonwebtoken`].
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
/// a fresh token. `nbf`, `iss` and `aud` are checked as the
/// [builder](JwtAuthenticatorBuilder) says.
///
/// [`JwtAuthenticator::hs256`] accepts HS256 tokens signed with a secret;
/// [`JwtAuthenticator::builder`] configures anything else (public keys,
/// JWKS, issuer, audience, leeway):
///
/// ```
/// use sse_core::http::jwt::JwtAuthenticator;
///
/// let auth = JwtAuthenticator::hs256(b"a long random secret");
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct JwtAuthenticator {
    inner: Arc<Inner>,
}

/// What a [`JwtAuthenticator`] checks tokens with.
struct Inner {
    /// The accepted algorithms, pinned by configuration.
    algorithms: Vec<JwtAlgorithm>,
    /// The keys given directly (secret, PEM).
    keys: Vec<StaticKey>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    #[cfg(feature = "jwks")]
    jwks: Option<jwks::JwksCache>,
}

/// A key given directly, and its kind.
#[derive(Clone)]
struct StaticKey {
    key: DecodingKey,
    family: Family,
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.family.name())
    }
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.inner.algorithms)
            .field("issuers", &self.inner.issuers)
            .field("audiences", &self.inner.audiences)
            .field("leeway", &self.inner.leeway)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// Accepts tokens signed with HMAC-SHA256 and `secret` (the
    /// [builder](JwtAuthenticatorBuilder)'s other defaults: no issuer or
    /// audience, [`DEFAULT_LEEWAY`] for `nbf`).
    pub fn hs256(secret: &[u8]) -> Self {
        JwtAuthenticator {
            inner: Arc::new(Inner {
                algorithms: vec![JwtAlgorithm::Hs256],
                keys: vec![StaticKey {
                    key: DecodingKey::from_secret(secret),
                    family: Family::Hmac,
                }],
                issuers: Vec::new(),
                audiences: Vec::new(),
                leeway: DEFAULT_LEEWAY,
                #[cfg(feature = "jwks")]
                jwks: None,
            }),
        }
    }

    /// A builder for any other configuration: public keys, several
    /// algorithms, a JWKS URL, issuer, audience, leeway.
    pub fn builder() -> JwtAuthenticatorBuilder {
        JwtAuthenticatorBuilder::default()
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[JwtAlgorithm] {
        &self.inner.algorithms
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

    /// The identity a token stands for. With a JWKS, only the keys already
    /// fetched are used; [`JwtAuthenticator::verify`] fetches them.
    ///
    /// # Errors
    /// [`AuthError::Unauthorized`] for a malformed, badly signed, expired
    /// or otherwise refused token, saying why.
    pub fn identity(&self, token: &str) -> Result<Identity, AuthError> {
        Ok(self.check(token, None)?.identity)
    }

    /// The identity a token stands for, fetching the JWKS if the token
    /// names a key not fetched yet (within the bounds the builder set).
    ///
    /// # Errors
    /// As [`JwtAuthenticator::identity`]; [`AuthError::Unavailable`] when
    /// the JWKS could never be fetched.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        Ok(self.verified(token).await?.identity)
    }

    /// The checked token: identity and claims.
    async fn verified(&self, token: &str) -> Result<verify::Verified, AuthError> {
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &self.inner.jwks {
            let header = verify::Header::of(token, &self.inner.algorithms)?;
            let family = header.algorithm.family();
            if family != Family::Hmac {
                return match jwks.keys(header.algorithm, header.kid.as_deref()).await {
                    Ok(keys) => self.check(token, Some(keys)),
                    // A key given directly may still verify it.
                    Err(refused) if self.inner.keys.iter().any(|key| key.family == family) => {
                        match self.check(token, Some(Vec::new())) {
                            Err(AuthError::Unauthorized(reason))
                                if reason == verify::refusal::SIGNATURE || reason == verify::refusal::UNKNOWN_KEY =>
                            {
                                Err(refused)
                            }
                            checked => checked,
                        }
                    }
                    Err(refused) => Err(refused),
                };
            }
        }
        self.check(token, None)
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, request: &Parts) -> Result<Identity, AuthError> {
        match Self::token(request) {
            Some(token) => self.verify(&token).await,
            None => Err(AuthError::Unauthorized(
                "a token is required (Authorization: Bearer, access_token or the sse_token cookie)".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
