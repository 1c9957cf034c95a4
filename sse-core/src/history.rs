//! The bounded history of published events, for `Last-Event-ID` replay.
//!
//! Every dispatching event gets a sequence number, in publication order. The
//! ids the manager generates are those numbers in decimal; they start at the
//! manager's creation time in microseconds since the Unix epoch, so that ids
//! of a previous process (a restarted server) are never mistaken for ids of
//! this one: they fall below the history's start and get a `reset`.
//!
//! The history is bounded by count, by age and by bytes: the frames kept,
//! with their ids, never take more than its byte budget, so a flood of
//! large events cannot grow it past that.
//!
//! Only events that can be replayed are kept: an event sent to one client
//! cannot (a reconnecting client is a new connection), so it takes no place
//! in the history and never pushes a replayable event out. It still gets a
//! sequence number, and its id stays a valid resume point: a generated id by
//! its number, a named one (the publisher's, or a backplane log's) through
//! a bounded list of *marks*.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::event::{MAX_ID_LEN, Priority};
use crate::queue::Tag;
use crate::target::Audience;

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    custom_id: Option<String>,
    pub(crate) audience: Audience,
    pub(crate) frame: Bytes,
    /// The event's priority and conflation key: a keyed entry is replayed
    /// only if no later one of its key supersedes it.
    priority: Priority,
    key: Option<Arc<str>>,
    at: Instant,
}

/// What an entry costs besides its frame and id: its place in the queue,
/// its audience and its index entry, roughly.
const ENTRY_OVERHEAD: usize = 128;

impl Entry {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + self.frame.len()
            + self.custom_id.as_ref().map_or(0, |id| 2 * id.len())
            + self.key.as_ref().map_or(0, |key| key.len())
    }
}

#[derive(Debug)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
    /// The most bytes the entries may cost, and what they cost now.
    max_bytes: usize,
    bytes: usize,
    max_age: Option<Duration>,
    next_seq: u64,
    /// Every sequence number at or below this one is no longer retained (or
    /// was never issued); an id equal to it is still a valid resume point.
    evicted_upto: u64,
    /// Ids chosen by publishers (or a backplane's log), to their sequence
    /// numbers: of retained entries and of marks.
    custom: HashMap<String, u64>,
    /// The named ids of events issued but not kept (sent to one client),
    /// oldest first: each is a resume point while no kept event after it
    /// has been evicted. At most `capacity` of them.
    marks: VecDeque<(u64, String)>,
    /// The backplane log's id of the last entry recorded.
    last_log_id: Option<String>,
}

/// Where a resuming client starts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Replay every retained entry with a greater sequence number.
    After(u64),
    /// The id is not held: the client must refetch its state.
    Unknown,
}

impl History {
    pub(crate) fn new(capacity: usize, max_age: Option<Duration>, max_bytes: usize) -> Self {
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .max(1);
        History {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            max_bytes,
            bytes: 0,
            max_age,
            next_seq: base,
            evicted_upto: base - 1,
            custom: HashMap::new(),
            marks: VecDeque::new(),
            last_log_id: None,
        }
    }

    pub(crate) fn set_last_log_id(&mut self, id: &str) {
        self.last_log_id = Some(id.to_owned());
    }

    pub(crate) fn last_log_id(&self) -> Option<&str> {
        self.last_log_id.as_deref()
    }

    /// Forgets every retained event: every id issued so far becomes unknown.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.custom.clear();
        self.marks.clear();
        self.evicted_upto = self.next_seq - 1;
        self.last_log_id = None;
    }

    /// The sequence number [`History::next_seq`] will assign.
    pub(crate) fn peek_seq(&self) -> u64 {
        self.next_seq
    }

    /// Assigns the next sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The sequence number of the entry at `order` of a log whose entries
    /// are ordered ([`BackplaneSink::deliver_ordered`](crate::BackplaneSink::deliver_ordered)):
    /// `order` itself, so that entries of the log recorded later at their
    /// place ([`History::insert`]) fall between the right ones, or the next
    /// number when `order` is not above every number given.
    pub(crate) fn seq_at(&mut self, order: u64) -> u64 {
        let seq = order.max(self.next_seq);
        self.next_seq = seq.saturating_add(1);
        seq
    }

    /// Keeps the entry `id` of an ordered log at its place `order` among
    /// the entries kept, though newer ones are kept already: an entry of a
    /// shard this instance starts reading. Returns whether it was kept: not
    /// when it is held already, or older than what the history retains.
    pub(crate) fn insert(
        &mut self,
        order: u64,
        id: String,
        audience: Audience,
        (frame, tag): (Bytes, Tag),
        now: Instant,
    ) -> bool {
        if order >= self.next_seq {
            let seq = self.seq_at(order);
            self.push(seq, Some(id), audience, (frame, tag), now);
            return true;
        }
        if self.capacity == 0 || order <= self.evicted_upto || self.custom.contains_key(&id) {
            return false;
        }
        let place = self.entries.partition_point(|e| e.seq < order);
        if self.entries.get(place).is_some_and(|e| e.seq == order) {
            return false;
        }
        self.keep(place, order, Some(id), audience, (frame, tag), now);
        true
    }

    /// Keeps the entry `seq` at `place` among the entries, then evicts the
    /// oldest ones while the history is over its count or its bytes (an
    /// event larger than the whole budget goes at once, and with it every
    /// event before it).
    fn keep(
        &mut self,
        place: usize,
        seq: u64,
        custom_id: Option<String>,
        audience: Audience,
        (frame, tag): (Bytes, Tag),
        now: Instant,
    ) {
        if let Some(id) = &custom_id {
            self.custom.insert(id.clone(), seq);
        }
        let entry = Entry {
            seq,
            custom_id,
            audience,
            frame,
            priority: tag.priority,
            key: tag.key,
            at: now,
        };
        self.bytes += entry.cost();
        self.entries.insert(place, entry);
        while self.entries.len() > self.capacity || self.bytes > self.max_bytes {
            self.pop_front();
        }
    }

    /// The id of the newest event issued: a resume point that replays
    /// nothing.
    pub(crate) fn head_id(&self) -> String {
        match self.entries.back() {
            Some(Entry {
                custom_id: Some(id), ..
            }) => id.clone(),
            _ => (self.next_seq - 1).to_string(),
        }
    }

    pub(crate) fn push(
        &mut self,
        seq: u64,
        custom_id: Option<String>,
        audience: Audience,
        (frame, tag): (Bytes, Tag),
        now: Instant,
    ) {
        if self.capacity == 0 {
            self.evicted_upto = seq;
            self.prune_marks();
            return;
        }
        self.keep(self.entries.len(), seq, custom_id, audience, (frame, tag), now);
        self.expire(now);
    }

    /// Makes `id`, the named id of the event `seq` that is not kept, a
    /// resume point: resuming from it replays every kept event after `seq`.
    /// The oldest mark goes when there are more than `capacity`; a
    /// generated id needs no mark, its number is its place.
    pub(crate) fn mark(&mut self, seq: u64, id: String) {
        if self.capacity == 0 {
            return;
        }
        self.custom.insert(id.clone(), seq);
        self.marks.push_back((seq, id));
        while self.marks.len() > self.capacity {
            self.pop_mark();
        }
    }

    fn pop_mark(&mut self) {
        if let Some((seq, id)) = self.marks.pop_front() {
            if self.custom.get(&id) == Some(&seq) {
                self.custom.remove(&id);
            }
        }
    }

    /// Drops the marks that stopped being resume points: a kept event
    /// after them was evicted.
    fn prune_marks(&mut self) {
        while self.marks.front().is_some_and(|(seq, _)| *seq < self.evicted_upto) {
            self.pop_mark();
        }
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.bytes -= entry.cost();
            self.evicted_upto = entry.seq;
            if let Some(id) = entry.custom_id {
                if self.custom.get(&id) == Some(&entry.seq) {
                    self.custom.remove(&id);
                }
            }
            self.prune_marks();
        }
    }

    fn expire(&mut self, now: Instant) {
        if let Some(max_age) = self.max_age {
            while self
                .entries
                .front()
                .is_some_and(|e| now.saturating_duration_since(e.at) > max_age)
            {
                self.pop_front();
            }
        }
    }

    /// Where a client that last saw `last_id` resumes.
    pub(crate) fn resume(&mut self, last_id: &str, now: Instant) -> Resume {
        self.expire(now);
        if last_id.len() > MAX_ID_LEN {
            return Resume::Unknown;
        }
        if let Some(&seq) = self.custom.get(last_id) {
            return Resume::After(seq);
        }
        // A generated id, of a kept event or not: resumable while nothing
        // kept after it has been evicted.
        let canonical = !last_id.starts_with('0') || last_id == "0";
        match last_id.parse::<u64>() {
            Ok(seq) if canonical && seq >= self.evicted_upto && seq < self.next_seq => Resume::After(seq),
            _ => Resume::Unknown,
        }
    }

    /// Retained entries after `seq`, oldest first.
    pub(crate) fn after(&self, seq: u64) -> impl Iterator<Item = &Entry> {
        let start = self.entries.partition_point(|e| e.seq <= seq);
        self.entries.range(start..)
    }

    /// The entries a client resuming after `seq` is replayed, oldest
    /// first: those after it that `reaches` it, less the keyed ones that a
    /// later one of their key supersedes, as in a lagging connection's
    /// queue (a later entry of the same key supersedes one of the same or
    /// lower priority). So the client gets the latest event of every key.
    pub(crate) fn replay(&self, seq: u64, reaches: impl Fn(&Entry) -> bool) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self.after(seq).filter(|e| reaches(e)).collect();
        if entries.iter().any(|e| e.key.is_some()) {
            // Walking back from the newest: the highest priority seen later
            // for each key.
            let mut later: HashMap<&str, Priority> = HashMap::new();
            let mut keep = vec![true; entries.len()];
            for (i, entry) in entries.iter().enumerate().rev() {
                let Some(key) = entry.key.as_deref() else {
                    continue;
                };
                match later.get_mut(key) {
                    Some(seen) => {
                        keep[i] = *seen < entry.priority;
                        *seen = (*seen).max(entry.priority);
                    }
                    None => {
                        later.insert(key, entry.priority);
                    }
                }
            }
            let mut keep = keep.into_iter();
            entries.retain(|_| keep.next().unwrap_or(true));
        }
        entries
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// What the retained entries cost, in bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    fn history(capacity: usize) -> History {
        History::new(capacity, None, usize::MAX)
    }

    fn publish(h: &mut History, custom: Option<&str>) -> u64 {
        let seq = h.next_seq();
        h.push(
            seq,
            custom.map(str::to_owned),
            Target::All.into(),
            (Bytes::new(), Tag::NORMAL),
            Instant::now(),
        );
        seq
    }

    /// Records the log entry `id` at `order`, as a backplane delivers it.
    fn at(h: &mut History, order: u64, id: &str) {
        let seq = h.seq_at(order);
        h.push(
            seq,
            Some(id.to_owned()),
            Target::All.into(),
            (Bytes::new(), Tag::NORMAL),
            Instant::now(),
        );
    }

    /// Keeps the log entry `id` at its place `order`, as a shard's past is
    /// loaded; whether it was kept.
    fn insert_at(h: &mut History, order: u64, id: &str) -> bool {
        h.insert(
            order,
            id.into(),
            Target::All.into(),
            (Bytes::new(), Tag::NORMAL),
            Instant::now(),
        )
    }

    fn ids_after(h: &mut History, id: &str) -> Vec<String> {
        let Resume::After(seq) = h.resume(id, Instant::now()) else {
            panic!("{id} is not a resume point");
        };
        h.after(seq).filter_map(|e| e.custom_id.clone()).collect()
    }

    #[test]
    fn older_entries_of_an_ordered_log_go_to_their_place() {
        // Orders as the Redis backplane gives them: above the history's
        // own sequence numbers.
        const O: u64 = 1_700_000_000_000_000_000;
        let mut h = history(5);
        at(&mut h, O + 1_000, "a");
        at(&mut h, O + 3_000, "c");
        at(&mut h, O + 5_000, "e");
        assert!(insert_at(&mut h, O + 2_000, "b"));
        assert!(insert_at(&mut h, O + 4_000, "d"));
        assert!(!insert_at(&mut h, O + 4_000, "d"), "held already");
        assert_eq!(ids_after(&mut h, "a"), ["b", "c", "d", "e"]);
        assert_eq!(ids_after(&mut h, "b"), ["c", "d", "e"]);
        // Full: the oldest goes, and nothing older than it comes back.
        at(&mut h, O + 6_000, "f");
        assert_eq!(h.resume("a", Instant::now()), Resume::Unknown);
        assert!(!insert_at(&mut h, O + 500, "z"));
        assert_eq!(ids_after(&mut h, "b"), ["c", "d", "e", "f"]);
        // An entry newer than all is recorded at the end.
        assert!(insert_at(&mut h, O + 7_000, "g"));
        at(&mut h, O + 8_000, "h");
        assert_eq!(ids_after(&mut h, "f"), ["g", "h"]);
    }

    #[test]
    fn resumes_after_retained_and_head_ids() {
        let mut h = history(3);
        let head = h.head_id();
        assert_eq!(
            h.resume(&head, Instant::now()),
            Resume::After(head.parse().unwrap_or(0))
        );
        let first = publish(&mut h, None);
        let second = publish(&mut h, Some("custom"));
        assert_eq!(h.resume(&first.to_string(), Instant::now()), Resume::After(first));
        assert_eq!(h.resume("custom", Instant::now()), Resume::After(second));
        assert_eq!(h.after(first).map(|e| e.seq).collect::<Vec<_>>(), vec![second]);
    }

    #[test]
    fn unknown_ids() {
        let mut h = history(2);
        let first = publish(&mut h, Some("c1"));
        publish(&mut h, None);
        publish(&mut h, None);
        // `first` was evicted, but is still the resume point of the oldest
        // retained event: nothing is missing after it.
        assert_eq!(h.resume(&first.to_string(), Instant::now()), Resume::After(first));
        assert_eq!(h.resume(&(first - 1).to_string(), Instant::now()), Resume::Unknown);
        assert_eq!(h.resume("c1", Instant::now()), Resume::Unknown);
        assert_eq!(h.resume(&(first + 10).to_string(), Instant::now()), Resume::Unknown);
        assert_eq!(h.resume("garbage", Instant::now()), Resume::Unknown);
        assert_eq!(h.resume(&format!("0{first}"), Instant::now()), Resume::Unknown);
        assert_eq!(h.resume(&"9".repeat(300), Instant::now()), Resume::Unknown);
        assert_eq!(h.resume("", Instant::now()), Resume::Unknown);
    }

    fn push_frame(h: &mut History, len: usize) -> u64 {
        let seq = h.next_seq();
        h.push(
            seq,
            None,
            Target::All.into(),
            (Bytes::from(vec![b'x'; len]), Tag::NORMAL),
            Instant::now(),
        );
        seq
    }

    #[test]
    fn bounded_by_bytes() {
        // Room for three entries of 1,000-byte frames, not four.
        let mut h = History::new(100, None, 4 * (1000 + ENTRY_OVERHEAD) - 1);
        let seqs: Vec<u64> = (0..4).map(|_| push_frame(&mut h, 1000)).collect();
        assert_eq!(h.len(), 3);
        assert_eq!(h.bytes(), 3 * (1000 + ENTRY_OVERHEAD));
        assert_eq!(h.resume(&(seqs[0] - 1).to_string(), Instant::now()), Resume::Unknown);
        assert_eq!(h.resume(&seqs[0].to_string(), Instant::now()), Resume::After(seqs[0]));

        // A frame larger than the whole budget takes everything with it,
        // itself included; its id stays a resume point that replays nothing.
        let huge = push_frame(&mut h, 10_000);
        assert_eq!((h.len(), h.bytes()), (0, 0));
        assert_eq!(h.resume(&huge.to_string(), Instant::now()), Resume::After(huge));
        assert_eq!(h.resume(&seqs[3].to_string(), Instant::now()), Resume::Unknown);
        let next = push_frame(&mut h, 10);
        assert_eq!(h.after(huge).map(|e| e.seq).collect::<Vec<_>>(), [next]);
    }

    #[test]
    fn expires_by_age() {
        let mut h = History::new(10, Some(Duration::from_millis(10)), usize::MAX);
        let start = Instant::now();
        let seq = h.next_seq();
        h.push(seq, None, Target::All.into(), (Bytes::new(), Tag::NORMAL), start);
        assert_eq!(h.len(), 1);
        assert_eq!(
            h.resume(&(seq - 1).to_string(), start + Duration::from_millis(50)),
            Resume::Unknown
        );
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn events_not_kept_are_resume_points_without_taking_a_place() {
        let mut h = history(2);
        let kept = publish(&mut h, None);
        // Many events for one client each: marked, never kept.
        let mut marked = Vec::new();
        for n in 0..5 {
            let seq = h.next_seq();
            h.mark(seq, format!("m{n}"));
            marked.push(seq);
        }
        let generated = h.next_seq();
        assert_eq!(h.len(), 1, "only the kept event takes a place");
        assert_eq!(h.resume(&kept.to_string(), Instant::now()), Resume::After(kept));
        // The two newest marks are resume points; older ones fell out.
        assert_eq!(h.resume("m4", Instant::now()), Resume::After(marked[4]));
        assert_eq!(h.resume("m3", Instant::now()), Resume::After(marked[3]));
        assert_eq!(h.resume("m2", Instant::now()), Resume::Unknown);
        assert_eq!(
            h.resume(&generated.to_string(), Instant::now()),
            Resume::After(generated)
        );
        let after = publish(&mut h, None);
        assert_eq!(h.after(marked[4]).map(|e| e.seq).collect::<Vec<_>>(), vec![after]);
        // Once a kept event after a mark is evicted, the mark is unknown.
        publish(&mut h, None);
        publish(&mut h, None);
        assert_eq!(h.resume("m4", Instant::now()), Resume::Unknown);
        assert_eq!(h.resume(&generated.to_string(), Instant::now()), Resume::Unknown);
    }

    #[test]
    fn zero_capacity_keeps_nothing_but_the_head() {
        let mut h = history(0);
        let seq = publish(&mut h, None);
        assert_eq!(h.len(), 0);
        assert_eq!(h.resume(&seq.to_string(), Instant::now()), Resume::After(seq));
        assert_eq!(h.resume(&(seq - 1).to_string(), Instant::now()), Resume::Unknown);
    }

    #[test]
    fn replay_gives_the_latest_event_of_each_key() {
        let mut h = history(16);
        let start = h.peek_seq() - 1;
        let mut publish = |data: &str, priority: Priority, key: Option<&str>| {
            let seq = h.next_seq();
            let tag = Tag {
                priority,
                key: key.map(Arc::from),
            };
            h.push(
                seq,
                None,
                Target::All.into(),
                (Bytes::from(data.to_owned()), tag),
                Instant::now(),
            );
        };
        publish("a1", Priority::Normal, Some("a"));
        publish("x", Priority::Normal, None);
        publish("b1", Priority::High, Some("b"));
        publish("a2", Priority::Normal, Some("a"));
        publish("b2", Priority::Normal, Some("b"));
        publish("y", Priority::Normal, None);
        publish("a3", Priority::High, Some("a"));
        let replayed = |h: &History| -> Vec<String> {
            h.replay(start, |_| true)
                .iter()
                .map(|e| String::from_utf8_lossy(&e.frame).into_owned())
                .collect()
        };
        // A normal event of a key does not supersede a high-priority one.
        assert_eq!(replayed(&h), ["x", "b1", "b2", "y", "a3"]);
    }
}
