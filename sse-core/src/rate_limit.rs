//! Rate limits: [`RateLimit`], a number of events per second with a burst,
//! as the configuration states it, and the keyed limiter that enforces one
//! per key (a user, a channel, a publisher), on the `governor` crate's GCRA
//! with its standard clock, independent of any async runtime.
//!
//! A keyed limiter keeps one small state per key it has seen. Its memory
//! stays bounded two ways: a key whose allowance is whole again (unused for
//! the time a full burst takes to recover) is indistinguishable from a new
//! one and is dropped by [`KeyedLimiter::prune`], which the manager's
//! maintenance task runs every [`PRUNE_INTERVAL`] (10 s); and no more than
//! [`SseConfig::rate_limit_keys`](crate::SseConfig::rate_limit_keys) keys
//! are held at once: a key that is new while the limiter is full is
//! refused, as over its limit, until keys recover and are dropped.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;

use crate::error::ConfigError;

/// The highest rate a [`RateLimit`] may state, in events per second.
pub(crate) const MAX_RATE: u32 = 1_000_000;

/// How often the manager's maintenance task drops the keys of its rate
/// limits whose allowance is whole again.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// A rate limit: `rate` events per second on average, and up to `burst` at
/// once after a quiet spell (the GCRA, or a token bucket of `burst` tokens
/// refilled at `rate` a second).
///
/// ```
/// use sse_core::RateLimit;
///
/// let limit = RateLimit::per_second(5).with_burst(20);
/// assert_eq!((limit.rate(), limit.burst()), (5, 20));
/// assert_eq!(RateLimit::per_second(5).burst(), 5, "one second's worth by default");
/// ```
///
/// A limit is checked where it is configured
/// ([`SseConfigBuilder::build`](crate::SseConfigBuilder::build)): a rate
/// of 0 or over 1,000,000, or a burst of 0, is refused there with
/// [`ConfigError::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    rate: u32,
    burst: u32,
}

impl RateLimit {
    /// `rate` events per second, with a burst of as many (one second's
    /// worth).
    pub const fn per_second(rate: u32) -> Self {
        RateLimit { rate, burst: rate }
    }

    /// The same rate, with bursts of up to `burst` events.
    #[must_use]
    pub const fn with_burst(self, burst: u32) -> Self {
        RateLimit { burst, ..self }
    }

    /// Events per second, on average.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Events allowed at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long a spent allowance takes to be whole again: `burst / rate`
    /// seconds.
    pub fn recovery(&self) -> Duration {
        Duration::from_secs(u64::from(self.burst)) / self.rate.max(1)
    }

    /// Refuses a limit the engine cannot enforce, naming the setting.
    pub(crate) fn check(&self, name: &'static str) -> Result<(), ConfigError> {
        let invalid = |reason| Err(ConfigError::Invalid { name, reason });
        if self.rate == 0 || self.rate > MAX_RATE {
            return invalid("rate must be between 1 and 1,000,000 events per second");
        }
        if self.burst == 0 {
            return invalid("burst must be at least 1 event");
        }
        Ok(())
    }

    fn quota(&self) -> Quota {
        let rate = NonZeroU32::new(self.rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(rate).allow_burst(burst)
    }
}

/// The states of a keyed limiter, shared between the limiter and its owner,
/// who asks whether a key is known and how many there are.
struct States<K>(Arc<Mutex<HashMap<K, InMemoryState>>>);

impl<K: Hash + Eq + Clone> StateStore for States<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut states = self.0.lock();
        if let Some(state) = states.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        states
            .entry(key.clone())
            .or_default()
            .measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for States<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.lock().retain(|_, state| {
            // The state's theoretical arrival time, read without changing it.
            let tat = state
                .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
                .err()
                .flatten();
            tat.is_some_and(|tat| tat > drop_below)
        });
    }

    fn shrink_to_fit(&self) {
        self.0.lock().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }
}

/// One [`RateLimit`] per key, over a bounded number of keys.
pub(crate) struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, States<K>, DefaultClock>,
    states: Arc<Mutex<HashMap<K, InMemoryState>>>,
    max_keys: usize,
    recovery: Duration,
    /// Held while a new key is admitted, so that two new keys at once
    /// cannot take the limiter past `max_keys`.
    admitting: Mutex<()>,
    /// When a full limiter last pruned itself on a send: at most once per
    /// [`FULL_PRUNE_INTERVAL`], so that a flood of new keys does not scan
    /// the keys on every send.
    last_full_prune: Mutex<Option<Instant>>,
}

/// How often a full limiter may prune itself on a send.
const FULL_PRUNE_INTERVAL: Duration = Duration::from_millis(100);

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter enforcing `limit` per key, over at most `max_keys` keys.
    pub(crate) fn new(limit: RateLimit, max_keys: usize) -> Self {
        let states = Arc::new(Mutex::new(HashMap::new()));
        KeyedLimiter {
            limiter: RateLimiter::new(limit.quota(), States(states.clone()), DefaultClock::default()),
            states,
            max_keys: max_keys.max(1),
            recovery: limit.recovery().max(Duration::from_millis(1)),
            admitting: Mutex::new(()),
            last_full_prune: Mutex::new(None),
        }
    }

    /// Takes one event of `key`'s allowance, or says how long until it
    /// may send again (always more than zero).
    pub(crate) fn check<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.states.lock().contains_key(key) {
            return self.measure(key);
        }
        let _admitting = self.admitting.lock();
        if self.len() >= self.max_keys {
            self.prune_when_full();
            if self.len() >= self.max_keys {
                // Every key held still recovers: the first is dropped
                // within one recovery.
                return Err(self.recovery);
            }
        }
        self.measure(key)
    }

    /// Takes one event of `key`'s allowance, adding the key if new.
    fn measure<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.limiter.check_key(&key.to_owned()).map_err(|refused| {
            refused
                .wait_time_from(self.limiter.clock().now())
                .max(Duration::from_millis(1))
        })
    }

    fn prune_when_full(&self) {
        let now = Instant::now();
        {
            let mut last = self.last_full_prune.lock();
            if last.is_some_and(|at| now.saturating_duration_since(at) < FULL_PRUNE_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        self.limiter.retain_recent();
    }

    /// Drops the keys whose allowance is whole again, and the memory they
    /// held.
    pub(crate) fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// The keys held now.
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert!(RateLimit::per_second(1).check("x").is_ok());
        assert!(RateLimit::per_second(MAX_RATE).with_burst(u32::MAX).check("x").is_ok());
        for bad in [
            RateLimit::per_second(0),
            RateLimit::per_second(MAX_RATE + 1),
            RateLimit::per_second(3).with_burst(0),
        ] {
            assert!(
                matches!(bad.check("x"), Err(ConfigError::Invalid { name: "x", .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            RateLimit::per_second(4).with_burst(2).recovery(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn each_key_has_its_burst() {
        let limiter = KeyedLimiter::<String>::new(RateLimit::per_second(1).with_burst(3), 100);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check("b").is_ok(), "another key is unaffected");
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn keys_are_bounded_and_pruned() {
        let limiter = KeyedLimiter::<String>::new(RateLimit::per_second(MAX_RATE).with_burst(1), 10);
        for n in 0..10 {
            assert!(limiter.check(n.to_string().as_str()).is_ok());
        }
        // Recovered within a microsecond: a full limiter prunes and admits.
        std::thread::sleep(Duration::from_millis(2));
        assert!(limiter.check("new").is_ok());
        assert!(limiter.len() <= 10);
        limiter.prune();
        std::thread::sleep(Duration::from_millis(2));
        limiter.prune();
        assert_eq!(limiter.len(), 0, "every key recovered and was dropped");

        let slow = KeyedLimiter::<String>::new(RateLimit::per_second(1).with_burst(1), 10);
        for n in 0..1000 {
            let _ = slow.check(n.to_string().as_str());
        }
        assert_eq!(slow.len(), 10, "never more keys than the bound");
        assert_eq!(slow.check("another"), Err(Duration::from_secs(1)), "refused while full");
        assert!(slow.check("0").is_err(), "a known key keeps its own limit");
    }

    #[test]
    fn new_keys_from_many_threads_stay_within_the_bound() {
        let limiter = Arc::new(KeyedLimiter::<String>::new(RateLimit::per_second(1), 10));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    for n in 0..500 {
                        let _ = limiter.check(format!("{thread}-{n}").as_str());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert!(limiter.len() <= 10, "{} keys", limiter.len());
    }
}
