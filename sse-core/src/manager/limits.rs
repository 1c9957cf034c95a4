//! Send rate limits: the manager's keyed limiters, one per configured
//! limit (per user, [`SseConfig::user_send_rate`]; per channel,
//! [`SseConfig::channel_send_rate`]; per HTTP publisher,
//! [`SseConfig::publish_rate`]). A send is checked before anything is
//! recorded or published, on the local path and the backplane's alike; the
//! maintenance task drops the keys whose allowance is whole again.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Shared, SseManager};
use crate::config::SseConfig;
use crate::error::SendError;
use crate::rate_limit::KeyedLimiter;
use crate::target::Target;

/// The manager's rate limits; each is `None` when not configured.
pub(super) struct SendLimits {
    users: Option<KeyedLimiter<String>>,
    channels: Option<KeyedLimiter<String>>,
    publishers: Option<KeyedLimiter<u64>>,
    /// Turns a publisher's identity into its key, a digest: a bearer token
    /// is never held in the clear.
    hasher: std::hash::RandomState,
}

impl SendLimits {
    pub(super) fn new(config: &SseConfig) -> Self {
        let keys = config.rate_limit_keys;
        SendLimits {
            users: config.user_send_rate.map(|limit| KeyedLimiter::new(limit, keys)),
            channels: config.channel_send_rate.map(|limit| KeyedLimiter::new(limit, keys)),
            publishers: config.publish_rate.map(|limit| KeyedLimiter::new(limit, keys)),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Whether any limit is configured, and so needs pruning.
    pub(super) fn any(&self) -> bool {
        self.users.is_some() || self.channels.is_some() || self.publishers.is_some()
    }

    /// Takes one event of the allowance of every user or channel `target`
    /// names.
    ///
    /// # Errors
    /// [`SendError::RateLimited`] for the first one over its limit.
    pub(super) fn check(&self, target: &Target) -> Result<(), SendError> {
        let refused = |retry_after: Duration| SendError::RateLimited { retry_after };
        match (target, &self.users, &self.channels) {
            (Target::User(user), Some(users), _) => users.check(user.as_str()).map_err(refused),
            (Target::Users(list), Some(users), _) => {
                let distinct: BTreeSet<&str> = list.iter().map(String::as_str).collect();
                distinct
                    .into_iter()
                    .try_for_each(|user| users.check(user))
                    .map_err(refused)
            }
            (Target::Channel(channel), _, Some(channels)) => channels.check(channel.as_str()).map_err(refused),
            _ => Ok(()),
        }
    }

    /// Drops the keys whose allowance is whole again.
    pub(super) fn prune(&self) {
        for limiter in [&self.users, &self.channels].into_iter().flatten() {
            limiter.prune();
        }
        if let Some(publishers) = &self.publishers {
            publishers.prune();
        }
    }

    /// The keys held now, across every limit.
    fn len(&self) -> usize {
        let strings = [&self.users, &self.channels]
            .into_iter()
            .flatten()
            .map(KeyedLimiter::len)
            .sum::<usize>();
        strings + self.publishers.as_ref().map_or(0, KeyedLimiter::len)
    }
}

impl Shared {
    /// Checks the rate limits of a send to `target`.
    pub(super) fn check_rate(&self, target: &Target) -> Result<(), SendError> {
        self.limits.check(target)
    }
}

impl SseManager {
    /// How many keys (users, channels, publishers) the rate limits hold
    /// now, all limits together: at most
    /// [`SseConfig::rate_limit_keys`] for each configured limit. A key
    /// whose allowance is whole again is dropped within 10 s.
    pub fn rate_limit_keys(&self) -> usize {
        self.shared.limits.len()
    }

    /// Takes one event of the allowance of `publisher` (any identity: a
    /// bearer token, an address) under [`SseConfig::publish_rate`]; `Ok`
    /// when no such limit is configured. The identity is kept as a digest
    /// only. The built-in publish route calls it for every publish; an
    /// application's own publish handler calls it the same way, and
    /// answers a refusal as the route does (with `sse_core::http::rate_limited`,
    /// feature `http`: `429` and `Retry-After`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sse_core::{RateLimit, SendError, SseConfig, SseManager};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SseConfig::builder().publish_rate(Some(RateLimit::per_second(1))).build()?;
    /// let manager = SseManager::builder().config(config).build()?;
    /// assert!(manager.check_publish_rate(&"token-a").is_ok());
    /// let refused = manager.check_publish_rate(&"token-a");
    /// assert!(matches!(refused, Err(SendError::RateLimited { retry_after }) if retry_after > Duration::ZERO));
    /// assert!(manager.check_publish_rate(&"token-b").is_ok(), "another publisher");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`SendError::RateLimited`] over the limit.
    pub fn check_publish_rate(&self, publisher: &impl std::hash::Hash) -> Result<(), SendError> {
        use std::hash::BuildHasher as _;
        let limits = &self.shared.limits;
        match &limits.publishers {
            Some(publishers) => publishers
                .check(&limits.hasher.hash_one(publisher))
                .map_err(|retry_after| SendError::RateLimited { retry_after }),
            None => Ok(()),
        }
    }
}
