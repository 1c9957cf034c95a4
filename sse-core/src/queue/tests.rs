//! Tests of the queue: order, coalescing, bounds, holds, priorities and
//! conflation.

use std::collections::{HashMap, VecDeque};

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
        // Each frame, and whether it was pushed unbounded.
        let mut model: VecDeque<(Bytes, bool)> = VecDeque::new();
        let mut closed = false;
        for (n, op) in ops.into_iter().enumerate() {
            // Each frame's bytes name it, so any reordering shows.
            let frame = |size: usize| Bytes::from(vec![(n % 251) as u8; size]);
            match op {
                Op::Push(size) => {
                    let expected = if closed {
                        Push::Closed
                    } else if model.iter().filter(|(_, unbounded)| !unbounded).count() >= capacity {
                        let dropped = model.len() + 1;
                        model.clear();
                        closed = true;
                        Push::Overflow { dropped }
                    } else {
                        model.push_back((frame(size), false));
                        Push::Queued
                    };
                    proptest::prop_assert_eq!(queue.push(frame(size), 0), expected);
                }
                Op::PushUnbounded(size) => {
                    queue.push_unbounded(frame(size));
                    if !closed {
                        model.push_back((frame(size), true));
                    }
                }
                Op::Poll => {
                    let expected = if closed {
                        Poll::Ready(None)
                    } else if let Some((first, _)) = model.pop_front() {
                        let mut taken = first.to_vec();
                        let mut count = 1;
                        while let Some((next, unbounded)) = model.pop_front() {
                            if taken.len() + next.len() > COALESCE_BYTES {
                                model.push_front((next, unbounded));
                                break;
                            }
                            taken.extend_from_slice(&next);
                            count += 1;
                        }
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
    assert_eq!(
        queue.push_opening(Bytes::from_static(b"state\n\n"), &Tag::NORMAL, 3),
        Push::Queued
    );
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
    assert_eq!(
        queue.push_opening(Bytes::from_static(b"0"), &Tag::NORMAL, 0),
        Push::Queued
    );
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

fn tag(priority: Priority, key: Option<&str>) -> Tag {
    Tag {
        priority,
        key: key.map(Arc::from),
    }
}

fn push(queue: &Queue, frame: &'static str, priority: Priority, key: Option<&str>) -> Push {
    queue.push_event(Bytes::from_static(frame.as_bytes()), &tag(priority, key), 0)
}

/// Takes everything queued, as text.
fn drain(queue: &Queue) -> String {
    let mut out = String::new();
    while let Poll::Ready(Some((frames, _))) = poll(queue) {
        out.push_str(&String::from_utf8_lossy(&frames));
    }
    out
}

const HIGH: Priority = Priority::High;
const NORMAL: Priority = Priority::Normal;

#[test]
fn a_keyed_frame_replaces_the_queued_one_and_goes_to_the_end() {
    let queue = Queue::new(3, 0);
    assert_eq!(push(&queue, "a1 ", NORMAL, Some("a")), Push::Queued);
    assert_eq!(push(&queue, "x ", NORMAL, None), Push::Queued);
    assert_eq!(push(&queue, "b1 ", NORMAL, Some("b")), Push::Queued);
    // Full, but a2 replaces a1: the queue stays in publication order.
    assert_eq!(
        push(&queue, "a2 ", NORMAL, Some("a")),
        Push::MadeRoom {
            conflated: 1,
            dropped: 0
        }
    );
    assert_eq!(drain(&queue), "x b1 a2 ");
    // Nothing queued: nothing to replace.
    assert_eq!(push(&queue, "a3 ", NORMAL, Some("a")), Push::Queued);
}

#[test]
fn a_normal_frame_never_replaces_a_high_priority_one() {
    let queue = Queue::new(4, 0);
    push(&queue, "a1 ", HIGH, Some("a"));
    assert_eq!(push(&queue, "a2 ", NORMAL, Some("a")), Push::Queued);
    assert_eq!(
        push(&queue, "a3 ", HIGH, Some("a")),
        Push::MadeRoom {
            conflated: 2,
            dropped: 0
        }
    );
    assert_eq!(drain(&queue), "a3 ");
}

#[test]
fn a_high_priority_frame_drops_the_oldest_normal_ones_and_leaves_a_gap() {
    let queue = Queue::new(3, 0);
    push(&queue, "h1 ", HIGH, None);
    push(&queue, "n1 ", NORMAL, None);
    push(&queue, "n2 ", NORMAL, None);
    assert_eq!(
        push(&queue, "h2 ", HIGH, None),
        Push::MadeRoom {
            conflated: 0,
            dropped: 1
        }
    );
    assert_eq!(
        push(&queue, "h3 ", HIGH, None),
        Push::MadeRoom {
            conflated: 0,
            dropped: 1
        }
    );
    assert_eq!(
        drain(&queue),
        "h1 event: dropped\ndata: {\"dropped\":2}\n\nh2 h3 ",
        "one gap where both were, the order kept"
    );
    assert_eq!(queue.close_reason(), None);
}

#[test]
fn a_normal_frame_at_a_full_queue_still_closes_it() {
    let queue = Queue::new(2, 0);
    push(&queue, "h1 ", HIGH, None);
    push(&queue, "n1 ", NORMAL, None);
    assert_eq!(push(&queue, "n2 ", NORMAL, None), Push::Overflow { dropped: 3 });
    assert_eq!(queue.close_reason(), Some(CloseReason::SlowConsumer));
}

#[test]
fn a_high_priority_frame_closes_the_queue_when_no_room_can_be_made() {
    let queue = Queue::new(2, 0);
    push(&queue, "h1 ", HIGH, None);
    // The latest frame of a key is never dropped for room.
    push(&queue, "k1 ", NORMAL, Some("k"));
    assert_eq!(push(&queue, "h2 ", HIGH, None), Push::Overflow { dropped: 3 });
    assert_eq!(queue.close_reason(), Some(CloseReason::SlowConsumer));
}

#[test]
fn heartbeats_make_room_silently_and_bytes_are_bounded_too() {
    let queue = Queue::new(10, 0).with_max_bytes(8);
    assert_eq!(queue.push_heartbeat(Bytes::from_static(b":\n\n"), 0), Push::Queued);
    push(&queue, "n1 ", NORMAL, None);
    assert_eq!(
        push(&queue, "h1 ", HIGH, None),
        Push::Queued,
        "the heartbeat goes, uncounted"
    );
    assert_eq!(drain(&queue), "n1 h1 ");
}

#[test]
fn held_frames_are_conflated_and_shed_too() {
    let queue = Queue::new(3, 0);
    queue.push_unbounded(Bytes::from_static(b"open "));
    queue.hold();
    push(&queue, "a1 ", NORMAL, Some("a"));
    push(&queue, "n1 ", NORMAL, None);
    push(&queue, "a2 ", NORMAL, Some("a"));
    push(&queue, "h1 ", HIGH, None);
    assert_eq!(
        push(&queue, "h2 ", HIGH, None),
        Push::MadeRoom {
            conflated: 0,
            dropped: 1
        }
    );
    assert_eq!(drain(&queue), "open ", "the held frames wait");
    queue.release();
    assert_eq!(drain(&queue), "event: dropped\ndata: {\"dropped\":1}\n\na2 h1 h2 ");
}

#[test]
fn an_unkeyed_normal_push_allocates_nothing_beside_the_queue() {
    // The slot of an unkeyed frame holds the shared frame and no key: the
    // frame taken back is the very one pushed.
    let queue = Queue::new(2, 0);
    let frame = Bytes::from(vec![b'x'; COALESCE_BYTES]);
    assert_eq!(queue.push_event(frame.clone(), &Tag::NORMAL, 0), Push::Queued);
    let Poll::Ready(Some((taken, 1))) = poll(&queue) else {
        panic!("one frame");
    };
    assert_eq!(taken.as_ptr(), frame.as_ptr());
}

#[derive(Debug, Clone)]
enum FlowOp {
    Push { high: bool, key: Option<u8> },
    Heartbeat,
    Poll,
}

fn flow_op() -> impl proptest::strategy::Strategy<Value = FlowOp> {
    use proptest::prelude::*;
    let key = prop_oneof![2 => Just(None), 3 => (0u8..3).prop_map(Some)];
    prop_oneof![
        6 => (any::<bool>(), key).prop_map(|(high, key)| FlowOp::Push { high, key }),
        1 => Just(FlowOp::Heartbeat),
        2 => Just(FlowOp::Poll),
    ]
}

/// What a frame of the property test says: `<n>:<high>:<key>;`.
fn parse_frames(text: &str, out: &mut Vec<(usize, bool, Option<u8>)>, gaps: &mut usize) {
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("event: dropped\ndata: {\"dropped\":") {
            let end = after.find('}').unwrap_or(after.len());
            *gaps += after[..end].parse::<usize>().unwrap_or(0);
            rest = after.get(end + 3..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix(":\n\n") {
            rest = after;
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            let mut fields = rest[..end].split(':');
            let n = fields.next().and_then(|f| f.parse().ok()).unwrap_or(usize::MAX);
            let high = fields.next() == Some("h");
            let key = fields.next().and_then(|f| f.parse().ok());
            out.push((n, high, key));
            rest = rest.get(end + 1..).unwrap_or("");
        }
    }
}

proptest::proptest! {
    /// Whatever the pushes (priorities, keys, heartbeats) and partial
    /// drains: nothing is reordered; unless the queue was closed, every
    /// high-priority frame is delivered but those superseded by a newer
    /// high-priority one of their key, the latest frame of every key is
    /// delivered, and every unkeyed normal frame missing was counted as
    /// dropped and announced by a gap.
    #[test]
    fn priorities_and_keys_keep_their_promises(ops in proptest::collection::vec(flow_op(), 1..80)) {
        let queue = Queue::new(4, 0).with_max_bytes(64);
        let mut accepted: Vec<(usize, bool, Option<u8>)> = Vec::new();
        let (mut delivered, mut gaps, mut dropped, mut closed) = (Vec::new(), 0, 0, false);
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                FlowOp::Push { high, key } => {
                    let text = format!("{n}:{}:{};", if high { "h" } else { "n" }, key.map_or(String::new(), |k| k.to_string()));
                    let tag = tag(if high { HIGH } else { NORMAL }, key.map(|k| k.to_string()).as_deref());
                    match queue.push_event(Bytes::from(text), &tag, 0) {
                        Push::Queued => accepted.push((n, high, key)),
                        Push::MadeRoom { dropped: d, .. } => {
                            dropped += d;
                            accepted.push((n, high, key));
                        }
                        Push::Overflow { .. } => closed = true,
                        Push::Closed => proptest::prop_assert!(closed),
                    }
                }
                FlowOp::Heartbeat => {
                    if let Push::Overflow { .. } = queue.push_heartbeat(Bytes::from_static(b":\n\n"), 0) {
                        closed = true;
                    }
                }
                FlowOp::Poll => {
                    if let Poll::Ready(Some((frames, _))) = poll(&queue) {
                        parse_frames(&String::from_utf8_lossy(&frames), &mut delivered, &mut gaps);
                    }
                }
            }
        }
        parse_frames(&drain(&queue), &mut delivered, &mut gaps);
        // Never reordered, whatever the priorities.
        proptest::prop_assert!(delivered.windows(2).all(|w| w[0].0 < w[1].0), "{delivered:?}");
        if closed {
            return Ok(());
        }
        proptest::prop_assert_eq!(gaps, dropped);
        let got: std::collections::HashSet<usize> = delivered.iter().map(|d| d.0).collect();
        let mut latest: HashMap<u8, usize> = HashMap::new();
        let mut missing_normal = 0;
        for (i, &(n, high, key)) in accepted.iter().enumerate() {
            if let Some(key) = key {
                latest.insert(key, n);
            }
            if got.contains(&n) {
                continue;
            }
            // Superseded by a later frame of its key (a high one for a high).
            let superseded = key.is_some()
                && accepted[i + 1..].iter().any(|&(_, later_high, later_key)| later_key == key && (later_high || !high));
            proptest::prop_assert!(superseded || (!high && key.is_none()), "lost {n} ({high}, {key:?})");
            if !superseded {
                missing_normal += 1;
            }
        }
        for n in latest.values() {
            proptest::prop_assert!(got.contains(n), "latest {n} of its key missing");
        }
        proptest::prop_assert_eq!(missing_normal, dropped);
    }
}
