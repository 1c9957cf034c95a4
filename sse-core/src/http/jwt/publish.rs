//! Publishers and administrators authenticated by their token's roles:
//! [`JwtPublishAuthorizer`] accepts a static bearer token, as
//! [`BearerToken`] does, or a JWT, verified as a subscriber's is, whose
//! roles claim grants [`ROLE_PUBLISH`] or [`ROLE_ADMIN`].

use async_trait::async_trait;
use http::request::Parts;

use super::JwtAuthenticator;
use super::verify::strings;
use crate::http::{AuthError, BearerToken, PublishAuthorizer, RouteGroup, bearer_token};

/// The role that may publish (`POST publish`).
pub const ROLE_PUBLISH: &str = "sse:publish";

/// The role that may publish and use the administration routes (`stats`,
/// `connections`, `subscribe`, `unsubscribe`, `DELETE connections/{id}`,
/// `presence/{channel}`).
pub const ROLE_ADMIN: &str = "sse:admin";

/// The claim the roles are read from unless
/// [`JwtPublishAuthorizer::roles_claim`] names another.
pub const DEFAULT_ROLES_CLAIM: &str = "roles";

/// Guards publishing and administration with tokens: `Authorization:
/// Bearer <token>`, where the token is
///
/// * the static token of [`JwtPublishAuthorizer::token`], if one is set,
///   which may do everything, as with [`BearerToken`]; or
/// * a JWT that the [`JwtAuthenticator`] accepts (as it would a
///   subscriber's: signature, algorithm, `exp`, `nbf`, `iss`, `aud`),
///   whose roles claim (default `roles`, an array of strings) holds
///   [`ROLE_PUBLISH`], which may publish, or [`ROLE_ADMIN`], which may
///   publish and administer.
///
/// The token is read from the `Authorization` header only, never from the
/// query or a cookie, so that no page can make a browser publish with its
/// user's cookie. No token, or a refused one, is a `401` (saying why, for
/// a JWT; as [`BearerToken`] says it, for anything else); a valid JWT
/// without the role the route needs is a `403`.
///
/// ```
/// use sse_core::http::jwt::{JwtAuthenticator, JwtPublishAuthorizer};
/// use sse_core::http::{DevIdentity, SseEndpoints};
/// use sse_core::SseManager;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let jwt = JwtAuthenticator::hs256(b"a long random secret");
/// let endpoints = SseEndpoints::new(SseManager::builder().build()?, jwt.clone())
///     .publish_authorizer(JwtPublishAuthorizer::new(jwt).token("a static token for the backend"));
/// # let _ = endpoints;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JwtPublishAuthorizer {
    jwt: JwtAuthenticator,
    claim: String,
    token: Option<BearerToken>,
}

impl JwtPublishAuthorizer {
    /// Accepts JWTs that `jwt` verifies, by their roles.
    pub fn new(jwt: JwtAuthenticator) -> Self {
        JwtPublishAuthorizer {
            jwt,
            claim: DEFAULT_ROLES_CLAIM.to_owned(),
            token: None,
        }
    }

    /// Reads the roles from this top-level claim (`"roles"` by default; a
    /// namespaced name like `"https://example.com/roles"` is one claim).
    #[must_use]
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.claim = claim.into();
        self
    }

    /// Also accepts this static token, for everything (compared in
    /// constant time, as [`BearerToken`] does).
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(BearerToken::new(token));
        self
    }

    /// Whether the roles allow `group`.
    fn allows(roles: &[String], group: RouteGroup) -> bool {
        let has = |role: &str| roles.iter().any(|held| held == role);
        match group {
            RouteGroup::Publish => has(ROLE_PUBLISH) || has(ROLE_ADMIN),
            _ => has(ROLE_ADMIN),
        }
    }
}

#[async_trait]
impl PublishAuthorizer for JwtPublishAuthorizer {
    /// As [`authorize_group`](PublishAuthorizer::authorize_group) for the
    /// administration routes, the stricter group.
    async fn authorize(&self, request: &Parts) -> Result<(), AuthError> {
        self.authorize_group(request, RouteGroup::Admin).await
    }

    async fn authorize_group(&self, request: &Parts, group: RouteGroup) -> Result<(), AuthError> {
        let refused = || AuthError::Unauthorized("a valid bearer token is required".to_owned());
        let given = bearer_token(&request.headers).unwrap_or_default();
        if self.token.as_ref().is_some_and(|token| token.matches(given)) {
            return Ok(());
        }
        // Anything but a JWT is a wrong static token, answered as
        // `BearerToken` answers it.
        if given.split('.').count() != 3 {
            return Err(refused());
        }
        let verified = self.jwt.verified(given).await?;
        let roles = match verified.claims.get(&self.claim) {
            None => Vec::new(),
            Some(value) => strings(value).ok_or_else(|| {
                AuthError::Unauthorized(format!(
                    "the token's {} claim is not a list of strings",
                    self.claim.chars().take(64).collect::<String>()
                ))
            })?,
        };
        if Self::allows(&roles, group) {
            Ok(())
        } else if group == RouteGroup::Publish {
            Err(AuthError::Forbidden(format!(
                "the token's roles do not include {ROLE_PUBLISH} or {ROLE_ADMIN}"
            )))
        } else {
            Err(AuthError::Forbidden(format!(
                "the token's roles do not include {ROLE_ADMIN}"
            )))
        }
    }
}
