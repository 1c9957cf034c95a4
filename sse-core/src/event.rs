//! Server-sent events and their exact wire encoding.
//!
//! The encoding follows the WHATWG HTML specification, section
//! "Server-sent events", to the letter:
//!
//! * data holding LF, CR or CRLF is written as several `data:` lines, so a
//!   conforming client reassembles exactly the original text (its line breaks
//!   arrive as LF, as the specification dictates);
//! * empty lines, leading spaces, a trailing line break and the empty string
//!   all survive the round trip;
//! * an event name or id that could break out of its field (CR or LF, and NUL
//!   for ids) is refused when the event is built, never written to the wire.
//!
//! An [`Event`] is encoded once into [`Bytes`]; every recipient shares those
//! bytes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::error::EventError;

pub mod flow;
mod payloads;

pub use self::flow::{MAX_KEY_LEN, Priority};
pub use self::payloads::NotificationKind;
pub(crate) use self::payloads::timestamp;

/// The longest event id accepted, in bytes.
///
/// A client echoes the id back in `Last-Event-ID`; longer ids could never be
/// resumed from, since the manager treats a longer `Last-Event-ID` as unknown.
pub const MAX_ID_LEN: usize = 256;

/// One server-sent event: id, event name, data, retry hint and comment.
///
/// Built with [`Event::builder`] (or the shortcuts [`Event::message`],
/// [`Event::named`] and [`Event::json`]); every field is validated when the
/// event is built, so an `Event` value can always be written to the wire
/// safely.
///
/// Beside its fields, an event may carry a [`Priority`] and a conflation
/// key, which are not written to the wire: they decide what the queue of a
/// client that lags may drop or replace (see [`flow`]).
///
/// ```
/// use sse_core::Event;
///
/// let event = Event::builder()
///     .event("notification")
///     .id("42")
///     .data("line one\nline two")
///     .build()?;
/// assert_eq!(
///     event.encode(),
///     "id: 42\nevent: notification\ndata: line one\ndata: line two\n\n"
/// );
/// # Ok::<(), sse_core::EventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<Duration>,
    comment: Option<String>,
    live_only: bool,
    priority: Priority,
    key: Option<Arc<str>>,
}

impl Event {
    /// Starts building an event.
    pub fn builder() -> EventBuilder {
        EventBuilder::default()
    }

    /// An unnamed event (delivered to `onmessage`) carrying `data` as text.
    ///
    /// Never fails: any text is valid data.
    pub fn message(data: impl Into<String>) -> Self {
        Event {
            data: Some(data.into()),
            ..Event::empty()
        }
    }

    const fn empty() -> Self {
        Event {
            id: None,
            event: None,
            data: None,
            retry: None,
            comment: None,
            live_only: false,
            priority: Priority::Normal,
            key: None,
        }
    }

    /// Whether no field is set (whatever its live-only flag, priority and
    /// key).
    fn is_empty(&self) -> bool {
        self.id.is_none()
            && self.event.is_none()
            && self.data.is_none()
            && self.retry.is_none()
            && self.comment.is_none()
    }

    /// An event named `event` carrying `data` as text.
    ///
    /// # Errors
    /// [`EventError::InvalidEventName`] if the name holds CR or LF.
    pub fn named(event: impl Into<String>, data: impl Into<String>) -> Result<Self, EventError> {
        Event::builder().event(event).data(data).build()
    }

    /// An event named `event` whose data is `value` serialized as JSON.
    ///
    /// # Errors
    /// [`EventError::InvalidEventName`] if the name holds CR or LF, or
    /// [`EventError::Json`] if `value` cannot be serialized.
    pub fn json<T: Serialize + ?Sized>(event: impl Into<String>, value: &T) -> Result<Self, EventError> {
        Event::builder().event(event).json(value).build()
    }

    /// The event id, if one was set.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The event name, if one was set (`None` means `message`).
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The data, if any.
    pub fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// The reconnection time hint, if one was set.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The comment, if one was set.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Whether a client dispatches this event to a listener: it has data, a
    /// name or an id. An event holding only a comment or a retry hint does
    /// not dispatch, carries no id and is not kept for replay.
    pub fn dispatches(&self) -> bool {
        self.data.is_some() || self.event.is_some() || self.id.is_some()
    }

    /// Whether the event is live-only: delivered to the connections it
    /// reaches now, never kept for replay (see [`Event::live_only`]).
    pub fn is_live_only(&self) -> bool {
        self.live_only
    }

    /// Whether the manager gives this event an id (and, unless it is for one
    /// client, keeps it for replay): it dispatches and is not live-only.
    pub(crate) fn carries_id(&self) -> bool {
        self.dispatches() && !self.live_only
    }

    /// Returns this event marked live-only: the manager delivers it to the
    /// connections its target reaches now (on every instance, with a
    /// backplane), but never keeps it for replay, so a client resuming with
    /// `Last-Event-ID` is never sent it. For presence, typing indicators,
    /// progress and other state that is stale by the time a client comes
    /// back.
    ///
    /// A live-only event has no id, and any id it had is removed: it is
    /// written without an `id:` field, so a client's last event id stays at
    /// the last event it can be replayed from, and a resume never points at
    /// an event the history does not hold (which would mean a `reset`).
    /// Its [`Delivery::id`](crate::Delivery::id) is `None`.
    ///
    /// ```
    /// use sse_core::Event;
    ///
    /// let typing = Event::named("typing", "alice")?.live_only();
    /// assert!(typing.is_live_only());
    /// assert_eq!(typing.encode(), "event: typing\ndata: alice\n\n");
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    #[must_use]
    pub fn live_only(mut self) -> Self {
        self.live_only = true;
        self.id = None;
        self
    }

    /// Returns this event with its id replaced.
    ///
    /// # Errors
    /// [`EventError::InvalidId`] or [`EventError::IdTooLong`] as for
    /// [`EventBuilder::id`]; [`EventError::LiveOnlyWithId`] for a
    /// [live-only](Event::live_only) event.
    pub fn with_id(mut self, id: impl Into<String>) -> Result<Self, EventError> {
        if self.live_only {
            return Err(EventError::LiveOnlyWithId);
        }
        let id = id.into();
        validate_id(&id)?;
        self.id = Some(id);
        Ok(self)
    }

    /// Encodes the event into its wire form, ending with the blank line that
    /// dispatches it.
    ///
    /// Fields are written in the order comment, retry, id, event, data. An
    /// event that has a name or an id but no data is written with one empty
    /// `data:` line, so that it still dispatches.
    pub fn encode(&self) -> Bytes {
        self.encode_with_id(self.id.as_deref())
    }

    /// Encodes the event as [`Event::encode`] does, with `id` in place of the
    /// event's own id. The caller guarantees `id` is valid (the manager only
    /// passes ids it generated).
    pub(crate) fn encode_with_id(&self, id: Option<&str>) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len_hint(id));
        if let Some(comment) = &self.comment {
            write_comment(&mut buf, comment);
        }
        if let Some(retry) = self.retry {
            write_retry(&mut buf, retry);
        }
        if let Some(id) = id {
            buf.put_slice(b"id: ");
            buf.put_slice(id.as_bytes());
            buf.put_u8(b'\n');
        }
        if let Some(event) = &self.event {
            buf.put_slice(b"event: ");
            buf.put_slice(event.as_bytes());
            buf.put_u8(b'\n');
        }
        match &self.data {
            Some(data) => write_data(&mut buf, data),
            None if self.event.is_some() || id.is_some() => buf.put_slice(b"data:\n"),
            None => {}
        }
        buf.put_u8(b'\n');
        buf.freeze()
    }

    fn encoded_len_hint(&self, id: Option<&str>) -> usize {
        // Each line of data costs its `data: ` prefix and its line feed.
        let data = self.data.as_ref().map_or(8, |d| {
            d.len() + 7 * (1 + memchr::memchr2_iter(b'\r', b'\n', d.as_bytes()).count())
        });
        let id = id.map_or(0, |i| i.len() + 5);
        let event = self.event.as_ref().map_or(0, |e| e.len() + 8);
        let comment = self.comment.as_ref().map_or(0, |c| c.len() + 4);
        data + id + event + comment + 24
    }
}

/// Builds an [`Event`], validating every field in [`EventBuilder::build`].
#[derive(Debug)]
#[must_use = "an EventBuilder does nothing until `build` is called"]
pub struct EventBuilder {
    event: Event,
    json_error: Option<serde_json::Error>,
}

impl Default for EventBuilder {
    fn default() -> Self {
        EventBuilder {
            event: Event::empty(),
            json_error: None,
        }
    }
}

impl EventBuilder {
    /// Sets the event id. It may not hold CR, LF or NUL, nor be longer than
    /// [`MAX_ID_LEN`] bytes (checked by [`EventBuilder::build`]).
    ///
    /// Events published through the manager without an id get one assigned.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = Some(id.into());
        self
    }

    /// Sets the event name (the `event:` field); clients listen for it with
    /// `addEventListener(name, ...)`. It may not hold CR or LF.
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event.event = Some(event.into());
        self
    }

    /// Sets the data to `data`, as text. Any text is valid: line breaks are
    /// encoded as several `data:` lines.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.event.data = Some(data.into());
        self.json_error = None;
        self
    }

    /// Sets the data to `value` serialized as compact JSON. A serialization
    /// failure is reported by [`EventBuilder::build`].
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_string(value) {
            Ok(text) => {
                self.event.data = Some(text);
                self.json_error = None;
            }
            Err(error) => self.json_error = Some(error),
        }
        self
    }

    /// Sets the reconnection time hint (the `retry:` field), in whole
    /// milliseconds.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.event.retry = Some(retry);
        self
    }

    /// Sets a comment. Clients ignore comments; several lines become several
    /// comment lines.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.event.comment = Some(comment.into());
        self
    }

    /// Makes the event [live-only](Event::live_only): delivered to the
    /// connections its target reaches now, never kept for replay, and
    /// written without an id. Combined with [`EventBuilder::id`], `build`
    /// fails with [`EventError::LiveOnlyWithId`].
    pub fn live_only(mut self) -> Self {
        self.event.live_only = true;
        self
    }

    /// Validates the fields and returns the event.
    ///
    /// # Errors
    /// * [`EventError::InvalidId`]: the id holds CR, LF or NUL;
    /// * [`EventError::IdTooLong`]: the id is longer than [`MAX_ID_LEN`];
    /// * [`EventError::InvalidEventName`]: the name holds CR or LF;
    /// * [`EventError::Json`]: [`EventBuilder::json`] could not serialize;
    /// * [`EventError::Empty`]: no field was set (the frame would be a lone
    ///   blank line, which clients ignore);
    /// * [`EventError::LiveOnlyWithId`]: the event is
    ///   [live-only](EventBuilder::live_only) and has an id;
    /// * [`EventError::InvalidKey`]: the [conflation key](EventBuilder::key)
    ///   is empty, too long or holds control characters.
    pub fn build(self) -> Result<Event, EventError> {
        if let Some(error) = self.json_error {
            return Err(EventError::Json(error));
        }
        if self.event.is_empty() {
            return Err(EventError::Empty);
        }
        if self.event.live_only && self.event.id.is_some() {
            return Err(EventError::LiveOnlyWithId);
        }
        if let Some(id) = &self.event.id {
            validate_id(id)?;
        }
        if let Some(key) = &self.event.key {
            flow::validate_key(key)?;
        }
        if let Some(name) = &self.event.event {
            if name.contains(['\r', '\n']) {
                return Err(EventError::InvalidEventName);
            }
        }
        Ok(self.event)
    }
}

pub(crate) fn validate_id(id: &str) -> Result<(), EventError> {
    if id.contains(['\r', '\n', '\0']) {
        return Err(EventError::InvalidId);
    }
    if id.len() > MAX_ID_LEN {
        return Err(EventError::IdTooLong { len: id.len() });
    }
    Ok(())
}

/// Splits `text` at every line break the specification knows: CRLF, lone CR
/// and lone LF. `"a\r\nb\rc\nd"` gives `a`, `b`, `c`, `d`; a trailing break
/// gives a final empty line, and the empty string gives one empty line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        // CR and LF are ASCII, so their positions are character boundaries.
        match memchr::memchr2(b'\r', b'\n', current.as_bytes()) {
            Some(pos) => {
                let skip = if current.as_bytes()[pos..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[pos + skip..]);
                Some(&current[..pos])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn write_data(buf: &mut BytesMut, data: &str) {
    for line in lines(data) {
        write_field(buf, b"data", line);
    }
}

fn write_comment(buf: &mut BytesMut, comment: &str) {
    for line in lines(comment) {
        write_field(buf, b"", line);
    }
}

fn write_field(buf: &mut BytesMut, name: &[u8], value: &str) {
    buf.put_slice(name);
    buf.put_u8(b':');
    if !value.is_empty() {
        buf.put_u8(b' ');
        buf.put_slice(value.as_bytes());
    }
    buf.put_u8(b'\n');
}

fn write_retry(buf: &mut BytesMut, retry: Duration) {
    let mut text = String::with_capacity(16);
    // Writing into a String cannot fail.
    let _ = writeln!(text, "retry: {}", retry.as_millis());
    buf.put_slice(text.as_bytes());
}

/// A frame holding only a `retry:` hint. It dispatches nothing.
pub(crate) fn retry_frame(retry: Duration) -> Bytes {
    let mut buf = BytesMut::with_capacity(24);
    write_retry(&mut buf, retry);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// A comment frame, used for heartbeats.
pub(crate) fn comment_frame(comment: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(comment.len() + 4);
    write_comment(&mut buf, comment);
    buf.put_u8(b'\n');
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> Bytes {
        Event::message(text).encode()
    }

    #[test]
    fn splits_every_kind_of_line_break() {
        assert_eq!(data("a\r\nb\rc\nd"), "data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn keeps_empty_lines_leading_spaces_and_trailing_breaks() {
        assert_eq!(data(""), "data:\n\n");
        assert_eq!(data("\n"), "data:\ndata:\n\n");
        assert_eq!(data(" lead"), "data:  lead\n\n");
        assert_eq!(data("a\n\nb\n"), "data: a\ndata:\ndata: b\ndata:\n\n");
        assert_eq!(data("\r\n\r"), "data:\ndata:\ndata:\n\n");
    }

    #[test]
    fn writes_fields_in_a_fixed_order() {
        let event = Event::builder()
            .comment("note")
            .retry(Duration::from_millis(1500))
            .id("7")
            .event("tick")
            .data("x")
            .build()
            .expect("valid event");
        assert_eq!(event.encode(), ": note\nretry: 1500\nid: 7\nevent: tick\ndata: x\n\n");
    }

    #[test]
    fn a_named_event_without_data_still_dispatches() {
        let event = Event::builder().event("ping").build().expect("valid event");
        assert_eq!(event.encode(), "event: ping\ndata:\n\n");
        let comment = Event::builder().comment("a\nb").build().expect("valid event");
        assert!(!comment.dispatches());
        assert_eq!(comment.encode(), ": a\n: b\n\n");
    }

    #[test]
    fn refuses_fields_that_could_inject_another_event() {
        for id in ["a\nb", "a\rb", "a\0b"] {
            assert!(matches!(Event::builder().id(id).build(), Err(EventError::InvalidId)));
        }
        for name in ["a\nb", "a\r"] {
            assert!(matches!(
                Event::builder().event(name).build(),
                Err(EventError::InvalidEventName)
            ));
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(matches!(
            Event::builder().id(long).build(),
            Err(EventError::IdTooLong { len: 257 })
        ));
        assert!(Event::message("x").with_id("a\n").is_err());
    }

    #[test]
    fn an_event_needs_a_field() {
        assert!(matches!(Event::builder().build(), Err(EventError::Empty)));
        let retry_only = Event::builder()
            .retry(Duration::from_secs(1))
            .build()
            .expect("a retry hint");
        assert_eq!(retry_only.encode(), "retry: 1000\n\n");
    }

    #[test]
    fn json_data_and_helpers() {
        let event = Event::json("n", &serde_json::json!({"a": "x\ny"})).expect("valid event");
        assert_eq!(event.encode(), "event: n\ndata: {\"a\":\"x\\ny\"}\n\n");
        let note = Event::notification("T", "M", NotificationKind::Warning, Some(&1)).expect("valid event");
        let value: serde_json::Value = serde_json::from_str(note.data().unwrap_or_default()).expect("json");
        assert_eq!(value["type"], "warning");
        assert_eq!(value["data"], 1);
        assert!(value["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        let system = Event::system("maintenance", &"soon").expect("valid event");
        assert_eq!(system.event(), Some("system"));
    }

    #[test]
    fn frames() {
        assert_eq!(retry_frame(Duration::from_secs(3)), "retry: 3000\n\n");
        assert_eq!(comment_frame("hb"), ": hb\n\n");
    }
}
