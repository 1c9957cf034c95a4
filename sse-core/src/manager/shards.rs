//! Reading by interest: with a backplane that spreads channel events over
//! shards ([`Backplane::channel_shard`](crate::Backplane::channel_shard)),
//! this instance reads the shared part of the log and only the shards of
//! the channels its connections hold. This module keeps which shards those
//! are (with a linger, so that a client that reconnects finds its shard
//! still read), since when the history holds every entry of each (the
//! backplane may load a shard's recent past when it starts reading it; a
//! client resuming from before that point gets a `reset`, never a replay
//! with a hole), and the connections waiting for a shard to be read before
//! they register.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_util::FutureExt as _;
use parking_lot::Mutex;

use super::Shared;
use crate::connection::ConnectionInfo;
use crate::error::ConnectError;
use crate::stats::Counters;

/// How long an instance goes on reading a shard after the last connection
/// of its channels left: a client that reconnects within it resumes with
/// an exact replay instead of a `reset`.
pub const SHARD_LINGER: Duration = Duration::from_secs(60);

/// How long a connection waits for the shards of its channels to be read.
const SHARD_WAIT: Duration = Duration::from_secs(10);

/// The shards of this instance.
#[derive(Default)]
pub(super) struct Shards {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The shards read, each with the first sequence number from which the
    /// history holds all of its entries.
    reading: HashMap<u32, u64>,
    /// The connections waiting for a shard to be read.
    waiters: HashMap<u32, Vec<oneshot::Sender<()>>>,
    /// The shards of the channels held, as of the registry's channel
    /// version `seen`.
    held: HashSet<u32>,
    seen: Option<u64>,
    /// When each shard stopped being held, for the linger.
    released: HashMap<u32, Instant>,
}

impl Shared {
    /// The shard of `channel`, when the backplane has shards.
    fn shard_of(&self, channel: &str) -> Option<u32> {
        self.backplane.as_ref()?.channel_shard(channel)
    }

    /// Waits until the backplane reads the shards of `channels`: from then
    /// on, every event published to them reaches this instance.
    pub(super) async fn await_shards<'a>(
        &self,
        channels: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), ConnectError> {
        let Some(backplane) = &self.backplane else {
            return Ok(());
        };
        let waits: Vec<oneshot::Receiver<()>> = {
            let mut state = self.shards.state.lock();
            let missing: BTreeSet<u32> = channels
                .into_iter()
                .filter_map(|channel| backplane.channel_shard(channel))
                .filter(|shard| !state.reading.contains_key(shard))
                .collect();
            missing
                .into_iter()
                .map(|shard| {
                    let (sender, receiver) = oneshot::channel();
                    state.waiters.entry(shard).or_default().push(sender);
                    receiver
                })
                .collect()
        };
        if waits.is_empty() {
            return Ok(());
        }
        backplane.interest_changed();
        let mut timeout = self.runtime.sleep(SHARD_WAIT).fuse();
        let mut all = futures_util::future::join_all(waits).fuse();
        let read = futures_util::select! {
            read = all => read.iter().all(Result::is_ok),
            () = timeout => false,
        };
        if read {
            return Ok(());
        }
        tracing::warn!("sse connection refused: the backplane did not read its channels' shards in time");
        let error = ConnectError::ChannelsUnavailable;
        Counters::add(&self.stats.connections_rejected, 1);
        #[cfg(feature = "metrics")]
        crate::metrics::connection_refused(&error);
        Err(error)
    }

    /// See [`BackplaneSink::wanted_shards`](crate::BackplaneSink::wanted_shards).
    pub(crate) fn wanted_shards(&self) -> Vec<u32> {
        let Some(backplane) = &self.backplane else {
            return Vec::new();
        };
        let now = Instant::now();
        // The lock order: the registry, then the shards.
        let registry = self.registry.read();
        let mut guard = self.shards.state.lock();
        let state = &mut *guard;
        {
            let (version, channels) = registry.channels();
            if state.seen != Some(version) {
                let held: HashSet<u32> = channels.filter_map(|c| backplane.channel_shard(c)).collect();
                for &gone in state.held.difference(&held) {
                    state.released.insert(gone, now);
                }
                for shard in &held {
                    state.released.remove(shard);
                }
                state.held = held;
                state.seen = Some(version);
            }
        }
        drop(registry);
        state
            .released
            .retain(|_, at| now.saturating_duration_since(*at) < SHARD_LINGER);
        // Waiters whose connection gave up are dropped with their shard,
        // unless something else wants it.
        state.waiters.retain(|_, waiting| {
            waiting.retain(|sender| !sender.is_canceled());
            !waiting.is_empty()
        });
        let wanted: BTreeSet<u32> = state
            .held
            .iter()
            .chain(state.released.keys())
            .chain(state.waiters.keys())
            .copied()
            .collect();
        wanted.into_iter().collect()
    }

    /// See [`BackplaneSink::reading_shard`](crate::BackplaneSink::reading_shard).
    pub(crate) fn reading_shard(&self, shard: u32, held_since: Option<u64>) {
        // Under the history lock, so that no entry is delivered between the
        // sequence number taken and the shard marked read.
        let history = self.history.lock();
        let mut state = self.shards.state.lock();
        let since = held_since.unwrap_or_else(|| history.peek_seq());
        state.reading.insert(shard, since);
        for waiter in state.waiters.remove(&shard).unwrap_or_default() {
            let _ = waiter.send(());
        }
        tracing::debug!(shard, "sse backplane: reading a shard");
    }

    /// See [`BackplaneSink::stopped_shard`](crate::BackplaneSink::stopped_shard).
    pub(crate) fn stopped_shard(&self, shard: u32) {
        self.shards.state.lock().reading.remove(&shard);
        tracing::debug!(shard, "sse backplane: stopped reading a shard");
    }

    /// Whether this instance reads the shard of `channel`, or the
    /// backplane has no shards.
    pub(super) fn reads_channel(&self, channel: &str) -> bool {
        self.shard_of(channel)
            .is_none_or(|shard| self.shards.state.lock().reading.contains_key(&shard))
    }

    /// Whether the history holds every entry for `info`'s channels after
    /// the entry `seq`: each of their shards was read since before it.
    /// Called under the history lock.
    pub(super) fn shards_cover(&self, info: &ConnectionInfo, seq: u64) -> bool {
        let shards: Vec<u32> = info.channels.iter().filter_map(|c| self.shard_of(c)).collect();
        if shards.is_empty() {
            return true;
        }
        let state = self.shards.state.lock();
        shards.iter().all(|shard| {
            state
                .reading
                .get(shard)
                .is_some_and(|&since| seq.saturating_add(1) >= since)
        })
    }
}
