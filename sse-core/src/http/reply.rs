//! What an adapter answers with: [`SseReply`], a live connection, any
//! stream of frames or a complete response, converted into any framework's
//! `http::Response`, and the [`sse_response_type!`](crate::sse_response_type)
//! macro that declares an adapter's response newtype around it.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http::Response;

use super::{AuthError, auth_error, connect_error, sse_headers};
use crate::connection::Connection;
use crate::error::ConnectError;

/// What an adapter sends back.
#[derive(Debug)]
#[non_exhaustive]
pub enum SseReply {
    /// `200` with [`sse_headers`], the body being the connection's frames as
    /// they come.
    Stream(Connection),
    /// `200` with [`sse_headers`], the body being these frames as they come:
    /// a connection's stream as a handler decorated it.
    Frames(FrameStream),
    /// A complete response (JSON, an error, or the finite `overloaded`
    /// event stream).
    Response(Response<Bytes>),
}

/// The body of an event-stream reply: a [`Connection`], or any stream of
/// encoded frames (a connection's frames mapped, or chained after frames of
/// the handler's own). Frames are written as they come, never re-encoded.
pub struct FrameStream(Frames);

enum Frames {
    Connection(Connection),
    Any(Pin<Box<dyn Stream<Item = Bytes> + Send + Sync>>),
}

impl FrameStream {
    /// The body made of `frames`, each one or more complete SSE frames
    /// (see [`Event::encode`](crate::Event::encode)). The stream must be
    /// `Sync` as well as `Send`, because some servers (warp) ask it of a
    /// body; a [`Connection`] and the usual combinators over it are.
    pub fn new(frames: impl Stream<Item = Bytes> + Send + Sync + 'static) -> Self {
        FrameStream(Frames::Any(Box::pin(frames)))
    }

    /// The connection, if the body is one as it came from
    /// [`SseManager::connect`](crate::SseManager::connect), undecorated.
    pub fn connection(&self) -> Option<&Connection> {
        match &self.0 {
            Frames::Connection(connection) => Some(connection),
            Frames::Any(_) => None,
        }
    }

    /// The connection, if the body is one, undecorated; the body itself
    /// otherwise.
    pub fn into_connection(self) -> Result<Connection, Self> {
        match self.0 {
            Frames::Connection(connection) => Ok(connection),
            frames @ Frames::Any(_) => Err(FrameStream(frames)),
        }
    }
}

impl From<Connection> for FrameStream {
    fn from(connection: Connection) -> Self {
        FrameStream(Frames::Connection(connection))
    }
}

impl fmt::Debug for FrameStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Frames::Connection(connection) => f.debug_tuple("FrameStream").field(connection).finish(),
            Frames::Any(_) => f.write_str("FrameStream(..)"),
        }
    }
}

impl Stream for FrameStream {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match &mut self.0 {
            Frames::Connection(connection) => Pin::new(connection).poll_next(cx),
            Frames::Any(frames) => frames.as_mut().poll_next(cx),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Frames::Connection(connection) => connection.size_hint(),
            Frames::Any(frames) => frames.size_hint(),
        }
    }
}

impl SseReply {
    /// A `200` event stream whose body is `frames`, written as they come:
    /// for a handler that decorates a [`Connection`] (maps or chains its
    /// frames) and keeps the event-stream headers.
    pub fn from_stream(frames: impl Stream<Item = Bytes> + Send + Sync + 'static) -> Self {
        SseReply::Frames(FrameStream::new(frames))
    }

    /// Converts the reply into an [`http::Response`], whatever the
    /// framework's body type `B`: a live connection or stream of frames
    /// becomes `200` with [`sse_headers`] and the body `stream` makes of it
    /// (its frames written as they come, never re-encoded or compressed); a
    /// complete response keeps its status, headers and bytes.
    pub fn into_http_response<B: From<Bytes>>(self, stream: impl FnOnce(FrameStream) -> B) -> Response<B> {
        let frames = match self {
            SseReply::Stream(connection) => FrameStream::from(connection),
            SseReply::Frames(frames) => frames,
            SseReply::Response(response) => return response.map(B::from),
        };
        let mut response = Response::new(stream(frames));
        *response.headers_mut() = sse_headers();
        response
    }
}

impl From<Connection> for SseReply {
    fn from(connection: Connection) -> Self {
        SseReply::Stream(connection)
    }
}

impl From<FrameStream> for SseReply {
    fn from(frames: FrameStream) -> Self {
        SseReply::Frames(frames)
    }
}

impl From<Response<Bytes>> for SseReply {
    fn from(response: Response<Bytes>) -> Self {
        SseReply::Response(response)
    }
}

/// A refused authentication or channel becomes its answer ([`auth_error`]).
impl From<AuthError> for SseReply {
    fn from(error: AuthError) -> Self {
        SseReply::Response(auth_error(&error))
    }
}

/// A refused connection becomes its answer ([`connect_error`]).
impl From<ConnectError> for SseReply {
    fn from(error: ConnectError) -> Self {
        SseReply::Response(connect_error(&error))
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
/// `new`, `from_stream` (a decorated connection, see
/// [`SseReply::from_stream`]) and the conversions from a [`Connection`], an
/// [`SseReply`], an [`AuthError`], a [`ConnectError`] and the result of
/// [`SseManager::connect`](crate::SseManager::connect). The orphan
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
///         self.0.into_http_response(|_frames| bytes::Bytes::new())
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

            /// A `200` event stream whose body is `frames`, written as they
            /// come, with the event-stream headers: for a handler that
            /// decorates a [`Connection`]($crate::Connection), mapping its
            /// frames or chaining frames of its own before or after them
            /// ([`SseReply::from_stream`]($crate::http::SseReply::from_stream)).
            pub fn from_stream(
                frames: impl $crate::__private::Stream<Item = $crate::__private::Bytes>
                    + ::core::marker::Send
                    + ::core::marker::Sync
                    + 'static,
            ) -> Self {
                $name($crate::http::SseReply::from_stream(frames))
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

        /// A refused authentication or channel becomes its answer
        /// ([`auth_error`]($crate::http::auth_error)).
        impl ::core::convert::From<$crate::http::AuthError> for $name {
            fn from(error: $crate::http::AuthError) -> Self {
                $name(error.into())
            }
        }

        /// A refused connection becomes its answer
        /// ([`connect_error`]($crate::http::connect_error)).
        impl ::core::convert::From<$crate::ConnectError> for $name {
            fn from(error: $crate::ConnectError) -> Self {
                $name(error.into())
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
