//! How an event behaves in a connection's queue when the client falls
//! behind: its [`Priority`] and its conflation key.
//!
//! Every connection has a bounded queue. Frames leave it in the order they
//! were queued, whatever their priority: a high-priority event never
//! overtakes a normal one queued before it. What the priority and the key
//! change is what may be removed from the queue of a client that lags:
//!
//! * a **keyed** event replaces the event with the same key still waiting
//!   in the queue (unless that one is high priority and the new one is
//!   not): the older one is removed and the newer one queued at the end, so
//!   the queue stays in publication order and a slow reader gets the latest
//!   value per key instead of every intermediate one. A resuming client is
//!   replayed only the latest event of each key, too. The newest event of a
//!   key is never removed for room: the client always gets the latest
//!   state, or is closed.
//! * a **high-priority** event that finds the queue full makes room by
//!   removing queued heartbeats and unkeyed normal events, oldest first;
//!   if that is not enough the connection is closed as too slow, as for
//!   any event. A high-priority event is thus never dropped while the
//!   connection stays open. Each normal event removed is counted
//!   ([`Stats::events_dropped`](crate::Stats::events_dropped)), and the
//!   client is told where: a `dropped` event (no id, data
//!   `{"dropped":n}`) takes the place of the events removed there. Their
//!   ids are missing from the stream, and a client that later resumes
//!   from a newer id is not replayed them: like `reset`, a `dropped` event
//!   tells the client its state may be stale.
//! * an unkeyed **normal** event that finds the queue full closes the
//!   connection as too slow, as before: the client reconnects with
//!   `Last-Event-ID` and is replayed what it missed from the history.
//!   Normal events are never dropped to make room for other normal ones.

use std::sync::Arc;

use super::{Event, EventBuilder};
use crate::error::EventError;

/// The longest conflation key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// How an event fares in the queue of a client that falls behind; see
/// [`EventBuilder::priority`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Priority {
    /// The default: under backpressure, may be removed from a full queue
    /// to make room for a high-priority event (counted, and the client is
    /// told).
    #[default]
    Normal,
    /// Never removed from a queue while its connection is open: if no room
    /// can be made for it, the connection is closed as too slow.
    High,
}

impl Priority {
    /// The priority's name in the HTTP API and on the backplane: `normal`
    /// or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// The priority named `name` (`normal` or `high`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            _ => None,
        }
    }
}

impl Event {
    /// The event's priority (by default [`Priority::Normal`]).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The event's conflation key, if it has one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The key shared by every queue the event is pushed to.
    pub(crate) fn shared_key(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }

    /// Returns this event with priority `priority`.
    ///
    /// ```
    /// use sse_core::{Event, Priority};
    ///
    /// let alert = Event::named("alert", "disk full")?.with_priority(Priority::High);
    /// assert_eq!(alert.priority(), Priority::High);
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    #[must_use]
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Returns this event with conflation key `key`; see
    /// [`EventBuilder::key`].
    ///
    /// # Errors
    /// [`EventError::InvalidKey`] as for [`EventBuilder::key`].
    pub fn with_key(mut self, key: impl Into<String>) -> Result<Self, EventError> {
        let key = key.into();
        validate_key(&key)?;
        self.key = Some(Arc::from(key));
        Ok(self)
    }
}

impl EventBuilder {
    /// Sets the event's priority (by default [`Priority::Normal`]): a
    /// high-priority event is never dropped from the queue of a client that
    /// lags, and makes room for itself by dropping queued normal events.
    /// See [the module documentation](crate::event::flow).
    ///
    /// ```
    /// use sse_core::{Event, Priority};
    ///
    /// let event = Event::builder().event("alert").data("disk full").priority(Priority::High).build()?;
    /// assert_eq!(event.priority(), Priority::High);
    /// // The priority changes nothing on the wire.
    /// assert_eq!(event.encode(), "event: alert\ndata: disk full\n\n");
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn priority(mut self, priority: Priority) -> Self {
        self.event.priority = priority;
        self
    }

    /// Sets the event's conflation key: while this event waits in the queue
    /// of a client that lags, a newer event with the same key replaces it,
    /// and a resuming client is replayed only the latest event of each key.
    /// For state where only the latest value matters: a price, a progress,
    /// a position. It is not written to the wire.
    ///
    /// The key may not be empty, longer than [`MAX_KEY_LEN`] bytes, or hold
    /// control characters (checked by [`EventBuilder::build`]).
    ///
    /// ```
    /// use sse_core::Event;
    ///
    /// let price = Event::builder().event("price").data("64000").key("price:BTC").build()?;
    /// assert_eq!(price.key(), Some("price:BTC"));
    /// assert_eq!(price.encode(), "event: price\ndata: 64000\n\n");
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.event.key = Some(Arc::from(key.into()));
        self
    }
}

/// Checks a conflation key: not empty, at most [`MAX_KEY_LEN`] bytes, no
/// control characters.
pub(crate) fn validate_key(key: &str) -> Result<(), EventError> {
    let reason = if key.is_empty() {
        "is empty"
    } else if key.len() > MAX_KEY_LEN {
        "is longer than 256 bytes"
    } else if key.chars().any(char::is_control) {
        "holds control characters"
    } else {
        return Ok(());
    };
    Err(EventError::InvalidKey { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(Event::builder().data("x").key("price:BTC").build().is_ok());
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for key in ["", "a\nb", "a\u{7f}", long.as_str()] {
            assert!(
                matches!(
                    Event::builder().data("x").key(key).build(),
                    Err(EventError::InvalidKey { .. })
                ),
                "{key:?}"
            );
            assert!(Event::message("x").with_key(key).is_err());
        }
        assert!(Event::message("x").with_key("k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn priorities_by_name() {
        assert_eq!(Priority::default(), Priority::Normal);
        for priority in [Priority::Normal, Priority::High] {
            assert_eq!(Priority::from_name(priority.as_str()), Some(priority));
        }
        assert_eq!(Priority::from_name("urgent"), None);
    }
}
