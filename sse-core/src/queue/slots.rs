//! The queue's storage: its slots in order, each a shared frame with the
//! priority and conflation key it was pushed with, and the removals that
//! make room in a full queue (see [`crate::event::flow`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;

use super::State;

/// One queued frame and what it is.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) frame: Bytes,
    /// The conflation key of an event's frame, shared by every queue it
    /// was pushed to.
    pub(super) key: Option<Arc<str>>,
    pub(super) class: Class,
}

/// What a slot holds, which decides whether it counts against the queue's
/// bounds and whether it may be removed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// A frame of the connection's opening (the `retry:` hint, `connected`,
    /// replay, `reset`): not counted, never removed.
    Unbounded,
    /// Counted; removed silently to make room for a high-priority frame.
    Heartbeat,
    /// A normal event: counted; unkeyed, removed (and counted, and marked by
    /// a gap) to make room for a high-priority frame.
    Normal,
    /// A high-priority event: counted, never removed for room.
    High,
    /// Where normal events were removed: taken as a `dropped` event, whose
    /// frame holds how many. Not counted.
    Gap,
}

impl Slot {
    pub(super) fn counted(&self) -> bool {
        matches!(self.class, Class::Heartbeat | Class::Normal | Class::High)
    }

    /// Whether it may be removed to make room for a high-priority frame:
    /// the newest frame of a key never is, so a client always ends with the
    /// latest value of every key.
    fn sheddable(&self) -> bool {
        match self.class {
            Class::Heartbeat => true,
            Class::Normal => self.key.is_none(),
            _ => false,
        }
    }

    fn gap(dropped: u32) -> Slot {
        Slot {
            frame: gap_frame(dropped),
            key: None,
            class: Class::Gap,
        }
    }

    /// How many events a gap stands for, read back from its frame (the
    /// count is not kept beside it, so that a slot stays small and plain to
    /// move on the hot path); `None` for any other slot.
    fn gap_count(&self) -> Option<u32> {
        if self.class != Class::Gap {
            return None;
        }
        let digits = self.frame.strip_prefix(GAP_PREFIX.as_bytes())?;
        let end = digits.iter().position(|b| !b.is_ascii_digit())?;
        std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
    }
}

/// How the `dropped` event's frame starts; its count follows.
const GAP_PREFIX: &str = "event: dropped\ndata: {\"dropped\":";

/// The `dropped` event that takes the place of `dropped` normal events
/// removed from a queue. It has no id: the client's last event id stays
/// that of the last event it was sent.
fn gap_frame(dropped: u32) -> Bytes {
    Bytes::from(format!("{GAP_PREFIX}{dropped}}}\n\n"))
}

#[derive(Debug)]
pub(super) struct Inner {
    /// The oldest queued slot, kept in the queue itself: a connection that
    /// keeps up holds one frame at a time, and pushing or taking it then
    /// touches no other memory than this structure's.
    pub(super) head: Option<Slot>,
    /// The slots queued after `head`; empty whenever `head` is `None`.
    pub(super) rest: VecDeque<Slot>,
    /// While the connection's opening is held (its connect hook runs), the
    /// frames pushed live, in order; they follow the opening frames and the
    /// hook's own once it is released. `None` when not held.
    pub(super) held: Option<VecDeque<Slot>>,
    /// How many queued slots count against the capacity (held ones
    /// included): all but the opening frames and the gaps.
    pub(super) counted: usize,
    /// The bytes of those slots.
    pub(super) bytes: usize,
    /// How many of those have a conflation key: while none has, a keyed push
    /// looks for nothing.
    pub(super) keyed: usize,
    pub(super) state: State,
    pub(super) waker: Option<Waker>,
}

impl Inner {
    pub(super) fn new() -> Self {
        Inner {
            head: None,
            rest: VecDeque::new(),
            held: None,
            counted: 0,
            bytes: 0,
            keyed: 0,
            state: State::Open,
            waker: None,
        }
    }

    fn main_len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    /// Every slot, oldest first, the held ones last.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.head.iter().chain(&self.rest).chain(self.held.iter().flatten())
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        let main = self.main_len();
        match i {
            0 if main > 0 => self.head.as_mut(),
            i if i < main => self.rest.get_mut(i - 1),
            i => self.held.as_mut()?.get_mut(i - main),
        }
    }

    /// Counts `slot` out, as it leaves the queue.
    pub(super) fn count_out(&mut self, slot: &Slot) {
        if slot.counted() {
            self.counted -= 1;
            self.bytes = self.bytes.saturating_sub(slot.frame.len());
            self.keyed -= usize::from(slot.key.is_some());
        }
    }

    fn remove(&mut self, i: usize) -> Option<Slot> {
        let main = self.main_len();
        let slot = if i == 0 && main > 0 {
            let head = self.head.take();
            self.head = self.rest.pop_front();
            head
        } else if i < main {
            self.rest.remove(i - 1)
        } else {
            self.held.as_mut()?.remove(i - main)
        }?;
        self.count_out(&slot);
        Some(slot)
    }

    /// Puts `slot` at `i`: in the held frames if `held` (and there are
    /// any), else in the queue proper.
    fn insert(&mut self, i: usize, slot: Slot, held: bool) {
        let main = self.main_len();
        match &mut self.held {
            Some(frames) if held && i >= main => frames.insert((i - main).min(frames.len()), slot),
            _ if i == 0 => {
                if let Some(head) = self.head.replace(slot) {
                    self.rest.push_front(head);
                }
            }
            _ => self.rest.insert((i - 1).min(self.rest.len()), slot),
        }
    }

    /// Appends `slot` to the queue proper (not to the held frames).
    pub(super) fn push_back(&mut self, slot: Slot) {
        if self.head.is_none() {
            self.head = Some(slot);
        } else {
            self.rest.push_back(slot);
        }
    }

    /// Ends the hold: the held slots join the queue, after those queued
    /// before. Returns whether there were any.
    pub(super) fn release(&mut self) -> bool {
        let held = self.held.take().unwrap_or_default();
        let any = !held.is_empty();
        for slot in held {
            self.push_back(slot);
        }
        any
    }

    /// Drops every queued slot and returns how many frames there were (the
    /// gaps left out).
    pub(super) fn clear(&mut self) -> usize {
        let frames = self.slots().filter(|s| s.class != Class::Gap).count();
        self.head = None;
        self.rest = VecDeque::new();
        self.held = None;
        self.counted = 0;
        self.bytes = 0;
        self.keyed = 0;
        frames
    }

    /// Removes the queued frames with `key` that a new frame of `class`
    /// supersedes: a high-priority one supersedes every frame of its key, a
    /// normal one the normal frames only. Returns how many were removed.
    #[inline(never)]
    pub(super) fn conflate(&mut self, key: &str, class: Class) -> usize {
        let mut removed = 0;
        let mut i = 0;
        loop {
            let found = self
                .slots()
                .skip(i)
                .position(|s| s.key.as_deref() == Some(key) && (s.class == Class::Normal || class == Class::High));
            let Some(at) = found else {
                break;
            };
            i += at;
            self.remove(i);
            self.merge_gaps(i);
            removed += 1;
        }
        removed
    }

    /// Merges the gaps at `i - 1` and `i`, if both are gaps.
    fn merge_gaps(&mut self, i: usize) {
        let Some(before) = i.checked_sub(1) else {
            return;
        };
        let (Some(a), Some(b)) = (
            self.get_mut(before).and_then(|s| s.gap_count()),
            self.get_mut(i).and_then(|s| s.gap_count()),
        ) else {
            return;
        };
        self.remove(i);
        if let Some(slot) = self.get_mut(before) {
            *slot = Slot::gap(a.saturating_add(b));
        }
    }

    /// Removes heartbeats and unkeyed normal events, oldest first, until
    /// `fits` says a new frame fits; each normal event removed leaves a gap
    /// (merged with a gap next to it). Returns the normal events removed,
    /// or, if the frame cannot fit, `Err` with the frames removed.
    #[cold]
    #[inline(never)]
    pub(super) fn shed(&mut self, fits: impl Fn(&Inner) -> bool) -> Result<usize, usize> {
        let (mut dropped, mut removed) = (0, 0usize);
        while !fits(self) {
            let i = self.slots().position(Slot::sheddable).ok_or(removed)?;
            let held = i >= self.main_len();
            let slot = self.remove(i).ok_or(removed)?;
            removed += 1;
            if slot.class == Class::Normal {
                dropped += 1;
                self.mark_gap(i, held);
            }
        }
        Ok(dropped)
    }

    /// Notes one more normal event removed at `i` (of the held frames if
    /// `held`): the gap before or after it grows, or a new one is put there.
    fn mark_gap(&mut self, i: usize, held: bool) {
        for at in [i.checked_sub(1), Some(i)].into_iter().flatten() {
            if let Some(slot) = self.get_mut(at) {
                if let Some(n) = slot.gap_count() {
                    *slot = Slot::gap(n.saturating_add(1));
                    return;
                }
            }
        }
        self.insert(i, Slot::gap(1), held);
    }
}
