//! Reading frames back in tests: what a connection has queued, cut into
//! arbitrary chunks as a network would deliver them, and parsed by an SSE
//! parser independent of the encoder (`eventsource-stream`). The engine's
//! own tests and the fuzz targets check the encoder through these.

use std::convert::Infallible;

use bytes::Bytes;
pub use eventsource_stream::Event as Parsed;
use eventsource_stream::Eventsource as _;
use futures_util::{FutureExt as _, StreamExt as _};

use crate::Connection;

/// Parses `chunks` as one SSE stream with the reference parser.
///
/// # Panics
///
/// If the reference parser refuses the bytes: in a test, that is the
/// failure being looked for.
///
/// ```
/// use bytes::Bytes;
/// use sse_core::test_util::frames::parse;
///
/// let parsed = parse(vec![Bytes::from_static(b"event: a\nda"), Bytes::from_static(b"ta: 1\n\n")]);
/// assert_eq!((parsed[0].event.as_str(), parsed[0].data.as_str()), ("a", "1"));
/// ```
pub fn parse(chunks: Vec<Bytes>) -> Vec<Parsed> {
    futures_util::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>))
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
pub fn drain(connection: &mut Connection) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    while let Some(Some(chunk)) = connection.next().now_or_never() {
        chunks.push(chunk);
    }
    chunks
}

/// Cuts `bytes` at `positions` (any byte, even inside a UTF-8 sequence or
/// between CR and LF), as a network may split a stream. Positions past the
/// end, repeated or out of order are fine; every byte is in exactly one
/// chunk, in order.
///
/// ```
/// use bytes::Bytes;
/// use sse_core::test_util::frames::split_at;
///
/// let chunks = split_at(&Bytes::from_static(b"data: x\n\n"), [7, 2, 2]);
/// assert_eq!(chunks, [&b"da"[..], b"ta: x", b"\n\n"]);
/// ```
pub fn split_at(bytes: &Bytes, positions: impl IntoIterator<Item = usize>) -> Vec<Bytes> {
    let mut positions: Vec<usize> = positions
        .into_iter()
        .map(|position| position.min(bytes.len()))
        .collect();
    positions.sort_unstable();
    positions.dedup();
    let mut chunks = Vec::with_capacity(positions.len() + 1);
    let mut start = 0;
    for position in positions {
        chunks.push(bytes.slice(start..position));
        start = position;
    }
    chunks.push(bytes.slice(start..));
    chunks
}
