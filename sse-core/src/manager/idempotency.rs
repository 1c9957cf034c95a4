//! Sends made safe to retry: [`SseManager::send_idempotent`] remembers each
//! key for the [idempotency window](crate::SseConfig::idempotency_window),
//! and a send with a key it remembers sends nothing and answers with the
//! first send's id. Without a backplane the keys are kept here (the most
//! recent [`MAX_KEYS`]); with one, the backplane checks and appends in one
//! step for every instance ([`Backplane::publish_once`](crate::Backplane::publish_once)).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Delivery, Shared, SseManager};
use crate::error::SendError;
use crate::event::Event;
use crate::target::Audience;

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// The most keys a manager without a backplane remembers.
const MAX_KEYS: usize = 10_000;

/// The keys of recent sends without a backplane, with the ids they got.
#[derive(Debug, Default)]
pub(super) struct Keys {
    ids: HashMap<String, Option<String>>,
    /// The keys in the order they were sent, with when.
    order: VecDeque<(Instant, String)>,
}

impl Keys {
    /// Forgets the keys older than `window`, and the oldest past
    /// [`MAX_KEYS`].
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < window && self.order.len() < MAX_KEYS {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.ids.remove(&key);
            }
        }
    }
}

fn validate(key: &str) -> Result<(), SendError> {
    if key.is_empty() {
        Err(SendError::InvalidIdempotencyKey("empty"))
    } else if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        Err(SendError::InvalidIdempotencyKey("longer than 256 bytes"))
    } else if key.chars().any(char::is_control) {
        Err(SendError::InvalidIdempotencyKey("holds a control character"))
    } else {
        Ok(())
    }
}

impl SseManager {
    /// Sends `event` as [`SseManager::send`] does, unless a send with the
    /// same `key` was made within the
    /// [idempotency window](crate::SseConfig::idempotency_window): then
    /// nothing is sent, and the answer is the first send's id with
    /// [`Delivery::duplicate`] set (and no local deliveries). A publisher
    /// whose send failed with an
    /// [unknown outcome](SendError::is_outcome_unknown) retries with the
    /// same key, and the event is delivered once.
    ///
    /// With a backplane, the key is checked by the backplane for every
    /// instance at once ([`Backplane::publish_once`](crate::Backplane::publish_once); `sse-redis` does);
    /// one that cannot deduplicate fails the send, sending nothing.
    ///
    /// ```
    /// use sse_core::{Event, SseManager, Target};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = SseManager::builder().build()?;
    /// let first = manager.send_idempotent("order-17-paid", Target::All, Event::message("paid")).await?;
    /// let retry = manager.send_idempotent("order-17-paid", Target::All, Event::message("paid")).await?;
    /// assert_eq!((retry.id, retry.duplicate), (first.id, true));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`SseManager::send`], and [`SendError::InvalidIdempotencyKey`].
    pub async fn send_idempotent(
        &self,
        key: &str,
        target: impl Into<Audience>,
        event: Event,
    ) -> Result<Delivery, SendError> {
        validate(key)?;
        if self.is_shut_down() {
            return Err(SendError::ShutDown);
        }
        let audience = target.into();
        match &self.shared.backplane {
            Some(backplane) => {
                self.shared
                    .publish(backplane.as_ref(), &audience, &event, Some(key))
                    .await
            }
            None => self.shared.send_once(key, &audience, &event),
        }
    }
}

impl Shared {
    /// Without a backplane: sends unless `key` is remembered. The keys'
    /// lock is held across the send, so two sends with one key never both
    /// go out (it is taken before any other; see the lock order on
    /// [`Shared`]).
    fn send_once(&self, key: &str, audience: &Audience, event: &Event) -> Result<Delivery, SendError> {
        let now = Instant::now();
        let mut keys = self.keys.lock();
        keys.expire(now, self.config.idempotency_window);
        if let Some(id) = keys.ids.get(key) {
            return Ok(Delivery {
                id: id.clone(),
                delivered: 0,
                duplicate: true,
            });
        }
        let delivery = self.send(audience, event)?;
        keys.ids.insert(key.to_owned(), delivery.id.clone());
        keys.order.push_back((now, key.to_owned()));
        Ok(delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expire_by_age_and_by_count() {
        let mut keys = Keys::default();
        let start = Instant::now();
        for n in 0..MAX_KEYS + 5 {
            keys.order.push_back((start, n.to_string()));
            keys.ids.insert(n.to_string(), None);
            keys.expire(start, Duration::from_secs(60));
        }
        assert_eq!(keys.ids.len(), MAX_KEYS - 1);
        assert!(!keys.ids.contains_key("0"));
        keys.expire(start + Duration::from_secs(61), Duration::from_secs(60));
        assert!(keys.ids.is_empty() && keys.order.is_empty());
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate("order-17").is_ok());
        assert!(validate("").is_err());
        assert!(validate(&"k".repeat(257)).is_err());
        assert!(validate("a\nb").is_err());
    }
}
