//! The request bodies of the endpoints: [`PublishRequest`], the body of
//! `POST publish`, checked and turned into a target and an event, and the
//! `clientId` and `channel` of `POST subscribe` and `POST unsubscribe`.

use std::time::Duration;

use serde::Deserialize;

use crate::error::EventError;
use crate::event::Event;
use crate::target::Target;

/// The body of `POST /publish`.
///
/// ```json
/// { "event": "notification", "data": {"any": "json"}, "id": "optional",
///   "retry": 5000, "target": "all", "targetId": "...", "targetIds": ["..."] }
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
}

impl PublishRequest {
    /// Checks the request and turns it into a target and an event.
    ///
    /// # Errors
    /// A [`PublishError`] saying what is wrong: an unknown target, a missing
    /// `targetId` or `targetIds`, or an event the builder refuses (an event
    /// name or id that is invalid, or no field at all). Its message is the
    /// `error` of the endpoint's `400` answer.
    pub fn into_parts(self) -> Result<(Target, Event), PublishError> {
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
        let mut builder = Event::builder();
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
        Ok((target, builder.build()?))
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
    /// The `users` target without `targetIds`.
    #[error("target \"users\" requires targetIds")]
    MissingTargetIds,
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

    #[test]
    fn publish_requests() {
        let parse = |body: &str| {
            serde_json::from_str::<PublishRequest>(body)
                .map_err(|e| e.to_string())
                .and_then(|request| request.into_parts().map_err(|e| e.to_string()))
        };
        let (target, event) = parse(r#"{"data":"line1\nline2","target":"user","targetId":"u"}"#).expect("valid");
        assert!(matches!(target, Target::User(ref u) if u == "u"));
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
    }
}
