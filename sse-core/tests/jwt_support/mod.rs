//! What the JWT tests share: the key fixtures (`tests/fixtures/jwt`, made
//! with openssl for these tests only) and tokens signed with them.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sse_core::http::jwt::JwtAlgorithm;

/// The HMAC secret of HS256 tokens signed by [`sign`].
pub const SECRET: &[u8] = b"a secret";

/// The text of a fixture.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A token with `claims`, signed with `algorithm` and the private key of
/// fixture `private` ([`SECRET`] for HMAC), naming `kid` if given.
pub fn sign(algorithm: JwtAlgorithm, private: &str, kid: Option<&str>, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let (alg, key) = match algorithm {
        JwtAlgorithm::Hs256 => (Algorithm::HS256, EncodingKey::from_secret(SECRET)),
        JwtAlgorithm::Rs256 => (Algorithm::RS256, rsa(private)),
        JwtAlgorithm::Ps256 => (Algorithm::PS256, rsa(private)),
        JwtAlgorithm::Es256 => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(fixture(private).as_bytes()).expect("an EC private key"),
        ),
        JwtAlgorithm::EdDsa => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(fixture(private).as_bytes()).expect("an Ed25519 private key"),
        ),
        other => panic!("no fixture signs {other}"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).expect("encodable claims")
}

fn rsa(private: &str) -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_rsa_pem(fixture(private).as_bytes()).expect("an RSA private key")
}
