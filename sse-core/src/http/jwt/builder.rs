//! How a [`JwtAuthenticator`] is configured: the signature algorithms it
//! accepts ([`JwtAlgorithm`]), its keys (a secret, public keys in PEM, a
//! JWKS URL), the claims it checks, and [`JwtConfigError`], why a
//! configuration is refused.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::DecodingKey;

use super::{Inner, JwtAuthenticator, StaticKey};

/// The default clock leeway: how far in the future a token's `nbf` may lie.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// A signature algorithm a [`JwtAuthenticator`] may accept. Which ones it
/// accepts is configuration ([`JwtAuthenticatorBuilder::algorithms`]),
/// never the token's choice; `none` is not among them.
///
/// Its [`Display`](fmt::Display) and [`FromStr`] use the JOSE names:
///
/// ```
/// use sse_core::http::jwt::JwtAlgorithm;
///
/// assert_eq!("RS256".parse::<JwtAlgorithm>(), Ok(JwtAlgorithm::Rs256));
/// assert_eq!(JwtAlgorithm::EdDsa.to_string(), "EdDSA");
/// assert!("none".parse::<JwtAlgorithm>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, keyed with a shared secret.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256: what most identity providers issue.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

/// The kind of key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    pub(super) fn name(self) -> &'static str {
        match self {
            Family::Hmac => "HMAC secret",
            Family::Rsa => "RSA public key",
            Family::Ec => "EC public key",
            Family::Ed => "Ed25519 public key",
        }
    }
}

impl JwtAlgorithm {
    /// Every algorithm, in the order of the JOSE registry.
    pub const ALL: [JwtAlgorithm; 12] = [
        JwtAlgorithm::Hs256,
        JwtAlgorithm::Hs384,
        JwtAlgorithm::Hs512,
        JwtAlgorithm::Rs256,
        JwtAlgorithm::Rs384,
        JwtAlgorithm::Rs512,
        JwtAlgorithm::Ps256,
        JwtAlgorithm::Ps384,
        JwtAlgorithm::Ps512,
        JwtAlgorithm::Es256,
        JwtAlgorithm::Es384,
        JwtAlgorithm::EdDsa,
    ];

    /// The JOSE name (`alg` header value): `"RS256"`, `"EdDSA"`, ...
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Hs384 => "HS384",
            JwtAlgorithm::Hs512 => "HS512",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Rs384 => "RS384",
            JwtAlgorithm::Rs512 => "RS512",
            JwtAlgorithm::Ps256 => "PS256",
            JwtAlgorithm::Ps384 => "PS384",
            JwtAlgorithm::Ps512 => "PS512",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::Es384 => "ES384",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    pub(super) fn family(self) -> Family {
        match self {
            JwtAlgorithm::Hs256 | JwtAlgorithm::Hs384 | JwtAlgorithm::Hs512 => Family::Hmac,
            JwtAlgorithm::Rs256
            | JwtAlgorithm::Rs384
            | JwtAlgorithm::Rs512
            | JwtAlgorithm::Ps256
            | JwtAlgorithm::Ps384
            | JwtAlgorithm::Ps512 => Family::Rsa,
            JwtAlgorithm::Es256 | JwtAlgorithm::Es384 => Family::Ec,
            JwtAlgorithm::EdDsa => Family::Ed,
        }
    }

    pub(super) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwtAlgorithm::Hs256 => A::HS256,
            JwtAlgorithm::Hs384 => A::HS384,
            JwtAlgorithm::Hs512 => A::HS512,
            JwtAlgorithm::Rs256 => A::RS256,
            JwtAlgorithm::Rs384 => A::RS384,
            JwtAlgorithm::Rs512 => A::RS512,
            JwtAlgorithm::Ps256 => A::PS256,
            JwtAlgorithm::Ps384 => A::PS384,
            JwtAlgorithm::Ps512 => A::PS512,
            JwtAlgorithm::Es256 => A::ES256,
            JwtAlgorithm::Es384 => A::ES384,
            JwtAlgorithm::EdDsa => A::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`JwtAlgorithm`]'s (`none` among them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a supported JWT algorithm (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for JwtAlgorithm {
    type Err = UnknownAlgorithm;

    /// The algorithm of this exact JOSE name (case matters, as in a token's
    /// header).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        JwtAlgorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
            .ok_or_else(|| UnknownAlgorithm(name.to_owned()))
    }
}

/// Why [`JwtAuthenticatorBuilder::build`] refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// Neither a secret, nor a public key, nor a JWKS URL was given.
    #[error("no key: give an HMAC secret, a public key in PEM or a JWKS URL")]
    NoKey,
    /// The HMAC secret is empty.
    #[error("the HMAC secret is empty")]
    EmptySecret,
    /// A PEM text is not a public key of the expected kind.
    #[error("not {expected} in PEM (-----BEGIN PUBLIC KEY-----)")]
    InvalidKey {
        /// The kind of key expected: `"an RSA public key"`, ...
        expected: &'static str,
    },
    /// [`JwtAuthenticatorBuilder::algorithms`] was given no algorithm.
    #[error("the list of accepted algorithms is empty")]
    NoAlgorithms,
    /// An accepted algorithm has no key to verify it with.
    #[error("algorithm {0} is accepted, but no key of its kind is configured")]
    AlgorithmWithoutKey(JwtAlgorithm),
    /// A key is configured that no accepted algorithm uses.
    #[error("an {0} is configured, but no accepted algorithm uses it")]
    KeyWithoutAlgorithm(&'static str),
    /// The JWKS URL is not an `http` or `https` URL.
    #[error("the JWKS URL {0:?} is not an http:// or https:// URL")]
    InvalidJwksUrl(String),
    /// The JWKS settings are inconsistent (a zero timeout, ...).
    #[error("JWKS settings: {0}")]
    JwksSettings(&'static str),
    /// The HTTP client for the JWKS could not be built.
    #[error("the HTTP client for the JWKS could not be built: {0}")]
    HttpClient(String),
}

/// The JWKS settings a builder collects (read only with feature `jwks`).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
pub(super) struct JwksSettings {
    pub(super) url: String,
    pub(super) min_refresh: Duration,
    pub(super) max_age: Option<Duration>,
    pub(super) timeout: Duration,
}

/// Configures a [`JwtAuthenticator`]: keys, accepted algorithms, issuer,
/// audience and clock leeway. Made by [`JwtAuthenticator::builder`].
///
/// * **Keys.** An HMAC secret ([`hs256`](Self::hs256)), public keys in
///   PEM ([`rsa_pem`](Self::rsa_pem), [`ec_pem`](Self::ec_pem),
///   [`ed_pem`](Self::ed_pem), or [`public_key_pem`](Self::public_key_pem)
///   for any of the three), and, with feature `jwks`, the keys an identity
///   provider publishes at a JWKS URL (`jwks`). Several may be given; a
///   token is checked only against the keys of its algorithm's kind.
/// * **Algorithms.** Without [`algorithms`](Self::algorithms), those of the
///   keys given: HS256 for a secret, RS256 for an RSA key and for a JWKS,
///   ES256 for an EC key, EdDSA for an Ed25519 key. A token whose `alg` is
///   not accepted is refused before any key is tried, so a token signed
///   with HS256 and an RSA public key as its secret never meets that key.
/// * **Claims.** `sub` is required; `exp`, when present, is checked with
///   no leeway (the connection closes at `exp`); `nbf`, when present, may
///   lie up to the [`leeway`](Self::leeway) in the future (default
///   [`DEFAULT_LEEWAY`]); `iss` and `aud` are required and checked when
///   [`issuer`](Self::issuer) and [`audience`](Self::audience) are given. A
///   token carrying an `aud` is refused when no audience is configured: it
///   was issued for somebody else.
///
/// ```no_run
/// use std::time::Duration;
/// use sse_core::http::jwt::{JwtAlgorithm, JwtAuthenticator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pem = std::fs::read("/etc/sse/issuer-public.pem")?;
/// let auth = JwtAuthenticator::builder()
///     .rsa_pem(pem)
///     .algorithms([JwtAlgorithm::Rs256])
///     .issuer("https://login.example.com/")
///     .audience("sse")
///     .leeway(Duration::from_secs(10))
///     .build()?;
/// # let _ = auth;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JwtAuthenticatorBuilder {
    keys: Vec<StaticKey>,
    error: Option<JwtConfigError>,
    algorithms: Option<BTreeSet<JwtAlgorithm>>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    jwks: Option<JwksSettings>,
}

impl Default for JwtAuthenticatorBuilder {
    fn default() -> Self {
        JwtAuthenticatorBuilder {
            keys: Vec::new(),
            error: None,
            algorithms: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            jwks: None,
        }
    }
}

impl JwtAuthenticatorBuilder {
    fn fail(mut self, error: JwtConfigError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    fn key(mut self, key: DecodingKey, family: Family) -> Self {
        self.keys.push(StaticKey { key, family });
        self
    }

    /// Verifies HMAC tokens (HS256 unless [`algorithms`](Self::algorithms)
    /// says otherwise) with `secret`. An empty secret is refused.
    pub fn hs256(self, secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return self.fail(JwtConfigError::EmptySecret);
        }
        self.key(DecodingKey::from_secret(secret), Family::Hmac)
    }

    /// Verifies RSA tokens (RS256 by default) with this public key in PEM
    /// (`-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----`).
    pub fn rsa_pem(self, pem: impl AsRef<[u8]>) -> Self {
        match DecodingKey::from_rsa_pem(pem.as_ref()) {
            Ok(key) => self.key(key, Family::Rsa),
            Err(_) => self.fail(JwtConfigError::InvalidKey {
                expected: "an RSA public key",
            }),
        }
    }

    /// Verifies ECDSA tokens (ES256 by default; ES384 for a P-384 key, set
    /// with [`algorithms`](Self::algorithms)) with this public key in PEM.
    pub fn ec_pem(self, pem: impl AsRef<[u8]>) -> Self {
        match DecodingKey::from_ec_pem(pem.as_ref()) {
            Ok(key) => self.key(key, Family::Ec),
            Err(_) => self.fail(JwtConfigError::InvalidKey {
                expected: "an EC public key",
            }),
        }
    }

    /// Verifies EdDSA tokens with this Ed25519 public key in PEM.
    pub fn ed_pem(self, pem: impl AsRef<[u8]>) -> Self {
        match DecodingKey::from_ed_pem(pem.as_ref()) {
            Ok(key) => self.key(key, Family::Ed),
            Err(_) => self.fail(JwtConfigError::InvalidKey {
                expected: "an Ed25519 public key",
            }),
        }
    }

    /// A public key in PEM of whichever kind it is: RSA, EC or Ed25519, as
    /// [`rsa_pem`](Self::rsa_pem), [`ec_pem`](Self::ec_pem) or
    /// [`ed_pem`](Self::ed_pem).
    pub fn public_key_pem(self, pem: impl AsRef<[u8]>) -> Self {
        let pem = pem.as_ref();
        match pem_family(pem) {
            Some((key, family)) => self.key(key, family),
            None => self.fail(JwtConfigError::InvalidKey {
                expected: "an RSA, EC or Ed25519 public key",
            }),
        }
    }

    /// Pins the accepted algorithms, replacing those the keys imply. Each
    /// must have a key of its kind (an RSA key or a JWKS for RS256, ...).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwtAlgorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires the `iss` claim, equal to `issuer` (or to one of the issuers
    /// given, when called more than once).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Requires the `aud` claim, naming `audience` (or one of the audiences
    /// given, when called more than once).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// How far in the future a token's `nbf` may lie, for an issuer whose
    /// clock runs ahead (whole seconds; default [`DEFAULT_LEEWAY`]). `exp`
    /// gets none: a connection closes at `exp`, and a token accepted after
    /// it would be closed at once, and presented again.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    #[cfg(feature = "jwks")]
    fn jwks_settings(&mut self) -> &mut JwksSettings {
        self.jwks.get_or_insert_with(|| JwksSettings {
            url: String::new(),
            min_refresh: super::jwks::DEFAULT_MIN_REFRESH,
            max_age: Some(super::jwks::DEFAULT_MAX_AGE),
            timeout: super::jwks::DEFAULT_TIMEOUT,
        })
    }

    /// Verifies tokens with the keys published at this JWKS URL (feature
    /// `jwks`), picked by the token's `kid`. The set is fetched on first
    /// use and cached; see [`jwks_min_refresh`](Self::jwks_min_refresh) for
    /// when it is fetched again. Its symmetric (`oct`) keys are ignored,
    /// and a key that names its `alg` verifies only that algorithm.
    #[cfg(feature = "jwks")]
    pub fn jwks(mut self, url: impl Into<String>) -> Self {
        self.jwks_settings().url = url.into();
        self
    }

    /// The least time between two fetches of the JWKS (default 30 s): a
    /// token naming a `kid` the cached set lacks fetches it again, at most
    /// once per this interval, however many such tokens arrive.
    #[cfg(feature = "jwks")]
    pub fn jwks_min_refresh(mut self, interval: Duration) -> Self {
        self.jwks_settings().min_refresh = interval;
        self
    }

    /// How long a fetched JWKS is trusted before it is fetched again on
    /// the next token (default 10 minutes; `None`: until a token names an
    /// unknown `kid`). A failed fetch keeps the keys already known.
    #[cfg(feature = "jwks")]
    pub fn jwks_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.jwks_settings().max_age = max_age;
        self
    }

    /// How long one fetch of the JWKS may take (default 5 s).
    #[cfg(feature = "jwks")]
    pub fn jwks_timeout(mut self, timeout: Duration) -> Self {
        self.jwks_settings().timeout = timeout;
        self
    }

    /// The authenticator.
    ///
    /// # Errors
    /// The first [`JwtConfigError`]: a key that is not one, no key at all,
    /// an accepted algorithm without a key of its kind or a key no accepted
    /// algorithm uses, a malformed JWKS URL.
    pub fn build(self) -> Result<JwtAuthenticator, JwtConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let has_jwks = self.jwks.is_some();
        if self.keys.is_empty() && !has_jwks {
            return Err(JwtConfigError::NoKey);
        }
        let algorithms = match self.algorithms {
            Some(algorithms) if algorithms.is_empty() => return Err(JwtConfigError::NoAlgorithms),
            Some(algorithms) => algorithms,
            None => {
                let mut implied: BTreeSet<JwtAlgorithm> =
                    self.keys.iter().map(|key| default_algorithm(key.family)).collect();
                if has_jwks {
                    implied.insert(JwtAlgorithm::Rs256);
                }
                implied
            }
        };
        for &algorithm in &algorithms {
            let family = algorithm.family();
            let by_jwks = has_jwks && family != Family::Hmac;
            if !by_jwks && !self.keys.iter().any(|key| key.family == family) {
                return Err(JwtConfigError::AlgorithmWithoutKey(algorithm));
            }
        }
        if let Some(unused) = self
            .keys
            .iter()
            .find(|key| !algorithms.iter().any(|algorithm| algorithm.family() == key.family))
        {
            return Err(JwtConfigError::KeyWithoutAlgorithm(unused.family.name()));
        }
        #[cfg(feature = "jwks")]
        let jwks = match self.jwks {
            Some(settings) => Some(super::jwks::JwksCache::new(settings)?),
            None => None,
        };
        Ok(JwtAuthenticator {
            inner: Arc::new(Inner {
                algorithms: algorithms.into_iter().collect(),
                keys: self.keys,
                issuers: self.issuers,
                audiences: self.audiences,
                leeway: self.leeway,
                #[cfg(feature = "jwks")]
                jwks,
            }),
        })
    }
}

/// The algorithm a key implies when none is configured.
fn default_algorithm(family: Family) -> JwtAlgorithm {
    match family {
        Family::Hmac => JwtAlgorithm::Hs256,
        Family::Rsa => JwtAlgorithm::Rs256,
        Family::Ec => JwtAlgorithm::Es256,
        Family::Ed => JwtAlgorithm::EdDsa,
    }
}

/// The key in `pem`, and its kind, whichever of RSA, EC and Ed25519 it is.
fn pem_family(pem: &[u8]) -> Option<(DecodingKey, Family)> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Some((key, Family::Rsa));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Some((key, Family::Ec));
    }
    DecodingKey::from_ed_pem(pem).ok().map(|key| (key, Family::Ed))
}
