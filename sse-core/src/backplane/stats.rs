//! What a backplane that shares statistics across instances is given and
//! answers: each instance's latest [`StatsReport`], and for the whole
//! cluster a [`ClusterReport`] of the reports still fresh. The manager's
//! side is in `manager/cluster_stats.rs`; the contract is on
//! [`Backplane::shares_stats`](super::Backplane::shares_stats).

use std::time::Duration;

use crate::stats::Stats;

/// One instance's statistics, as the manager reports them every
/// [`stats_interval`](crate::SseConfig::stats_interval) to a
/// [`Backplane`](super::Backplane) that
/// [shares statistics](super::Backplane::shares_stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsReport {
    /// The instance's statistics now.
    pub stats: Stats,
    /// The ids of the users with a connection on the instance, for the
    /// count of distinct users across the cluster.
    pub users: Vec<String>,
    /// How long the report stands without a newer one: past it, the
    /// instance is taken for dead and its report is dropped.
    pub ttl: Duration,
}

impl StatsReport {
    /// A report of `stats` and `users`, standing for `ttl`.
    pub fn new(stats: Stats, users: Vec<String>, ttl: Duration) -> Self {
        StatsReport { stats, users, ttl }
    }
}

/// One instance's latest report, as a backplane answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceReport {
    /// The instance, as given to
    /// [`Backplane::report_stats`](super::Backplane::report_stats).
    pub instance: u64,
    /// Its statistics.
    pub stats: Stats,
    /// How long ago it reported them.
    pub age: Duration,
}

impl InstanceReport {
    /// `instance`'s `stats`, reported `age` ago.
    pub fn new(instance: u64, stats: Stats, age: Duration) -> Self {
        InstanceReport { instance, stats, age }
    }
}

/// Every instance's latest report still standing, and the distinct users
/// across them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterReport {
    /// The reports, one per live instance.
    pub instances: Vec<InstanceReport>,
    /// Distinct users across the reports' user lists: exact, or an
    /// estimate the backplane documents (a HyperLogLog, say).
    pub unique_users: u64,
}

impl ClusterReport {
    /// A report of `instances`, with `unique_users` distinct users across
    /// them.
    pub fn new(instances: Vec<InstanceReport>, unique_users: u64) -> Self {
        ClusterReport {
            instances,
            unique_users,
        }
    }
}
