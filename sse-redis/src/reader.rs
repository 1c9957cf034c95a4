//! Reading the stream: preload, then blocking reads in order, across
//! reconnections and lost history.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};
use sse_core::BackplaneSink;

use crate::{Inner, RedisBackplaneError};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// An entry of the stream.
pub(crate) type Entry = StreamId;

/// The last `count` entries of the stream at `key`, oldest first.
pub(crate) async fn recent(
    connection: &mut MultiplexedConnection,
    key: &str,
    count: usize,
) -> redis::RedisResult<Vec<Entry>> {
    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(connection)
        .await?;
    let mut entries = reply.ids;
    entries.reverse();
    Ok(entries)
}

/// Records `entries` (oldest first) for replay without delivering them;
/// returns the id of the last one, the position to read on from.
pub(crate) fn preload(sink: &BackplaneSink, entries: &[Entry]) -> Option<String> {
    for entry in entries {
        match payload(entry) {
            Some(payload) => {
                if let Err(error) = sink.preload(&entry.id, payload) {
                    tracing::warn!(%error, id = %entry.id, "sse-redis: entry skipped");
                }
            }
            None => tracing::warn!(id = %entry.id, "sse-redis: entry without a payload skipped"),
        }
    }
    entries.last().map(|entry| entry.id.clone())
}

/// One way of reading the log: one step at a time, reconnecting when a step
/// fails.
pub(crate) trait Step {
    /// Reads once (connecting first when needed) and delivers what it got.
    async fn step(&mut self, sink: &BackplaneSink) -> Result<(), RedisBackplaneError>;
    /// Drops the connection: the last step failed.
    fn disconnect(&mut self);
}

/// Delivers the stream to `sink` until the manager is gone. `preloaded`:
/// the position after the entries already preloaded, if they were.
pub(crate) async fn read_log(inner: Arc<Inner>, sink: BackplaneSink, preloaded: Option<Option<String>>) {
    if inner.shards > 0 {
        let reader = crate::shards::Sharded::new(inner.clone(), preloaded);
        return run(reader, &inner, sink).await;
    }
    let reader = Reader {
        inner: inner.clone(),
        connection: None,
        preloaded: preloaded.is_some(),
        position: preloaded.flatten(),
        check_position: false,
    };
    run(reader, &inner, sink).await;
}

/// Steps `reader` until the manager is gone, with backoff after failures.
async fn run(mut reader: impl Step, inner: &Inner, sink: BackplaneSink) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    while !sink.is_closed() {
        match reader.step(&sink).await {
            Ok(()) => {
                if failing {
                    tracing::info!(key = %inner.key, "sse-redis: reading the event stream again");
                    sink.reconnected();
                    failing = false;
                }
                backoff = BACKOFF_MIN;
            }
            Err(error) => {
                reader.disconnect();
                // Whatever broke this connection may have broken the
                // publishing one too: it is checked before its next append.
                inner.writer.suspect();
                if failing {
                    tracing::debug!(%error, key = %inner.key, "sse-redis: still cannot read the event stream");
                } else {
                    tracing::warn!(%error, key = %inner.key, "sse-redis: cannot read the event stream; retrying with backoff");
                    failing = true;
                }
                pause(backoff, &sink, inner.read_timeout).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    tracing::debug!(key = %inner.key, "sse-redis: manager gone; reader stops");
}

/// Sleeps `duration`, in slices no longer than `slice`, until the manager is
/// gone.
async fn pause(duration: Duration, sink: &BackplaneSink, slice: Duration) {
    let mut left = duration;
    while !left.is_zero() && !sink.is_closed() {
        let nap = left.min(slice);
        tokio::time::sleep(nap).await;
        left -= nap;
    }
}

struct Reader {
    inner: Arc<Inner>,
    /// The reader's own connection: a blocking read holds it.
    connection: Option<MultiplexedConnection>,
    /// The id of the last entry handled, which the next entry's `prev` must
    /// name; `None`: none yet (or the history was lost), read from the
    /// start and accept any entry.
    position: Option<String>,
    preloaded: bool,
    /// Check that the stream still holds `position` before the next read:
    /// after a reconnection, and when a read found nothing new.
    check_position: bool,
}

impl Step for Reader {
    fn disconnect(&mut self) {
        self.connection = None;
    }

    async fn step(&mut self, sink: &BackplaneSink) -> Result<(), RedisBackplaneError> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let connection = self.connect().await?;
                self.check_position = self.preloaded;
                connection
            }
        };
        if !self.preloaded {
            self.preload(&mut connection, sink).await?;
            self.preloaded = true;
        } else {
            if self.check_position {
                self.check_position(&mut connection, sink).await?;
                self.check_position = false;
            }
            self.read(&mut connection, sink).await?;
        }
        self.connection = Some(connection);
        Ok(())
    }
}

/// Whether the stream at `key` still holds `last`, an entry read from it:
/// it exists and its last entry is not older. (A stream recreated since
/// then holds only entries of its own, whose `prev` the next read checks.)
pub(crate) async fn holds(
    connection: &mut MultiplexedConnection,
    key: &str,
    last: &str,
) -> Result<bool, RedisBackplaneError> {
    let tail: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await
        .map_err(RedisBackplaneError::Command)?;
    Ok(tail
        .ids
        .first()
        .is_some_and(|entry| compare_ids(&entry.id, last).is_some_and(|o| o.is_ge())))
}

/// A connection of the reader's own: its blocking reads wait up to the read
/// timeout for an answer.
pub(crate) async fn connect(inner: &Inner) -> Result<MultiplexedConnection, RedisBackplaneError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(inner.timeout))
        .set_response_timeout(Some(inner.read_timeout + inner.timeout));
    inner
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(RedisBackplaneError::Connect)
}

impl Reader {
    async fn connect(&self) -> Result<MultiplexedConnection, RedisBackplaneError> {
        connect(&self.inner).await
    }

    /// Records the last `history` entries for replay.
    async fn preload(
        &mut self,
        connection: &mut MultiplexedConnection,
        sink: &BackplaneSink,
    ) -> Result<(), RedisBackplaneError> {
        let entries = recent(connection, &self.inner.key, self.inner.history)
            .await
            .map_err(RedisBackplaneError::Command)?;
        self.position = preload(sink, &entries);
        tracing::debug!(key = %self.inner.key, count = entries.len(), position = ?self.position, "sse-redis: history loaded");
        Ok(())
    }

    /// Reports lost history unless the stream still [holds] `position`.
    async fn check_position(
        &mut self,
        connection: &mut MultiplexedConnection,
        sink: &BackplaneSink,
    ) -> Result<(), RedisBackplaneError> {
        let Some(position) = self.position.as_deref() else {
            return Ok(());
        };
        if !holds(connection, &self.inner.key, position).await? {
            self.history_lost(sink, "the stream is gone or ends before the last entry read");
        }
        Ok(())
    }

    /// One blocking read; delivers what it got.
    async fn read(
        &mut self,
        connection: &mut MultiplexedConnection,
        sink: &BackplaneSink,
    ) -> Result<(), RedisBackplaneError> {
        let block_ms = u64::try_from(self.inner.read_timeout.as_millis()).unwrap_or(u64::MAX);
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(self.inner.batch)
            .arg("BLOCK")
            .arg(block_ms.max(1))
            .arg("STREAMS")
            .arg(&self.inner.key)
            .arg(self.position.as_deref().unwrap_or("0-0"))
            .query_async(connection)
            .await
            .map_err(RedisBackplaneError::Command)?;
        let entries: Vec<StreamId> = reply
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default();
        if entries.is_empty() {
            self.check_position = true;
            return Ok(());
        }
        if let Some(age) = entries.last().and_then(|entry| age(&entry.id)) {
            sink.lag(age);
        }
        for entry in entries {
            if let (Some(position), Some(prev)) = (self.position.as_deref(), text(&entry, "prev")) {
                if prev != position {
                    // Entries between the last one read and this one are
                    // gone. Read again from the start of what the stream
                    // holds: nothing of it was delivered yet.
                    self.history_lost(sink, "the stream does not continue from the last entry read");
                    return Ok(());
                }
            }
            match payload(&entry) {
                Some(payload) => {
                    if let Err(error) = sink.deliver(&entry.id, payload) {
                        tracing::warn!(%error, id = %entry.id, "sse-redis: entry skipped");
                    }
                }
                None => tracing::warn!(id = %entry.id, "sse-redis: entry without a payload skipped"),
            }
            self.position = Some(entry.id);
        }
        Ok(())
    }

    fn history_lost(&mut self, sink: &BackplaneSink, why: &str) {
        tracing::warn!(
            key = %self.inner.key,
            position = ?self.position,
            "sse-redis: event history lost ({why}); reading the stream from its start"
        );
        self.position = None;
        sink.history_lost();
    }
}

pub(crate) fn field<'a>(entry: &'a StreamId, name: &str) -> Option<&'a [u8]> {
    match entry.map.get(name)? {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

pub(crate) fn payload(entry: &StreamId) -> Option<&[u8]> {
    field(entry, "p")
}

pub(crate) fn text<'a>(entry: &'a StreamId, name: &str) -> Option<&'a str> {
    field(entry, name).and_then(|bytes| std::str::from_utf8(bytes).ok())
}

/// Orders two stream ids (`<ms>-<seq>`); `None` if either is malformed.
pub(crate) fn compare_ids(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(parse_id(a)?.cmp(&parse_id(b)?))
}

pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// How long ago the entry `id` was appended, by Redis's clock: a stream id
/// starts with its append time in milliseconds. `None` for an id from the
/// future (clocks of different hosts disagree) or one that is not a stream
/// id.
pub(crate) fn age(id: &str) -> Option<Duration> {
    let appended_ms: u64 = id.split_once('-')?.0.parse().ok()?;
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis(),
    )
    .ok()?;
    now_ms.checked_sub(appended_ms).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert_eq!(compare_ids("10-0", "9-5"), Some(std::cmp::Ordering::Greater));
        assert_eq!(compare_ids("5-10", "5-9"), Some(std::cmp::Ordering::Greater));
        assert_eq!(compare_ids("5-1", "5-1"), Some(std::cmp::Ordering::Equal));
        assert_eq!(compare_ids("5-1", "garbage"), None);
        assert_eq!(parse_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
    }
}
