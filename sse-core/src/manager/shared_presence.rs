//! Presence across instances: with a backplane that
//! [shares presence](crate::Backplane::shares_presence), changes of a
//! user's connection count in a presence channel are marked under the
//! registry's lock, and one task of the manager's reports them to the
//! backplane, with their absolute counts read afresh, so that bursts
//! coalesce and a report that failed is made good by the next full one. The
//! same task renews this instance's presence every quarter of the
//! [presence timeout](crate::SseConfig::presence_timeout) and withdraws it
//! when the manager shuts down or is dropped. The notices themselves come
//! back through the log.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_channel::{mpsc, oneshot};
use futures_util::{FutureExt as _, StreamExt as _};
use parking_lot::Mutex;

use super::Shared;
use super::presence::{Presence, notice};
use crate::backplane::{Backplane, Entry, PresenceCount, PresenceUpdate};

/// The manager's side of shared presence.
pub(super) struct PresenceSync {
    /// The (channel, user) pairs whose count changed since the last report.
    dirty: Mutex<HashSet<(String, String)>>,
    /// Wakes the task: something is marked, or the manager shuts down.
    wake: mpsc::Sender<()>,
    /// Completed by the task once it withdrew this instance's presence.
    withdrawn: Mutex<Option<oneshot::Receiver<()>>>,
    /// Set while the task has a withdrawal to report.
    stopping: AtomicBool,
}

/// How long [`PresenceSync::withdraw`] waits for the task.
const WITHDRAW_WAIT: Duration = Duration::from_secs(10);

impl PresenceSync {
    /// The state, and what the task is given.
    pub(super) fn new() -> (PresenceSync, mpsc::Receiver<()>, oneshot::Sender<()>) {
        let (wake, woken) = mpsc::channel(1);
        let (done, withdrawn) = oneshot::channel();
        let sync = PresenceSync {
            dirty: Mutex::new(HashSet::new()),
            wake,
            withdrawn: Mutex::new(Some(withdrawn)),
            stopping: AtomicBool::new(false),
        };
        (sync, woken, done)
    }

    /// Marks `user`'s count in `channel` for the next report. Called under
    /// the registry's write lock; `dirty` is taken under it, and nothing is
    /// taken under `dirty`.
    pub(super) fn mark(&self, channel: &str, user: &str) {
        let fresh = self.dirty.lock().insert((channel.to_owned(), user.to_owned()));
        if fresh {
            self.wake();
        }
    }

    fn wake(&self) {
        // A full channel already holds a wake-up; a closed one means the task
        // is gone.
        let _ = self.wake.clone().try_send(());
    }
}

impl Shared {
    /// Tells the presence task to withdraw this instance's presence, and
    /// waits until it did (or gave up): the manager shuts down.
    pub(super) async fn withdraw_presence(&self) {
        let Some(sync) = &self.presence_sync else { return };
        sync.stopping.store(true, Ordering::Release);
        sync.wake();
        let Some(withdrawn) = sync.withdrawn.lock().take() else {
            return;
        };
        let mut timeout = self.runtime.sleep(WITHDRAW_WAIT).fuse();
        let mut withdrawn = withdrawn.fuse();
        futures_util::select! {
            _ = withdrawn => {}
            () = timeout => tracing::warn!("sse presence: withdrawal not confirmed in time"),
        }
    }

    /// The next report: every count of this instance when `full`, else the
    /// marked ones; `None` when there is nothing to report.
    fn presence_report(&self, full: bool) -> Option<PresenceUpdate> {
        let sync = self.presence_sync.as_ref()?;
        // Under the registry's lock, so that no change is marked between
        // taking the marks and reading the counts.
        let registry = self.registry.read();
        let marked = std::mem::take(&mut *sync.dirty.lock());
        let counts: Vec<PresenceCount> = if full {
            let mut all = BTreeMap::<(&str, &str), usize>::new();
            for entry in registry.iter() {
                let Some(user) = entry.info.user_id.as_deref() else {
                    continue;
                };
                for channel in entry.info.channels.iter().filter(|c| self.presence_kept(c)) {
                    *all.entry((channel.as_str(), user)).or_default() += 1;
                }
            }
            all.into_iter()
                .filter_map(|((channel, user), n)| self.presence_count(channel, user, n))
                .collect()
        } else {
            marked
                .iter()
                .filter_map(|(channel, user)| {
                    self.presence_count(channel, user, registry.user_channel_count(user, channel))
                })
                .collect()
        };
        drop(registry);
        (full || !counts.is_empty()).then(|| PresenceUpdate::new(full, self.config.presence_timeout, counts))
    }

    /// `user`'s count of `connections` in `channel`, with its notices.
    fn presence_count(&self, channel: &str, user: &str, connections: usize) -> Option<PresenceCount> {
        let entry = |change| {
            let (audience, event) = notice(channel, user, change)?;
            // Origin 0 is no instance's: the entry is nobody's publication.
            Entry::new(0, &audience, &event).map(|entry| entry.encode())
        };
        Some(PresenceCount::new(
            channel,
            user,
            connections,
            entry(Presence::Join)?,
            entry(Presence::Leave)?,
        ))
    }
}

/// The presence task: reports marked counts, renews this instance's
/// presence every quarter of the timeout, sends everything again whenever
/// the backplane lost it or a report failed, and withdraws it at the end.
pub(super) async fn run(
    shared: Weak<Shared>,
    backplane: Arc<dyn Backplane>,
    instance: u64,
    mut woken: mpsc::Receiver<()>,
    withdrawn: oneshot::Sender<()>,
) {
    let mut full = true;
    let mut next_renewal = Instant::now();
    loop {
        let (runtime, report, renewal) = {
            let Some(shared) = shared.upgrade() else { break };
            let stopping = shared
                .presence_sync
                .as_ref()
                .is_none_or(|s| s.stopping.load(Ordering::Acquire));
            if stopping {
                break;
            }
            let now = Instant::now();
            let timeout = shared.config.presence_timeout;
            let renewal = (now >= next_renewal).then(|| {
                next_renewal = now + timeout / 4;
                timeout
            });
            (shared.runtime.clone(), shared.presence_report(full), renewal)
        };
        let mut again = false;
        if let Some(timeout) = renewal {
            match backplane.renew_presence(instance, timeout).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!("sse presence: this instance's presence had lapsed; sending it again");
                    full = true;
                    again = report.as_ref().is_none_or(|r| !r.full);
                }
                Err(error) => tracing::warn!(%error, "sse presence: renewal failed"),
            }
        }
        if let Some(report) = report {
            let was_full = report.full;
            match backplane.update_presence(instance, report).await {
                Ok(true) => full &= !was_full,
                Ok(false) => {
                    full = true;
                    again = true;
                }
                Err(error) => {
                    tracing::warn!(%error, "sse presence: report failed; sending everything at the next renewal");
                    full = true;
                }
            }
        }
        if again {
            continue;
        }
        let wait = next_renewal.saturating_duration_since(Instant::now());
        let mut sleep = runtime.sleep(wait).fuse();
        futures_util::select! {
            () = sleep => {}
            woke = woken.next() => if woke.is_none() { break },
        }
    }
    if let Err(error) = backplane.withdraw_presence(instance).await {
        tracing::warn!(%error, "sse presence: withdrawal failed; this instance's presence lapses after its timeout");
    }
    let _ = withdrawn.send(());
}
