//! Helpers shared by the integration tests.

use std::convert::Infallible;

use bytes::Bytes;
use eventsource_stream::{Event as Parsed, Eventsource as _};
use futures::{FutureExt as _, StreamExt as _};
use sse_core::Connection;

/// Parses `chunks` as one SSE stream with the reference parser
/// (eventsource-stream), independent of the encoder under test.
pub(crate) fn parse(chunks: Vec<Bytes>) -> Vec<Parsed> {
    futures::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>))
        .eventsource()
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready")
        .into_iter()
        .map(|event| event.expect("the reference parser accepts the frames"))
        .collect()
}

/// Everything queued on `connection` now (all of it once it is closed),
/// without waiting.
#[allow(dead_code, reason = "not every test binary reads from a connection")]
pub(crate) fn drain(connection: &mut Connection) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    while let Some(Some(chunk)) = connection.next().now_or_never() {
        chunks.push(chunk);
    }
    chunks
}
