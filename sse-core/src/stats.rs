//! Counters and the statistics snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A snapshot of the manager's statistics, as `getStats` gives them.
/// Serializes in camelCase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Distinct users with at least one connection.
    pub unique_users: usize,
    /// Connections per channel, for every channel with at least one.
    pub channels: BTreeMap<String, usize>,
    /// Connections opened since start.
    pub connections_opened: u64,
    /// Connections refused (global or per-user limit, shutdown).
    pub connections_rejected: u64,
    /// Connections closed because they could not keep up.
    pub slow_closed: u64,
    /// Events published (each counted once, whatever its audience).
    pub events_published: u64,
    /// Frames handed to connections' writers (events, heartbeats, replay).
    pub frames_delivered: u64,
    /// Frames discarded because their connection was closed as too slow.
    pub frames_dropped: u64,
    /// Normal-priority events dropped from a lagging connection's full
    /// queue to make room for a high-priority one (the connection stays
    /// open and is sent a `dropped` event where they were).
    pub events_dropped: u64,
    /// Queued events replaced by a newer event with the same conflation key
    /// before a lagging connection read them.
    pub events_conflated: u64,
    /// Events sent again to a resuming client from the history.
    pub events_replayed: u64,
    /// `reset` events sent for a `Last-Event-ID` the history does not hold.
    pub resets: u64,
    /// Heartbeats queued.
    pub heartbeats: u64,
    /// Connections closed after the idle timeout without an event.
    pub idle_closed: u64,
    /// Bytes of event frames held now, in the history and the queues
    /// (each frame counted once).
    pub frame_bytes: usize,
    /// Sends refused because their frame would have exceeded
    /// [`SseConfig::frame_memory_budget`](crate::SseConfig::frame_memory_budget).
    pub budget_refused: u64,
    /// Sends timed so far: every dispatching send, from its call until its
    /// frame was queued for every recipient on this instance (with a
    /// backplane: until the entry came back from the log and was queued
    /// here).
    pub sends_timed: u64,
    /// The sum of those times, in microseconds: the mean latency over an
    /// interval is the change of this figure divided by the change of
    /// [`Stats::sends_timed`].
    pub send_latency_micros: u64,
}

impl Stats {
    /// Adds `other`'s figures to these: the connections, the counters and
    /// each channel's count are summed. So are the unique users, which
    /// counts a user with connections on two instances twice.
    pub(crate) fn add(&mut self, other: &Stats) {
        self.connections += other.connections;
        self.unique_users += other.unique_users;
        for (channel, n) in &other.channels {
            *self.channels.entry(channel.clone()).or_default() += n;
        }
        self.connections_opened += other.connections_opened;
        self.connections_rejected += other.connections_rejected;
        self.slow_closed += other.slow_closed;
        self.events_published += other.events_published;
        self.frames_delivered += other.frames_delivered;
        self.frames_dropped += other.frames_dropped;
        self.events_dropped += other.events_dropped;
        self.events_conflated += other.events_conflated;
        self.events_replayed += other.events_replayed;
        self.resets += other.resets;
        self.heartbeats += other.heartbeats;
        self.idle_closed += other.idle_closed;
        self.frame_bytes += other.frame_bytes;
        self.budget_refused += other.budget_refused;
        self.sends_timed += other.sends_timed;
        self.send_latency_micros += other.send_latency_micros;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_rejected: AtomicU64,
    pub(crate) slow_closed: AtomicU64,
    pub(crate) events_published: AtomicU64,
    pub(crate) frames_delivered: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) events_conflated: AtomicU64,
    pub(crate) events_replayed: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) heartbeats: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) budget_refused: AtomicU64,
    pub(crate) sends_timed: AtomicU64,
    pub(crate) send_latency_micros: AtomicU64,
    /// When the last warning about slow clients was logged (ms since the
    /// manager's epoch, plus one; 0: never), and `slow_closed` then.
    slow_warned_at_ms: AtomicU64,
    slow_warned_count: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// After a slow client was closed (and counted): the number closed
    /// since the last warning, when a warning is due (the first one, then
    /// at most one a minute); `None` otherwise.
    pub(crate) fn slow_warning_due(&self, now_ms: u64) -> Option<u64> {
        const EVERY_MS: u64 = 60_000;
        let last = self.slow_warned_at_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms + 1 < last.saturating_add(EVERY_MS) {
            return None;
        }
        self.slow_warned_at_ms
            .compare_exchange(last, now_ms + 1, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        let total = self.slow_closed.load(Ordering::Relaxed);
        let before = self.slow_warned_count.swap(total, Ordering::AcqRel);
        Some(total.saturating_sub(before))
    }

    /// A send has queued its frame everywhere, `elapsed` after its call.
    pub(crate) fn sent_after(&self, elapsed: std::time::Duration) {
        Self::add(&self.sends_timed, 1);
        Self::add(
            &self.send_latency_micros,
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
    }

    pub(crate) fn frames_delivered(&self, n: usize) {
        Self::add(&self.frames_delivered, n as u64);
    }

    pub(crate) fn fill(&self, stats: &mut Stats) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        stats.connections_opened = get(&self.connections_opened);
        stats.connections_rejected = get(&self.connections_rejected);
        stats.slow_closed = get(&self.slow_closed);
        stats.events_published = get(&self.events_published);
        stats.frames_delivered = get(&self.frames_delivered);
        stats.frames_dropped = get(&self.frames_dropped);
        stats.events_dropped = get(&self.events_dropped);
        stats.events_conflated = get(&self.events_conflated);
        stats.events_replayed = get(&self.events_replayed);
        stats.resets = get(&self.resets);
        stats.heartbeats = get(&self.heartbeats);
        stats.idle_closed = get(&self.idle_closed);
        stats.budget_refused = get(&self.budget_refused);
        stats.sends_timed = get(&self.sends_timed);
        stats.send_latency_micros = get(&self.send_latency_micros);
    }
}
