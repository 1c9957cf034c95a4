//! The connection, the stream, and appending to it: one NATS client shared
//! by the publishes and the reader, the stream created (or recreated) with
//! this backplane's settings, and which stream the ids belong to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, DiscardPolicy, Info, StorageType, Stream};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;

use crate::{Inner, NatsBackplaneError};

/// Which stream the ids are of, and the highest sequence known in it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Epoch {
    /// The stream's creation time, in ns since the Unix epoch: the first
    /// part of every id. 0: not known yet.
    pub(crate) created: u64,
    /// The highest sequence appended or read in that stream.
    pub(crate) high: u64,
}

/// The id of entry `seq` of the stream created at `created`.
pub(crate) fn entry_id(created: u64, seq: u64) -> String {
    format!("{created}-{seq}")
}

/// A stream's creation time, in ns since the Unix epoch.
pub(crate) fn created(info: &Info) -> u64 {
    u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0)
}

impl Inner {
    /// The client and its JetStream context, connecting the first time.
    pub(crate) async fn context(&self) -> Result<&Context, NatsBackplaneError> {
        self.connection
            .get_or_try_init(|| async {
                let options = async_nats::ConnectOptions::new()
                    .connection_timeout(self.timeout)
                    .request_timeout(Some(self.timeout))
                    .ping_interval(self.timeout.max(Duration::from_secs(1)))
                    .max_reconnects(None)
                    .reconnect_delay_callback(reconnect_delay);
                let client = options
                    .connect(self.url.as_str())
                    .await
                    .map_err(NatsBackplaneError::Connect)?;
                let context = jetstream::ContextBuilder::new().timeout(self.timeout).build(client);
                Ok(context)
            })
            .await
    }

    /// The context, failing at once when the client is not connected now
    /// (nothing sent would be answered in time).
    pub(crate) async fn connected(&self) -> Result<&Context, NatsBackplaneError> {
        let context = self.context().await?;
        if context.client().connection_state() != State::Connected {
            return Err(NatsBackplaneError::Disconnected);
        }
        Ok(context)
    }

    /// The stream's settings.
    pub(crate) fn stream_config(&self) -> Config {
        let window = self.window.lock().map(|window| *window).unwrap_or(self.initial_window);
        Config {
            name: self.stream.clone(),
            subjects: vec![self.subject.clone()],
            max_messages: i64::try_from(self.history).unwrap_or(i64::MAX),
            max_age: self.max_age.unwrap_or_default(),
            duplicate_window: self.clamp_window(window),
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            num_replicas: 1,
            ..Config::default()
        }
    }

    /// A duplicate window the server accepts: no longer than the maximum
    /// age.
    pub(crate) fn clamp_window(&self, window: Duration) -> Duration {
        match self.max_age {
            Some(age) => window.min(age),
            None => window,
        }
    }

    /// The stream, created with this backplane's settings if it does not
    /// exist, its limits brought to them if they differ.
    pub(crate) async fn open_stream(&self) -> Result<Stream, NatsBackplaneError> {
        let context = self.connected().await?;
        let wanted = self.stream_config();
        let mut stream = context
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
        let info = stream.cached_info().clone();
        let current = &info.config;
        if current.max_messages != wanted.max_messages
            || current.max_age != wanted.max_age
            || current.duplicate_window != wanted.duplicate_window
        {
            let mut config = current.clone();
            config.max_messages = wanted.max_messages;
            config.max_age = wanted.max_age;
            config.duplicate_window = wanted.duplicate_window;
            context
                .update_stream(config)
                .await
                .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
            stream = context
                .get_stream(&self.stream)
                .await
                .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
        }
        self.saw_stream(created(stream.cached_info()), 0);
        Ok(stream)
    }

    /// Records that the stream created at `created` holds entry `seq`:
    /// a newer stream replaces the one known.
    pub(crate) fn saw_stream(&self, created: u64, seq: u64) {
        if let Ok(mut epoch) = self.epoch.lock() {
            if epoch.created != created {
                if created < epoch.created {
                    return; // An older stream's, read late.
                }
                *epoch = Epoch { created, high: 0 };
            }
            epoch.high = epoch.high.max(seq);
        }
    }

    fn epoch(&self) -> Epoch {
        self.epoch.lock().map(|epoch| *epoch).unwrap_or_default()
    }

    /// Appends `payload` (once per `key` within the duplicate window, when
    /// given); returns its sequence and whether an earlier entry had the
    /// key. `sent` is set once the message is on its way: a failure after
    /// that may hide a success.
    pub(crate) async fn append(
        &self,
        payload: Bytes,
        key: Option<&str>,
        sent: &AtomicBool,
    ) -> Result<(String, bool), NatsBackplaneError> {
        let mut recreated = false;
        loop {
            let context = self.connected().await?;
            let mut publish = PublishMessage::build().payload(payload.clone());
            if let Some(key) = key {
                publish = publish.message_id(key);
            }
            let ack = context
                .send_publish(self.subject.clone(), publish)
                .await
                .map_err(|error| NatsBackplaneError::Publish(error.into()))?;
            sent.store(true, Ordering::Release);
            match ack.await {
                Ok(ack) => return Ok((self.id_of(ack.sequence, ack.duplicate).await, ack.duplicate)),
                // No stream took the message: nothing was stored. Create
                // the stream (it was deleted) and append again, once.
                Err(error) if error.kind() == PublishErrorKind::StreamNotFound && !recreated => {
                    tracing::warn!(stream = %self.stream, "sse-nats: the stream is gone; creating it again");
                    sent.store(false, Ordering::Release);
                    recreated = true;
                    self.open_stream().await?;
                }
                Err(error) => {
                    let answered = matches!(
                        error.kind(),
                        PublishErrorKind::StreamNotFound
                            | PublishErrorKind::WrongLastMessageId
                            | PublishErrorKind::WrongLastSequence
                            | PublishErrorKind::Other
                    );
                    return Err(if answered {
                        NatsBackplaneError::Refused(error.into())
                    } else {
                        NatsBackplaneError::Publish(error.into())
                    });
                }
            }
        }
    }

    /// The id of entry `seq` just acknowledged. A new entry at or below the
    /// highest sequence known is in a stream recreated since: its creation
    /// time is read first.
    async fn id_of(&self, seq: u64, duplicate: bool) -> String {
        let epoch = self.epoch();
        if !duplicate && (epoch.created == 0 || seq <= epoch.high) {
            if let Ok(context) = self.context().await {
                if let Ok(mut stream) = context.get_stream(&self.stream).await {
                    if let Ok(info) = stream.info().await {
                        self.saw_stream(created(info), seq);
                    }
                }
            }
        } else if !duplicate {
            self.saw_stream(epoch.created, seq);
        }
        entry_id(self.epoch().created, seq)
    }

    /// Brings the stream's duplicate window to `window`, when it differs.
    pub(crate) async fn ensure_window(&self, window: Duration) -> Result<(), NatsBackplaneError> {
        let window = self.clamp_window(window);
        let current = self.window.lock().map(|current| *current).unwrap_or(window);
        if current == window {
            return Ok(());
        }
        let context = self.connected().await?;
        let mut stream = context
            .get_stream(&self.stream)
            .await
            .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
        let mut config = stream
            .info()
            .await
            .map_err(|error| NatsBackplaneError::Stream(error.into()))?
            .config
            .clone();
        if config.duplicate_window != window {
            config.duplicate_window = window;
            context
                .update_stream(config)
                .await
                .map_err(|error| NatsBackplaneError::Stream(error.into()))?;
        }
        if let Ok(mut current) = self.window.lock() {
            *current = window;
        }
        Ok(())
    }

    /// Checks that the server answers and the stream can be had.
    pub(crate) async fn ping(&self) -> Result<(), NatsBackplaneError> {
        self.open_stream().await.map(|_| ())
    }
}

/// How long the client waits before its `attempts`-th connection attempt
/// (counted from 1): none before the first, then 100 ms doubling up to 2 s.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let shift = u32::try_from((attempts - 2).min(5)).unwrap_or(5);
    Duration::from_millis(100u64 << shift).min(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempt_is_at_once_then_backoff_doubles_to_two_seconds() {
        let delays: Vec<u64> = (1..=8)
            .map(|attempt| u64::try_from(reconnect_delay(attempt).as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 2000, 2000]);
    }
}
