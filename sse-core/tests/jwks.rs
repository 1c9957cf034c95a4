//! Keys from a JWKS URL, served by a small axum server on 127.0.0.1 that
//! counts its requests: RS256, ES256 and EdDSA picked by `kid`, a rotated
//! key picked up once the set is fetched again, a flood of unknown `kid`s
//! fetching no more than the minimum interval allows, a set that cannot be
//! fetched, and every claim refused in the crate's words.
#![cfg(all(feature = "jwks", feature = "tokio"))]

mod jwt_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sse_core::http::jwt::{JwtAlgorithm, JwtAuthenticator, JwtAuthenticatorBuilder, JwtConfigError};
use sse_core::http::{AuthError, auth_error};

use jwt_support::{fixture, now, sign};

/// The status and body the JWKS server answers with.
type Answer = Arc<Mutex<(StatusCode, String)>>;

/// What the JWKS server answers, and how often it was asked.
#[derive(Clone)]
struct Jwks {
    answer: Answer,
    requests: Arc<AtomicUsize>,
    url: String,
}

impl Jwks {
    /// Serves `document` at `/jwks` on 127.0.0.1, on a port of its own.
    async fn serve(document: &str) -> Jwks {
        let answer = Arc::new(Mutex::new((StatusCode::OK, document.to_owned())));
        let requests = Arc::new(AtomicUsize::new(0));
        let state = (answer.clone(), requests.clone());
        let app = Router::new()
            .route(
                "/jwks",
                get(
                    |State((answer, requests)): State<(Answer, Arc<AtomicUsize>)>| async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        answer.lock().clone()
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Jwks {
            answer,
            requests,
            url: format!("http://{addr}/jwks"),
        }
    }

    fn answer(&self, status: StatusCode, document: impl Into<String>) {
        *self.answer.lock() = (status, document.into());
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn builder(&self) -> JwtAuthenticatorBuilder {
        JwtAuthenticator::builder().jwks(&self.url).algorithms([
            JwtAlgorithm::Rs256,
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
        ])
    }
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600})
}

/// The `{"error": ...}` and status a refusal is answered with.
fn answer(refused: &AuthError) -> (u16, String) {
    let response = auth_error(refused);
    let body: Value = serde_json::from_slice(response.body()).expect("a JSON body");
    (
        response.status().as_u16(),
        body["error"].as_str().expect("a message").to_owned(),
    )
}

async fn refusal(auth: &JwtAuthenticator, token: &str) -> String {
    let refused = auth.verify(token).await.expect_err("refused");
    let (status, message) = answer(&refused);
    assert_eq!(status, 401, "{message}");
    message
}

#[tokio::test]
async fn rs256_es256_and_eddsa_are_picked_by_kid() {
    let jwks = Jwks::serve(&fixture("jwks.json")).await;
    let auth = jwks.builder().build().expect("a valid configuration");
    for (algorithm, private, kid) in [
        (JwtAlgorithm::Rs256, "rsa-private.pem", "rsa-1"),
        (JwtAlgorithm::Es256, "ec-private.pem", "ec-1"),
        (JwtAlgorithm::EdDsa, "ed-private.pem", "ed-1"),
    ] {
        let identity = auth
            .verify(&sign(algorithm, private, Some(kid), &claims()))
            .await
            .expect("the right key");
        assert_eq!(identity.user_id.as_deref(), Some("alice"), "{algorithm}");
        // Without a kid, the keys of the algorithm's kind are tried.
        auth.verify(&sign(algorithm, private, None, &claims()))
            .await
            .expect("no kid");
    }
    assert_eq!(jwks.requests(), 1, "fetched once, then cached");
    // A kid naming a key of another kind, or signed with another key.
    let ed_named_rsa = sign(JwtAlgorithm::EdDsa, "ed-private.pem", Some("rsa-1"), &claims());
    assert_eq!(
        refusal(&auth, &ed_named_rsa).await,
        "unauthorized: the token's key is not known"
    );
    let other_rsa = sign(JwtAlgorithm::Rs256, "rsa2-private.pem", Some("rsa-1"), &claims());
    assert_eq!(
        refusal(&auth, &other_rsa).await,
        "unauthorized: the token's signature is invalid"
    );
    // Without `algorithms`, a JWKS accepts RS256 only.
    let rs256_only = JwtAuthenticator::builder().jwks(&jwks.url).build().expect("valid");
    assert_eq!(rs256_only.algorithms(), [JwtAlgorithm::Rs256]);
    let es256 = sign(JwtAlgorithm::Es256, "ec-private.pem", Some("ec-1"), &claims());
    assert_eq!(
        refusal(&rs256_only, &es256).await,
        "unauthorized: the token's algorithm is not accepted"
    );
}

#[tokio::test]
async fn every_claim_is_checked_as_with_a_pem_key() {
    let jwks = Jwks::serve(&fixture("jwks.json")).await;
    let auth = jwks
        .builder()
        .issuer("https://login.example.com/")
        .audience("sse")
        .build()
        .expect("a valid configuration");
    let good = json!({"sub": "alice", "iss": "https://login.example.com/", "aud": "sse", "exp": now() + 600});
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        sign(JwtAlgorithm::Rs256, "rsa-private.pem", Some("rsa-1"), &claims)
    };
    auth.verify(&with("sub", json!("alice")))
        .await
        .expect("every claim right");
    let public = fixture("rsa-public.pem");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("rsa-1".to_owned());
    let confused = jsonwebtoken::encode(
        &header,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .expect("encodable");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "rsa-1"}).to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    for (what, token, message) in [
        (
            "another issuer",
            with("iss", json!("https://evil.example.com/")),
            "the token's issuer is not accepted",
        ),
        (
            "another audience",
            with("aud", json!("billing")),
            "the token's audience is not accepted",
        ),
        (
            "nbf in the future",
            with("nbf", json!(now() + 3600)),
            "the token is not valid yet",
        ),
        ("expired", with("exp", json!(now() - 1)), "the token has expired"),
        ("alg none", none, "the token's algorithm is not accepted"),
        (
            "HS256 with the public key",
            confused,
            "the token's algorithm is not accepted",
        ),
    ] {
        assert_eq!(
            refusal(&auth, &token).await,
            format!("unauthorized: {message}"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_the_next_fetch() {
    let jwks = Jwks::serve(&fixture("jwks.json")).await;
    let auth = jwks
        .builder()
        .jwks_min_refresh(Duration::from_millis(200))
        .build()
        .expect("a valid configuration");
    let old = sign(JwtAlgorithm::Rs256, "rsa-private.pem", Some("rsa-1"), &claims());
    let new = sign(JwtAlgorithm::Rs256, "rsa2-private.pem", Some("rsa-2"), &claims());
    auth.verify(&old).await.expect("the first key");
    // The provider publishes its new key; tokens naming it are accepted
    // once the minimum interval since the last fetch has passed.
    jwks.answer(StatusCode::OK, fixture("jwks-rotated.json"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match auth.verify(&new).await {
            Ok(identity) => {
                assert_eq!(identity.user_id.as_deref(), Some("alice"));
                break;
            }
            Err(refused) => {
                assert_eq!(answer(&refused).1, "unauthorized: the token's key is not known");
                assert!(tokio::time::Instant::now() < deadline, "the new key was never fetched");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    auth.verify(&old).await.expect("the old key is still published");
    assert!(jwks.requests() >= 2, "fetched again for the new kid");
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_within_the_bound() {
    let jwks = Jwks::serve(&fixture("jwks.json")).await;
    let auth = jwks
        .builder()
        .jwks_min_refresh(Duration::from_secs(3600))
        .jwks_max_age(None)
        .build()
        .expect("a valid configuration");
    auth.verify(&sign(JwtAlgorithm::Rs256, "rsa-private.pem", Some("rsa-1"), &claims()))
        .await
        .expect("the first key");
    assert_eq!(jwks.requests(), 1);
    // An attacker need not sign: the kid is looked up before any key.
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    let flood = (0..200).map(|n| {
        let auth = auth.clone();
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": format!("made-up-{n}")}).to_string());
        let token = format!("{header}.{payload}.c2lnbmF0dXJl");
        tokio::spawn(async move { auth.verify(&token).await })
    });
    for refused in futures::future::join_all(flood).await {
        let refused = refused.expect("the task ran").expect_err("an unknown kid");
        assert_eq!(answer(&refused).1, "unauthorized: the token's key is not known");
    }
    assert_eq!(
        jwks.requests(),
        1,
        "no fetch within the minimum interval, however many unknown kids"
    );
}

#[tokio::test]
async fn an_unreachable_or_unusable_set_is_a_503_and_is_not_hammered() {
    let jwks = Jwks::serve(&fixture("jwks.json")).await;
    let token = sign(JwtAlgorithm::Rs256, "rsa-private.pem", Some("rsa-1"), &claims());
    let oversized = json!({"keys": [], "padding": "x".repeat(300 * 1024)}).to_string();
    for (status, document) in [
        (StatusCode::INTERNAL_SERVER_ERROR, fixture("jwks.json")),
        (StatusCode::OK, "not json".to_owned()),
        (StatusCode::OK, oversized),
    ] {
        jwks.answer(status, document);
        let before = jwks.requests();
        let auth = jwks
            .builder()
            .jwks_min_refresh(Duration::from_secs(3600))
            .build()
            .expect("a valid configuration");
        for _ in 0..5 {
            let refused = auth.verify(&token).await.expect_err("no keys");
            assert_eq!(
                answer(&refused),
                (
                    503,
                    "service unavailable: the keys to check the token with could not be fetched".to_owned()
                )
            );
        }
        assert_eq!(jwks.requests() - before, 1, "one attempt per minimum interval");
    }
    // A key given directly still verifies tokens while the set cannot be
    // fetched.
    let with_pem = jwks
        .builder()
        .ec_pem(fixture("ec-public.pem"))
        .build()
        .expect("a valid configuration");
    let es256 = sign(JwtAlgorithm::Es256, "ec-private.pem", Some("ec-1"), &claims());
    with_pem.verify(&es256).await.expect("the PEM key");
    let expired = sign(
        JwtAlgorithm::Es256,
        "ec-private.pem",
        None,
        &json!({"sub": "a", "exp": now() - 5}),
    );
    assert_eq!(
        refusal(&with_pem, &expired).await,
        "unauthorized: the token has expired"
    );
    let refused = with_pem.verify(&token).await.expect_err("no RSA key");
    assert_eq!(answer(&refused).0, 503);
    // Symmetric keys in a set are never used.
    let secret = URL_SAFE_NO_PAD.encode(b"published secret");
    jwks.answer(
        StatusCode::OK,
        json!({"keys": [{"kty": "oct", "kid": "h", "k": secret}]}).to_string(),
    );
    let error = JwtAuthenticator::builder()
        .jwks(&jwks.url)
        .algorithms([JwtAlgorithm::Hs256])
        .build()
        .expect_err("no HMAC key from a JWKS");
    assert_eq!(error, JwtConfigError::AlgorithmWithoutKey(JwtAlgorithm::Hs256));
    for url in ["ftp://example.com/jwks", "not a url", "http://"] {
        let error = JwtAuthenticator::builder().jwks(url).build().expect_err(url);
        assert!(matches!(error, JwtConfigError::InvalidJwksUrl(_)), "{url}");
    }
}
