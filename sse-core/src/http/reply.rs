//! What an adapter answers with: [`SseReply`], a live connection or a
//! complete response, converted into any framework's `http::Response`, and
//! the [`sse_response_type!`](crate::sse_response_type) macro that declares
//! an adapter's response newtype around it.

use bytes::Bytes;
use http::Response;

use super::{connect_error, sse_headers};
use crate::connection::Connection;
use crate::error::ConnectError;

/// What an adapter sends back.
#[derive(Debug)]
#[non_exhaustive]
pub enum SseReply {
    /// `200` with [`sse_headers`], the body being the connection's frames as
    /// they come.
    Stream(Connection),
    /// A complete response (JSON, an error, or the finite `overloaded`
    /// event stream).
    Response(Response<Bytes>),
}

impl SseReply {
    /// Converts the reply into an [`http::Response`], whatever the
    /// framework's body type `B`: a live connection becomes `200` with
    /// [`sse_headers`] and the body `stream` makes of it (its frames written
    /// as they come, never re-encoded or compressed); a complete response
    /// keeps its status, headers and bytes.
    pub fn into_http_response<B: From<Bytes>>(self, stream: impl FnOnce(Connection) -> B) -> Response<B> {
        match self {
            SseReply::Stream(connection) => {
                let mut response = Response::new(stream(connection));
                *response.headers_mut() = sse_headers();
                response
            }
            SseReply::Response(response) => response.map(B::from),
        }
    }
}

impl From<Connection> for SseReply {
    fn from(connection: Connection) -> Self {
        SseReply::Stream(connection)
    }
}

impl From<Response<Bytes>> for SseReply {
    fn from(response: Response<Bytes>) -> Self {
        SseReply::Response(response)
    }
}

/// The outcome of [`SseManager::connect`](crate::SseManager::connect): the
/// connection, or the answer to its refusal ([`connect_error`]).
impl From<Result<Connection, ConnectError>> for SseReply {
    fn from(result: Result<Connection, ConnectError>) -> Self {
        match result {
            Ok(connection) => SseReply::Stream(connection),
            Err(error) => SseReply::Response(connect_error(&error)),
        }
    }
}

/// Declares an adapter's response type: a newtype around [`SseReply`] with
/// `new` and the conversions from a [`Connection`], an [`SseReply`] and the
/// result of [`SseManager::connect`](crate::SseManager::connect). The orphan
/// rule makes each framework adapter own its response type; this macro keeps
/// the three identical, and the adapter writes only the conversion into its
/// framework's response, through the tuple field and
/// [`SseReply::into_http_response`].
///
/// ```
/// sse_core::sse_response_type! {
///     /// An SSE answer for my framework.
///     pub struct MyResponse;
/// }
///
/// impl MyResponse {
///     fn into_http(self) -> http::Response<bytes::Bytes> {
///         self.0.into_http_response(|_connection| bytes::Bytes::new())
///     }
/// }
///
/// let answer = http::Response::builder().status(404).body(bytes::Bytes::from_static(b"{}")).expect("a response");
/// let response = MyResponse::new(answer).into_http();
/// assert_eq!(response.status(), 404);
/// ```
#[macro_export]
macro_rules! sse_response_type {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug)]
        #[must_use]
        $vis struct $name($crate::http::SseReply);

        impl $name {
            /// The response for `reply`: a
            /// [`Connection`]($crate::Connection), an
            /// [`SseReply`]($crate::http::SseReply), the result of
            /// [`SseManager::connect`]($crate::SseManager::connect), or a
            /// complete `http::Response<Bytes>`.
            pub fn new(reply: impl ::core::convert::Into<$crate::http::SseReply>) -> Self {
                $name(reply.into())
            }
        }

        impl ::core::convert::From<$crate::http::SseReply> for $name {
            fn from(reply: $crate::http::SseReply) -> Self {
                $name(reply)
            }
        }

        impl ::core::convert::From<$crate::Connection> for $name {
            fn from(connection: $crate::Connection) -> Self {
                $name(connection.into())
            }
        }

        /// A refused connection becomes its answer
        /// ([`connect_error`]($crate::http::connect_error)).
        impl ::core::convert::From<::core::result::Result<$crate::Connection, $crate::ConnectError>> for $name {
            fn from(result: ::core::result::Result<$crate::Connection, $crate::ConnectError>) -> Self {
                $name(result.into())
            }
        }
    };
}
