//! What can go wrong: [`RedisBackplaneError`], and how a failed append is
//! reported to the manager, as not published or of unknown outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sse_core::BackplaneError;

use crate::writer;

/// What can go wrong building or using a [`RedisBackplane`](crate::RedisBackplane).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBackplaneError {
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] redis::RedisError),
    /// A setting of the builder is out of range.
    #[error("invalid sse-redis configuration: {0}")]
    InvalidConfig(&'static str),
    /// The backplane was built outside a Tokio runtime.
    #[error("sse-redis needs a Tokio runtime: build the backplane inside one")]
    NoRuntime,
    /// Redis could not be reached.
    #[error("cannot connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
    /// A connection attempt that this publish waited for failed just now;
    /// this one did not try again.
    #[error("cannot connect to Redis: a connection attempt has just failed")]
    Unavailable,
    /// A command failed or its connection broke.
    #[error("Redis command failed: {0}")]
    Command(#[source] redis::RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The backplane's task failed, or the Tokio runtime it was built in is
    /// gone.
    #[error("sse-redis task failed: {0}")]
    Task(String),
}

/// A failed append as the manager sees it: not published when it never
/// left (no connection) or Redis refused it; of unknown outcome when it was
/// sent and no answer came (it may be stored, and delivered everywhere).
pub(crate) fn classify(error: RedisBackplaneError, sent: &AtomicBool) -> BackplaneError {
    let unknown = sent.load(Ordering::Acquire)
        && match &error {
            RedisBackplaneError::Command(failure) => !writer::answered(failure),
            RedisBackplaneError::Timeout(_) | RedisBackplaneError::Task(_) => true,
            _ => false,
        };
    if unknown {
        BackplaneError::outcome_unknown(error)
    } else {
        BackplaneError::new(error)
    }
}
