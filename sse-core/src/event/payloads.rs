//! The ready-made payloads of [`Event::notification`], [`Event::update`]
//! and [`Event::system`], in the JSON shapes TypeScript SSE managers send,
//! each with an RFC 3339 timestamp.

use std::time::SystemTime;

use serde::Serialize;

use super::Event;
use crate::error::EventError;

/// The current time as an RFC 3339 string with millisecond precision, as
/// JavaScript's `Date.prototype.toISOString` writes it.
fn timestamp_now() -> String {
    timestamp(SystemTime::now())
}

pub(crate) fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The severity or kind of a [`Event::notification`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NotificationKind {
    /// Informational.
    Info,
    /// Something succeeded.
    Success,
    /// Something needs attention.
    Warning,
    /// Something failed.
    Error,
}

#[derive(Serialize)]
struct NotificationPayload<'a, T: ?Sized> {
    title: &'a str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: NotificationKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a T>,
    timestamp: String,
}

#[derive(Serialize)]
struct UpdatePayload<'a, T: ?Sized> {
    resource: &'a str,
    action: &'a str,
    data: &'a T,
    timestamp: String,
}

#[derive(Serialize)]
struct SystemPayload<'a, T: ?Sized> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
    timestamp: String,
}

impl Event {
    /// A `notification` event, as TypeScript SSE managers send them:
    /// `{"title", "message", "type", "data"?, "timestamp"}`.
    ///
    /// ```
    /// use sse_core::{Event, NotificationKind};
    ///
    /// let event = Event::notification("Saved", "Your draft was saved", NotificationKind::Success, None::<&()>)?;
    /// assert_eq!(event.event(), Some("notification"));
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    ///
    /// # Errors
    /// [`EventError::Json`] if `data` cannot be serialized.
    pub fn notification<T: Serialize + ?Sized>(
        title: &str,
        message: &str,
        kind: NotificationKind,
        data: Option<&T>,
    ) -> Result<Self, EventError> {
        let payload = NotificationPayload {
            title,
            message,
            kind,
            data,
            timestamp: timestamp_now(),
        };
        Event::json("notification", &payload)
    }

    /// An `update` event announcing that `action` happened to `resource`:
    /// `{"resource", "action", "data", "timestamp"}`.
    ///
    /// ```
    /// use sse_core::Event;
    ///
    /// let event = Event::update("order/17", "shipped", &serde_json::json!({"carrier": "DHL"}))?;
    /// assert_eq!(event.event(), Some("update"));
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    ///
    /// # Errors
    /// [`EventError::Json`] if `data` cannot be serialized.
    pub fn update<T: Serialize + ?Sized>(resource: &str, action: &str, data: &T) -> Result<Self, EventError> {
        let payload = UpdatePayload {
            resource,
            action,
            data,
            timestamp: timestamp_now(),
        };
        Event::json("update", &payload)
    }

    /// A `system` event of the given kind (maintenance, shutdown, ...):
    /// `{"type", "data", "timestamp"}`.
    ///
    /// # Errors
    /// [`EventError::Json`] if `data` cannot be serialized.
    pub fn system<T: Serialize + ?Sized>(kind: &str, data: &T) -> Result<Self, EventError> {
        let payload = SystemPayload {
            kind,
            data,
            timestamp: timestamp_now(),
        };
        Event::json("system", &payload)
    }
}
