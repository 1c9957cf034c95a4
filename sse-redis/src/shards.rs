//! Sharding: channel events spread over `{prefix}:events:{k}` by a hash of
//! the channel, every other event on `{prefix}:events`, and the reader that
//! follows the shared stream plus the shards this instance's connections
//! need ([`BackplaneSink::wanted_shards`]), delivering the entries of all of
//! them in one order.
//!
//! The order is that of the ids. With shards, every append takes its id
//! from one clock in Redis (`{prefix}:clock`, see `writer::APPEND_FN`), so
//! ids follow the order of the appends across every stream of the prefix,
//! and since Redis runs one script at a time, a non-blocking `XREAD` of
//! several streams is a snapshot: it holds every entry of them up to the
//! moment it ran. The reader therefore merges what one such read returns by
//! id and delivers it (up to the last id of any stream the batch size cut
//! short); a blocking read only waits for something new, and the snapshot
//! that follows it is what is delivered. Every instance thus delivers the
//! entries it reads in the order of the log, and a shard it starts reading
//! is read from the clock's id at that moment: nothing appended to it after
//! the manager is told ([`BackplaneSink::reading_shard`]) is missed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use sse_core::BackplaneSink;

use crate::reader::{Step, holds, parse_id, payload, text};
use crate::{Inner, RedisBackplaneError};

/// How often, and how many times, a change of the shards wanted interrupts
/// the reader's blocking read until the reader has seen it.
const INTERRUPT_EVERY: Duration = Duration::from_millis(20);
const INTERRUPT_TRIES: u32 = 50;

/// The shard of `channel` among `shards` (FNV-1a of its bytes, modulo):
/// the same on every instance and in every version. `None` without shards.
pub(crate) fn shard_of(channel: &str, shards: u32) -> Option<u32> {
    if shards == 0 {
        return None;
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in channel.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    Some(hash % shards)
}

impl Inner {
    /// The stream of `shard`, or the shared one.
    pub(crate) fn stream_of(&self, shard: Option<u32>) -> Cow<'_, str> {
        match shard {
            None => Cow::Borrowed(&self.key),
            Some(shard) => Cow::Owned(format!("{}:{shard}", self.key)),
        }
    }

    /// The key of the clock the appends take their ids from; empty without
    /// shards (Redis gives the ids).
    pub(crate) fn clock_key(&self) -> String {
        if self.shards > 0 {
            format!("{}:clock", self.prefix)
        } else {
            String::new()
        }
    }
}

/// The place of the entry `id` (`<ms>-<seq>`) in the log's order:
/// `ms * 1_000_000 + seq`, good until the year 2500; `None` for an id that
/// is not one (or a sequence number of a million or more in one ms).
pub(crate) fn order_of(id: &str) -> Option<u64> {
    let (ms, seq) = parse_id(id)?;
    if seq >= 1_000_000 {
        return None;
    }
    ms.checked_mul(1_000_000)?.checked_add(seq)
}

/// Records `entries` (oldest first) for replay at their place in the
/// log's order, without delivering them; returns the id of the last one.
pub(crate) fn preload(sink: &BackplaneSink, entries: &[StreamId]) -> Option<String> {
    for entry in entries {
        match (payload(entry), order_of(&entry.id)) {
            (Some(payload), Some(order)) => {
                if let Err(error) = sink.preload_ordered(&entry.id, order, payload) {
                    tracing::warn!(%error, id = %entry.id, "sse-redis: entry skipped");
                }
            }
            _ => tracing::warn!(id = %entry.id, "sse-redis: entry without a payload or an id of ours skipped"),
        }
    }
    entries.last().map(|entry| entry.id.clone())
}

/// Has the reader look at the shards wanted soon: interrupts its blocking
/// read (`CLIENT UNBLOCK`) until it has looked.
pub(crate) fn interrupt_reader(inner: &Arc<Inner>) {
    let seen = inner.interest_checks.load(Ordering::Acquire);
    let inner = inner.clone();
    inner.handle.clone().spawn(async move {
        for _ in 0..INTERRUPT_TRIES {
            if inner.interest_checks.load(Ordering::Acquire) > seen {
                return;
            }
            let client = inner.reader_client.load(Ordering::Acquire);
            if client >= 0 {
                let unblocked = inner
                    .writer
                    .call(&inner, |mut connection| async move {
                        redis::cmd("CLIENT")
                            .arg("UNBLOCK")
                            .arg(client)
                            .query_async::<i64>(&mut connection)
                            .await
                    })
                    .await;
                if let Err(error) = unblocked {
                    tracing::debug!(%error, "sse-redis: could not interrupt the reader");
                }
            }
            tokio::time::sleep(INTERRUPT_EVERY).await;
        }
    });
}

/// One stream the reader follows.
struct Stream {
    key: String,
    /// `None`: the shared stream.
    shard: Option<u32>,
    /// Where the next read starts (exclusive).
    cursor: String,
    /// The id of the last entry read from it, which the next entry's `prev`
    /// must name; `None` before the first (then any `prev` goes).
    last: Option<String>,
}

/// The reader of a sharded log.
pub(crate) struct Sharded {
    inner: Arc<Inner>,
    connection: Option<MultiplexedConnection>,
    /// The shared stream first, then the shards read.
    streams: Vec<Stream>,
    preloaded: bool,
    /// Check that the streams still hold their last entries before the next
    /// read: after a reconnection, and when a read found nothing new.
    check_positions: bool,
    /// The id of the last entry delivered, from any stream.
    position: Option<String>,
}

impl Sharded {
    pub(crate) fn new(inner: Arc<Inner>, preloaded: Option<Option<String>>) -> Self {
        let position = preloaded.clone().flatten();
        let shared = Stream {
            key: inner.key.clone(),
            shard: None,
            cursor: position.clone().unwrap_or_else(|| "0-0".to_owned()),
            last: position.clone(),
        };
        Sharded {
            inner,
            connection: None,
            streams: vec![shared],
            preloaded: preloaded.is_some(),
            check_positions: false,
            position,
        }
    }

    /// Records the last `history` entries of the shared stream for replay.
    async fn preload(
        &mut self,
        connection: &mut MultiplexedConnection,
        sink: &BackplaneSink,
    ) -> Result<(), RedisBackplaneError> {
        let entries = crate::reader::recent(connection, &self.inner.key, self.inner.history)
            .await
            .map_err(RedisBackplaneError::Command)?;
        let position = preload(sink, &entries);
        self.streams[0].cursor = position.clone().unwrap_or_else(|| "0-0".to_owned());
        self.streams[0].last = position.clone();
        self.position = position;
        Ok(())
    }

    /// Follows the shards wanted now: stops those no longer wanted, and
    /// starts the new ones from the clock's id.
    async fn follow_shards(
        &mut self,
        connection: &mut MultiplexedConnection,
        sink: &BackplaneSink,
    ) -> Result<(), RedisBackplaneError> {
        // Counted before looking, so that an interruption stops only once a
        // look began after it.
        self.inner.interest_checks.fetch_add(1, Ordering::AcqRel);
        let wanted = sink.wanted_shards();
        self.streams.retain(|stream| match stream.shard {
            Some(shard) if wanted.binary_search(&shard).is_err() => {
                sink.stopped_shard(shard);
                false
            }
            _ => true,
        });
        let added: Vec<u32> = wanted
            .into_iter()
            .filter(|&shard| !self.streams.iter().any(|stream| stream.shard == Some(shard)))
            .collect();
        if added.is_empty() {
            self.record_followed();
            return Ok(());
        }
        // The new shards are read from the clock's id now, with their past
        // up to it loaded for replay; the streams read already are first
        // delivered up to it, so that every entry after it, from any
        // stream, is delivered after every entry before it.
        let clock: Option<String> = redis::cmd("GET")
            .arg(self.inner.clock_key())
            .query_async(connection)
            .await
            .map_err(RedisBackplaneError::Command)?;
        let start = clock.unwrap_or_else(|| "0-0".to_owned());
        loop {
            let read = self.read(connection, false).await?;
            let cut = read.iter().any(|(_, ids)| ids.len() >= self.inner.batch);
            self.deliver(read, sink);
            if !cut {
                break;
            }
        }
        // All caught up, or none followed: a failure leaves them to the
        // next step (their past, loaded again, is skipped as held).
        let mut caught_up = Vec::with_capacity(added.len());
        for shard in added {
            let key = self.inner.stream_of(Some(shard)).into_owned();
            let since = self.catch_up(connection, sink, &key, &start).await?;
            caught_up.push((shard, key, since));
        }
        for (shard, key, _) in &caught_up {
            self.streams.push(Stream {
                key: key.clone(),
                shard: Some(*shard),
                cursor: start.clone(),
                last: None,
            });
        }
        self.record_followed();
        for (shard, _, since) in caught_up {
            sink.reading_shard(shard, Some(since));
        }
        Ok(())
    }

    /// Loads the last `history` entries of the stream `key` up to `start`
    /// for replay; returns the order from which the history holds all of
    /// its entries: the first loaded, or 0 when the stream was never
    /// trimmed (Redis keeps at least `history` entries when it trims).
    async fn catch_up(
        &self,
        connection: &mut MultiplexedConnection,
        sink: &BackplaneSink,
        key: &str,
        start: &str,
    ) -> Result<u64, RedisBackplaneError> {
        let history = self.inner.history;
        let past: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(key)
            .arg(start)
            .arg("-")
            .arg("COUNT")
            .arg(history)
            .query_async(connection)
            .await
            .map_err(RedisBackplaneError::Command)?;
        let length: usize = redis::cmd("XLEN")
            .arg(key)
            .query_async(connection)
            .await
            .map_err(RedisBackplaneError::Command)?;
        let mut entries = past.ids;
        entries.reverse();
        preload(sink, &entries);
        let first = entries.first().and_then(|entry| order_of(&entry.id));
        Ok(match first {
            Some(first) if length >= history => first,
            _ => 0,
        })
    }

    /// Records the shards followed, for
    /// [`RedisBackplane::shards_read`](crate::RedisBackplane::shards_read).
    fn record_followed(&self) {
        let mut shards: Vec<u32> = self.streams.iter().filter_map(|stream| stream.shard).collect();
        shards.sort_unstable();
        if let Ok(mut reading) = self.inner.reading.lock() {
            *reading = shards;
        }
    }

    /// An `XREAD` of every stream followed, blocking for up to the read
    /// timeout when `block`.
    async fn read(
        &self,
        connection: &mut MultiplexedConnection,
        block: bool,
    ) -> Result<Vec<(usize, Vec<StreamId>)>, RedisBackplaneError> {
        let mut command = redis::cmd("XREAD");
        command.arg("COUNT").arg(self.inner.batch);
        if block {
            let block_ms = u64::try_from(self.inner.read_timeout.as_millis()).unwrap_or(u64::MAX);
            command.arg("BLOCK").arg(block_ms.max(1));
        }
        command.arg("STREAMS");
        for stream in &self.streams {
            command.arg(&stream.key);
        }
        for stream in &self.streams {
            command.arg(&stream.cursor);
        }
        let reply: Option<StreamReadReply> = command
            .query_async(connection)
            .await
            .map_err(RedisBackplaneError::Command)?;
        let index: HashMap<&str, usize> = self
            .streams
            .iter()
            .enumerate()
            .map(|(i, stream)| (stream.key.as_str(), i))
            .collect();
        Ok(reply
            .map(|reply| {
                reply
                    .keys
                    .into_iter()
                    .filter_map(|key| Some((*index.get(key.key.as_str())?, key.ids)))
                    .filter(|(_, ids)| !ids.is_empty())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Delivers a snapshot's entries in the order of their ids, up to the
    /// last id of any stream the batch size cut short.
    fn deliver(&mut self, read: Vec<(usize, Vec<StreamId>)>, sink: &BackplaneSink) {
        let cutoff = read
            .iter()
            .filter(|(_, ids)| ids.len() >= self.inner.batch)
            .filter_map(|(_, ids)| ids.last().and_then(|entry| parse_id(&entry.id)))
            .min();
        let mut entries: Vec<((u64, u64), usize, StreamId)> = read
            .into_iter()
            .flat_map(|(stream, ids)| ids.into_iter().map(move |entry| (stream, entry)))
            .filter_map(|(stream, entry)| Some((parse_id(&entry.id)?, stream, entry)))
            .filter(|(id, _, _)| cutoff.is_none_or(|cutoff| *id <= cutoff))
            .collect();
        entries.sort_by_key(|(id, _, _)| *id);
        if let Some(age) = entries.last().and_then(|(_, _, entry)| crate::reader::age(&entry.id)) {
            sink.lag(age);
        }
        for (_, index, entry) in entries {
            let stream = &mut self.streams[index];
            if let (Some(last), Some(prev)) = (stream.last.as_deref(), text(&entry, "prev")) {
                if prev != last {
                    self.history_lost(sink, "a stream does not continue from the last entry read");
                    return;
                }
            }
            match (payload(&entry), order_of(&entry.id)) {
                (Some(payload), Some(order)) => {
                    if let Err(error) = sink.deliver_ordered(&entry.id, order, payload) {
                        tracing::warn!(%error, id = %entry.id, "sse-redis: entry skipped");
                    }
                }
                _ => tracing::warn!(id = %entry.id, "sse-redis: entry without a payload or an id of ours skipped"),
            }
            stream.cursor.clone_from(&entry.id);
            stream.last = Some(entry.id.clone());
            self.position = Some(entry.id);
        }
    }

    /// Whether every stream still holds the last entry read from it.
    async fn check_positions(
        &mut self,
        connection: &mut MultiplexedConnection,
        sink: &BackplaneSink,
    ) -> Result<(), RedisBackplaneError> {
        for stream in &self.streams {
            let Some(last) = stream.last.as_deref() else { continue };
            if !holds(connection, &stream.key, last).await? {
                self.history_lost(sink, "a stream is gone or ends before the last entry read");
                return Ok(());
            }
        }
        Ok(())
    }

    /// The log lost entries: every stream is read again from its start.
    fn history_lost(&mut self, sink: &BackplaneSink, why: &str) {
        tracing::warn!(
            key = %self.inner.key,
            position = ?self.position,
            "sse-redis: event history lost ({why}); reading the streams from their start"
        );
        for stream in &mut self.streams {
            stream.cursor = "0-0".to_owned();
            stream.last = None;
        }
        self.position = None;
        sink.history_lost();
    }
}

impl Step for Sharded {
    fn disconnect(&mut self) {
        self.connection = None;
        self.inner.reader_client.store(-1, Ordering::Release);
    }

    async fn step(&mut self, sink: &BackplaneSink) -> Result<(), RedisBackplaneError> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let mut connection = crate::reader::connect(&self.inner).await?;
                let client: i64 = redis::cmd("CLIENT")
                    .arg("ID")
                    .query_async(&mut connection)
                    .await
                    .map_err(RedisBackplaneError::Command)?;
                self.inner.reader_client.store(client, Ordering::Release);
                self.check_positions = self.preloaded;
                connection
            }
        };
        if !self.preloaded {
            self.preload(&mut connection, sink).await?;
            self.preloaded = true;
        } else {
            if self.check_positions {
                self.check_positions(&mut connection, sink).await?;
                self.check_positions = false;
            }
            self.follow_shards(&mut connection, sink).await?;
            let read = self.read(&mut connection, false).await?;
            if read.is_empty() {
                // Wait for something new (or an interruption); the snapshot
                // of the next step delivers it.
                if self.read(&mut connection, true).await?.is_empty() {
                    self.check_positions = true;
                }
            } else {
                self.deliver(read, sink);
            }
        }
        self.connection = Some(connection);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("news", 0), None);
        // FNV-1a of "news" is fixed: the same shard on every instance.
        assert_eq!(shard_of("news", 16), shard_of("news", 16));
        assert_eq!(shard_of("", 7), Some(0x811c_9dc5 % 7));
        assert_eq!(order_of("1700000000000-3"), Some(1_700_000_000_000_000_003));
        assert_eq!(order_of("5-1000000"), None);
        assert_eq!(order_of("garbage"), None);
        let mut counts = [0u32; 8];
        for n in 0..8000 {
            if let Some(shard) = shard_of(&format!("channel-{n}"), 8) {
                counts[shard as usize] += 1;
            }
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}
