//! What a backplane that shares presence across instances is given and
//! answers: each instance's [`PresenceUpdate`]s, made of
//! [`PresenceCount`]s, with the log entries to append when a user becomes
//! present or absent in the whole cluster. The manager's side is in
//! `manager/shared_presence.rs`; the contract is on
//! [`Backplane::shares_presence`](super::Backplane::shares_presence).

use std::time::Duration;

use bytes::Bytes;

/// The connections one user has in one channel on one instance, as the
/// manager reports them to a [`Backplane`](super::Backplane) that
/// [shares presence](super::Backplane::shares_presence).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceCount {
    /// The channel.
    pub channel: String,
    /// The user.
    pub user_id: String,
    /// The user's connections in the channel on the reporting instance; `0`
    /// when it has none left.
    pub connections: usize,
    /// The log entry to append, atomically with the change, when this count
    /// makes the user present in the channel across all instances (their
    /// total goes from 0 to more): the `presence` join notice.
    pub join: Bytes,
    /// The log entry to append when the user's total across all instances
    /// falls to 0, by this count or when the reporting instance's presence
    /// is withdrawn or lapses: the `presence` leave notice. Kept as long as
    /// the count is above 0.
    pub leave: Bytes,
}

impl PresenceCount {
    /// A count of `connections` for `user_id` in `channel`, with its join and
    /// leave entries.
    pub fn new(
        channel: impl Into<String>,
        user_id: impl Into<String>,
        connections: usize,
        join: Bytes,
        leave: Bytes,
    ) -> Self {
        PresenceCount {
            channel: channel.into(),
            user_id: user_id.into(),
            connections,
            join,
            leave,
        }
    }
}

/// One instance's change of presence, for
/// [`Backplane::update_presence`](super::Backplane::update_presence).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceUpdate {
    /// Whether `counts` is the whole of the instance's presence: every count
    /// recorded for the instance and missing here falls to 0. A full update
    /// also records the instance afresh if its presence had lapsed.
    pub full: bool,
    /// How long the instance's presence lives without renewal.
    pub timeout: Duration,
    /// The counts that changed (all of them, when `full`).
    pub counts: Vec<PresenceCount>,
}

impl PresenceUpdate {
    /// An update of `counts`, the whole presence of the instance when
    /// `full`.
    pub fn new(full: bool, timeout: Duration, counts: Vec<PresenceCount>) -> Self {
        PresenceUpdate { full, timeout, counts }
    }
}
