//! Reading the stream: the recent past at start, then every later entry in
//! order through a pull consumer of the reader's own, across reconnections,
//! recreated streams and entries lost to retention.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures_util::StreamExt as _;
use sse_core::BackplaneSink;

use crate::writer::{created, entry_id};
use crate::{Inner, NatsBackplaneError};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long the server keeps a consumer nobody pulls from: the consumers
/// of a reader that went away are removed after it.
const INACTIVE: Duration = Duration::from_secs(30);

/// How long after a pull expired the reader still waits for the server's
/// notice that it ended.
const EXPIRY_SLACK: Duration = Duration::from_millis(50);

/// Where a reader stands: the last entry handled, of the stream created at
/// `created` (`seq` 0: none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) created: u64,
    pub(crate) seq: u64,
}

/// The last entries of the stream when the backplane was built.
#[derive(Debug)]
pub(crate) struct Snapshot {
    created: u64,
    /// The stream's last sequence: where reading goes on from.
    last: u64,
    entries: Vec<(u64, Bytes)>,
}

/// A consumer of `stream` from `start` (`None`: its first entry), and the
/// creation time of the stream it is on, read after the consumer was made:
/// a consumer is deleted with its stream, so one that outlives this check
/// reads that stream.
async fn consumer(
    inner: &Inner,
    stream: &Stream,
    start: Option<u64>,
) -> Result<(PullConsumer, u64), NatsBackplaneError> {
    let deliver_policy = match start {
        Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        None => DeliverPolicy::All,
    };
    let config = pull::Config {
        deliver_policy,
        ack_policy: AckPolicy::None,
        inactive_threshold: INACTIVE,
        memory_storage: true,
        max_batch: i64::try_from(inner.batch).unwrap_or(i64::MAX),
        ..pull::Config::default()
    };
    let consumer: PullConsumer = stream
        .create_consumer(config)
        .await
        .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
    let info = stream
        .get_info()
        .await
        .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
    Ok((consumer, created(&info)))
}

/// Deletes `consumer` without waiting for the answer.
fn remove(stream: &Stream, consumer: &mut PullConsumer) {
    let name = consumer.cached_info().name.clone();
    let stream = stream.clone();
    tokio::spawn(async move {
        let _ = stream.delete_consumer(&name).await;
    });
}

/// The last `history` entries of the stream, oldest first.
pub(crate) async fn recent(inner: &Inner) -> Result<Snapshot, NatsBackplaneError> {
    let stream = inner.open_stream().await?;
    let info = stream.cached_info();
    let (stream_created, state) = (created(info), info.state.clone());
    let mut snapshot = Snapshot {
        created: stream_created,
        last: state.last_sequence,
        entries: Vec::new(),
    };
    if state.messages == 0 {
        return Ok(snapshot);
    }
    let history = u64::try_from(inner.history).unwrap_or(u64::MAX);
    let start = state
        .first_sequence
        .max(state.last_sequence.saturating_sub(history.saturating_sub(1)));
    let (mut consumer, on) = consumer(inner, &stream, Some(start)).await?;
    if on != stream_created {
        remove(&stream, &mut consumer);
        return Err(NatsBackplaneError::Recreated);
    }
    'read: loop {
        let mut batch = consumer
            .fetch()
            .max_messages(inner.batch)
            .messages()
            .await
            .map_err(|error| NatsBackplaneError::Read(error.into()))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(NatsBackplaneError::Read)?;
            let seq = message.info().map_err(NatsBackplaneError::Read)?.stream_sequence;
            got += 1;
            snapshot.entries.push((seq, message.message.payload.clone()));
            if seq >= state.last_sequence {
                break 'read;
            }
        }
        if got == 0 {
            break;
        }
    }
    remove(&stream, &mut consumer);
    if let Some((seq, _)) = snapshot.entries.last() {
        snapshot.last = snapshot.last.max(*seq);
    }
    inner.saw_stream(stream_created, snapshot.last);
    Ok(snapshot)
}

/// Records the entries of `snapshot` for replay without delivering them;
/// returns the position to read on from.
pub(crate) fn preload(sink: &BackplaneSink, snapshot: &Snapshot) -> Position {
    for (seq, payload) in &snapshot.entries {
        let id = entry_id(snapshot.created, *seq);
        if let Err(error) = sink.preload(&id, payload) {
            tracing::warn!(%error, %id, "sse-nats: entry skipped");
        }
    }
    Position {
        created: snapshot.created,
        seq: snapshot.last,
    }
}

/// Delivers the stream to `sink` until the manager is gone. `preloaded`:
/// the position after the entries already preloaded, if they were.
pub(crate) async fn read_log(inner: Arc<Inner>, sink: BackplaneSink, preloaded: Option<Position>) {
    let mut reader = Reader {
        inner,
        preloaded: preloaded.is_some(),
        position: preloaded,
        progress: false,
    };
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    while !sink.is_closed() {
        let result = reader.session(&sink).await;
        if std::mem::take(&mut reader.progress) {
            if failing {
                tracing::info!(stream = %reader.inner.stream, "sse-nats: reading the event stream again");
                failing = false;
            }
            backoff = BACKOFF_MIN;
        }
        if let Err(error) = result {
            if failing {
                tracing::debug!(%error, stream = %reader.inner.stream, "sse-nats: still cannot read the event stream");
            } else {
                tracing::warn!(%error, stream = %reader.inner.stream, "sse-nats: cannot read the event stream; retrying with backoff");
                failing = true;
            }
            pause(backoff, &sink, reader.inner.read_timeout).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
    tracing::debug!(stream = %reader.inner.stream, "sse-nats: manager gone; reader stops");
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
    /// The last entry handled; `None`: none yet (or the history was lost),
    /// read from the stream's first entry and accept any sequence.
    position: Option<Position>,
    preloaded: bool,
    /// A batch was read since the last look: the connection works.
    progress: bool,
}

impl Reader {
    /// Reads with one consumer until the manager is gone (`Ok`), the stream
    /// was replaced (`Ok`: the next session notices), or a fault.
    async fn session(&mut self, sink: &BackplaneSink) -> Result<(), NatsBackplaneError> {
        let inner = self.inner.clone();
        if !self.preloaded {
            let snapshot = recent(&inner).await?;
            self.position = Some(preload(sink, &snapshot));
            self.preloaded = true;
            tracing::debug!(stream = %inner.stream, count = snapshot.entries.len(), "sse-nats: history loaded");
        }
        let stream = inner.open_stream().await?;
        let info = stream.cached_info();
        let stream_created = created(info);
        if let Some(position) = self.position {
            if position.created != stream_created {
                self.history_lost(sink, "the stream was deleted and created again");
            } else if info.state.last_sequence < position.seq {
                self.history_lost(sink, "the stream ends before the last entry read");
            }
        }
        let start = self.position.map(|position| position.seq + 1);
        let (mut consumer, on) = consumer(&inner, &stream, start).await?;
        if on != stream_created {
            remove(&stream, &mut consumer);
            return Err(NatsBackplaneError::Recreated);
        }
        let result = self.pull(sink, &stream, &consumer, stream_created).await;
        remove(&stream, &mut consumer);
        result
    }

    /// Pulls batches from `consumer` and delivers them.
    async fn pull(
        &mut self,
        sink: &BackplaneSink,
        stream: &Stream,
        consumer: &PullConsumer,
        stream_created: u64,
    ) -> Result<(), NatsBackplaneError> {
        let inner = self.inner.clone();
        while !sink.is_closed() {
            let mut batch = tokio::time::timeout(
                inner.timeout,
                consumer
                    .batch()
                    .max_messages(inner.batch)
                    .expires(inner.read_timeout)
                    .messages(),
            )
            .await
            .map_err(|_| NatsBackplaneError::Timeout(inner.timeout))?
            .map_err(|error| NatsBackplaneError::Read(error.into()))?;
            // The server ends a pull when it expires; if that notice does
            // not come, the pull is over all the same a little later.
            let deadline = tokio::time::Instant::now() + inner.read_timeout + EXPIRY_SLACK;
            let mut got = 0usize;
            let ended = loop {
                match tokio::time::timeout_at(deadline, batch.next()).await {
                    Ok(Some(message)) => {
                        let message = message.map_err(NatsBackplaneError::Read)?;
                        let seq = message.info().map_err(NatsBackplaneError::Read)?.stream_sequence;
                        got += 1;
                        self.handle(sink, stream, stream_created, seq, &message.message.payload)
                            .await?;
                    }
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            };
            self.progress = true;
            if !ended || got == 0 {
                // Without the server's notice, entries may have been on
                // their way to the pull given up: then the consumer went
                // past the last entry delivered.
                let info = tokio::time::timeout(inner.timeout, consumer.get_info())
                    .await
                    .map_err(|_| NatsBackplaneError::Timeout(inner.timeout))?
                    .map_err(|error| NatsBackplaneError::Read(error.into()))?;
                let handled = self.position.map_or(0, |position| position.seq);
                if self.position.is_some() && info.delivered.stream_sequence > handled {
                    return Err(NatsBackplaneError::Skipped);
                }
            }
            if got == 0 {
                // Nothing new: is the stream still the one read?
                let info = tokio::time::timeout(inner.timeout, stream.get_info())
                    .await
                    .map_err(|_| NatsBackplaneError::Timeout(inner.timeout))?
                    .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
                if created(&info) != stream_created {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Delivers entry `seq`, after the history was lost if entries before
    /// it are gone from the stream. Entries skipped that the stream still
    /// holds were lost on their way: the consumer is made anew after the
    /// last entry delivered.
    async fn handle(
        &mut self,
        sink: &BackplaneSink,
        stream: &Stream,
        stream_created: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<(), NatsBackplaneError> {
        if let Some(position) = self.position {
            if seq <= position.seq {
                return Ok(()); // Handled already.
            }
            if seq > position.seq + 1 {
                let info = tokio::time::timeout(self.inner.timeout, stream.get_info())
                    .await
                    .map_err(|_| NatsBackplaneError::Timeout(self.inner.timeout))?
                    .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
                if created(&info) == stream_created && info.state.first_sequence <= position.seq + 1 {
                    return Err(NatsBackplaneError::Skipped);
                }
                self.history_lost(sink, "entries after the last one read are gone (retention)");
            }
        }
        let id = entry_id(stream_created, seq);
        if let Err(error) = sink.deliver(&id, payload) {
            tracing::warn!(%error, %id, "sse-nats: entry skipped");
        }
        self.position = Some(Position {
            created: stream_created,
            seq,
        });
        self.inner.saw_stream(stream_created, seq);
        Ok(())
    }

    fn history_lost(&mut self, sink: &BackplaneSink, why: &str) {
        tracing::warn!(
            stream = %self.inner.stream,
            position = ?self.position,
            "sse-nats: event history lost ({why}); reading the stream from its start"
        );
        self.position = None;
        sink.history_lost();
    }
}
