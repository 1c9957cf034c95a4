//! The complete answers of the contract, for the endpoints and for
//! adapters alike: JSON bodies and errors, and the answers to an oversized
//! or unreadable body, a refused authentication and a refused connection.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::{AuthError, sse_headers};
use crate::error::{ConnectError, SendError};
use crate::manager::overloaded_body;

/// A JSON response.
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Bytes> {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", Bytes::from(body)),
        Err(_) => with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            Bytes::from_static(br#"{"error":"could not serialize the response"}"#),
        ),
    }
}

/// A JSON error response `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response<Bytes> {
    json(status, &serde_json::json!({ "error": message }))
}

/// The `413` answer to a body over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
pub fn payload_too_large() -> Response<Bytes> {
    error(StatusCode::PAYLOAD_TOO_LARGE, "request body is larger than 1 MiB")
}

/// The `405` answer to a method the path does not accept: `{"error": "method
/// not allowed"}`, with an `Allow` header listing `allowed`, the methods it
/// accepts (`GET, HEAD` for `&[Method::GET, Method::HEAD]`).
pub fn method_not_allowed(allowed: &[Method]) -> Response<Bytes> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    // A method is a token, always a valid header value.
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// The `429 Too Many Requests` answer to a publish over a rate limit
/// ([`SendError::RateLimited`]): `{"error": "..."}` with a `Retry-After`
/// header of `retry_after` in whole seconds, rounded up, at least 1.
///
/// ```
/// use std::time::Duration;
///
/// let response = sse_core::http::rate_limited(Duration::from_millis(1200));
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// ```
pub fn rate_limited(retry_after: Duration) -> Response<Bytes> {
    let message = SendError::RateLimited { retry_after }.to_string();
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, &message);
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// The `400` answer to a request body that could not be read (the client
/// broke off, or sent a malformed chunked body).
pub fn unreadable_body() -> Response<Bytes> {
    error(StatusCode::BAD_REQUEST, "could not read the request body")
}

pub(super) fn empty(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

pub(super) fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The response for a refused authentication or authorization.
pub fn auth_error(error: &AuthError) -> Response<Bytes> {
    match error {
        AuthError::Unauthorized(_) => {
            let mut response = self::error(StatusCode::UNAUTHORIZED, &error.to_string());
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        AuthError::ChannelForbidden { channel } => json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "error": error.to_string(), "channel": channel }),
        ),
        AuthError::Forbidden(_) => self::error(StatusCode::FORBIDDEN, &error.to_string()),
        AuthError::Unavailable(_) => self::error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

/// The response for a refused connection. [`ConnectError::Overloaded`] is a
/// `200` event stream holding a `retry:` hint and one `overloaded` event, so
/// that browsers retry later instead of giving up.
pub fn connect_error(error: &ConnectError) -> Response<Bytes> {
    match error {
        ConnectError::Overloaded { retry } => {
            let mut response = Response::new(overloaded_body(*retry));
            *response.headers_mut() = sse_headers();
            response
        }
        ConnectError::UserLimit { .. } | ConnectError::AddrLimit { .. } => {
            self::error(StatusCode::TOO_MANY_REQUESTS, &error.to_string())
        }
        ConnectError::ChannelForbidden { channel } => auth_error(&AuthError::ChannelForbidden {
            channel: channel.clone(),
        }),
        ConnectError::ShuttingDown | ConnectError::ChannelsUnavailable => {
            self::error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
        _ => self::error(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}
