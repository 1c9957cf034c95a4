//! Delivery: how one event reaches the queues of its recipients on this
//! instance. A dispatching event is recorded in the replay history with its
//! id and encoded once; the registry finds the connections its target
//! reaches, and the same frame is pushed into each one's bounded queue. A
//! connection whose queue overflows is closed as too slow once the fan-out
//! is done. Heartbeats and the backplane's entries use the same pushes.

use std::time::Instant;

use bytes::Bytes;

use super::registry::{Registered, Registry};
use super::{Delivery, Shared};
use crate::connection::ClientId;
use crate::event::Event;
use crate::history::History;
use crate::queue::Push;
use crate::stats::Counters;
use crate::target::Target;

impl Shared {
    /// Sends `event` to the connections of `target` on this instance, without
    /// a backplane.
    pub(super) fn send(&self, target: &Target, event: &Event) -> Delivery {
        let mut slow = Vec::new();
        let delivery = if event.dispatches() {
            let mut history = self.history.lock();
            let (id, frame) = record(&mut history, target, event, None);
            let registry = self.registry.read();
            let delivered = self.fan_out(&registry, target, &frame, &mut slow);
            Counters::add(&self.stats.events_published, 1);
            Delivery {
                id: Some(id),
                delivered,
            }
        } else {
            let frame = event.encode();
            let registry = self.registry.read();
            let delivered = self.fan_out(&registry, target, &frame, &mut slow);
            Delivery { id: None, delivered }
        };
        self.remove_slow(slow);
        delivery
    }

    /// Queues `frame` for every connection of `target`; those that overflow
    /// join `slow`. Returns how many were reached.
    pub(super) fn fan_out(
        &self,
        registry: &Registry,
        target: &Target,
        frame: &Bytes,
        slow: &mut Vec<ClientId>,
    ) -> usize {
        let now_ms = self.now_ms();
        let mut delivered = 0;
        registry.for_each_target(target, |entry| {
            if self.push(entry, frame, now_ms, slow) {
                delivered += 1;
            }
        });
        delivered
    }

    /// Queues `frame` for one connection, as sent at `sent_at_ms`; if its
    /// queue overflows, the dropped frames are counted and the connection
    /// joins `slow`. Returns whether the frame was queued.
    pub(super) fn push(&self, entry: &Registered, frame: &Bytes, sent_at_ms: u64, slow: &mut Vec<ClientId>) -> bool {
        match entry.queue.push(frame.clone(), sent_at_ms) {
            Push::Queued => true,
            Push::Overflow { dropped } => {
                Counters::add(&self.stats.frames_dropped, dropped as u64);
                slow.push(entry.info.client_id.clone());
                false
            }
            Push::Closed => false,
        }
    }

    /// Unregisters the connections a fan-out found too slow. Called once the
    /// fan-out's locks are released, since it takes the registry for writing.
    pub(super) fn remove_slow(&self, slow: Vec<ClientId>) {
        if slow.is_empty() {
            return;
        }
        let mut registry = self.registry.write();
        for id in slow {
            if let Some(entry) = registry.remove(id.as_str()) {
                Counters::add(&self.stats.slow_closed, 1);
                tracing::warn!(
                    client_id = %id,
                    user_id = ?entry.info.user_id,
                    queue = self.config.client_queue,
                    "sse connection closed: too slow to keep up"
                );
            }
        }
    }
}

/// Records a dispatching event in the history and encodes it once, with its
/// id: the publisher's own, else the backplane log's, else the next sequence
/// number. The caller holds the history lock until it has fanned the frame
/// out, so recording and delivery are one step for a connecting client.
pub(super) fn record(history: &mut History, target: &Target, event: &Event, log_id: Option<&str>) -> (String, Bytes) {
    let seq = history.next_seq();
    let named = event.id().or(log_id).map(str::to_owned);
    let id = named.clone().unwrap_or_else(|| seq.to_string());
    let frame = event.encode_with_id(Some(&id));
    history.push(seq, named, target.clone(), frame.clone(), Instant::now());
    (id, frame)
}
