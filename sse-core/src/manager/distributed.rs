//! The backplane path: with a [`Backplane`], a send is published to the
//! shared log instead of delivered in place, and every entry the log hands
//! back (from any instance, this one included) is delivered here through the
//! same path as a local send, under the log's id. A publisher waits for its
//! own entry to come back to report its local deliveries. This module also
//! answers the backplane's questions about the log: the last id delivered,
//! and forgetting the history when the log lost its own.

use std::time::Duration;

use futures_channel::oneshot;
use futures_util::FutureExt as _;

use super::delivery::Source;
use super::{Delivery, Shared};
use crate::backplane::{Appended, Backplane, Entry};
use crate::error::SendError;
use crate::event::Event;
use crate::queue::Tag;
use crate::stats::Counters;
use crate::target::{Audience, Target};

/// The local delivery count of one of this instance's publications, by log
/// id, until its publisher collects it.
pub(super) enum Pending {
    /// The entry came back before its publisher asked.
    Delivered(usize),
    /// The publisher is waiting for its entry.
    Waiting(oneshot::Sender<usize>),
}

/// How long a publisher waits for its own backplane entry to come back
/// before it reports zero local deliveries.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

impl Shared {
    /// Publishes through the backplane (once per `key` in the idempotency
    /// window, when given) and waits for the entry to come back to this
    /// instance, to report its local deliveries.
    pub(super) async fn publish(
        &self,
        backplane: &dyn Backplane,
        audience: &Audience,
        event: &Event,
        key: Option<&str>,
    ) -> Result<Delivery, SendError> {
        let start = std::time::Instant::now();
        let entry = Entry::new(self.instance, audience, event).ok_or(SendError::NotDistributable)?;
        // Checked before the log: once published, no instance can refuse it.
        self.check_rate(audience.target())?;
        self.check_budget(event.encode().len())?;
        let shard = match audience.target() {
            Target::Channel(channel) => backplane.channel_shard(channel),
            _ => None,
        };
        let window = self.config.idempotency_window;
        let appended = match (key, shard) {
            (None, None) => backplane.publish(entry.encode()).await.map(Appended::new),
            (None, Some(shard)) => backplane
                .publish_to_shard(shard, entry.encode())
                .await
                .map(Appended::new),
            (Some(key), None) => backplane.publish_once(entry.encode(), key, window).await,
            (Some(key), Some(shard)) => {
                backplane
                    .publish_once_to_shard(shard, entry.encode(), key, window)
                    .await
            }
        };
        let appended = appended.map_err(|error| {
            let outcome = if error.is_outcome_unknown() {
                "unknown"
            } else {
                "not published"
            };
            tracing::warn!(%error, outcome, "sse publish failed: backplane unavailable");
            #[cfg(feature = "metrics")]
            crate::metrics::backplane_publish_error(error.is_outcome_unknown());
            SendError::Backplane(error)
        })?;
        let log_id = appended.id;
        tracing::debug!(
            target_kind = audience.target().kind(),
            %log_id,
            duplicate = appended.earlier,
            "sse event published to the backplane"
        );
        let id = event
            .carries_id()
            .then(|| event.id().map_or_else(|| log_id.clone(), str::to_owned));
        if appended.earlier {
            return Ok(Delivery {
                id,
                delivered: 0,
                duplicate: true,
            });
        }
        if let Target::Channel(channel) = audience.target() {
            if !self.reads_channel(channel) {
                // Its entry does not come back here: nobody here holds a
                // channel of its shard.
                self.sent_since(start);
                return Ok(Delivery {
                    id,
                    delivered: 0,
                    duplicate: false,
                });
            }
        }
        let receiver = {
            let mut pending = self.pending.lock();
            if let Some(Pending::Delivered(delivered)) = pending.remove(&log_id) {
                self.sent_since(start);
                return Ok(Delivery {
                    id,
                    delivered,
                    duplicate: false,
                });
            }
            let (sender, receiver) = oneshot::channel();
            pending.insert(log_id.clone(), Pending::Waiting(sender));
            receiver
        };
        let mut timeout = self.runtime.sleep(DELIVERY_WAIT).fuse();
        let mut receiver = receiver.fuse();
        let delivered = futures_util::select! {
            delivered = receiver => delivered.unwrap_or(0),
            () = timeout => {
                self.pending.lock().remove(&log_id);
                tracing::warn!(%log_id, "sse publish: own entry not read back in time; reporting 0 local deliveries");
                0
            }
        };
        self.sent_since(start);
        Ok(Delivery {
            id,
            delivered,
            duplicate: false,
        })
    }

    /// Delivers an entry of the backplane's log to this instance's
    /// connections (with `fan_out` false, only records it for replay),
    /// through the same path as a local send.
    pub(crate) fn deliver_entry(&self, log_id: &str, order: Option<u64>, entry: Entry, fan_out: bool) {
        let origin = entry.origin;
        let mut target = "all";
        let delivered = match entry.into_parts() {
            Ok((audience, event)) => {
                target = audience.target().kind();
                #[cfg(feature = "metrics")]
                if fan_out && origin == self.instance {
                    self.metrics.published(audience.target());
                }
                // A log entry is never refused: it is counted over the budget.
                let source = Source::Log {
                    id: log_id,
                    fan_out,
                    order,
                };
                self.deliver(&audience, &event, source)
                    .map_or(0, |delivery| delivery.delivered)
            }
            Err(error) => {
                self.history.lock().set_last_log_id(log_id);
                tracing::warn!(%log_id, %error, "sse backplane entry skipped: invalid event");
                0
            }
        };
        if fan_out {
            tracing::debug!(
                target_kind = target,
                %log_id,
                delivered,
                published_here = origin == self.instance,
                "sse event sent"
            );
        }
        if fan_out && origin == self.instance {
            Counters::add(&self.stats.events_published, 1);
            let mut pending = self.pending.lock();
            match pending.remove(log_id) {
                Some(Pending::Waiting(waiter)) => {
                    let _ = waiter.send(delivered);
                }
                _ => {
                    // The publisher has not collected it yet. Entries whose
                    // publisher gave up are dropped once too many pile up.
                    if pending.len() >= 4096 {
                        pending.retain(|_, p| matches!(p, Pending::Waiting(_)));
                    }
                    pending.insert(log_id.to_owned(), Pending::Delivered(delivered));
                }
            }
        }
    }

    /// Delivers `event` to this instance's connections only, without an id
    /// and past the log: the final event of a shutdown, when only this
    /// instance is going away.
    pub(super) fn deliver_unlogged(&self, event: &Event) {
        let frame = event.encode_with_id(None);
        let mut slow = Vec::new();
        let tag = Tag::of(event);
        self.fan_out(
            &self.registry.read(),
            &Audience::new(Target::All),
            &frame,
            &tag,
            &mut slow,
        );
        self.remove_slow(slow);
    }

    /// The id of the last log entry delivered or recorded.
    pub(crate) fn last_log_id(&self) -> Option<String> {
        self.history.lock().last_log_id().map(str::to_owned)
    }

    /// Forgets the replay history: the log lost its own.
    pub(crate) fn forget_history(&self) {
        self.history.lock().clear();
        tracing::warn!("sse backplane lost its history: resuming clients get a reset");
    }
}
