//! The memory budget of event frames: every frame the delivery path
//! encodes is counted from its creation until its last copy (in the
//! history, in any connection's queue, in a writer) is dropped, once however
//! many connections share it. A send whose frame would take the total past
//! [`SseConfig::frame_memory_budget`](crate::SseConfig::frame_memory_budget)
//! is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

/// The bytes of event frames alive, against their budget.
#[derive(Debug)]
pub(crate) struct FrameBudget {
    used: AtomicUsize,
    max: usize,
}

/// A frame's bytes, counted against the budget until dropped.
struct Counted {
    frame: Bytes,
    budget: Arc<FrameBudget>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.frame.len(), Ordering::AcqRel);
    }
}

impl FrameBudget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(FrameBudget {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// `frame`, counted, if it fits in what is left of the budget.
    pub(crate) fn admit(self: &Arc<Self>, frame: Bytes) -> Option<Bytes> {
        let len = frame.len();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|total| *total <= self.max)
            })
            .ok()?;
        Some(self.wrap(frame))
    }

    /// `frame`, counted whatever the budget: for an event already published
    /// through the backplane, which this instance cannot refuse any more.
    pub(crate) fn count(self: &Arc<Self>, frame: Bytes) -> Bytes {
        self.used.fetch_add(frame.len(), Ordering::AcqRel);
        self.wrap(frame)
    }

    fn wrap(self: &Arc<Self>, frame: Bytes) -> Bytes {
        Bytes::from_owner(Counted {
            frame,
            budget: self.clone(),
        })
    }

    /// Whether a frame of `len` bytes would fit now.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.used.load(Ordering::Acquire).saturating_add(len) <= self.max
    }

    /// The bytes counted now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The budget.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_count_until_their_last_copy_goes() {
        let budget = FrameBudget::new(10);
        let first = budget.admit(Bytes::from_static(b"123456")).expect("fits");
        let copy = first.clone();
        assert_eq!(budget.used(), 6, "counted once");
        assert!(budget.admit(Bytes::from_static(b"12345")).is_none(), "11 > 10");
        assert!(!budget.fits(5) && budget.fits(4));
        drop(first);
        assert_eq!(budget.used(), 6, "a copy is alive");
        assert_eq!(&copy[..], b"123456");
        drop(copy);
        assert_eq!(budget.used(), 0);
        let forced = budget.count(Bytes::from(vec![0; 20]));
        assert_eq!(budget.used(), 20);
        drop(forced);
        assert_eq!(budget.used(), 0);
    }
}
