//! Checking one token: its header (the algorithm must be an accepted one,
//! before any key is tried), its signature against the keys of that
//! algorithm's kind, its claims, and the crate's own words for every
//! refusal.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Identity, JwtAlgorithm, JwtAuthenticator};
use crate::http::AuthError;

/// Why a token is refused, in the crate's words.
pub(super) mod refusal {
    pub(crate) const MALFORMED: &str = "the token is malformed";
    pub(crate) const ALGORITHM: &str = "the token's algorithm is not accepted";
    pub(crate) const SIGNATURE: &str = "the token's signature is invalid";
    pub(crate) const EXPIRED: &str = "the token has expired";
    pub(crate) const NOT_YET_VALID: &str = "the token is not valid yet";
    pub(crate) const ISSUER: &str = "the token's issuer is not accepted";
    pub(crate) const AUDIENCE: &str = "the token's audience is not accepted";
    pub(crate) const NO_SUB: &str = "the token has no sub claim";
    pub(crate) const EMPTY_SUB: &str = "the token's sub claim is empty";
    pub(crate) const NO_ISS: &str = "the token has no iss claim";
    pub(crate) const NO_AUD: &str = "the token has no aud claim";
    pub(crate) const UNKNOWN_KEY: &str = "the token's key is not known";
}

fn unauthorized(reason: &str) -> AuthError {
    AuthError::Unauthorized(reason.to_owned())
}

/// A token's checked identity and all its claims.
pub(super) struct Verified {
    pub(super) identity: Identity,
    pub(super) claims: Map<String, Value>,
}

/// What the header of a token says, once its algorithm is known to be
/// accepted.
pub(super) struct Header {
    pub(super) algorithm: JwtAlgorithm,
    /// The key id, which picks a key of a JWKS.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(super) kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
}

impl Header {
    /// The header of `token`, refused unless its `alg` is in `accepted`
    /// (`none`, unknown names and a missing `alg` never are).
    pub(super) fn of(token: &str, accepted: &[JwtAlgorithm]) -> Result<Header, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(unauthorized(refusal::MALFORMED));
        };
        let raw: RawHeader = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| unauthorized(refusal::MALFORMED))?;
        let algorithm = raw
            .alg
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|name| name.parse::<JwtAlgorithm>().ok())
            .filter(|algorithm| accepted.contains(algorithm))
            .ok_or_else(|| unauthorized(refusal::ALGORITHM))?;
        let kid = match raw.kid {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid),
            Some(_) => return Err(unauthorized(refusal::MALFORMED)),
        };
        Ok(Header { algorithm, kid })
    }
}

impl JwtAuthenticator {
    /// The validation of a token of `algorithm`: `sub` required, `nbf`
    /// with the leeway, `exp` left to [`claims`] (no leeway), `iss` and
    /// `aud` required when configured.
    fn validation(&self, algorithm: JwtAlgorithm) -> Validation {
        let inner = &self.inner;
        let mut validation = Validation::new(algorithm.to_jsonwebtoken());
        let mut required = vec!["sub"];
        validation.validate_exp = false;
        validation.validate_nbf = true;
        validation.leeway = inner.leeway.as_secs();
        if !inner.issuers.is_empty() {
            validation.set_issuer(&inner.issuers);
            required.push("iss");
        }
        if !inner.audiences.is_empty() {
            validation.set_audience(&inner.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// The keys of a JWKS already fetched for a token with `header`.
    fn cached_keys(&self, header: &Header) -> Vec<DecodingKey> {
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &self.inner.jwks {
            if header.algorithm.family() != super::Family::Hmac {
                return jwks.cached(header.algorithm, header.kid.as_deref());
            }
        }
        let _ = header;
        Vec::new()
    }

    /// Checks `token` against the keys of its algorithm's kind: the keys
    /// given directly, and `fetched` (from a JWKS) when given.
    pub(super) fn check(&self, token: &str, fetched: Option<Vec<DecodingKey>>) -> Result<Verified, AuthError> {
        let header = Header::of(token, &self.inner.algorithms)?;
        let family = header.algorithm.family();
        let mut keys: Vec<DecodingKey> = self
            .inner
            .keys
            .iter()
            .filter(|key| key.family == family)
            .map(|key| key.key.clone())
            .collect();
        keys.extend(fetched.unwrap_or_else(|| self.cached_keys(&header)));
        if keys.is_empty() {
            return Err(unauthorized(refusal::UNKNOWN_KEY));
        }
        let validation = self.validation(header.algorithm);
        for key in &keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
                Ok(data) => return claims(data.claims),
                Err(error) if signature_mismatch(error.kind()) => {}
                Err(error) => return Err(unauthorized(reason(error.kind()))),
            }
        }
        Err(unauthorized(refusal::SIGNATURE))
    }
}

/// Whether another key might verify the token.
fn signature_mismatch(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidKeyFormat
    )
}

/// The crate's words for a refusal of the JWT library.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => refusal::SIGNATURE,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::InvalidAlgorithmName => {
            refusal::ALGORITHM
        }
        ErrorKind::ExpiredSignature => refusal::EXPIRED,
        ErrorKind::ImmatureSignature => refusal::NOT_YET_VALID,
        ErrorKind::InvalidIssuer => refusal::ISSUER,
        ErrorKind::InvalidAudience => refusal::AUDIENCE,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "sub" => refusal::NO_SUB,
            "iss" => refusal::NO_ISS,
            "aud" => refusal::NO_AUD,
            _ => refusal::MALFORMED,
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "nbf" => "the token's nbf claim is malformed",
            "exp" => "the token's exp claim is malformed",
            _ => refusal::MALFORMED,
        },
        _ => refusal::MALFORMED,
    }
}

/// The seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The identity in verified claims; `exp` is checked here, with no leeway.
fn claims(claims: Map<String, Value>) -> Result<Verified, AuthError> {
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if sub.is_empty() => return Err(unauthorized(refusal::EMPTY_SUB)),
        Some(Value::String(sub)) => sub.clone(),
        _ => return Err(unauthorized(refusal::NO_SUB)),
    };
    let sid = match claims.get("sid") {
        None | Some(Value::Null) => None,
        Some(Value::String(sid)) => Some(sid.clone()).filter(|sid| !sid.is_empty()),
        Some(_) => return Err(unauthorized("the token's sid claim is not a string")),
    };
    let channels = match claims.get("channels") {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(strings(value).ok_or_else(|| unauthorized("the token's channels claim is not a list of strings"))?)
        }
    };
    let expires_in = match claims.get("exp") {
        None | Some(Value::Null) => None,
        Some(exp) => {
            let exp = exp
                .as_u64()
                .or_else(|| exp.as_f64().filter(|exp| *exp >= 0.0).map(|exp| exp as u64))
                .ok_or_else(|| unauthorized("the token's exp claim is malformed"))?;
            match exp.checked_sub(now()) {
                Some(left) if left > 0 => Some(Duration::from_secs(left)),
                _ => return Err(unauthorized(refusal::EXPIRED)),
            }
        }
    };
    let identity = Identity {
        user_id: Some(sub),
        session_id: sid,
        allowed_channels: channels,
        channels: Vec::new(),
        metadata: BTreeMap::new(),
        expires_in,
    };
    Ok(Verified { identity, claims })
}

/// A JSON array of strings, as strings.
pub(super) fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|entry| entry.as_str().map(str::to_owned))
        .collect()
}
