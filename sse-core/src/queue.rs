//! The bounded per-connection frame queue.
//!
//! Publishers push shared [`Bytes`] frames; the connection's stream drains
//! them, small ones coalesced into one write and large ones as they are,
//! never copied per connection. Each frame travels with its event's
//! [`Priority`] and conflation key (see [`crate::event::flow`]): a keyed
//! frame replaces the queued frame of its key, and a high-priority frame
//! that finds the queue full makes room by dropping queued normal ones.
//! Otherwise a queue that is full when a frame arrives belongs to a client
//! that cannot keep up: it is closed and its frames are dropped, so a slow
//! client never blocks a publisher and never grows memory past its bound.
//! Frames leave in the order they were queued, whatever their priority.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use self::slots::{Class, Inner, Slot};
use crate::connection::CloseReason;
use crate::event::{Event, Priority};

mod slots;
#[cfg(test)]
mod tests;

/// The most bytes of small frames [`Queue::poll_frames`] gathers into one
/// buffer: enough for a burst of small events to go out in one write, small
/// enough that coalescing never copies a large event per connection.
pub(crate) const COALESCE_BYTES: usize = 16 * 1024;

/// The largest buffer of queued frames a queue frees once it is drained:
/// enough for a connection's opening frames and a short burst, below what a
/// lagging connection grows, which would otherwise allocate it again and
/// again.
const RELEASED_CAPACITY: usize = 4;

#[derive(Debug)]
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    capacity: usize,
    /// The most bytes of counted frames queued while another is queued: an
    /// empty queue takes one frame of any size.
    max_bytes: usize,
    /// Milliseconds since the manager's epoch at which the last frame was
    /// queued (for a heartbeat, the time it was due); the next heartbeat is
    /// due one interval later, so connections that just got something are
    /// skipped.
    last_push_ms: AtomicU64,
    /// Milliseconds since the manager's epoch at which the last frame other
    /// than a heartbeat was queued (at first, the connection's opening): the
    /// idle timeout counts from here.
    last_event_ms: AtomicU64,
}

/// What travels beside an event's frame into every queue: its priority and
/// conflation key. Made once per event; pushing it clones the key's `Arc`
/// (nothing for an unkeyed event), never the frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tag {
    pub(crate) priority: Priority,
    pub(crate) key: Option<Arc<str>>,
}

impl Tag {
    /// An unkeyed normal frame.
    pub(crate) const NORMAL: Tag = Tag {
        priority: Priority::Normal,
        key: None,
    };

    pub(crate) fn of(event: &Event) -> Tag {
        Tag {
            priority: event.priority(),
            key: event.shared_key().cloned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Deliver what is queued, then end.
    Draining(CloseReason),
    /// End now; nothing more is delivered.
    Closed(CloseReason),
}

/// What a pushed frame is, which decides where it goes while the opening is
/// held and whether it counts as activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Live,
    Heartbeat,
    Opening,
}

/// The outcome of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
    /// Queued, after removing `conflated` queued frames of its key and
    /// dropping `dropped` normal events to make room for it.
    MadeRoom {
        conflated: usize,
        dropped: usize,
    },
    /// The queue was full: it is now closed as too slow, and this many frames
    /// (the new one included) were dropped.
    Overflow {
        dropped: usize,
    },
    /// The queue was already closing or closed; the frame was not queued.
    Closed,
}

impl Queue {
    pub(crate) fn new(capacity: usize, now_ms: u64) -> Self {
        Queue {
            inner: Mutex::new(Inner::new()),
            capacity,
            max_bytes: usize::MAX,
            last_push_ms: AtomicU64::new(now_ms),
            last_event_ms: AtomicU64::new(now_ms),
        }
    }

    /// Bounds the bytes queued, besides the frames: see
    /// [`SseConfig::client_queue_bytes`](crate::SseConfig::client_queue_bytes).
    pub(crate) fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Queues an unkeyed normal frame: [`Queue::push_event`] with
    /// [`Tag::NORMAL`].
    #[cfg(test)]
    pub(crate) fn push(&self, frame: Bytes, sent_at_ms: u64) -> Push {
        self.push_event(frame, &Tag::NORMAL, sent_at_ms)
    }

    /// Queues an event's frame with its tag: a keyed frame first replaces
    /// the queued frames it supersedes; if the queue is full then, a
    /// high-priority frame drops queued normal ones to make room, and
    /// otherwise the queue is closed as too slow. `sent_at_ms` becomes
    /// [`Queue::last_push_ms`] and [`Queue::last_event_ms`]. While the
    /// opening is held, the frame waits behind it.
    pub(crate) fn push_event(&self, frame: Bytes, tag: &Tag, sent_at_ms: u64) -> Push {
        self.push_as(frame, tag, sent_at_ms, Kind::Live)
    }

    /// Queues a heartbeat: as [`Queue::push_event`] of an unkeyed normal
    /// frame, but the connection does not count as active for the idle
    /// timeout, and a high-priority frame may drop it silently.
    pub(crate) fn push_heartbeat(&self, frame: Bytes, sent_at_ms: u64) -> Push {
        self.push_as(frame, &Tag::NORMAL, sent_at_ms, Kind::Heartbeat)
    }

    /// Queues a frame of the connection's opening, sent by its connect hook:
    /// while the opening is held, it goes before every frame held; else as
    /// [`Queue::push_event`].
    pub(crate) fn push_opening(&self, frame: Bytes, tag: &Tag, sent_at_ms: u64) -> Push {
        self.push_as(frame, tag, sent_at_ms, Kind::Opening)
    }

    /// Makes room for a frame of `len` bytes tagged `tag`: replaces the
    /// queued frames of its key, then, if it does not fit, drops normal
    /// frames for a high-priority one. Returns the push's outcome, or `Err`
    /// with the frames dropped (the new one included) when it cannot fit:
    /// the queue is then empty, and the caller closes it.
    #[inline(never)]
    fn make_room(&self, inner: &mut Inner, tag: &Tag, class: Class, len: usize) -> Result<Push, usize> {
        let conflated = match &tag.key {
            Some(key) if inner.keyed > 0 => inner.conflate(key, class),
            _ => 0,
        };
        let shed = if self.fits(inner, len) {
            Ok(0)
        } else if class == Class::High {
            inner.shed(|inner| self.fits(inner, len))
        } else {
            Err(0)
        };
        match shed {
            // Every frame the push removed or would have queued.
            Err(removed) => Err(conflated + removed + inner.clear() + 1),
            Ok(0) if conflated == 0 => Ok(Push::Queued),
            Ok(dropped) => Ok(Push::MadeRoom { conflated, dropped }),
        }
    }

    /// Whether a frame of `len` bytes fits in the queue as it is.
    fn fits(&self, inner: &Inner, len: usize) -> bool {
        inner.counted < self.capacity && !(inner.bytes > 0 && inner.bytes.saturating_add(len) > self.max_bytes)
    }

    fn push_as(&self, frame: Bytes, tag: &Tag, sent_at_ms: u64, kind: Kind) -> Push {
        let class = match (kind, tag.priority) {
            (Kind::Heartbeat, _) => Class::Heartbeat,
            (_, Priority::High) => Class::High,
            _ => Class::Normal,
        };
        let len = frame.len();
        let (result, waker) = {
            let mut inner = self.inner.lock();
            if inner.state != State::Open {
                return Push::Closed;
            }
            // An unkeyed frame that fits, the usual case, goes straight in.
            let made = if tag.key.is_some() || !self.fits(&inner, len) {
                self.make_room(&mut inner, tag, class, len)
            } else {
                Ok(Push::Queued)
            };
            match made {
                Err(dropped) => {
                    inner.state = State::Closed(CloseReason::SlowConsumer);
                    (Push::Overflow { dropped }, inner.waker.take())
                }
                Ok(result) => {
                    inner.counted += 1;
                    inner.bytes += len;
                    inner.keyed += usize::from(tag.key.is_some());
                    let slot = Slot {
                        frame,
                        key: tag.key.clone(),
                        class,
                    };
                    match (&mut inner.held, kind) {
                        (Some(held), Kind::Live | Kind::Heartbeat) => {
                            held.push_back(slot);
                            (result, None)
                        }
                        _ => {
                            inner.push_back(slot);
                            (result, inner.waker.take())
                        }
                    }
                }
            }
        };
        self.last_push_ms.store(sent_at_ms, Ordering::Relaxed);
        if kind != Kind::Heartbeat {
            self.last_event_ms.store(sent_at_ms, Ordering::Relaxed);
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        result
    }

    /// Holds the frames pushed live from now on behind the opening, until
    /// [`Queue::release`]: the connect hook's frames go first.
    pub(crate) fn hold(&self) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open && inner.held.is_none() {
            inner.held = Some(Default::default());
        }
    }

    /// Ends the hold of [`Queue::hold`]: the frames held follow those queued
    /// before them. Does nothing if the queue is not held.
    pub(crate) fn release(&self) {
        let waker = {
            let mut inner = self.inner.lock();
            if inner.release() { inner.waker.take() } else { None }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues a frame whatever the queue's length: for the frames that open a
    /// connection (bounded by the history size), which must not count against
    /// the client's speed, and are never removed to make room.
    pub(crate) fn push_unbounded(&self, frame: Bytes) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open {
            inner.push_back(Slot {
                frame,
                key: None,
                class: Class::Unbounded,
            });
        }
    }

    pub(crate) fn last_push_ms(&self) -> u64 {
        self.last_push_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn last_event_ms(&self) -> u64 {
        self.last_event_ms.load(Ordering::Relaxed)
    }

    /// Delivers what is queued, then ends the stream. Returns false if the
    /// queue was already closing.
    pub(crate) fn close_gracefully(&self, reason: CloseReason) -> bool {
        self.set_state(State::Draining(reason), false).0
    }

    /// Ends the stream now, dropping what is queued. Returns whether it was
    /// open, and how many frames were dropped.
    pub(crate) fn abort(&self, reason: CloseReason) -> (bool, usize) {
        self.set_state(State::Closed(reason), true)
    }

    fn set_state(&self, state: State, drop_frames: bool) -> (bool, usize) {
        let (changed, dropped, waker) = {
            let mut inner = self.inner.lock();
            let changed = match inner.state {
                State::Open => true,
                // An abort may overtake a drain in progress; nothing else may
                // reopen or re-reason a closed queue.
                State::Draining(_) => drop_frames,
                State::Closed(_) => false,
            };
            if !changed {
                return (false, 0);
            }
            inner.state = state;
            // A drain delivers the frames held too.
            let dropped = if drop_frames {
                inner.clear()
            } else {
                inner.release();
                0
            };
            (true, dropped, inner.waker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        (changed, dropped)
    }

    /// Why the queue was closed, if it was.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        match self.inner.lock().state {
            State::Open => None,
            State::Draining(reason) | State::Closed(reason) => Some(reason),
        }
    }

    /// Whether a frame is ready to be taken.
    pub(crate) fn has_frames(&self) -> bool {
        self.inner.lock().head.is_some()
    }

    /// Takes the queued frames, with their count; `Ready(None)` once the
    /// queue is closed and drained.
    ///
    /// Small frames at the head of the queue are coalesced into one buffer
    /// of at most [`COALESCE_BYTES`], so a burst costs one write; a frame
    /// that does not fit is handed over as it is, still shared with every
    /// other connection it was sent to, never copied. A client that falls
    /// behind on large events thus holds references to shared frames (bounded
    /// by the queue's capacity), not private copies of them.
    pub(crate) fn poll_frames(&self, cx: &mut Context<'_>) -> Poll<Option<(Bytes, usize)>> {
        let mut inner = self.inner.lock();
        if let State::Closed(_) = inner.state {
            return Poll::Ready(None);
        }
        if let Some(first) = inner.head.take() {
            inner.count_out(&first);
            if inner.rest.is_empty() {
                // A client that keeps up: one frame, nothing to coalesce.
                return Poll::Ready(Some((first.frame, 1)));
            }
            let (mut total, mut count) = (first.frame.len(), 1);
            // What the coalesced slots took from the counts.
            let (mut counted, mut bytes, mut keyed) = (0, 0, 0);
            for slot in &inner.rest {
                if total + slot.frame.len() > COALESCE_BYTES {
                    break;
                }
                total += slot.frame.len();
                count += 1;
                if slot.counted() {
                    counted += 1;
                    bytes += slot.frame.len();
                    keyed += usize::from(slot.key.is_some());
                }
            }
            inner.counted -= counted;
            inner.bytes = inner.bytes.saturating_sub(bytes);
            inner.keyed -= keyed;
            let taken = if count == 1 {
                first.frame
            } else {
                let mut buf = BytesMut::with_capacity(total);
                buf.extend_from_slice(&first.frame);
                for slot in inner.rest.drain(..count - 1) {
                    buf.extend_from_slice(&slot.frame);
                }
                buf.freeze()
            };
            inner.head = inner.rest.pop_front();
            if inner.rest.is_empty() && inner.rest.capacity() <= RELEASED_CAPACITY {
                // A short burst (a connection's opening frames, a replay of
                // a few events) leaves no buffer behind for the connection's
                // lifetime; a lagging connection's larger one stays.
                inner.rest = VecDeque::new();
            }
            return Poll::Ready(Some((taken, count)));
        }
        match inner.state {
            State::Open => {
                if !inner.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    inner.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            State::Draining(reason) => {
                inner.state = State::Closed(reason);
                Poll::Ready(None)
            }
            State::Closed(_) => Poll::Ready(None),
        }
    }
}
