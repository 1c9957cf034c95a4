//! The entries of the log: what one event looks like on its way through a
//! backplane (its target and exclusions, the event with its priority and
//! key, the instance that published it), encoded as compact JSON, and how
//! entries written by earlier versions still decode.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::BackplaneError;
use crate::event::{Event, Priority};
use crate::target::{Audience, Target};

/// What travels through the log: the target and its exclusions, the event
/// and the instance that published it.
///
/// Fields added later are optional and left out when empty, so entries
/// written before them still decode, and entries without them are written
/// as before: `x` (the exclusions) and the event's `live`, `priority` and
/// `key`. An instance that predates them ignores them, delivering such an
/// entry to the whole target as a normal unkeyed event and keeping it for
/// replay.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    #[serde(rename = "o")]
    pub(crate) origin: u64,
    #[serde(rename = "t")]
    target: WireTarget,
    #[serde(rename = "x", default, skip_serializing_if = "WireExclusions::is_empty")]
    except: WireExclusions,
    #[serde(rename = "e")]
    event: WireEvent,
}

/// The users and connections an entry's target excludes.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WireExclusions {
    #[serde(rename = "u", default, skip_serializing_if = "Vec::is_empty")]
    users: Vec<String>,
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    clients: Vec<String>,
}

impl WireExclusions {
    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.clients.is_empty()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
enum WireTarget {
    All,
    Client(String),
    User(String),
    Users(Vec<String>),
    Session(String),
    Channel(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct WireEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    /// Delivered by every instance, kept for replay by none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    live: bool,
    /// `high`, or absent for normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl Entry {
    /// `None` for a target that cannot cross instances (a predicate).
    pub(crate) fn new(origin: u64, audience: &Audience, event: &Event) -> Option<Self> {
        let target = match audience.target() {
            Target::All => WireTarget::All,
            Target::Client(id) => WireTarget::Client(id.to_string()),
            Target::User(id) => WireTarget::User(id.clone()),
            Target::Users(ids) => WireTarget::Users(ids.clone()),
            Target::Session(id) => WireTarget::Session(id.clone()),
            Target::Channel(name) => WireTarget::Channel(name.clone()),
            Target::Filter(_) => return None,
        };
        let event = WireEvent {
            id: event.id().map(str::to_owned),
            event: event.event().map(str::to_owned),
            data: event.data().map(str::to_owned),
            retry: event.retry().map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
            comment: event.comment().map(str::to_owned),
            live: event.is_live_only(),
            priority: (event.priority() != Priority::Normal).then(|| event.priority().as_str().to_owned()),
            key: event.key().map(str::to_owned),
        };
        let except = WireExclusions {
            users: audience.excluded_users().to_vec(),
            clients: audience.excluded_clients().iter().map(ToString::to_string).collect(),
        };
        Some(Entry {
            origin,
            target,
            except,
            event,
        })
    }

    pub(crate) fn encode(&self) -> Bytes {
        // Plain data with string keys: serialization cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, BackplaneError> {
        serde_json::from_slice(payload).map_err(BackplaneError::new)
    }

    /// The audience and the validated event.
    pub(crate) fn into_parts(self) -> Result<(Audience, Event), crate::error::EventError> {
        let target = match self.target {
            WireTarget::All => Target::All,
            WireTarget::Client(id) => Target::client(id),
            WireTarget::User(id) => Target::User(id),
            WireTarget::Users(ids) => Target::Users(ids),
            WireTarget::Session(id) => Target::Session(id),
            WireTarget::Channel(name) => Target::Channel(name),
        };
        let wire = self.event;
        let mut builder = Event::builder();
        if let Some(id) = wire.id {
            builder = builder.id(id);
        }
        if let Some(name) = wire.event {
            builder = builder.event(name);
        }
        if let Some(data) = wire.data {
            builder = builder.data(data);
        }
        if let Some(retry) = wire.retry {
            builder = builder.retry(std::time::Duration::from_millis(retry));
        }
        if let Some(comment) = wire.comment {
            builder = builder.comment(comment);
        }
        if wire.live {
            builder = builder.live_only();
        }
        if let Some(key) = wire.key {
            builder = builder.key(key);
        }
        // A priority this instance does not know is sent as normal.
        let priority = wire.priority.as_deref().and_then(Priority::from_name);
        builder = builder.priority(priority.unwrap_or_default());
        let audience = Audience::new(target)
            .except_users(self.except.users)
            .except_clients(self.except.clients);
        Ok((audience, builder.build()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_without_the_later_fields_decode_and_encode_as_before() {
        let old = br#"{"o":7,"t":{"kind":"channel","id":"news"},"e":{"id":"42","data":"hi"}}"#;
        let entry = Entry::decode(old).expect("an entry of before exclusions and live-only events");
        assert_eq!(String::from_utf8_lossy(&entry.encode()), String::from_utf8_lossy(old));
        let (audience, event) = entry.into_parts().expect("valid");
        assert!(audience.excludes_nobody());
        assert!(!event.is_live_only());
        assert_eq!(event.id(), Some("42"));
    }

    #[test]
    fn exclusions_and_live_only_cross_the_log() {
        let audience = Target::channel("news").except_user("bob").except_client("c-1");
        let event = Event::message("typing").live_only();
        let entry = Entry::new(3, &audience, &event).expect("distributable");
        let encoded = entry.encode();
        assert_eq!(
            String::from_utf8_lossy(&encoded),
            r#"{"o":3,"t":{"kind":"channel","id":"news"},"x":{"u":["bob"],"c":["c-1"]},"e":{"data":"typing","live":true}}"#
        );
        let (decoded, back) = Entry::decode(&encoded)
            .and_then(|e| e.into_parts().map_err(BackplaneError::new))
            .expect("round trip");
        assert!(matches!(decoded.target(), Target::Channel(c) if c == "news"));
        assert_eq!(decoded.excluded_users(), ["bob"]);
        assert_eq!(decoded.excluded_clients().len(), 1);
        assert_eq!(back, event);
    }

    #[test]
    fn priority_and_key_cross_the_log() {
        let event = Event::builder()
            .data("64000")
            .priority(Priority::High)
            .key("price:BTC")
            .build()
            .expect("valid");
        let encoded = Entry::new(1, &Target::All.into(), &event)
            .expect("distributable")
            .encode();
        assert_eq!(
            String::from_utf8_lossy(&encoded),
            r#"{"o":1,"t":{"kind":"all"},"e":{"data":"64000","priority":"high","key":"price:BTC"}}"#
        );
        let (_, back) = Entry::decode(&encoded)
            .and_then(|e| e.into_parts().map_err(BackplaneError::new))
            .expect("round trip");
        assert_eq!(back, event);
    }
}
