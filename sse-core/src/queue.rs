//! The bounded per-connection frame queue.
//!
//! Publishers push shared [`Bytes`] frames; the connection's stream drains
//! them, small ones coalesced into one write and large ones as they are,
//! never copied per connection. A queue that is full when a frame arrives
//! belongs to a client that cannot keep up: it is closed and its frames are
//! dropped, so a slow client never blocks a publisher and never grows memory
//! past its bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use crate::connection::CloseReason;

/// The most bytes of small frames [`Queue::poll_frames`] gathers into one
/// buffer: enough for a burst of small events to go out in one write, small
/// enough that coalescing never copies a large event per connection.
pub(crate) const COALESCE_BYTES: usize = 16 * 1024;

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

#[derive(Debug)]
struct Inner {
    /// The oldest queued frame, kept in the queue itself: a connection that
    /// keeps up holds one frame at a time, and pushing or taking it then
    /// touches no other memory than this structure's.
    head: Option<Bytes>,
    /// The frames queued after `head`; empty whenever `head` is `None`.
    rest: VecDeque<Bytes>,
    /// How many of the queued frames were queued by `push_unbounded` and
    /// not read yet: they do not count against the capacity. They sit at
    /// the head of the queue.
    unbounded: usize,
    /// The bytes of the queued frames that count against the capacity (all
    /// but the unbounded ones), held ones included.
    bytes: usize,
    /// While the connection's opening is held (its connect hook runs), the
    /// frames pushed live, in order; they follow the opening frames and the
    /// hook's own once it is released. `None` when not held.
    held: Option<VecDeque<Bytes>>,
    state: State,
    waker: Option<Waker>,
}

impl Inner {
    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len() + self.held.as_ref().map_or(0, VecDeque::len)
    }

    /// Ends the hold: the held frames join the queue, after those queued
    /// before. Returns whether there were any.
    fn release(&mut self) -> bool {
        let held = self.held.take().unwrap_or_default();
        let any = !held.is_empty();
        for frame in held {
            self.push_back(frame);
        }
        any
    }

    fn push_back(&mut self, frame: Bytes) {
        if self.head.is_none() {
            self.head = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    /// Drops every queued frame and returns how many there were.
    fn clear(&mut self) -> usize {
        let len = self.len();
        self.head = None;
        self.rest = VecDeque::new();
        self.held = None;
        self.unbounded = 0;
        self.bytes = 0;
        len
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

/// The outcome of [`Queue::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
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
            inner: Mutex::new(Inner {
                head: None,
                rest: VecDeque::new(),
                unbounded: 0,
                bytes: 0,
                held: None,
                state: State::Open,
                waker: None,
            }),
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

    /// Queues an event's frame, closing the queue as too slow if it is full;
    /// `sent_at_ms` becomes [`Queue::last_push_ms`] and
    /// [`Queue::last_event_ms`]. While the opening is held, the frame waits
    /// behind it.
    pub(crate) fn push(&self, frame: Bytes, sent_at_ms: u64) -> Push {
        self.push_as(frame, sent_at_ms, Kind::Live)
    }

    /// Queues a heartbeat: as [`Queue::push`], but the connection does not
    /// count as active for the idle timeout.
    pub(crate) fn push_heartbeat(&self, frame: Bytes, sent_at_ms: u64) -> Push {
        self.push_as(frame, sent_at_ms, Kind::Heartbeat)
    }

    /// Queues a frame of the connection's opening, sent by its connect hook:
    /// while the opening is held, it goes before every frame held; else as
    /// [`Queue::push`].
    pub(crate) fn push_opening(&self, frame: Bytes, sent_at_ms: u64) -> Push {
        self.push_as(frame, sent_at_ms, Kind::Opening)
    }

    fn push_as(&self, frame: Bytes, sent_at_ms: u64, kind: Kind) -> Push {
        let (result, waker) = {
            let mut inner = self.inner.lock();
            if inner.state != State::Open {
                return Push::Closed;
            }
            let too_many = inner.len() - inner.unbounded >= self.capacity;
            let too_large = inner.bytes > 0 && inner.bytes.saturating_add(frame.len()) > self.max_bytes;
            if too_many || too_large {
                let dropped = inner.clear() + 1;
                inner.state = State::Closed(CloseReason::SlowConsumer);
                (Push::Overflow { dropped }, inner.waker.take())
            } else {
                inner.bytes += frame.len();
                match (&mut inner.held, kind) {
                    (Some(held), Kind::Live | Kind::Heartbeat) => {
                        held.push_back(frame);
                        (Push::Queued, None)
                    }
                    _ => {
                        inner.push_back(frame);
                        (Push::Queued, inner.waker.take())
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
            inner.held = Some(VecDeque::new());
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
    /// the client's speed.
    pub(crate) fn push_unbounded(&self, frame: Bytes) {
        let mut inner = self.inner.lock();
        if inner.state == State::Open {
            inner.push_back(frame);
            inner.unbounded += 1;
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
            let (mut total, mut count) = (first.len(), 1);
            // The bytes of the unbounded frames taken, which the count of
            // queued bytes leaves out: they lead the queue.
            let mut unbounded_bytes = if inner.unbounded > 0 { first.len() } else { 0 };
            for frame in &inner.rest {
                if total + frame.len() > COALESCE_BYTES {
                    break;
                }
                if count < inner.unbounded {
                    unbounded_bytes += frame.len();
                }
                total += frame.len();
                count += 1;
            }
            inner.bytes = inner.bytes.saturating_sub(total - unbounded_bytes);
            let taken = if count == 1 {
                first
            } else {
                let mut buf = BytesMut::with_capacity(total);
                buf.extend_from_slice(&first);
                for frame in inner.rest.drain(..count - 1) {
                    buf.extend_from_slice(&frame);
                }
                buf.freeze()
            };
            inner.head = inner.rest.pop_front();
            // The opening frames sit at the head of the queue.
            inner.unbounded = inner.unbounded.saturating_sub(count);
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn poll(queue: &Queue) -> Poll<Option<(Bytes, usize)>> {
        queue.poll_frames(&mut Context::from_waker(noop_waker_ref()))
    }

    #[test]
    fn coalesces_queued_frames() {
        let queue = Queue::new(4, 0);
        assert_eq!(queue.push(Bytes::from_static(b"a\n\n"), 1), Push::Queued);
        assert_eq!(queue.push(Bytes::from_static(b"b\n\n"), 2), Push::Queued);
        assert_eq!(poll(&queue), Poll::Ready(Some((Bytes::from_static(b"a\n\nb\n\n"), 2))));
        assert_eq!(poll(&queue), Poll::Pending);
        assert_eq!(queue.last_push_ms(), 2);
    }

    #[test]
    fn coalescing_stops_at_its_budget_and_never_copies_a_large_frame() {
        let queue = Queue::new(8, 0);
        let small = Bytes::from(vec![b's'; COALESCE_BYTES / 4]);
        let large = Bytes::from(vec![b'l'; COALESCE_BYTES]);
        for frame in [&small, &small, &small, &large, &small] {
            assert_eq!(queue.push(frame.clone(), 0), Push::Queued);
        }
        let Poll::Ready(Some((first, 3))) = poll(&queue) else {
            panic!("three small frames come out as one");
        };
        assert_eq!(first.len(), 3 * small.len());
        let Poll::Ready(Some((second, 1))) = poll(&queue) else {
            panic!("the large frame comes out alone");
        };
        assert_eq!(second.as_ptr(), large.as_ptr(), "shared, not copied");
        assert_eq!(poll(&queue), Poll::Ready(Some((small.clone(), 1))));
        assert_eq!(poll(&queue), Poll::Pending);
    }

    #[test]
    fn bounded_by_bytes_but_an_empty_queue_takes_any_frame() {
        let queue = Queue::new(100, 0).with_max_bytes(10);
        queue.push_unbounded(Bytes::from(vec![b'r'; 50]));
        assert_eq!(
            queue.push(Bytes::from(vec![b'a'; 30]), 0),
            Push::Queued,
            "nothing counted yet"
        );
        assert!(matches!(poll(&queue), Poll::Ready(Some((_, 2)))), "both, coalesced");
        assert_eq!(queue.push(Bytes::from(vec![b'b'; 6]), 0), Push::Queued);
        assert_eq!(queue.push(Bytes::from(vec![b'c'; 4]), 0), Push::Queued, "10 bytes fit");
        assert_eq!(
            queue.push(Bytes::from_static(b"d"), 0),
            Push::Overflow { dropped: 3 },
            "11 bytes do not"
        );
        assert_eq!(queue.close_reason(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn opening_frames_taken_in_parts_are_still_counted() {
        let queue = Queue::new(1, 0);
        let large = Bytes::from(vec![b'r'; COALESCE_BYTES]);
        queue.push_unbounded(large.clone());
        queue.push_unbounded(large.clone());
        let Poll::Ready(Some((_, 1))) = poll(&queue) else {
            panic!("one opening frame at a time");
        };
        // One opening frame is still queued: it does not count, so one live
        // frame fits and a second overflows.
        assert_eq!(queue.push(Bytes::from_static(b"live"), 0), Push::Queued);
        assert_eq!(
            queue.push(Bytes::from_static(b"more"), 0),
            Push::Overflow { dropped: 3 }
        );
    }

    #[test]
    fn overflow_closes_and_drops() {
        let queue = Queue::new(2, 0);
        queue.push(Bytes::from_static(b"1"), 0);
        queue.push(Bytes::from_static(b"2"), 0);
        assert_eq!(queue.push(Bytes::from_static(b"3"), 0), Push::Overflow { dropped: 3 });
        assert_eq!(queue.push(Bytes::from_static(b"4"), 0), Push::Closed);
        assert_eq!(poll(&queue), Poll::Ready(None));
        assert_eq!(queue.close_reason(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn opening_frames_do_not_count_against_the_capacity() {
        let queue = Queue::new(1, 0);
        queue.push_unbounded(Bytes::from_static(b"retry"));
        queue.push_unbounded(Bytes::from_static(b"connected"));
        assert_eq!(queue.push(Bytes::from_static(b"live"), 0), Push::Queued);
        assert_eq!(
            queue.push(Bytes::from_static(b"more"), 0),
            Push::Overflow { dropped: 4 }
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        PushUnbounded(usize),
        Poll,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Sizes around the coalescing budget, so that both paths are taken.
        let size = prop_oneof![1..64usize, (COALESCE_BYTES / 3)..(COALESCE_BYTES + 2)];
        prop_oneof![
            4 => size.clone().prop_map(Op::Push),
            1 => size.prop_map(Op::PushUnbounded),
            4 => Just(Op::Poll),
        ]
    }

    proptest::proptest! {
        /// The queue against a plain list of frames: same order, same
        /// coalescing, same overflow, whatever the mix of pushes and polls.
        #[test]
        fn behaves_like_a_list_of_frames(ops in proptest::collection::vec(op(), 1..60)) {
            let capacity = 3;
            let queue = Queue::new(capacity, 0);
            let mut model: VecDeque<Bytes> = VecDeque::new();
            let (mut unbounded, mut closed) = (0usize, false);
            for (n, op) in ops.into_iter().enumerate() {
                // Each frame's bytes name it, so any reordering shows.
                let frame = |size: usize| Bytes::from(vec![(n % 251) as u8; size]);
                match op {
                    Op::Push(size) => {
                        let expected = if closed {
                            Push::Closed
                        } else if model.len() - unbounded >= capacity {
                            let dropped = model.len() + 1;
                            model.clear();
                            (unbounded, closed) = (0, true);
                            Push::Overflow { dropped }
                        } else {
                            model.push_back(frame(size));
                            Push::Queued
                        };
                        proptest::prop_assert_eq!(queue.push(frame(size), 0), expected);
                    }
                    Op::PushUnbounded(size) => {
                        queue.push_unbounded(frame(size));
                        if !closed {
                            model.push_back(frame(size));
                            unbounded += 1;
                        }
                    }
                    Op::Poll => {
                        let expected = if closed {
                            Poll::Ready(None)
                        } else if let Some(first) = model.pop_front() {
                            let mut taken = first.to_vec();
                            let mut count = 1;
                            while model.front().is_some_and(|f| taken.len() + f.len() <= COALESCE_BYTES) {
                                taken.extend_from_slice(&model.pop_front().unwrap_or_default());
                                count += 1;
                            }
                            unbounded = unbounded.saturating_sub(count);
                            Poll::Ready(Some((Bytes::from(taken), count)))
                        } else {
                            Poll::Pending
                        };
                        proptest::prop_assert_eq!(poll(&queue), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn a_held_opening_goes_before_the_live_frames_pushed_meanwhile() {
        let queue = Queue::new(4, 0);
        queue.push_unbounded(Bytes::from_static(b"connected\n\n"));
        queue.hold();
        assert_eq!(queue.push(Bytes::from_static(b"live\n\n"), 1), Push::Queued);
        assert_eq!(queue.push_heartbeat(Bytes::from_static(b":\n\n"), 2), Push::Queued);
        assert_eq!(queue.push_opening(Bytes::from_static(b"state\n\n"), 3), Push::Queued);
        assert_eq!(
            poll(&queue),
            Poll::Ready(Some((Bytes::from_static(b"connected\n\nstate\n\n"), 2)))
        );
        assert_eq!(poll(&queue), Poll::Pending, "live frames wait for the release");
        queue.release();
        assert_eq!(
            poll(&queue),
            Poll::Ready(Some((Bytes::from_static(b"live\n\n:\n\n"), 2)))
        );
        assert_eq!(queue.last_event_ms(), 3, "a heartbeat is not activity");
        assert_eq!(queue.last_push_ms(), 3);
    }

    #[test]
    fn held_frames_count_against_the_capacity_and_a_drain_delivers_them() {
        let queue = Queue::new(2, 0);
        queue.hold();
        assert_eq!(queue.push(Bytes::from_static(b"1"), 0), Push::Queued);
        assert_eq!(queue.push_opening(Bytes::from_static(b"0"), 0), Push::Queued);
        assert_eq!(queue.push(Bytes::from_static(b"2"), 0), Push::Overflow { dropped: 3 });

        let queue = Queue::new(2, 0);
        queue.hold();
        queue.push(Bytes::from_static(b"held"), 0);
        assert!(queue.close_gracefully(CloseReason::Shutdown));
        assert_eq!(poll(&queue), Poll::Ready(Some((Bytes::from_static(b"held"), 1))));
        assert_eq!(poll(&queue), Poll::Ready(None));
    }

    #[test]
    fn graceful_close_drains_first() {
        let queue = Queue::new(2, 0);
        queue.push(Bytes::from_static(b"last"), 0);
        assert!(queue.close_gracefully(CloseReason::Shutdown));
        assert!(!queue.close_gracefully(CloseReason::Disconnected));
        assert_eq!(queue.push(Bytes::from_static(b"late"), 0), Push::Closed);
        assert_eq!(poll(&queue), Poll::Ready(Some((Bytes::from_static(b"last"), 1))));
        assert_eq!(poll(&queue), Poll::Ready(None));
        assert_eq!(queue.close_reason(), Some(CloseReason::Shutdown));
    }
}
