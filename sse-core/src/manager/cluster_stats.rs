//! Statistics across instances: with a backplane that
//! [shares statistics](crate::Backplane::shares_stats), one task of the
//! manager reports this instance's [`Stats`] and its users every
//! [`stats_interval`](crate::SseConfig::stats_interval), each report
//! standing for three intervals, and withdraws them when the manager shuts
//! down or is dropped. [`SseManager::cluster_stats`] adds up the reports
//! that still stand, with this instance's own figures taken live.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::{FutureExt as _, StreamExt as _};
use parking_lot::Mutex;
use serde::Serialize;

use super::{Shared, SseManager};
use crate::backplane::{Backplane, StatsReport};
use crate::error::ClusterStatsError;
use crate::stats::Stats;

/// How many intervals a report stands for.
const INTERVALS_PER_REPORT: u32 = 3;

/// How long [`Shared::withdraw_stats`] waits for the task.
const WITHDRAW_WAIT: Duration = Duration::from_secs(10);

/// The statistics of every instance sharing the backplane, as
/// [`SseManager::cluster_stats`] gives them. Serializes in camelCase:
/// `{"totals": {...}, "instances": [{"instance", "local", "ageMs",
/// "stats"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterStats {
    /// The sums over the instances: connections, each channel's
    /// connections and every counter. `unique_users` counts each user once
    /// across the instances (an estimate where the backplane says so: the
    /// Redis backplane's is a HyperLogLog, within about 1% of the exact
    /// count), each instance's users as of its latest report, this
    /// instance's included: a user who just connected here counts from the
    /// next report on, within one
    /// [`stats_interval`](crate::SseConfig::stats_interval).
    pub totals: Stats,
    /// Each instance's latest statistics, this one's first.
    pub instances: Vec<InstanceStats>,
}

/// One instance's statistics in [`ClusterStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InstanceStats {
    /// The instance's id (16 hexadecimal digits), the same in every
    /// instance's answer.
    pub instance: String,
    /// Whether it is the instance that answered.
    pub local: bool,
    /// How old its figures are, in milliseconds: `0` for the instance that
    /// answered, whose figures are taken live; at most three
    /// [`stats_interval`](crate::SseConfig::stats_interval)s for the others.
    pub age_ms: u64,
    /// Its statistics.
    pub stats: Stats,
}

impl InstanceStats {
    fn new(instance: u64, local: bool, age: Duration, stats: Stats) -> Self {
        InstanceStats {
            instance: format!("{instance:016x}"),
            local,
            age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            stats,
        }
    }
}

impl SseManager {
    /// The statistics of the whole cluster: every instance that shares
    /// this manager's backplane and has reported within the last three
    /// [`stats_interval`](crate::SseConfig::stats_interval)s, each with the
    /// age of its figures, and their totals. Without a backplane, this
    /// instance is the cluster.
    ///
    /// # Errors
    /// [`ClusterStatsError::NotShared`] when the backplane does not
    /// [share statistics](crate::Backplane::shares_stats);
    /// [`ClusterStatsError::Backplane`] when it cannot be reached.
    pub async fn cluster_stats(&self) -> Result<ClusterStats, ClusterStatsError> {
        let shared = &self.shared;
        let Some(backplane) = &shared.backplane else {
            let stats = shared.stats_now();
            return Ok(ClusterStats {
                totals: stats.clone(),
                instances: vec![InstanceStats::new(shared.instance, true, Duration::ZERO, stats)],
            });
        };
        if !backplane.shares_stats() {
            return Err(ClusterStatsError::NotShared);
        }
        let report = backplane.cluster_stats().await?;
        let local = shared.stats_now();
        let local_unique_users = local.unique_users;
        let mut totals = local.clone();
        let mut reported_here = false;
        let mut instances = vec![InstanceStats::new(shared.instance, true, Duration::ZERO, local)];
        let mut others: Vec<_> = report
            .instances
            .into_iter()
            .filter(|other| {
                let here = other.instance == shared.instance;
                reported_here |= here;
                !here
            })
            .collect();
        others.sort_by_key(|other| other.instance);
        for other in others {
            totals.add(&other.stats);
            instances.push(InstanceStats::new(other.instance, false, other.age, other.stats));
        }
        // The reports' users hold this instance's as last reported; before
        // its first report, they are added as they are now.
        let local_users = if reported_here { 0 } else { local_unique_users };
        totals.unique_users = usize::try_from(report.unique_users)
            .unwrap_or(usize::MAX)
            .saturating_add(local_users);
        Ok(ClusterStats { totals, instances })
    }
}

/// The manager's side of shared statistics.
pub(super) struct StatsSync {
    /// Wakes the task: the manager shuts down.
    wake: mpsc::Sender<()>,
    /// Completed by the task once it withdrew this instance's report.
    withdrawn: Mutex<Option<oneshot::Receiver<()>>>,
}

impl StatsSync {
    /// The state, and what the task is given.
    pub(super) fn new() -> (StatsSync, mpsc::Receiver<()>, oneshot::Sender<()>) {
        let (wake, woken) = mpsc::channel(1);
        let (done, withdrawn) = oneshot::channel();
        let sync = StatsSync {
            wake,
            withdrawn: Mutex::new(Some(withdrawn)),
        };
        (sync, woken, done)
    }
}

impl Shared {
    /// Tells the statistics task to withdraw this instance's report, and
    /// waits until it did (or gave up): the manager shuts down.
    pub(super) async fn withdraw_stats(&self) {
        let Some(sync) = &self.stats_sync else { return };
        // A full channel already holds a wake-up; a closed one means the
        // task is gone.
        let _ = sync.wake.clone().try_send(());
        let Some(withdrawn) = sync.withdrawn.lock().take() else {
            return;
        };
        let mut timeout = self.runtime.sleep(WITHDRAW_WAIT).fuse();
        let mut withdrawn = withdrawn.fuse();
        futures_util::select! {
            _ = withdrawn => {}
            () = timeout => tracing::warn!("sse stats: withdrawal not confirmed in time"),
        }
    }

    /// This instance's report now.
    fn stats_report(&self) -> StatsReport {
        let stats = self.stats_now();
        let users = self.registry.read().users();
        StatsReport::new(stats, users, self.config.stats_interval * INTERVALS_PER_REPORT)
    }
}

/// The statistics task: reports every interval until the manager shuts
/// down or is dropped, then withdraws the report.
pub(super) async fn run(
    shared: Weak<Shared>,
    backplane: Arc<dyn Backplane>,
    instance: u64,
    mut woken: mpsc::Receiver<()>,
    withdrawn: oneshot::Sender<()>,
) {
    let mut failing = false;
    loop {
        let (runtime, report, interval) = {
            let Some(shared) = shared.upgrade() else { break };
            if shared.is_shut_down() {
                break;
            }
            (
                shared.runtime.clone(),
                shared.stats_report(),
                shared.config.stats_interval,
            )
        };
        match backplane.report_stats(instance, report).await {
            Ok(()) => {
                if failing {
                    tracing::info!("sse stats: reporting again");
                }
                failing = false;
            }
            Err(error) if !failing => {
                tracing::warn!(%error, "sse stats: report failed; trying again every interval");
                failing = true;
            }
            Err(error) => tracing::debug!(%error, "sse stats: report failed again"),
        }
        let mut sleep = runtime.sleep(interval).fuse();
        futures_util::select! {
            () = sleep => {}
            woke = woken.next() => if woke.is_none() { break },
        }
    }
    if let Err(error) = backplane.withdraw_stats(instance).await {
        tracing::warn!(%error, "sse stats: withdrawal failed; this instance's report lapses after three intervals");
    }
    let _ = withdrawn.send(());
}
