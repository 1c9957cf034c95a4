//! The engine's metrics, recorded through the [`metrics`](https://docs.rs/metrics) facade
//! when the `metrics` feature is on: the application installs the recorder
//! (a Prometheus exporter, StatsD, ...) and calls [`describe`] once to give
//! them their descriptions and units. Without a recorder installed the
//! facade drops them; without the feature nothing is recorded at all.
//!
//! Names and units follow Prometheus conventions. Labels take a handful of
//! fixed values only, never user ids, client ids or channel names, so the
//! number of series stays the same however many users and channels there
//! are:
//!
//! | Metric | Kind | Labels |
//! |---|---|---|
//! | `sse_connections` | gauge: connections open now | |
//! | `sse_connections_opened_total` | counter | |
//! | `sse_connections_closed_total` | counter | `reason`: [`CloseReason::as_str`](crate::CloseReason::as_str) |
//! | `sse_connections_refused_total` | counter | `reason`: `overloaded`, `user_limit`, `addr_limit`, `shutting_down`, `invalid` |
//! | `sse_events_published_total` | counter | `target`: `all`, `client`, `user`, `users`, `session`, `channel`, `filter` |
//! | `sse_frames_delivered_total` | counter: frames handed to connections' writers | |
//! | `sse_bytes_written_total` | counter: bytes of those frames | |
//! | `sse_queue_depth` | histogram: frames a connection's writer found queued when it took them, sampled: every connection's first take and one in [`DEPTH_SAMPLE`] after | |
//! | `sse_slow_clients_closed_total` | counter | |
//! | `sse_events_dropped_total` | counter: normal events dropped from a lagging connection's queue for a high-priority one | |
//! | `sse_events_conflated_total` | counter: queued events replaced by a newer one with the same conflation key | |
//! | `sse_events_replayed_total` | counter | |
//! | `sse_resets_total` | counter | |
//! | `sse_heartbeats_total` | counter | |
//! | `sse_delivery_latency_seconds` | histogram | |
//! | `sse_backplane_publish_errors_total` | counter | `outcome`: `not_published`, `unknown` |
//! | `sse_channel_events_published_total` | counter: events published to one of the channels named in [`SseConfig::metric_channels`](crate::SseConfig::metric_channels), and only those | `channel`: one of those names |
//! | `sse_backplane_reconnects_total` | counter: the backplane read its log again after losing it | |
//! | `sse_backplane_lag_seconds` | histogram: the age of the entries the backplane reads, when it reads them | |
//!
//! `sse_delivery_latency_seconds` measures a send from its call until its
//! frame is queued for every recipient on this instance (with a backplane:
//! until the entry has come back from the log and been queued here). The
//! time a frame then waits in a slow client's queue is not part of it: a
//! client that falls behind is closed as too slow
//! (`sse_slow_clients_closed_total`) instead.
//!
//! The counters count from the process's start, over every manager of the
//! process; `sse_connections` is the sum of their open connections.
//!
//! A manager registers the metrics of its hot path (frames, bytes, queue
//! depth, latency, events published, heartbeats) once, when it is built,
//! and records through those handles from then on: install the recorder
//! before building the manager.

use std::time::Duration;

use ::metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::connection::CloseReason;
use crate::error::ConnectError;
use crate::target::Target;

/// Describes every metric of the engine to the installed recorder: its help
/// text and unit. Call it once, after installing the recorder; calling it
/// again does no harm.
pub fn describe() {
    describe_gauge!("sse_connections", Unit::Count, "Connections open now.");
    describe_counter!("sse_connections_opened_total", Unit::Count, "Connections opened.");
    describe_counter!(
        "sse_connections_closed_total",
        Unit::Count,
        "Connections closed, by reason (client_gone, disconnected, slow_consumer, expired, evicted, shutdown, \
         transport_failed, idle_timeout)."
    );
    describe_counter!(
        "sse_connections_refused_total",
        Unit::Count,
        "Connections refused, by reason (overloaded, user_limit, addr_limit, shutting_down, invalid)."
    );
    describe_counter!(
        "sse_events_published_total",
        Unit::Count,
        "Events published, each counted once whatever its audience, by target kind."
    );
    describe_counter!(
        "sse_frames_delivered_total",
        Unit::Count,
        "Frames handed to connections' writers (events, heartbeats, replay)."
    );
    describe_counter!(
        "sse_slow_clients_closed_total",
        Unit::Count,
        "Connections closed because they could not keep up."
    );
    describe_counter!(
        "sse_events_dropped_total",
        Unit::Count,
        "Normal events dropped from a lagging connection's full queue to make room for a high-priority one."
    );
    describe_counter!(
        "sse_events_conflated_total",
        Unit::Count,
        "Queued events replaced by a newer event with the same conflation key."
    );
    describe_counter!(
        "sse_events_replayed_total",
        Unit::Count,
        "Events sent again to resuming clients from the history."
    );
    describe_counter!(
        "sse_resets_total",
        Unit::Count,
        "reset events sent for a Last-Event-ID the history does not hold."
    );
    describe_counter!("sse_heartbeats_total", Unit::Count, "Heartbeats queued.");
    describe_counter!(
        "sse_bytes_written_total",
        Unit::Bytes,
        "Bytes of the frames handed to connections' writers."
    );
    describe_histogram!(
        "sse_queue_depth",
        Unit::Count,
        "Frames a connection's writer found queued when it took them (one take in 16 per connection)."
    );
    describe_counter!(
        "sse_channel_events_published_total",
        Unit::Count,
        "Events published to each channel named in the configuration's metric_channels."
    );
    describe_counter!(
        "sse_backplane_reconnects_total",
        Unit::Count,
        "Times the backplane read its log again after losing it."
    );
    describe_histogram!(
        "sse_backplane_lag_seconds",
        Unit::Seconds,
        "Age of the entries the backplane reads, when it reads them (from the log's clock)."
    );
    describe_histogram!(
        "sse_delivery_latency_seconds",
        Unit::Seconds,
        "Time from a send call until its frame is queued for every recipient on this instance."
    );
    describe_counter!(
        "sse_backplane_publish_errors_total",
        Unit::Count,
        "Publishes the backplane did not confirm, by outcome (not_published, unknown)."
    );
}

/// A connection was registered.
pub(crate) fn connection_opened() {
    counter!("sse_connections_opened_total").increment(1);
    gauge!("sse_connections").increment(1.0);
}

/// A registered connection was unregistered, for `reason`.
pub(crate) fn connection_closed(reason: CloseReason) {
    counter!("sse_connections_closed_total", "reason" => reason.as_str()).increment(1);
    gauge!("sse_connections").decrement(1.0);
}

/// A connection was refused with `error`.
pub(crate) fn connection_refused(error: &ConnectError) {
    counter!("sse_connections_refused_total", "reason" => refusal_reason(error)).increment(1);
}

/// The `reason` label of a refusal.
fn refusal_reason(error: &ConnectError) -> &'static str {
    match error {
        ConnectError::Overloaded { .. } => "overloaded",
        ConnectError::UserLimit { .. } => "user_limit",
        ConnectError::AddrLimit { .. } => "addr_limit",
        ConnectError::ShuttingDown => "shutting_down",
        ConnectError::ChannelsUnavailable => "channels_unavailable",
        _ => "invalid",
    }
}

/// A connection was closed (and unregistered) as too slow.
pub(crate) fn slow_client_closed() {
    counter!("sse_slow_clients_closed_total").increment(1);
    connection_closed(CloseReason::SlowConsumer);
}

/// `n` events were replayed to a resuming client.
pub(crate) fn events_replayed(n: u64) {
    counter!("sse_events_replayed_total").increment(n);
}

/// A `reset` event was sent.
pub(crate) fn reset() {
    counter!("sse_resets_total").increment(1);
}

/// The backplane read its log again after losing it.
pub(crate) fn backplane_reconnected() {
    counter!("sse_backplane_reconnects_total").increment(1);
}

/// The backplane read an entry appended `age` ago.
pub(crate) fn backplane_lag(age: Duration) {
    histogram!("sse_backplane_lag_seconds").record(age.as_secs_f64());
}

/// The queue depth is recorded for one take of frames in this many, per
/// connection: a histogram sample costs far more than a counter (an
/// exporter keeps every sample until it summarizes them), and at hundreds
/// of thousands of writes a second one in 16 describes the distribution as
/// well.
pub const DEPTH_SAMPLE: u32 = 16;

/// The target kinds, in the order of [`Handles::published`].
const TARGET_KINDS: [&str; 7] = ["all", "client", "user", "users", "session", "channel", "filter"];

/// The metrics of the hot path, registered once when a manager is built:
/// recording through a handle skips the recorder's lookup of the name.
pub(crate) struct Handles {
    /// `sse_channel_events_published_total` of each configured channel.
    channels: std::collections::HashMap<String, Counter>,
    frames: Counter,
    bytes: Counter,
    depth: Histogram,
    latency: Histogram,
    heartbeats: Counter,
    published: [Counter; TARGET_KINDS.len()],
    dropped: Counter,
    conflated: Counter,
}

impl Handles {
    /// Registers them with the recorder installed now, with a series for
    /// each of `channels`.
    pub(crate) fn register(channels: &[String]) -> Self {
        Handles {
            channels: channels
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        counter!("sse_channel_events_published_total", "channel" => c.clone()),
                    )
                })
                .collect(),
            frames: counter!("sse_frames_delivered_total"),
            bytes: counter!("sse_bytes_written_total"),
            depth: histogram!("sse_queue_depth"),
            latency: histogram!("sse_delivery_latency_seconds"),
            heartbeats: counter!("sse_heartbeats_total"),
            published: TARGET_KINDS.map(|kind| counter!("sse_events_published_total", "target" => kind)),
            dropped: counter!("sse_events_dropped_total"),
            conflated: counter!("sse_events_conflated_total"),
        }
    }

    /// A connection's writer took `frames` frames of `bytes` bytes, at its
    /// take number `take`.
    pub(crate) fn written(&self, frames: usize, bytes: usize, take: u32) {
        self.frames.increment(frames as u64);
        self.bytes.increment(bytes as u64);
        if take % DEPTH_SAMPLE == 0 {
            self.depth.record(frames as f64);
        }
    }

    /// An event for a target of `kind` ([`Target::kind`](crate::Target)) was
    /// published.
    pub(crate) fn published(&self, target: &Target) {
        let kind = target.kind();
        if let Some(i) = TARGET_KINDS.iter().position(|k| *k == kind) {
            self.published[i].increment(1);
        }
        if let (Target::Channel(channel), false) = (target, self.channels.is_empty()) {
            if let Some(counter) = self.channels.get(channel) {
                counter.increment(1);
            }
        }
    }

    /// A send has queued its frame everywhere, `elapsed` after its call.
    pub(crate) fn delivered_after(&self, elapsed: Duration) {
        self.latency.record(elapsed.as_secs_f64());
    }

    /// A push replaced `conflated` queued events of its key and dropped
    /// `dropped` normal ones.
    pub(crate) fn made_room(&self, conflated: usize, dropped: usize) {
        self.conflated.increment(conflated as u64);
        self.dropped.increment(dropped as u64);
    }

    /// `n` heartbeats were queued.
    pub(crate) fn heartbeats(&self, n: u64) {
        self.heartbeats.increment(n);
    }
}

/// The backplane did not confirm a publish; `unknown` when it may still
/// have stored it.
pub(crate) fn backplane_publish_error(unknown: bool) {
    let outcome = if unknown { "unknown" } else { "not_published" };
    counter!("sse_backplane_publish_errors_total", "outcome" => outcome).increment(1);
}
