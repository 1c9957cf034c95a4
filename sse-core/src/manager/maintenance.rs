//! Time: the one maintenance task that serves every connection. It sends
//! heartbeats to connections that have been silent for the heartbeat
//! interval, closes connections whose lifetime or expiry deadline passed
//! and, with an idle timeout, those that received no event for that long,
//! drops the rate limits' keys whose allowance is whole again, and sleeps
//! until the next of those is due (or until it is woken by a nearer
//! deadline or by shutdown). There is no timer per connection.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::{FutureExt as _, StreamExt as _};

use super::{Shared, heartbeats};
use crate::config::{Heartbeat, SseConfig};
use crate::connection::CloseReason;
use crate::event::{Event, comment_frame};
use crate::rate_limit::PRUNE_INTERVAL;
use crate::stats::Counters;

/// The encoded heartbeat of `config`; `None` when heartbeats are off.
pub(super) fn heartbeat_frame(config: &SseConfig) -> Option<Bytes> {
    config.heartbeat_interval.map(|_| match &config.heartbeat {
        Heartbeat::Comment(text) => comment_frame(text),
        // The name was validated with the configuration.
        Heartbeat::Event(name) => Event::builder()
            .event(name.clone())
            .build()
            .map(|event| event.encode())
            .unwrap_or_default(),
        Heartbeat::Message(data) => Event::message(data.clone()).encode(),
    })
}

/// The one task that serves every connection: heartbeats, and closing
/// connections at their deadline. It ends when the manager is dropped or
/// shut down.
pub(super) async fn run(shared: Weak<Shared>, mut wake: mpsc::Receiver<()>) {
    let mut next_heartbeat = Instant::now();
    let mut next_idle_check = Instant::now();
    let mut next_prune = Instant::now();
    loop {
        let (runtime, sleep_for) = {
            let Some(shared) = shared.upgrade() else { return };
            if shared.shut_down.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            let tick = shared.config.heartbeat_interval.map(heartbeats::tick);
            if let Some(tick) = tick {
                if now >= next_heartbeat {
                    shared.heartbeat();
                    // An interval too long to add to the clock means never.
                    next_heartbeat = now.checked_add(tick).unwrap_or(far_future(now));
                }
            }
            let next_deadline = shared.expire(now);
            let idle_tick = shared.config.idle_timeout.map(idle_tick);
            if let Some(idle_tick) = idle_tick {
                if now >= next_idle_check {
                    shared.close_idle();
                    next_idle_check = now.checked_add(idle_tick).unwrap_or(far_future(now));
                }
            }
            let prunes = shared.limits.any();
            if prunes && now >= next_prune {
                shared.limits.prune();
                next_prune = now.checked_add(PRUNE_INTERVAL).unwrap_or(far_future(now));
            }
            let wake_at = [
                tick.map(|_| next_heartbeat),
                next_deadline,
                idle_tick.map(|_| next_idle_check),
                prunes.then_some(next_prune),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep_for = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
            (shared.runtime.clone(), sleep_for)
        };
        match sleep_for {
            Some(duration) => {
                let mut sleep = runtime.sleep(duration).fuse();
                futures_util::select! {
                    () = sleep => {}
                    woke = wake.next() => if woke.is_none() { return },
                }
            }
            None => {
                if wake.next().await.is_none() {
                    return;
                }
            }
        }
    }
}

impl Shared {
    /// Queues a heartbeat for every connection that is due one before the
    /// next tick, looking only at those the wheel files under the ticks
    /// passed (see [`heartbeats`](super::heartbeats)).
    fn heartbeat(&self) {
        let (Some(frame), Some(interval)) = (&self.heartbeat_frame, self.config.heartbeat_interval) else {
            return;
        };
        // Ticks come every eighth of the interval. A connection is due one
        // interval after its last frame; it gets its heartbeat at the last
        // tick before it is due (half a tick of slack for a late timer), so
        // it is never silent longer than the interval. The heartbeat is
        // recorded as sent at the due time, not the tick: an idle connection
        // gets exactly one heartbeat per interval, not one per 7/8 of it.
        let now_ms = self.now_ms();
        let tick_ms = heartbeats::tick_ms(interval);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let horizon_ms = now_ms.saturating_add(tick_ms + tick_ms / 2);
        let mut slow = Vec::new();
        let mut sent = 0u64;
        {
            // The lock order: the registry, then the wheel.
            let registry = self.registry.read();
            let mut wheel = self.heartbeats.lock();
            for id in wheel.take(now_ms, tick_ms) {
                // A connection gone since it was filed is forgotten.
                let Some(entry) = registry.get(id.as_str()) else {
                    continue;
                };
                let mut due_ms = entry.queue.last_push_ms().saturating_add(interval_ms);
                if due_ms < horizon_ms {
                    let sent_at = due_ms.max(now_ms);
                    let pushed = entry.queue.push_heartbeat(frame.clone(), sent_at);
                    if !self.pushed(entry, pushed, &mut slow) {
                        continue;
                    }
                    sent += 1;
                    due_ms = sent_at.saturating_add(interval_ms);
                }
                wheel.file(id, due_ms, tick_ms);
            }
        }
        Counters::add(&self.stats.heartbeats, sent);
        #[cfg(feature = "metrics")]
        self.metrics.heartbeats(sent);
        self.remove_slow(slow);
    }

    /// Closes connections whose deadline passed; returns the next deadline.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut registry = self.registry.write();
        while let Some(entry) = registry.take_due(now) {
            self.closed(&mut registry, entry, CloseReason::Expired);
        }
        registry.soonest_deadline()
    }

    /// Closes the connections that received no event (heartbeats aside)
    /// for the idle timeout.
    fn close_idle(&self) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let now_ms = self.now_ms();
        let idle: Vec<_> = self
            .registry
            .read()
            .iter()
            .filter(|entry| now_ms.saturating_sub(entry.queue.last_event_ms()) >= timeout_ms)
            .map(|entry| entry.info.client_id.clone())
            .collect();
        if idle.is_empty() {
            return;
        }
        let mut registry = self.registry.write();
        for id in idle {
            // Checked again: an event may have come since.
            let still_idle = registry
                .get(id.as_str())
                .is_some_and(|entry| now_ms.saturating_sub(entry.queue.last_event_ms()) >= timeout_ms);
            if still_idle && self.close(&mut registry, id.as_str(), CloseReason::IdleTimeout) {
                Counters::add(&self.stats.idle_closed, 1);
            }
        }
    }

    /// Wakes the maintenance task early: a nearer deadline, or shutdown.
    pub(super) fn wake_maintenance(&self) {
        // A full channel already holds a wake-up; a closed one means the task
        // is gone. Either way there is nothing more to do.
        let _ = self.wake.clone().try_send(());
    }
}

/// An instant far enough ahead to stand for "never", that does not overflow.
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))
        .unwrap_or(now)
}

/// How often connections are checked against an idle `timeout`: a
/// connection is closed between the timeout and 9/8 of it.
fn idle_tick(timeout: Duration) -> Duration {
    timeout / 8
}
