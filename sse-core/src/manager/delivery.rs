//! Delivery: how one event reaches the queues of its recipients on this
//! instance. A dispatching event gets its id and is encoded once; if it can
//! be replayed it is recorded in the replay history (an event for one client
//! or a live-only one is not). The registry finds the connections its
//! target reaches, the audience's exclusions are skipped, and the same frame
//! is pushed into each one's bounded queue, tagged with the event's
//! priority and conflation key. A push that made room in a lagging
//! connection's queue (a frame replaced by a newer one of its key, normal
//! events dropped for a high-priority one) is counted; a connection whose
//! queue overflows is closed as too slow once the fan-out is done. Every frame
//! encoded here is counted against the frame memory budget; a local send
//! that would exceed it is refused before it is recorded. Heartbeats and
//! the backplane's entries use the same pushes.

use std::time::Instant;

use bytes::Bytes;

use super::registry::{Registered, Registry};
use super::{Delivery, Shared};
use crate::connection::ClientId;
use crate::error::SendError;
use crate::event::Event;
use crate::history::History;
use crate::queue::{Push, Tag};
use crate::stats::Counters;
use crate::target::{Audience, Target};

/// Where an event to deliver comes from: it decides the event's id and
/// whether it reaches connections.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source<'a> {
    /// A send on this instance, without a backplane: the id is the
    /// publisher's own or the next sequence number.
    Local,
    /// The entry `id` of the backplane's log: the event's id is the
    /// publisher's own or `id`. Without `fan_out` it is only recorded, for
    /// replay (an entry published before this instance started). `order`:
    /// its place, for a log whose entries are ordered; an entry recorded
    /// without `fan_out` below the newest one held goes to its place.
    Log {
        id: &'a str,
        fan_out: bool,
        order: Option<u64>,
    },
}

impl Shared {
    /// Sends `event` to the connections of `audience` on this instance,
    /// without a backplane.
    ///
    /// # Errors
    /// [`SendError::RateLimited`], [`SendError::OverBudget`].
    pub(super) fn send(&self, audience: &Audience, event: &Event) -> Result<Delivery, SendError> {
        self.check_rate(audience.target())?;
        let start = Instant::now();
        let delivery = self.deliver(audience, event, Source::Local)?;
        if event.dispatches() {
            Counters::add(&self.stats.events_published, 1);
            #[cfg(feature = "metrics")]
            self.metrics.published(audience.target());
            self.sent_since(start);
            tracing::debug!(
                target_kind = audience.target().kind(),
                id = delivery.id.as_deref().unwrap_or(""),
                delivered = delivery.delivered,
                "sse event sent"
            );
        }
        Ok(delivery)
    }

    /// A send that started at `start` has queued its frame everywhere.
    pub(super) fn sent_since(&self, start: Instant) {
        let elapsed = start.elapsed();
        self.stats.sent_after(elapsed);
        #[cfg(feature = "metrics")]
        self.metrics.delivered_after(elapsed);
    }

    /// Refuses a frame of `len` bytes that would not fit in the budget.
    pub(super) fn check_budget(&self, len: usize) -> Result<(), SendError> {
        if self.budget.fits(len) {
            Ok(())
        } else {
            Err(self.over_budget(len))
        }
    }

    fn over_budget(&self, frame: usize) -> SendError {
        Counters::add(&self.stats.budget_refused, 1);
        SendError::OverBudget {
            frame,
            budget: self.budget.max(),
        }
    }

    /// The one delivery path, for a local send and a backplane entry alike.
    ///
    /// A dispatching event that is not live-only gets its id, is encoded
    /// once and, unless it is for one client, recorded in the history; a log
    /// entry also moves the history's log position. The history lock is held
    /// from the record through the fan-out to every connection of
    /// `audience` (see the lock order on [`Shared`]): that is what makes
    /// replay exact. A live-only event is encoded without an id and
    /// recorded nowhere. Connections found too slow are closed once the
    /// locks are released.
    ///
    /// # Errors
    /// [`SendError::OverBudget`] for a local send whose frame does not fit
    /// in the budget; nothing is recorded or sent. A log entry, published
    /// already, is counted whatever the budget.
    pub(super) fn deliver(
        &self,
        audience: &Audience,
        event: &Event,
        source: Source<'_>,
    ) -> Result<Delivery, SendError> {
        let (log_id, fan_out, order) = match source {
            Source::Local => (None, true, None),
            Source::Log { id, fan_out, order } => (Some(id), fan_out, order),
        };
        let budget = |frame: Bytes| match log_id {
            None => {
                let len = frame.len();
                self.budget.admit(frame).ok_or_else(|| self.over_budget(len))
            }
            Some(_) => Ok(self.budget.count(frame)),
        };
        let mut slow = Vec::new();
        let delivery = {
            let mut history = (event.carries_id() || log_id.is_some()).then(|| self.history.lock());
            if let (Some(history), Some(log_id), Some(order)) = (history.as_mut(), log_id, order) {
                if !fan_out && order < history.peek_seq() {
                    // An older entry of a shard this instance starts reading.
                    return Ok(insert(history, audience, event, log_id, order, budget));
                }
            }
            if let (Some(history), Some(log_id)) = (history.as_mut(), log_id) {
                history.set_last_log_id(log_id);
            }
            let (id, frame) = match history.as_mut() {
                Some(history) if event.carries_id() => {
                    let (id, frame) = record(history, audience, event, log_id, order, budget)?;
                    (Some(id), frame)
                }
                // Live-only (the event has no id) or not dispatching.
                _ => (None, budget(event.encode())?),
            };
            let delivered = if fan_out {
                self.fan_out(&self.registry.read(), audience, &frame, &Tag::of(event), &mut slow)
            } else {
                0
            };
            Delivery {
                id,
                delivered,
                duplicate: false,
            }
        };
        self.remove_slow(slow);
        Ok(delivery)
    }

    /// Queues `frame`, tagged `tag`, for every connection of `audience`;
    /// those that overflow join `slow`. Returns how many were reached.
    pub(super) fn fan_out(
        &self,
        registry: &Registry,
        audience: &Audience,
        frame: &Bytes,
        tag: &Tag,
        slow: &mut Vec<ClientId>,
    ) -> usize {
        let now_ms = self.now_ms();
        let mut delivered = 0;
        registry.for_each_target(audience.target(), |entry| {
            if !audience.excludes(&entry.info) && self.push(entry, frame, tag, now_ms, slow) {
                delivered += 1;
            }
        });
        delivered
    }

    /// Queues `frame`, tagged `tag`, for one connection, as sent at
    /// `sent_at_ms`; if its queue overflows, the dropped frames are counted
    /// and the connection joins `slow`. Returns whether the frame was
    /// queued.
    pub(super) fn push(
        &self,
        entry: &Registered,
        frame: &Bytes,
        tag: &Tag,
        sent_at_ms: u64,
        slow: &mut Vec<ClientId>,
    ) -> bool {
        self.pushed(entry, entry.queue.push_event(frame.clone(), tag, sent_at_ms), slow)
    }

    /// Counts the outcome of a push to one connection; see
    /// [`Shared::push`].
    pub(super) fn pushed(&self, entry: &Registered, pushed: Push, slow: &mut Vec<ClientId>) -> bool {
        match pushed {
            Push::Queued => true,
            Push::MadeRoom { conflated, dropped } => {
                self.made_room(conflated, dropped);
                true
            }
            Push::Overflow { dropped } => {
                Counters::add(&self.stats.frames_dropped, dropped as u64);
                slow.push(entry.info.client_id.clone());
                false
            }
            Push::Closed => false,
        }
    }

    /// Counts what a push to a lagging connection removed from its queue:
    /// `conflated` frames replaced by a newer one of their key, `dropped`
    /// normal events dropped for a high-priority one.
    pub(super) fn made_room(&self, conflated: usize, dropped: usize) {
        Counters::add(&self.stats.events_conflated, conflated as u64);
        Counters::add(&self.stats.events_dropped, dropped as u64);
        #[cfg(feature = "metrics")]
        self.metrics.made_room(conflated, dropped);
    }

    /// Unregisters the connections a fan-out found too slow. Called once the
    /// fan-out's locks are released, since it takes the registry for writing.
    pub(super) fn remove_slow(&self, slow: Vec<ClientId>) {
        if slow.is_empty() {
            return;
        }
        self.close_slow(&mut self.registry.write(), slow);
    }
}

/// Gives an event that carries an id its id (the publisher's own, else the backplane
/// log's, else the next sequence number), encodes it once and records it in
/// the history. An event for one client can never be replayed (a
/// reconnecting client is a new connection), so it is not kept and takes no
/// place from an event that can: only its id is marked as a resume point.
/// `budget` counts the frame, or refuses it before anything is recorded.
fn record(
    history: &mut History,
    audience: &Audience,
    event: &Event,
    log_id: Option<&str>,
    order: Option<u64>,
    budget: impl FnOnce(Bytes) -> Result<Bytes, SendError>,
) -> Result<(String, Bytes), SendError> {
    let named = event.id().or(log_id).map(str::to_owned);
    let id = named.clone().unwrap_or_else(|| history.peek_seq().to_string());
    let frame = budget(event.encode_with_id(Some(&id)))?;
    let seq = match order {
        Some(order) => history.seq_at(order),
        None => history.next_seq(),
    };
    if matches!(audience.target(), Target::Client(_)) {
        if let Some(named) = named {
            history.mark(seq, named);
        }
    } else {
        let tag = Tag::of(event);
        history.push(seq, named, audience.clone(), (frame.clone(), tag), Instant::now());
    }
    Ok((id, frame))
}

/// Keeps the log entry `log_id` at its place `order` in the history,
/// behind newer entries: an entry of a shard this instance starts reading,
/// recorded for replay and delivered to nobody. Entries that are never
/// kept (for one client, live-only) are left out.
fn insert(
    history: &mut History,
    audience: &Audience,
    event: &Event,
    log_id: &str,
    order: u64,
    budget: impl FnOnce(Bytes) -> Result<Bytes, SendError>,
) -> Delivery {
    let id = event.id().unwrap_or(log_id).to_owned();
    let keep = event.carries_id() && !matches!(audience.target(), Target::Client(_));
    if keep {
        if let Ok(frame) = budget(event.encode_with_id(Some(&id))) {
            history.insert(
                order,
                id.clone(),
                audience.clone(),
                (frame, Tag::of(event)),
                Instant::now(),
            );
        }
    }
    Delivery {
        id: Some(id),
        delivered: 0,
        duplicate: false,
    }
}
