//! The keys an identity provider publishes at a JWKS URL (feature `jwks`):
//! fetched with `reqwest` on first use, cached, and fetched again when
//! they grow old or a token names a key the cache lacks, but never more
//! than once per minimum interval, so that a flood of tokens with made-up
//! `kid`s cannot make the server fetch in a loop. A fetch is bounded in
//! time and size; a failed one keeps the keys already known.

use std::time::{Duration, Instant};

use futures_util::lock::Mutex as AsyncMutex;
use jsonwebtoken::DecodingKey;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::Value;

use super::builder::{Family, JwksSettings, JwtAlgorithm, JwtConfigError};
use crate::http::AuthError;

/// The default least time between two fetches of the JWKS.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);

/// The default age after which the JWKS is fetched again.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// The default time one fetch may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWKS document read (256 KiB); a larger one is a failed
/// fetch.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// At most this many keys of a set are kept.
const MAX_KEYS: usize = 64;

/// One usable key of the set.
struct JwkKey {
    kid: Option<String>,
    family: Family,
    /// The algorithms the key may verify: its `alg` alone when it names
    /// one, else every algorithm of its kind (of its curve, for EC keys).
    algorithms: Vec<JwtAlgorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct State {
    keys: Vec<JwkKey>,
    /// When the set was last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch last started, successful or not.
    attempted_at: Option<Instant>,
}

/// The cached JWKS of one URL.
pub(super) struct JwksCache {
    url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    max_age: Option<Duration>,
    state: Mutex<State>,
    /// Held while fetching: one fetch at a time.
    fetching: AsyncMutex<()>,
}

impl JwksCache {
    pub(super) fn new(settings: JwksSettings) -> Result<Self, JwtConfigError> {
        let url = reqwest::Url::parse(&settings.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| JwtConfigError::InvalidJwksUrl(settings.url.clone()))?;
        if settings.timeout.is_zero() {
            return Err(JwtConfigError::JwksSettings("the fetch timeout must not be zero"));
        }
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|error| JwtConfigError::HttpClient(error.to_string()))?;
        Ok(JwksCache {
            url: url.into(),
            client,
            min_refresh: settings.min_refresh,
            max_age: settings.max_age,
            state: Mutex::new(State::default()),
            fetching: AsyncMutex::new(()),
        })
    }

    /// The cached keys that may verify a token of `algorithm` naming `kid`
    /// (every key that may verify `algorithm`, for a token naming none).
    pub(super) fn cached(&self, algorithm: JwtAlgorithm, kid: Option<&str>) -> Vec<DecodingKey> {
        let state = self.state.lock();
        state
            .keys
            .iter()
            .filter(|key| key.family == algorithm.family() && key.algorithms.contains(&algorithm))
            .filter(|key| kid.is_none_or(|kid| key.kid.as_deref() == Some(kid)))
            .map(|key| key.key.clone())
            .collect()
    }

    /// The keys for a token, fetching the set first when it was never
    /// fetched, is older than its maximum age, or lacks the token's key,
    /// unless a fetch started less than the minimum interval ago.
    pub(super) async fn keys(&self, algorithm: JwtAlgorithm, kid: Option<&str>) -> Result<Vec<DecodingKey>, AuthError> {
        let stale = {
            let state = self.state.lock();
            match (state.fetched_at, self.max_age) {
                (None, _) => true,
                (Some(at), Some(max_age)) => at.elapsed() >= max_age,
                (Some(_), None) => false,
            }
        };
        let found = self.cached(algorithm, kid);
        if !found.is_empty() && !stale {
            return Ok(found);
        }
        self.refresh().await;
        let found = self.cached(algorithm, kid);
        if !found.is_empty() {
            return Ok(found);
        }
        if self.state.lock().fetched_at.is_none() {
            Err(AuthError::Unavailable(
                "the keys to check the token with could not be fetched".to_owned(),
            ))
        } else {
            Err(AuthError::Unauthorized(super::verify::refusal::UNKNOWN_KEY.to_owned()))
        }
    }

    /// Fetches the set, unless a fetch started less than the minimum
    /// interval ago or while this one waited for its turn.
    async fn refresh(&self) {
        let asked = Instant::now();
        let _turn = self.fetching.lock().await;
        {
            let mut state = self.state.lock();
            if let Some(at) = state.attempted_at {
                if at >= asked || at.elapsed() < self.min_refresh {
                    return;
                }
            }
            state.attempted_at = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "sse: fetched the JWKS");
                let mut state = self.state.lock();
                state.keys = keys;
                state.fetched_at = Some(Instant::now());
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "sse: could not fetch the JWKS; keeping the keys known");
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<JwkKey>, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|error| format!("not a JWKS: {error}"))?;
        Ok(set.keys.iter().filter_map(usable).take(MAX_KEYS).collect())
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Value>,
}

/// The fields of a JWK this module reads.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// A key of the set, if it is a public signature key of a supported kind.
/// Symmetric keys (`oct`), encryption keys and keys whose `alg` is not a
/// supported signature algorithm are skipped.
fn usable(value: &Value) -> Option<JwkKey> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return None;
    }
    let (family, key, kind_algorithms): (Family, DecodingKey, &[JwtAlgorithm]) =
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => (
                Family::Rsa,
                DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?,
                &[
                    JwtAlgorithm::Rs256,
                    JwtAlgorithm::Rs384,
                    JwtAlgorithm::Rs512,
                    JwtAlgorithm::Ps256,
                    JwtAlgorithm::Ps384,
                    JwtAlgorithm::Ps512,
                ],
            ),
            ("EC", Some(curve @ ("P-256" | "P-384"))) => (
                Family::Ec,
                DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok()?,
                if curve == "P-256" {
                    &[JwtAlgorithm::Es256]
                } else {
                    &[JwtAlgorithm::Es384]
                },
            ),
            ("OKP", Some("Ed25519")) => (
                Family::Ed,
                DecodingKey::from_ed_components(jwk.x.as_deref()?).ok()?,
                &[JwtAlgorithm::EdDsa],
            ),
            _ => return None,
        };
    let algorithms = match jwk.alg.as_deref() {
        None => kind_algorithms.to_vec(),
        Some(name) => {
            let algorithm = name.parse::<JwtAlgorithm>().ok()?;
            if !kind_algorithms.contains(&algorithm) {
                return None;
            }
            vec![algorithm]
        }
    };
    Some(JwkKey {
        kid: jwk.kid,
        family,
        algorithms,
        key,
    })
}
