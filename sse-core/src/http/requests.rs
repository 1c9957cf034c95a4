//! The request bodies of the endpoints: [`PublishRequest`], the body of
//! `POST publish`, checked and turned into an audience and an event, and the
//! `clientId` and `channel` of `POST subscribe` and `POST unsubscribe`.

use std::time::Duration;

use serde::Deserialize;

use crate::error::EventError;
use crate::event::{Event, Priority};
use crate::target::{Audience, Target};

/// The body of `POST /publish`.
///
/// ```json
/// { "event": "notification", "data": {"any": "json"}, "id": "optional",
///   "retry": 5000, "target": "all", "targetId": "...", "targetIds": ["..."],
///   "exceptUserIds": ["..."], "exceptClientIds": ["..."], "replay": true,
///   "priority": "high", "key": "price:BTC" }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PublishRequest {
    /// The event name.
    pub event: Option<String>,
    /// The data as it is sent. In the JSON body, a string is sent as its
    /// text, any other value as its JSON serialization (`null` included: it
    /// is sent as `null`); `None` only when the field is absent.
    #[serde(default, deserialize_with = "data_text")]
    pub data: Option<String>,
    /// The event id; the manager assigns one when absent.
    pub id: Option<String>,
    /// A reconnection hint, in milliseconds.
    pub retry: Option<u64>,
    /// `all` (default), `user`, `users`, `session`, `client` or `channel`.
    pub target: Option<String>,
    /// The user, session, client or channel of a single target.
    pub target_id: Option<String>,
    /// The users of the `users` target.
    pub target_ids: Option<Vec<String>>,
    /// Users excluded from the target: none of their connections receives
    /// the event. At most [`MAX_EXCLUSIONS`].
    pub except_user_ids: Option<Vec<String>>,
    /// Connections excluded from the target, by client id. At most
    /// [`MAX_EXCLUSIONS`].
    pub except_client_ids: Option<Vec<String>>,
    /// `false`: the event is [live-only](Event::live_only), delivered now
    /// and never replayed, and has no id. Absent or `true`: as usual.
    pub replay: Option<bool>,
    /// `high` or `normal` (the default): the event's
    /// [priority](crate::event::flow) in the queues of clients that lag.
    pub priority: Option<String>,
    /// The event's [conflation key](crate::EventBuilder::key): at most
    /// [`MAX_KEY_LEN`](crate::event::MAX_KEY_LEN) bytes, no control
    /// characters.
    pub key: Option<String>,
}

/// The most users, and the most connections, one publish may exclude.
pub const MAX_EXCLUSIONS: usize = 1000;

impl PublishRequest {
    /// Checks the request and turns it into an audience (the target minus
    /// its exclusions) and an event.
    ///
    /// # Errors
    /// A [`PublishError`] saying what is wrong: an unknown target, a missing
    /// `targetId` or `targetIds`, more than [`MAX_EXCLUSIONS`] exclusions of
    /// a kind, an unknown priority, or an event the builder refuses (an
    /// event name, id or key that is invalid, no field at all, or an id with
    /// `"replay": false`). Its
    /// message is the `error` of the endpoint's `400` answer.
    pub fn into_parts(self) -> Result<(Audience, Event), PublishError> {
        let target_id = |target: &'static str| match &self.target_id {
            Some(id) if !id.is_empty() => Ok(id.clone()),
            _ => Err(PublishError::MissingTargetId { target }),
        };
        let target = match self.target.as_deref().unwrap_or("all") {
            "all" => Target::All,
            "user" => Target::User(target_id("user")?),
            "session" => Target::Session(target_id("session")?),
            "client" => Target::client(target_id("client")?),
            "channel" => Target::Channel(target_id("channel")?),
            "users" => match &self.target_ids {
                Some(ids) => Target::Users(ids.clone()),
                None => return Err(PublishError::MissingTargetIds),
            },
            other => {
                return Err(PublishError::UnknownTarget {
                    target: other.chars().take(64).collect(),
                });
            }
        };
        let except_users = self.except_user_ids.unwrap_or_default();
        let except_clients = self.except_client_ids.unwrap_or_default();
        for (field, count) in [
            ("exceptUserIds", except_users.len()),
            ("exceptClientIds", except_clients.len()),
        ] {
            if count > MAX_EXCLUSIONS {
                return Err(PublishError::TooManyExclusions {
                    field,
                    count,
                    max: MAX_EXCLUSIONS,
                });
            }
        }
        let audience = Audience::new(target)
            .except_users(except_users)
            .except_clients(except_clients);
        let mut builder = Event::builder();
        if let Some(name) = self.priority.as_deref() {
            let priority = Priority::from_name(name).ok_or_else(|| PublishError::UnknownPriority {
                priority: name.chars().take(64).collect(),
            })?;
            builder = builder.priority(priority);
        }
        if let Some(key) = self.key {
            builder = builder.key(key);
        }
        if self.replay == Some(false) {
            builder = builder.live_only();
        }
        if let Some(name) = self.event {
            builder = builder.event(name);
        }
        if let Some(id) = self.id {
            builder = builder.id(id);
        }
        if let Some(retry) = self.retry {
            builder = builder.retry(Duration::from_millis(retry));
        }
        if let Some(data) = self.data {
            builder = builder.data(data);
        }
        Ok((audience, builder.build()?))
    }
}

/// Why a [`PublishRequest`] cannot be published, as
/// [`PublishRequest::into_parts`] finds it. The message is the `error` of
/// the endpoint's `400` answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// `target` is none of `all`, `user`, `users`, `session`, `client` and
    /// `channel`.
    #[error("unknown target {target:?}: expected all, user, users, session, client or channel")]
    UnknownTarget {
        /// The refused target, cut to its first 64 characters.
        target: String,
    },
    /// A single target (`user`, `session`, `client` or `channel`) without a
    /// non-empty `targetId`.
    #[error("target {target:?} requires a non-empty targetId")]
    MissingTargetId {
        /// The target that needs the id.
        target: &'static str,
    },
    /// `priority` is neither `high` nor `normal`.
    #[error("unknown priority {priority:?}: expected high or normal")]
    UnknownPriority {
        /// The refused priority, cut to its first 64 characters.
        priority: String,
    },
    /// The `users` target without `targetIds`.
    #[error("target \"users\" requires targetIds")]
    MissingTargetIds,
    /// `exceptUserIds` or `exceptClientIds` lists more than
    /// [`MAX_EXCLUSIONS`] entries.
    #[error("{field} lists {count} entries; at most {max} are allowed")]
    TooManyExclusions {
        /// The field: `exceptUserIds` or `exceptClientIds`.
        field: &'static str,
        /// How many entries it lists.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// The event builder refused the event: an invalid name or id, or no
    /// field at all.
    #[error(transparent)]
    Event(#[from] EventError),
}

/// Deserializes the `data` field as the text it is sent as: a string's text,
/// any other value's JSON serialization. A present field is `Some`, even when
/// it is `null` (a plain `Option` would read `null` as absent).
fn data_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Some(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => text,
        value => value.to_string(),
    }))
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubscribeRequest {
    pub(super) client_id: String,
    pub(super) channel: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(Audience, Event), String> {
        serde_json::from_str::<PublishRequest>(body)
            .map_err(|e| e.to_string())
            .and_then(|request| request.into_parts().map_err(|e| e.to_string()))
    }

    #[test]
    fn publish_requests() {
        let (audience, event) = parse(r#"{"data":"line1\nline2","target":"user","targetId":"u"}"#).expect("valid");
        assert!(matches!(audience.target(), Target::User(u) if u == "u"));
        assert!(audience.excludes_nobody() && !event.is_live_only());
        assert_eq!(event.data(), Some("line1\nline2"));
        let (_, event) = parse(r#"{"event":"n","data":{"a":1}}"#).expect("valid");
        assert_eq!(event.data(), Some(r#"{"a":1}"#));
        let (_, event) = parse(r#"{"event":"n","data":null}"#).expect("valid");
        assert_eq!(event.data(), Some("null"), "null is sent as its JSON serialization");
        let (_, event) = parse(r#"{"event":"n"}"#).expect("valid");
        assert_eq!(event.data(), None, "absent data is no data");
        assert!(parse(r#"{"target":"planet"}"#).is_err_and(|e| e.contains("unknown target")));
        assert!(parse(r#"{"target":"user"}"#).is_err_and(|e| e.contains("targetId")));
        assert!(parse(r#"{"target":"users"}"#).is_err_and(|e| e.contains("targetIds")));
        assert!(parse(r#"{"event":"a\nb"}"#).is_err());
        assert!(parse(r#"{"id":"a\rb"}"#).is_err());
    }

    #[test]
    fn publish_errors_say_what_is_wrong() {
        let refuse = |body: &str| {
            serde_json::from_str::<PublishRequest>(body)
                .expect("a well-formed body")
                .into_parts()
                .expect_err(body)
        };
        let long = "x".repeat(100);
        for (body, message) in [
            (
                r#"{"target":"planet"}"#.to_owned(),
                r#"unknown target "planet": expected all, user, users, session, client or channel"#.to_owned(),
            ),
            (
                format!(r#"{{"target":"{long}"}}"#),
                format!(
                    r#"unknown target "{}": expected all, user, users, session, client or channel"#,
                    &long[..64]
                ),
            ),
            (
                r#"{"target":"session","targetId":""}"#.to_owned(),
                r#"target "session" requires a non-empty targetId"#.to_owned(),
            ),
            (
                r#"{"target":"users"}"#.to_owned(),
                r#"target "users" requires targetIds"#.to_owned(),
            ),
            (
                r#"{"event":"a\nb"}"#.to_owned(),
                "event name must not contain CR or LF".to_owned(),
            ),
        ] {
            assert_eq!(refuse(&body).to_string(), message, "{body}");
        }
        assert!(matches!(
            refuse(r#"{"target":"client"}"#),
            PublishError::MissingTargetId { target: "client" }
        ));
        assert!(matches!(
            refuse(r#"{"id":"a\rb"}"#),
            PublishError::Event(EventError::InvalidId)
        ));
        assert!(matches!(
            refuse(r#"{"target":"all"}"#),
            PublishError::Event(EventError::Empty)
        ));
        assert!(matches!(
            refuse(r#"{"data":1,"id":"7","replay":false}"#),
            PublishError::Event(EventError::LiveOnlyWithId)
        ));
    }

    #[test]
    fn exclusions_and_live_only() {
        let (audience, event) = parse(
            r#"{"data":1,"target":"channel","targetId":"c","exceptUserIds":["b","a","b"],"exceptClientIds":["x"],"replay":false}"#,
        )
        .expect("valid");
        assert!(matches!(audience.target(), Target::Channel(c) if c == "c"));
        assert_eq!(audience.excluded_users(), ["a", "b"]);
        assert_eq!(audience.excluded_clients().len(), 1);
        assert!(event.is_live_only() && event.id().is_none());
        let (_, event) = parse(r#"{"data":1,"replay":true}"#).expect("valid");
        assert!(!event.is_live_only());
        for body in [
            r#"{"data":1,"exceptUserIds":"alice"}"#,
            r#"{"data":1,"exceptUserIds":[1]}"#,
            r#"{"data":1,"exceptClientIds":{}}"#,
            r#"{"data":1,"replay":"no"}"#,
            r#"{"data":1,"replay":0}"#,
        ] {
            assert!(parse(body).is_err_and(|e| e.contains("invalid type")), "{body}");
        }
        // At the limit, and one over it (each kind).
        let ids =
            |n: usize| serde_json::to_string(&(0..n).map(|i| i.to_string()).collect::<Vec<_>>()).unwrap_or_default();
        for field in ["exceptUserIds", "exceptClientIds"] {
            let at = format!(r#"{{"data":1,"{field}":{}}}"#, ids(MAX_EXCLUSIONS));
            assert!(parse(&at).is_ok(), "{field} at the limit");
            let over = format!(r#"{{"data":1,"{field}":{}}}"#, ids(MAX_EXCLUSIONS + 1));
            assert_eq!(
                parse(&over).expect_err("over the limit"),
                format!("{field} lists 1001 entries; at most 1000 are allowed")
            );
        }
    }

    #[test]
    fn priority_and_key() {
        let (_, event) = parse(r#"{"data":1,"priority":"high","key":"price:BTC"}"#).expect("valid");
        assert_eq!((event.priority(), event.key()), (Priority::High, Some("price:BTC")));
        let (_, event) = parse(r#"{"data":1,"priority":"normal"}"#).expect("valid");
        assert_eq!((event.priority(), event.key()), (Priority::Normal, None));
        assert_eq!(
            parse(r#"{"data":1,"priority":"urgent"}"#).expect_err("unknown"),
            r#"unknown priority "urgent": expected high or normal"#
        );
        assert!(parse(r#"{"data":1,"priority":1}"#).is_err_and(|e| e.contains("invalid type")));
        let long = "k".repeat(crate::event::MAX_KEY_LEN + 1);
        for (body, message) in [
            (r#"{"data":1,"key":""}"#.to_owned(), "event key is empty"),
            (
                r#"{"data":1,"key":"a\nb"}"#.to_owned(),
                "event key holds control characters",
            ),
            (
                format!(r#"{{"data":1,"key":"{long}"}}"#),
                "event key is longer than 256 bytes",
            ),
        ] {
            assert_eq!(parse(&body).expect_err(&body), message);
        }
    }
}
